"""The spec package's error hierarchy."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spec.violations import SchemaViolation


class SpecError(Exception):
    """Base class of every error raised by the spec package."""


class UnknownSchemaError(SpecError, KeyError):
    """A schema name or kind that the document does not define."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown schema"


class SchemaValidationError(SpecError, ValueError):
    """A body that breaks its schema; carries the violations, most specific first."""

    def __init__(self, schema: str, violations: list[SchemaViolation]) -> None:
        self.schema = schema
        self.violations = list(violations)
        first = self.violations[0].message if self.violations else "invalid"
        more = len(self.violations) - 1
        suffix = f" (and {more} more violation{'s' if more != 1 else ''})" if more > 0 else ""
        super().__init__(f"{schema}: {first}{suffix}")
