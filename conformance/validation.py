"""Spec validation that turns violations into a Fail naming each one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conformance.client import Exchange
from conformance.verdicts import Fail
from spec import schemas


def validate_body(kind: str, body: Any, exchanges: Sequence[Exchange] | Exchange = ()) -> None:
    """Raise Fail listing the violations of the spec schema `kind` (request/response/chunk/error)."""
    violations = schemas.validate(kind, body)
    if violations:
        lines = [v.message for v in violations[:10]]
        more = f" (and {len(violations) - 10} more)" if len(violations) > 10 else ""
        raise Fail(
            f"{kind} does not match the spec schema {schemas.schema_name(kind)}: " + "; ".join(lines) + more,
            expected=f"a valid {schemas.schema_name(kind)}",
            actual=[{"path": v.path, "rule": v.rule, "pointer": v.schema_pointer} for v in violations[:10]],
            exchanges=exchanges,
        )
