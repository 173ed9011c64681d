"""Reading a suite run against a breaking proxy: a clause's verdict and its root (for the regression tests)."""

from __future__ import annotations

from collections.abc import Callable

from tests.conformance.breaking_proxy import BreakingProxy
from tests.conformance.test_breakers import SuiteRun

Use = Callable[..., BreakingProxy]  # the `using` fixture: use(breaker, proxy fixture name="proxy") -> proxy


def verdict(run: SuiteRun, clause_id: str) -> str:
    """The clause's verdict in the run (the test fails, describing the run, when the clause is absent)."""
    entry = run.clause(clause_id)
    assert entry is not None, run.describe(clause_id)
    return str(entry["verdict"])


def root(run: SuiteRun, clause_id: str) -> str | None:
    """The root clause its NOT_EXERCISED check names, if any."""
    entry = run.clause(clause_id)
    assert entry is not None, run.describe(clause_id)
    return next((c.get("root") for c in entry["checks"] if c.get("root")), None)
