"""Requests made once per session and shared by several checks, and how a check judges what it observed.

A `Sample` keeps its exchange whatever the answer, with the clause (its root) whose check judges
whether that request is accepted. A `SampleSet` hands a check the accepted samples and, once the
check has judged them, raises NotExercised for a sample that was lost: neither answered 200 nor
refused by a clear 4xx that its root permits (an optional feature such as n 2). A Fail found on
the accepted samples therefore wins, and a lost sample is never silently dropped.

`Deferred` does the same for observations a check makes itself: it keeps the first NotExercised
while the check judges the rest, then raises it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any

from conformance import observed
from conformance.client import Exchange, StreamExchange, Target
from conformance.expectations import completion
from conformance.verdicts import NotApplicable, NotExercised, need, refused_clearly


@dataclass
class Sample:
    """A request the suite made once per session and several checks inspect, answered or not."""

    label: str
    body: dict[str, Any]
    exchange: Exchange
    root: str  # the clause whose check judges whether this request is accepted
    refusable: bool = False  # the root permits a clear 4xx refusal (an optional feature)

    @property
    def answered(self) -> bool:
        """200, with a JSON object for a non-streaming request."""
        if isinstance(self.exchange, StreamExchange):
            return self.exchange.status == 200
        return self.exchange.status == 200 and isinstance(self.exchange.json, dict)

    @property
    def refused(self) -> bool:
        """Refused by a clear 4xx that the root permits: nothing to observe, and nothing lost."""
        return self.refusable and refused_clearly(self.exchange)

    @property
    def lost(self) -> bool:
        """Neither answered nor refused as permitted."""
        return not self.answered and not self.refused

    def not_exercised(self) -> NotExercised:
        """The NotExercised a check raises for this sample when it is lost."""
        return NotExercised(
            f"not exercised: the {self.label} sample was answered {self.exchange.status}, not 200 "
            f"(judged by {self.root})", root=self.root, actual=f"{self.exchange.status} {self.exchange.body_text[:200]}",
            exchanges=self.exchange)


@dataclass
class SampleSet:
    """The samples of one fixture (`responses` or `streams`), in the order they were planned."""

    samples: list[Sample]

    @property
    def accepted(self) -> list[Sample]:
        """The samples answered 200."""
        return [s for s in self.samples if s.answered]

    @property
    def lost(self) -> list[Sample]:
        """The samples neither answered 200 nor refused as their root permits."""
        return [s for s in self.samples if s.lost]

    def rooted(self, clause_id: str) -> list[Sample]:
        """Every sample (answered or not) whose acceptance the clause judges."""
        return [s for s in self.samples if s.root == clause_id]

    def get(self, label: str) -> Sample:
        """The sample with this label (KeyError when the plan has none)."""
        for sample in self.samples:
            if sample.label == label:
                return sample
        raise KeyError(label)

    def need(self, label: str) -> Sample:
        """The answered sample with this label: NotExercised when it was lost, NotApplicable when refused as permitted."""
        sample = self.get(label)
        if sample.refused:
            raise NotApplicable(f"the {label} sample was refused with {sample.exchange.status}, as {sample.root} "
                                "permits: nothing to observe", exchanges=sample.exchange)
        if sample.lost:
            raise sample.not_exercised()
        return sample

    def need_all(self, where: Callable[[Sample], bool] | None = None) -> None:
        """Raise NotExercised for the first lost sample (of those `where` selects)."""
        for sample in self.samples:
            if sample.lost and (where is None or where(sample)):
                raise sample.not_exercised()

    def judged(self, where: Callable[[Sample], bool] | None = None) -> Iterator[Sample]:
        """Yield the accepted samples (of those `where` selects) for the check to judge; then raise
        NotExercised for a lost one, so that a Fail raised while judging wins."""
        for sample in self.accepted:
            if where is None or where(sample):
                observed.note(sample.exchange)  # sent in another check's setup: evidence of this one
                yield sample
        self.need_all(where)


def collect(target: Target, plan: list[tuple[str, dict[str, Any], str]], *, stream: bool,
            refusable: Iterable[str] = ()) -> SampleSet:
    """Send each (label, body, root) of the plan once and keep every answer as a Sample."""
    send = target.chat_stream if stream else target.chat
    answers = target.many(partial(send, body) for _, body, _ in plan)
    optional = set(refusable)
    return SampleSet([Sample(label, body, ex, root, label in optional)
                      for (label, body, root), ex in zip(plan, answers, strict=True)])


class Deferred:
    """Keeps the first NotExercised raised in its `with` blocks until `settle()`, so that the check
    judges every other observation first (a Fail propagates at once)."""

    def __init__(self) -> None:
        self.kept: NotExercised | None = None

    def __enter__(self) -> Deferred:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if isinstance(exc, NotExercised):
            self.keep(exc)
            return True
        return False

    def keep(self, exc: NotExercised) -> None:
        """Keep a NotExercised for settle() (the first one kept wins)."""
        if self.kept is None:
            self.kept = exc

    def settle(self) -> None:
        """Raise the kept NotExercised, if any."""
        if self.kept is not None:
            raise self.kept


def need_answer(ex: Exchange, what: str, root: str) -> None:
    """NotExercised (root) unless the exchange is 200 with a JSON object: a request a check compares against."""
    need(ex.status == 200 and isinstance(ex.json, dict), f"a 200 answer to {what}", root=root,
         actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


def require_accepted(samples: Iterable[Sample]) -> None:
    """For the root check of shared samples: Fail for one not answered 200 with a JSON object."""
    for sample in samples:
        completion(sample.exchange, f"the {sample.label} sample")


def first_choice_content(ex: Exchange) -> Any:
    """message.content of choice 0 (None when there is none): what a temperature 0 comparison compares."""
    choices = ex.json.get("choices") if isinstance(ex.json, dict) else None
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = first.get("message")
    return message.get("content") if isinstance(message, dict) else None


def require_repeatable(target: Target, body: dict[str, Any], first: Exchange,
                       observe: Callable[[Exchange], Any]) -> None:
    """After a mismatch between two answers that must be equal (stream and non-stream, two equivalent
    requests): send the non-streaming `body` again; when what `observe` reads differs from the first
    answer too, the target is not repeatable at all and the mismatch says nothing about the clause."""
    again = target.chat(body, headers={"x-use-cache": "false"})
    repeat = observe(again) if again.status == 200 and isinstance(again.json, dict) else f"status {again.status}"
    if repeat != observe(first):
        raise NotExercised("not exercised: the same request gave two different answers, so a difference between "
                           "the compared answers says nothing (judged by params.temperature.zero-repeatable)",
                           root="params.temperature.zero-repeatable", expected=observe(first), actual=repeat,
                           exchanges=(first, again))


# A tool with a free-text argument (invalid_requests.py builds invalid tool definitions from it).
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
