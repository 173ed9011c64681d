"""Log probabilities: shape, arithmetic, top alternatives, agreement with content and usage.

Most checks read two shared responses: a greedy one (temperature 0) and a sampled one
(temperature 1, seeded, so chosen tokens are sometimes outside the alternatives), both with
logprobs true and top_logprobs 3. logprobs.content.present judges whether they are answered and
carry logprobs.content; every other check judges its own rule on the entries there are, and is
not exercised (root logprobs.content.present) where there are none to judge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from conformance.client import Exchange, Target
from conformance.config import SuiteConfig
from conformance.logprobs import (
    FRESH,
    TOLERANCE,
    TOP,
    choices_of,
    content_of,
    each_choice,
    entry_bytes,
    finite,
    send,
    text_of,
    tops_of,
    well_formed,
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
    later = Deferred()
    for ex, choice, found in each_choice(shared.both):
        usage = ex.json_object.get("usage")
        with later:
            tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
            if not isinstance(tokens, int):
                raise not_exercised("usage.completion_tokens", root="response.usage.present", actual=usage,
                                    exchanges=ex)
            count = len(found)
            require(tokens == count, "completion_tokens differs from the logprobs entry count",
                    expected=count, actual=tokens, exchanges=ex)
    later.settle()


# --- logprobs.* ---------------------------------------------------------------------------------


@clause("logprobs.default.absent")
def test_default_absent(target: Target) -> None:
    """Without logprobs true, every choice's logprobs is null or absent."""
    for extra in ({}, {"logprobs": False}):
        ex = send(target, max_tokens=4, **extra)
        for choice in choices_of(ex, "request.messages.accepted"):
            require(choice.get("logprobs") is None, f"logprobs must be null or absent with {extra or 'no logprobs'}",
                    expected=None, actual=choice.get("logprobs"), exchanges=ex)


@clause("logprobs.content.present")
def test_content_present(shared: Shared) -> None:
    """With logprobs true, every choice's logprobs.content is a list with one entry per generated token."""
    for ex in shared.both:
        if ex.status != 200:
            unsupported_or_fail(ex, "logprobs")
        require(isinstance(ex.json, dict), "logprobs: 200 but the body is not a JSON object", expected="JSON object",
                actual=ex.body_text[:300], exchanges=ex)
        for choice in choices_of(ex):
            content = content_of(choice)
            require(well_formed(content), "with logprobs true, choice.logprobs.content must be a list of entries",
                    expected="logprobs: {content: [...]}", actual=choice.get("logprobs", "(absent)"), exchanges=ex)
            entries = content
            usage = ex.json_object.get("usage")  # a JSON object: required above
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int) and len(choices_of(ex)) == 1:
                require(len(entries) == usage["completion_tokens"], "one logprobs entry per generated token",
                        expected=usage["completion_tokens"], actual=len(entries), exchanges=ex)
            else:
                require(bool(entries) or not text_of(choice), "content was generated but logprobs.content is empty",
                        actual=entries, exchanges=ex)


@clause("logprobs.value.non-positive")
def test_value_non_positive(shared: Shared) -> None:
    """Every logprob, in content and in top_logprobs, is a finite number no greater than 0."""
    for ex, entry in _all_entries(shared):
        for item in [entry] + tops_of(entry):
            value = item.get("logprob")
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value <= 0
            require(ok, f"logprob of token {item.get('token')!r} must be a finite number <= 0",
                    expected="<= 0", actual=value, exchanges=ex)


@clause("logprobs.tokens.concatenate")
def test_tokens_concatenate(shared: Shared) -> None:
    """Without stop sequences, the concatenated UTF-8 bytes of the content entries (bytes when given, else the token string) decode to the message content."""
    for ex, choice, found in each_choice(shared.both):
        decoded = b"".join(entry_bytes(e) for e in found).decode("utf-8", errors="replace")
        content = text_of(choice)
        # A generation cut by max_tokens may end inside a multi-byte character: compare the whole
        # characters, allowing the server to drop or replace the incomplete tail.
        require(decoded == content or decoded.rstrip("\ufffd") == content.rstrip("\ufffd"),
                "the logprobs tokens do not concatenate to the content",
                expected=content, actual=decoded, exchanges=ex)


@clause("logprobs.bytes.matches-token")
def test_bytes_match_token(shared: Shared) -> None:
    """When bytes is not null it is a list of integers 0-255, and it equals the UTF-8 encoding of token whenever that token holds no replacement character."""
    for ex, entry in _all_entries(shared):
        for item in [entry] + tops_of(entry):
            raw, token = item.get("bytes"), item.get("token")
            if raw is None:
                continue
            require(isinstance(raw, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255
                                                  for b in raw),
                    "bytes must be a list of integers 0-255", actual=raw, exchanges=ex)
            if isinstance(token, str) and "\ufffd" not in token:
                require(bytes(raw) == token.encode("utf-8"), f"bytes differ from the UTF-8 of token {token!r}",
                        expected=list(token.encode("utf-8")), actual=raw, exchanges=ex)


@clause("logprobs.top.count")
def test_top_count(target: Target, shared: Shared) -> None:
    """Every content entry holds exactly top_logprobs alternatives, and an empty list when top_logprobs is 0 or absent."""
    # top_logprobs absent must give [] too: some servers then send 20 alternatives per token.
    extras: tuple[dict[str, int], ...] = ({"top_logprobs": 0}, {})
    answers = target.many(partial(send, target, max_tokens=4, logprobs=True, **extra) for extra in extras)
    later = Deferred()
    with later:
        for ex, entry in _all_entries(shared):
            require(isinstance(entry.get("top_logprobs"), list) and len(entry["top_logprobs"]) == TOP,
                    f"top_logprobs {TOP} must give exactly {TOP} alternatives per token",
                    expected=TOP, actual=entry.get("top_logprobs"), exchanges=ex)
    for extra, ex in zip(extras, answers, strict=True):
        with later:
            for _, _, found in each_choice((ex,)):
                for entry in found:
                    tops = entry.get("top_logprobs")
                    require(tops == [], f"top_logprobs must be an empty list with {extra or 'top_logprobs absent'}",
                            expected=[], actual=f"{len(tops)} alternatives" if isinstance(tops, list) else tops,
                            exchanges=ex)
    later.settle()


def _logprobs_of(ex: Exchange, items: list[dict[str, Any]]) -> list[float]:
    """The logprob of each item: NotExercised (logprobs.value.non-positive) unless each is a finite number <= 0."""
    values = [t.get("logprob") for t in items]
    numbers = [v for v in values if finite(v) and v <= 0]
    if len(numbers) != len(values):
        raise not_exercised("logprobs that are finite numbers <= 0", root="logprobs.value.non-positive",
                            actual=values, exchanges=ex)
    return numbers


@clause("logprobs.top.sorted")
def test_top_sorted(shared: Shared) -> None:
    """Each top_logprobs list is sorted by logprob, highest first."""
    later = Deferred()
    for ex, entry in _all_entries(shared):
        with later:
            values = _logprobs_of(ex, tops_of(entry))
            require(values == sorted(values, reverse=True), "top_logprobs must be sorted by logprob, highest first",
                    actual=values, exchanges=ex)
    later.settle()


@clause("logprobs.top.distinct")
def test_top_distinct(shared: Shared) -> None:
    """The tokens within one top_logprobs list are distinct."""
    for ex, entry in _all_entries(shared):
        tokens = [(t.get("token"), tuple(t["bytes"]) if isinstance(t.get("bytes"), list) else None)
                  for t in tops_of(entry)]
        require(len(set(tokens)) == len(tokens), "a top_logprobs list repeats a token",
                actual=[t[0] for t in tokens], exchanges=ex)


@clause("logprobs.top.mass")
def test_top_mass(shared: Shared) -> None:
    """The probabilities exp(logprob) within one top_logprobs list sum to at most 1 plus 1e-3."""
    later = Deferred()
    for ex, entry in _all_entries(shared):
        with later:
            mass = sum(math.exp(v) for v in _logprobs_of(ex, tops_of(entry)))
            require(mass <= 1 + TOLERANCE, "the alternatives' probabilities sum to more than 1",
                    expected="<= 1.001", actual=round(mass, 6), exchanges=ex)
    later.settle()


def _same_token(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same token: equal bytes when both give them, else equal token strings."""
    bytes_a, bytes_b = a.get("bytes"), b.get("bytes")
    if isinstance(bytes_a, list) and isinstance(bytes_b, list):
        return bytes_a == bytes_b
    return a.get("token") == b.get("token")


@clause("logprobs.chosen.consistent")
def test_chosen_consistent(shared: Shared) -> None:
    """A chosen token that appears in its top_logprobs list has the same logprob there within 1e-3, and one that does not is no more likely than the last alternative."""
    later = Deferred()
    for ex, entry in _all_entries(shared):
        tops = tops_of(entry)
        if not tops:
            continue
        with later:
            chosen, values = _logprobs_of(ex, [entry])[0], _logprobs_of(ex, tops)
            match = [v for t, v in zip(tops, values, strict=True) if _same_token(t, entry)]
            if match:
                require(abs(match[0] - chosen) <= TOLERANCE,
                        f"token {entry.get('token')!r} has another logprob among its alternatives",
                        expected=match[0], actual=chosen, exchanges=ex)
            else:
                require(chosen <= values[-1] + TOLERANCE,
                        f"token {entry.get('token')!r} is missing from top_logprobs yet more likely than the last one",
                        expected=f"<= {values[-1]}", actual=chosen, exchanges=ex)
    later.settle()


@clause("logprobs.greedy.chosen-first")
def test_greedy_chosen_first(shared: Shared) -> None:
    """At temperature 0 with top_logprobs of at least 1, each chosen token's logprob equals the first alternative's within 1e-3."""
    later = Deferred()
    for ex, _, found in each_choice((shared.greedy,)):
        for entry in found:
            with later:
                tops = tops_of(entry)
                need(bool(tops), f"the {TOP} alternatives asked for", root="logprobs.top.count",
                     actual=entry.get("top_logprobs"), exchanges=ex)
                chosen, first = _logprobs_of(ex, [entry])[0], _logprobs_of(ex, tops[:1])[0]
                require(abs(first - chosen) <= TOLERANCE,
                        f"greedy token {entry.get('token')!r} is not the most likely alternative",
                        expected=first, actual=chosen, exchanges=ex)
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
