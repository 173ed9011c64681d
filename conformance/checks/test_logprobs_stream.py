"""Log probabilities in streams: the streamed entries, and their parity with a plain answer."""

from __future__ import annotations

from typing import Any

from conformance.client import Exchange, Target
from conformance.judges import enforce
from conformance.logprobs import (
    FRESH,
    TOLERANCE,
    content_of,
    each_choice,
    finite,
    logprobs_body,
    read_stream,
)
from conformance.registry import clause
from conformance.samples import require_repeatable
from conformance.verdicts import need, require, unsupported_or_fail


@clause("logprobs.stream.entries")
def test_stream_entries(target: Target) -> None:
    """In a stream with logprobs true, the content entries across all chunks of a choice have tokens that concatenate to the streamed content and number completion_tokens."""
    body = logprobs_body(target, max_tokens=16, temperature=0, logprobs=True, top_logprobs=1, stream=True,
                         stream_options={"include_usage": True})
    ex = target.chat_stream(body, headers=FRESH)
    if ex.status != 200:
        unsupported_or_fail(ex, "logprobs in a stream")
    enforce("logprobs.stream.entries", ex, "stream with logprobs true")
    usage = read_stream(ex).usage
    need(isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int),
         "a usage chunk (asked for with include_usage) to count tokens with", root="stream.usage.last-chunk",
         actual=usage, exchanges=ex)


def _chosen(found: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """(token, logprob) of each entry."""
    return [(e.get("token"), e.get("logprob")) for e in found]


def _plain_tokens(ex: Exchange) -> list[Any]:
    """The chosen tokens of choice 0 of a non-streaming answer (what a repeat must reproduce)."""
    choices = ex.json.get("choices") if isinstance(ex.json, dict) else None
    content = content_of(choices[0]) if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    return [e.get("token") for e in content if isinstance(e, dict)] if isinstance(content, list) else []


@clause("logprobs.stream.parity")
def test_stream_parity(target: Target) -> None:
    """At temperature 0 with logprobs true, the tokens and logprobs streamed for a choice equal those of the same request made without streaming (logprobs within 1e-3)."""
    body = logprobs_body(target, max_tokens=12, temperature=0, seed=29, logprobs=True, top_logprobs=2)
    plain, stream = target.both(lambda: target.chat(body, headers=FRESH),
                                lambda: target.chat_stream(dict(body, stream=True), headers=FRESH))
    want = next((_chosen(found) for _, _, found in each_choice((plain,))), [])
    need(stream.status == 200, "a 200 answer to a stream with logprobs true", root="logprobs.stream.entries",
         actual=f"{stream.status} {stream.body_text[:200]}", exchanges=stream)
    got = _chosen(read_stream(stream).entries.get(0, []))
    need(bool(got) or not want, "logprobs entries in the stream", root="logprobs.stream.entries", exchanges=stream)
    same = [a == b for (a, _), (b, _) in zip(got, want, strict=False)]
    close = all(finite(x) and finite(y) and abs(x - y) <= TOLERANCE for (_, x), (_, y) in zip(got, want, strict=False))
    if len(got) != len(want) or not all(same) or not close:
        require_repeatable(target, body, plain, _plain_tokens)
    require(len(got) == len(want) and all(same), "the streamed tokens differ from the non-streamed ones",
            expected=[t for t, _ in want], actual=[t for t, _ in got], exchanges=(plain, stream))
    require(close, f"the streamed logprobs differ from the non-streamed ones by more than {TOLERANCE}",
            expected=[v for _, v in want], actual=[v for _, v in got], exchanges=(plain, stream))
