"""Log probabilities: shape, arithmetic, top alternatives, agreement with content and usage.

Most checks read two shared responses: a greedy one (temperature 0) and a sampled one
(temperature 1, seeded, so chosen tokens are sometimes outside the alternatives), both with
logprobs true and top_logprobs 3. logprobs.content.present judges whether they are answered and
carry logprobs.content; every other check judges its own rule on the entries there are, and is
not exercised (root logprobs.content.present) where there are none to judge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from conformance.client import Exchange, Target
from conformance.config import SuiteConfig
from conformance.judges import enforce
from conformance.judges.logprobs import logprob_values
from conformance.logprobs import (
    FRESH,
    TOP,
    choices_of,
    each_choice,
    send,
    tops_of,
)
from conformance.registry import clause
from conformance.samples import Deferred
from conformance.verdicts import need, not_exercised, require, unsupported_or_fail
from spec import limits


@dataclass
class Shared:
    """The responses most checks read."""

    greedy: Exchange     # temperature 0, logprobs true, top_logprobs 3
    sampled: Exchange    # temperature 1, seeded, logprobs true, top_logprobs 3

    @property
    def both(self) -> tuple[Exchange, Exchange]:
        """Both responses, greedy first."""
        return (self.greedy, self.sampled)

    def judge(self, clause_id: str) -> None:
        """The clause's judge on both responses; then NotExercised where there were no entries to judge."""
        for label, ex in (("temperature 0", self.greedy), ("temperature 1", self.sampled)):
            enforce(clause_id, ex, label)
        for _ in each_choice(self.both):
            pass


@pytest.fixture(scope="module")
def shared(target: Target, suite_config: SuiteConfig) -> Shared:
    """One greedy and one sampled response with logprobs and three alternatives per token (kept whatever the answer)."""
    greedy, sampled = target.many([
        lambda: send(target, max_tokens=16, temperature=0, logprobs=True, top_logprobs=TOP),
        lambda: send(target, max_tokens=16, temperature=1.0, seed=suite_config.seed, logprobs=True, top_logprobs=TOP)])
    return Shared(greedy, sampled)


def _all_entries(shared: Shared) -> Iterator[tuple[Exchange, dict[str, Any]]]:
    """Every (exchange, content entry) of both shared responses (NotExercised afterwards where there were none)."""
    for ex, _, found in each_choice(shared.both):
        for entry in found:
            yield ex, entry


# --- usage tie ---------------------------------------------------------------------------------


@clause("usage.completion-tokens.logprob-count")
def test_completion_tokens_equal_logprob_count(shared: Shared) -> None:
    """With logprobs true and n 1, completion_tokens equals the number of entries in logprobs.content."""
    for label, ex in (("temperature 0", shared.greedy), ("temperature 1", shared.sampled)):
        enforce("usage.completion-tokens.logprob-count", ex, label)
    later = Deferred()
    for ex, _, _ in each_choice(shared.both):
        usage = ex.json_object.get("usage")
        with later:
            tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
            if not isinstance(tokens, int):
                raise not_exercised("usage.completion_tokens", root="response.usage.present", actual=usage,
                                    exchanges=ex)
    later.settle()


# --- logprobs.* ---------------------------------------------------------------------------------


@clause("logprobs.default.absent")
def test_default_absent(target: Target) -> None:
    """Without logprobs true, every choice's logprobs is null or absent."""
    for extra in ({}, {"logprobs": False}):
        ex = send(target, max_tokens=4, **extra)
        choices_of(ex, "request.messages.accepted")
        enforce("logprobs.default.absent", ex, f"{extra or 'no logprobs'}")


@clause("logprobs.content.present")
def test_content_present(shared: Shared) -> None:
    """With logprobs true, every choice's logprobs.content is a list with one entry per generated token."""
    for ex in shared.both:
        if ex.status != 200:
            unsupported_or_fail(ex, "logprobs")
        require(isinstance(ex.json, dict), "logprobs: 200 but the body is not a JSON object", expected="JSON object",
                actual=ex.body_text[:300], exchanges=ex)
        choices_of(ex)
        enforce("logprobs.content.present", ex)


@clause("logprobs.value.non-positive")
def test_value_non_positive(shared: Shared) -> None:
    """Every logprob, in content and in top_logprobs, is a finite number no greater than 0."""
    shared.judge("logprobs.value.non-positive")


@clause("logprobs.tokens.concatenate")
def test_tokens_concatenate(shared: Shared) -> None:
    """Without stop sequences, the concatenated UTF-8 bytes of the content entries (bytes when given, else the token string) decode to the message content."""
    shared.judge("logprobs.tokens.concatenate")


@clause("logprobs.bytes.matches-token")
def test_bytes_match_token(shared: Shared) -> None:
    """When bytes is not null it is a list of integers 0-255, and it equals the UTF-8 encoding of token whenever that token holds no replacement character."""
    shared.judge("logprobs.bytes.matches-token")


@clause("logprobs.top.count")
def test_top_count(target: Target, shared: Shared) -> None:
    """Every content entry holds exactly top_logprobs alternatives, and an empty list when top_logprobs is 0 or absent."""
    # top_logprobs absent must give [] too: some servers then send 20 alternatives per token.
    extras: tuple[dict[str, int], ...] = ({"top_logprobs": 0}, {})
    answers = target.many(partial(send, target, max_tokens=4, logprobs=True, **extra) for extra in extras)
    for extra, ex in zip(extras, answers, strict=True):
        enforce("logprobs.top.count", ex, f"{extra or 'top_logprobs absent'}")
    later = Deferred()
    with later:
        shared.judge("logprobs.top.count")
    for ex in answers:
        with later:
            for _ in each_choice((ex,)):
                pass
    later.settle()


def _need_values(ex: Exchange, items: list[dict[str, Any]]) -> None:
    """NotExercised (logprobs.value.non-positive) unless the logprob of each item is a finite number <= 0."""
    if logprob_values(items) is None:
        raise not_exercised("logprobs that are finite numbers <= 0", root="logprobs.value.non-positive",
                            actual=[t.get("logprob") for t in items], exchanges=ex)


def _judge_values(shared: Shared, clause_id: str, items: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """The clause's judge on both responses; then NotExercised for an entry whose `items` have logprobs that are
    not finite numbers <= 0 (the judge leaves those aside), or where there were no entries."""
    for label, ex in (("temperature 0", shared.greedy), ("temperature 1", shared.sampled)):
        enforce(clause_id, ex, label)
    later = Deferred()
    for ex, entry in _all_entries(shared):
        with later:
            _need_values(ex, items(entry))
    later.settle()


@clause("logprobs.top.sorted")
def test_top_sorted(shared: Shared) -> None:
    """Each top_logprobs list is sorted by logprob, highest first."""
    _judge_values(shared, "logprobs.top.sorted", tops_of)


@clause("logprobs.top.distinct")
def test_top_distinct(shared: Shared) -> None:
    """The tokens within one top_logprobs list are distinct."""
    shared.judge("logprobs.top.distinct")


@clause("logprobs.top.mass")
def test_top_mass(shared: Shared) -> None:
    """The probabilities exp(logprob) within one top_logprobs list sum to at most 1 plus 1e-3."""
    _judge_values(shared, "logprobs.top.mass", tops_of)


def _chosen_and_tops(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The entry and its alternatives, when it has any (an entry without them is not judged)."""
    tops = tops_of(entry)
    return [entry, *tops] if tops else []


@clause("logprobs.chosen.consistent")
def test_chosen_consistent(shared: Shared) -> None:
    """A chosen token that appears in its top_logprobs list has the same logprob there within 1e-3, and one that does not is no more likely than the last alternative."""
    _judge_values(shared, "logprobs.chosen.consistent", _chosen_and_tops)


@clause("logprobs.greedy.chosen-first")
def test_greedy_chosen_first(shared: Shared) -> None:
    """At temperature 0 with top_logprobs of at least 1, each chosen token's logprob equals the first alternative's within 1e-3."""
    enforce("logprobs.greedy.chosen-first", shared.greedy, "temperature 0")
    later = Deferred()
    for ex, _, found in each_choice((shared.greedy,)):
        for entry in found:
            with later:
                tops = tops_of(entry)
                need(bool(tops), f"the {TOP} alternatives asked for", root="logprobs.top.count",
                     actual=entry.get("top_logprobs"), exchanges=ex)
                _need_values(ex, [entry, *tops[:1]])
    later.settle()


@clause("logprobs.top.bound")
def test_top_bound(target: Target) -> None:
    """Every top_logprobs value from 0 to 5 with logprobs true is accepted and answered 200."""
    low, high = limits.top_logprobs_range()
    for top in range(low, high + 1):
        body = target.body(max_tokens=2, logprobs=True, top_logprobs=top)
        ex = target.chat(body, headers=FRESH)
        require(ex.status == 200, f"top_logprobs {top} with logprobs true must be answered 200",
                expected=200, actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)
