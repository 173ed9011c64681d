"""Log probabilities: shape, arithmetic, top alternatives, agreement with content and usage.

Most checks read two shared responses: a greedy one (temperature 0) and a sampled one
(temperature 1, seeded, so chosen tokens are sometimes outside the alternatives), both with
logprobs true and top_logprobs 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from conformance.client import Exchange, Target
from conformance.config import SuiteConfig
from conformance.registry import clause
from conformance.verdicts import Fail, require, unsupported_or_fail

FRESH = {"x-use-cache": "false"}
PROMPT = "Name three colors and one animal."
TOP = 3
TOLERANCE = 1e-3


def _ask(target: Target, **params: Any) -> Exchange:
    """A fresh request for PROMPT; 200 + JSON object or Fail/Unsupported (feature: logprobs)."""
    body = target.body(messages=[{"role": "user", "content": PROMPT}], **params)
    return target.ok(body, feature="logprobs", headers=FRESH)


def _choices(ex: Exchange) -> list[dict[str, Any]]:
    choices = ex.json.get("choices")
    require(isinstance(choices, list) and bool(choices) and all(isinstance(c, dict) for c in choices),
            "the response holds no choices", actual=ex.body_text[:300], exchanges=ex)
    return choices


def _entries(ex: Exchange, choice: dict[str, Any]) -> list[dict[str, Any]]:
    """choice.logprobs.content (Fail unless a list of objects)."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    require(isinstance(content, list) and all(isinstance(e, dict) for e in content),
            "with logprobs true, choice.logprobs.content must be a list of entries",
            expected="logprobs.content: [...]", actual=logprobs, exchanges=ex)
    return content


def _text(choice: dict[str, Any]) -> str:
    content = (choice.get("message") or {}).get("content")
    return content if isinstance(content, str) else ""


def _entry_bytes(entry: dict[str, Any]) -> bytes:
    """An entry's UTF-8 bytes: `bytes` when given, else the token string encoded."""
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in raw):
        return bytes(raw)
    return str(entry.get("token", "")).encode("utf-8")


def _tops(entry: dict[str, Any]) -> list[dict[str, Any]]:
    tops = entry.get("top_logprobs")
    return tops if isinstance(tops, list) else []


@dataclass
class Shared:
    """The responses most checks read."""

    greedy: Exchange     # temperature 0, logprobs true, top_logprobs 3
    sampled: Exchange    # temperature 1, seeded, logprobs true, top_logprobs 3


@pytest.fixture(scope="module")
def shared(target: Target, suite_config: SuiteConfig) -> Shared:
    """One greedy and one sampled response with logprobs and three alternatives per token."""
    greedy, sampled = target.many([
        lambda: _ask(target, max_tokens=16, temperature=0, logprobs=True, top_logprobs=TOP),
        lambda: _ask(target, max_tokens=16, temperature=1.0, seed=suite_config.seed, logprobs=True, top_logprobs=TOP)])
    return Shared(greedy, sampled)


def _all_entries(shared: Shared) -> list[tuple[Exchange, dict[str, Any]]]:
    """Every (exchange, content entry) of both shared responses."""
    found = []
    for ex in (shared.greedy, shared.sampled):
        for choice in _choices(ex):
            found += [(ex, entry) for entry in _entries(ex, choice)]
    return found


# --- usage tie ---------------------------------------------------------------------------------


@clause("usage.completion-tokens.logprob-count")
def test_completion_tokens_equal_logprob_count(shared: Shared) -> None:
    """With logprobs true and n 1, completion_tokens equals the number of entries in logprobs.content."""
    for ex in (shared.greedy, shared.sampled):
        usage = ex.json.get("usage")
        require(isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int),
                "the response carries no usage.completion_tokens", actual=usage, exchanges=ex)
        count = len(_entries(ex, _choices(ex)[0]))
        require(usage["completion_tokens"] == count, "completion_tokens differs from the logprobs entry count",
                expected=count, actual=usage["completion_tokens"], exchanges=ex)


# --- logprobs.* ---------------------------------------------------------------------------------


@clause("logprobs.default.absent")
def test_default_absent(target: Target) -> None:
    """Without logprobs true, every choice's logprobs is null or absent."""
    for extra in ({}, {"logprobs": False}):
        ex = _ask(target, max_tokens=4, **extra)
        for choice in _choices(ex):
            require(choice.get("logprobs") is None, f"logprobs must be null or absent with {extra or 'no logprobs'}",
                    expected=None, actual=choice.get("logprobs"), exchanges=ex)


@clause("logprobs.content.present")
def test_content_present(shared: Shared) -> None:
    """With logprobs true, every choice's logprobs.content is a list with one entry per generated token."""
    for ex in (shared.greedy, shared.sampled):
        for choice in _choices(ex):
            entries = _entries(ex, choice)
            usage = ex.json.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int) and len(_choices(ex)) == 1:
                require(len(entries) == usage["completion_tokens"], "one logprobs entry per generated token",
                        expected=usage["completion_tokens"], actual=len(entries), exchanges=ex)
            else:
                require(bool(entries) or not _text(choice), "content was generated but logprobs.content is empty",
                        actual=entries, exchanges=ex)


@clause("logprobs.value.non-positive")
def test_value_non_positive(shared: Shared) -> None:
    """Every logprob, in content and in top_logprobs, is a finite number no greater than 0."""
    for ex, entry in _all_entries(shared):
        for item in [entry] + _tops(entry):
            value = item.get("logprob")
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value <= 0
            require(ok, f"logprob of token {item.get('token')!r} must be a finite number <= 0",
                    expected="<= 0", actual=value, exchanges=ex)


@clause("logprobs.tokens.concatenate")
def test_tokens_concatenate(shared: Shared) -> None:
    """Without stop sequences, the concatenated UTF-8 bytes of the content entries (bytes when given, else the token string) decode to the message content."""
    for ex in (shared.greedy, shared.sampled):
        for choice in _choices(ex):
            joined = b"".join(_entry_bytes(e) for e in _entries(ex, choice))
            decoded = joined.decode("utf-8", errors="replace")
            content = _text(choice)
            # A generation cut by max_tokens may end inside a multi-byte character: compare the whole
            # characters, allowing the server to drop or replace the incomplete tail.
            require(decoded == content or decoded.rstrip("\ufffd") == content.rstrip("\ufffd"),
                    "the logprobs tokens do not concatenate to the content",
                    expected=content, actual=decoded, exchanges=ex)


@clause("logprobs.bytes.matches-token")
def test_bytes_match_token(shared: Shared) -> None:
    """When bytes is not null it is a list of integers 0-255, and it equals the UTF-8 encoding of token whenever that token holds no replacement character."""
    for ex, entry in _all_entries(shared):
        for item in [entry] + _tops(entry):
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
    for ex, entry in _all_entries(shared):
        require(isinstance(entry.get("top_logprobs"), list) and len(entry["top_logprobs"]) == TOP,
                f"top_logprobs {TOP} must give exactly {TOP} alternatives per token",
                expected=TOP, actual=entry.get("top_logprobs"), exchanges=ex)
    for extra in ({"top_logprobs": 0}, {}):
        ex = _ask(target, max_tokens=4, logprobs=True, **extra)
        for choice in _choices(ex):
            for entry in _entries(ex, choice):
                require(entry.get("top_logprobs") == [],
                        f"top_logprobs must be an empty list with {extra or 'top_logprobs absent'}",
                        expected=[], actual=entry.get("top_logprobs"), exchanges=ex)


@clause("logprobs.top.sorted")
def test_top_sorted(shared: Shared) -> None:
    """Each top_logprobs list is sorted by logprob, highest first."""
    for ex, entry in _all_entries(shared):
        values = [t.get("logprob") for t in _tops(entry)]
        require(all(isinstance(v, int | float) for v in values) and values == sorted(values, reverse=True),
                "top_logprobs must be sorted by logprob, highest first", actual=values, exchanges=ex)


@clause("logprobs.top.distinct")
def test_top_distinct(shared: Shared) -> None:
    """The tokens within one top_logprobs list are distinct."""
    for ex, entry in _all_entries(shared):
        tokens = [(t.get("token"), tuple(t["bytes"]) if isinstance(t.get("bytes"), list) else None)
                  for t in _tops(entry)]
        require(len(set(tokens)) == len(tokens), "a top_logprobs list repeats a token",
                actual=[t[0] for t in tokens], exchanges=ex)


@clause("logprobs.top.mass")
def test_top_mass(shared: Shared) -> None:
    """The probabilities exp(logprob) within one top_logprobs list sum to at most 1 plus 1e-3."""
    for ex, entry in _all_entries(shared):
        mass = sum(math.exp(t["logprob"]) for t in _tops(entry) if isinstance(t.get("logprob"), int | float))
        require(mass <= 1 + TOLERANCE, "the alternatives' probabilities sum to more than 1",
                expected="<= 1.001", actual=round(mass, 6), exchanges=ex)


def _same_token(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same token: equal bytes when both give them, else equal token strings."""
    if isinstance(a.get("bytes"), list) and isinstance(b.get("bytes"), list):
        return a["bytes"] == b["bytes"]
    return a.get("token") == b.get("token")


@clause("logprobs.chosen.consistent")
def test_chosen_consistent(shared: Shared) -> None:
    """A chosen token that appears in its top_logprobs list has the same logprob there within 1e-3, and one that does not is no more likely than the last alternative."""
    for ex, entry in _all_entries(shared):
        tops, chosen = _tops(entry), entry.get("logprob")
        if not tops or not isinstance(chosen, int | float):
            continue
        match = [t for t in tops if _same_token(t, entry)]
        if match:
            require(abs(match[0]["logprob"] - chosen) <= TOLERANCE,
                    f"token {entry.get('token')!r} has another logprob among its alternatives",
                    expected=match[0]["logprob"], actual=chosen, exchanges=ex)
        else:
            require(chosen <= tops[-1]["logprob"] + TOLERANCE,
                    f"token {entry.get('token')!r} is missing from top_logprobs yet more likely than the last one",
                    expected=f"<= {tops[-1]['logprob']}", actual=chosen, exchanges=ex)


@clause("logprobs.greedy.chosen-first")
def test_greedy_chosen_first(shared: Shared) -> None:
    """At temperature 0 with top_logprobs of at least 1, each chosen token's logprob equals the first alternative's within 1e-3."""
    ex = shared.greedy
    for choice in _choices(ex):
        for entry in _entries(ex, choice):
            tops = _tops(entry)
            require(bool(tops), "top_logprobs is empty although top_logprobs 3 was asked", exchanges=ex)
            require(abs(tops[0]["logprob"] - entry["logprob"]) <= TOLERANCE,
                    f"greedy token {entry.get('token')!r} is not the most likely alternative",
                    expected=tops[0]["logprob"], actual=entry["logprob"], exchanges=ex)


@clause("logprobs.top.bound")
def test_top_bound(target: Target) -> None:
    """Every top_logprobs value from 0 to 5 with logprobs true is accepted and answered 200."""
    for top in range(6):
        body = target.body(max_tokens=2, logprobs=True, top_logprobs=top)
        ex = target.chat(body, headers=FRESH)
        require(ex.status == 200, f"top_logprobs {top} with logprobs true must be answered 200",
                expected=200, actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


@clause("logprobs.stream.entries")
def test_stream_entries(target: Target) -> None:
    """In a stream with logprobs true, the content entries across all chunks of a choice have tokens that concatenate to the streamed content and number completion_tokens."""
    body = target.body(messages=[{"role": "user", "content": PROMPT}], max_tokens=16, temperature=0,
                       logprobs=True, top_logprobs=1, stream=True, stream_options={"include_usage": True})
    ex = target.chat_stream(body, headers=FRESH)
    if ex.status != 200:
        unsupported_or_fail(ex, "logprobs in a stream")
    text: dict[int, str] = {}
    joined: dict[int, bytes] = {}
    counts: dict[int, int] = {}
    usage = None
    for chunk in ex.chunks:
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text[index] = text.get(index, "") + delta["content"]
            logprobs = choice.get("logprobs")
            entries = logprobs.get("content") if isinstance(logprobs, dict) else None
            for entry in entries or []:
                joined[index] = joined.get(index, b"") + _entry_bytes(entry)
                counts[index] = counts.get(index, 0) + 1
    require(bool(counts), "a stream with logprobs true carried no logprobs entries", exchanges=ex)
    for index, streamed in text.items():
        decoded = joined.get(index, b"").decode("utf-8", errors="replace")
        require(decoded == streamed or decoded.rstrip("\ufffd") == streamed.rstrip("\ufffd"),
                f"choice {index}: the streamed logprobs tokens do not concatenate to the streamed content",
                expected=streamed, actual=decoded, exchanges=ex)
    if usage is None:
        raise Fail("the stream asked for include_usage but carried no usage chunk to count tokens with",
                   exchanges=ex)
    require(sum(counts.values()) == usage.get("completion_tokens"),
            "the number of streamed logprobs entries differs from completion_tokens",
            expected=usage.get("completion_tokens"), actual=sum(counts.values()), exchanges=ex)
