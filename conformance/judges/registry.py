"""The registry of judges: one function per clause, of one exchange, returning what is wrong with it.

A judge is registered under its clause ID with `@judge("stream.chunk.object")`; it takes an Exchange
(a StreamExchange for the stream rules) and nothing of the live target, and returns the list of
Problems it found (empty: the exchange keeps the rule). What the exchange does not show (a rule for
requests with include_usage, judged on a stream without it) is no problem: a judge reports only
what it can see. Whether there was anything to judge at all is the caller's business (a clause
check's `need(...)`, a fuzz phase's counters).

A judge also says which recorded answers it reads (`on`): ANSWER (a 200 non-streamed chat
completion), STREAM (a 200 answer to a stream request), ERROR (any answer with status 400 or more),
MODELS (a 200 answer to GET /v1/models). `chatconform lint` runs a judge on the recordings of those
kinds; a judge registered without `on` reads what only the live target or several exchanges show
(a stall, a request known to be invalid) and is run by the clause checks alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from conformance.exchange import Exchange
from conformance.verdicts import Fail
from spec.clauses import CatalogueError, load_catalogue


@dataclass(frozen=True)
class Problem:
    """One way an exchange breaks a rule: what is wrong, and what was expected instead of what."""

    message: str
    expected: Any = None
    actual: Any = None

    def describe(self, limit: int = 160) -> str:
        """The message and, when known, what was actually seen (shortened): one line for a report."""
        if self.actual is None:
            return self.message
        seen = self.actual if isinstance(self.actual, str) else repr(self.actual)
        return f"{self.message} (got {seen[:limit]}{'...' if len(seen) > limit else ''})"


Judge = Callable[[Any], list[Problem]]
_J = TypeVar("_J", bound=Judge)
JUDGES: dict[str, Judge] = {}

# The kinds of recorded answer a judge reads (see the module docstring).
ANSWER = "answer"
STREAM = "stream"
ERROR = "error"
MODELS = "models"
KINDS = (ANSWER, STREAM, ERROR, MODELS)
SCOPES: dict[str, frozenset[str]] = {}  # clause ID -> the kinds its judge reads (empty: not offline)


class UnknownJudge(LookupError):
    """No judge is registered under this clause ID."""


def judge(clause_id: str, *, on: Iterable[str] = ()) -> Callable[[_J], _J]:
    """Decorator: register the function as the judge of an active clause of spec/clauses.yaml.

    `on` names the kinds of recorded answer it reads (KINDS); leave it empty for a rule that one
    recorded exchange cannot show.
    """
    kinds = frozenset(on)
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise ValueError(f"@judge({clause_id!r}): unknown kinds {unknown}; expected some of {list(KINDS)}")
    try:
        found = load_catalogue().get(clause_id)
    except CatalogueError:
        raise CatalogueError(f"@judge({clause_id!r}): no such clause in spec/clauses.yaml") from None
    if not found.active:
        raise CatalogueError(f"@judge({clause_id!r}): the clause is retired")

    def register(func: _J) -> _J:
        if clause_id in JUDGES:
            raise ValueError(f"two judges for {clause_id}: {JUDGES[clause_id].__name__} and {func.__name__}")
        JUDGES[clause_id] = func
        SCOPES[clause_id] = kinds
        return func
    return register


def judge_of(clause_id: str) -> Judge:
    """The judge registered under a clause ID (UnknownJudge when there is none)."""
    try:
        return JUDGES[clause_id]
    except KeyError:
        raise UnknownJudge(f"no judge is registered for {clause_id}") from None


def offline(kind: str) -> list[str]:
    """The clause IDs whose judges read a recorded answer of this kind, in registration order."""
    return [cid for cid, kinds in SCOPES.items() if kind in kinds]


def problems(clause_id: str, ex: Exchange) -> list[Problem]:
    """What the exchange breaks of the clause (empty when it keeps it)."""
    return judge_of(clause_id)(ex)


def problems_of(clause_ids: Sequence[str], ex: Exchange) -> list[tuple[str, Problem]]:
    """(clause ID, problem) for each of several rules the exchange breaks, in the order given."""
    return [(cid, problem) for cid in clause_ids for problem in problems(cid, ex)]


def enforce(clause_id: str, ex: Exchange, label: str = "") -> None:
    """Raise Fail with the exchange as evidence when it breaks the clause: the first problem, and how many more."""
    found = problems(clause_id, ex)
    if not found:
        return
    first = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    prefix = f"{label}: " if label else ""
    raise Fail(prefix + first.message + more, expected=first.expected, actual=first.actual, exchanges=ex)


__all__ = ["ANSWER", "ERROR", "JUDGES", "KINDS", "MODELS", "SCOPES", "STREAM", "Judge", "Problem", "UnknownJudge",
           "enforce", "judge", "judge_of", "offline", "problems", "problems_of"]
