"""Verdicts and the exceptions a check raises to reach one.

A check passes by returning. It raises `Fail` when the target breaks the clause, `Unsupported`
when the target refused the feature with a clear 4xx, `Ignored` when it accepted the feature (200)
but the effect is absent, `NotApplicable` when the clause cannot be observed on this target, and
`NotExercised` when what the check must observe never happened because another clause (its root)
failed first: an ignored tool_choice leaves no tool call for the tool-call checks to judge. The
plugin maps these (with the clause level and --strict) to a Verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, NoReturn

from conformance.exchange import Exchange


class Verdict(StrEnum):
    """The outcome of one check or clause; ERROR is a suite-side error, not the target's fault."""

    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    UNSUPPORTED = "UNSUPPORTED"
    IGNORED = "IGNORED"
    SKIPPED = "SKIPPED"
    ERROR = "ERROR"
    # What the check must observe never happened (its root clause says why): neither PASS nor FAIL.
    NOT_EXERCISED = "NOT_EXERCISED"
    # `--repeat N`: the clause's verdict differed between runs.
    FLAKY = "FLAKY"


# Worst first: a clause's verdict is the worst of its checks'.
SEVERITY: tuple[Verdict, ...] = (
    Verdict.ERROR, Verdict.FAIL, Verdict.FLAKY, Verdict.IGNORED, Verdict.WARN,
    Verdict.NOT_EXERCISED, Verdict.UNSUPPORTED, Verdict.PASS, Verdict.SKIPPED,
)


# A passing check may say what it saw: pytest's `record_property(NOTE_PROPERTY, text)` becomes the
# message of its PASS in the report.
NOTE_PROPERTY = "chatconform_note"


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe verdict of several (SKIPPED when there are none)."""
    ranked = sorted(verdicts, key=SEVERITY.index)
    return ranked[0] if ranked else Verdict.SKIPPED


class CheckOutcome(Exception):
    """Base of the outcomes a check raises: a message, expected vs actual, and exchanges as evidence."""

    verdict: Verdict = Verdict.FAIL

    def __init__(
        self,
        message: str,
        *,
        expected: Any = None,
        actual: Any = None,
        exchanges: Sequence[Exchange] | Exchange = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.actual = actual
        self.exchanges: tuple[Exchange, ...] = (exchanges,) if isinstance(exchanges, Exchange) else tuple(exchanges)

    def evidence(self) -> list[dict[str, Any]]:
        """The exchanges as JSON-ready evidence records."""
        return [ex.evidence() for ex in self.exchanges]

    def __str__(self) -> str:
        parts = [self.message]
        if self.expected is not None or self.actual is not None:
            parts.append(f"expected: {_short(self.expected)}; actual: {_short(self.actual)}")
        return " | ".join(parts)


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Fail(CheckOutcome):
    """The target breaks the clause."""

    verdict = Verdict.FAIL


class Unsupported(CheckOutcome):
    """The target refused the feature with a clear 4xx and an error envelope.

    `permitted` says whether the clause allows that refusal. Raised directly by a check, it does:
    those clauses read "... or is refused with a 4xx error". Raised by `unsupported_or_fail`, it
    does not, because the feature is one the clause requires. The plugin turns a refusal that is
    not permitted into FAIL for a required clause (MUST, and SHOULD under --strict).
    """

    verdict = Verdict.UNSUPPORTED

    def __init__(self, message: str, *, permitted: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.permitted = permitted


class Ignored(CheckOutcome):
    """The target accepted the feature (200) but its effect is absent."""

    verdict = Verdict.IGNORED


class NotApplicable(CheckOutcome):
    """The clause cannot be observed on this target (e.g. it has no authentication configured)."""

    verdict = Verdict.SKIPPED


class NotExercised(CheckOutcome):
    """What the check must observe never happened, so the clause is neither PASS nor FAIL.

    `root` is the clause whose own check judges the missing observation (e.g. `tools.choice.required`
    for "a response with a tool call"); the report links to it, and the gate stays red through it.
    None when no single clause explains it.
    """

    verdict = Verdict.NOT_EXERCISED

    def __init__(self, message: str, *, root: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.root = root


def require(
    condition: bool,
    message: str,
    *,
    expected: Any = None,
    actual: Any = None,
    exchanges: Sequence[Exchange] | Exchange = (),
) -> None:
    """Raise Fail(message, ...) unless the condition holds."""
    if not condition:
        raise Fail(message, expected=expected, actual=actual, exchanges=exchanges)


def need(
    condition: bool,
    what: str,
    *,
    root: str | None,
    actual: Any = None,
    exchanges: Sequence[Exchange] | Exchange = (),
) -> None:
    """Raise NotExercised("not exercised: <what> was not observed", root=...) unless the condition holds.

    A check calls it for what it must observe before it can judge its own rule (a 200 sample, a tool
    call, a logprobs field, two choices); the failed observation is kept as evidence.
    """
    if not condition:
        raise not_exercised(what, root=root, actual=actual, exchanges=exchanges)


def not_exercised(
    what: str,
    *,
    root: str | None,
    actual: Any = None,
    exchanges: Sequence[Exchange] | Exchange = (),
) -> NotExercised:
    """The NotExercised that `need` raises, for a check that tests the condition itself (`if not ...: raise`)
    so that the type checker narrows what it observed."""
    because = f" (judged by {root})" if root else ""
    return NotExercised(f"not exercised: {what} was not observed{because}", root=root, actual=actual,
                        exchanges=exchanges)


def refused_clearly(ex: Exchange) -> bool:
    """True for a 4xx other than 404/405 (a known route) whose body is an error envelope with a message.

    The envelope is judged by conformance.judges.envelope, the same functions as the errors.envelope.*
    clauses (imported here, not at the top: the judges raise this module's Fail).
    """
    from conformance.judges.envelope import clear_refusal

    return clear_refusal(ex)


def unsupported_or_fail(ex: Exchange, feature: str) -> NoReturn:
    """Raise Unsupported when the target refused the feature clearly, Fail otherwise."""
    if refused_clearly(ex):
        raise Unsupported(
            f"{feature}: refused with {ex.status}: {_short(ex.body_text, 200)}", exchanges=(ex,),
            permitted=False,
        )
    raise Fail(
        f"{feature}: expected 200 with a JSON body or a clear 4xx refusal, got {ex.status}",
        expected="200 + JSON, or 4xx + error envelope",
        actual=f"{ex.status} {_short(ex.body_text, 200)}",
        exchanges=(ex,),
    )


__all__ = [
    "SEVERITY",
    "CheckOutcome",
    "Fail",
    "Ignored",
    "NotApplicable",
    "NotExercised",
    "Unsupported",
    "Verdict",
    "need",
    "not_exercised",
    "refused_clearly",
    "require",
    "unsupported_or_fail",
    "worst",
]
