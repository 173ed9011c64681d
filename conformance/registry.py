"""Ties checks to clauses: `@clause("stream.done.terminates")` marks a test with its clause ID."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from spec.clauses import CatalogueError, Clause, load_catalogue

MARKER = "clause"
_F = TypeVar("_F", bound=Callable[..., Any])


class UnknownClause(CatalogueError):
    """A check names a clause ID that the catalogue does not have (or that is retired)."""


def clause(clause_id: str) -> Callable[[_F], _F]:
    """Decorator: mark a check with its clause ID; an unknown or retired ID fails at collection."""
    found = lookup(clause_id)
    if not found.active:
        raise UnknownClause(f"clause {clause_id!r} is retired: {found.retired_reason}")

    def mark(func: _F) -> _F:
        # Applied to a function, the MarkDecorator stores the mark on it and returns it unchanged
        # (pytest types that result as Any): return the function itself, keeping its type.
        pytest.mark.clause(clause_id)(func)
        return func

    return mark


def lookup(clause_id: str) -> Clause:
    """The catalogue's clause for an ID; UnknownClause naming the ID when there is none."""
    try:
        return load_catalogue().get(clause_id)
    except CatalogueError:
        raise UnknownClause(f"@clause({clause_id!r}): no such clause in spec/clauses.yaml") from None


def clause_of(item: pytest.Item) -> str | None:
    """The clause ID a collected test is marked with, or None."""
    marker = item.get_closest_marker(MARKER)
    if marker is None or not marker.args:
        return None
    return str(marker.args[0])
