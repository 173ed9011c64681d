"""The judges: one function per rule, of one exchange, shared by the clause checks and the fuzz phases.

No server: exchanges are built by hand, as a recorded cassette would give them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance import judges
from conformance.exchange import Exchange, StreamExchange
from conformance.fuzz import STREAM_RULES, _envelope, stream_problems
from conformance.judges.envelope import clear_refusal
from conformance.judges.stream import as_stream
from conformance.stream_clock import TAIL_S, TimedStream, spanned
from conformance.verdicts import Fail, refused_clearly
from spec import limits
from spec.clauses import CatalogueError, load_catalogue
from spec.document import shared_document


def chunk(index: int = 0, *, role: Any = "assistant", content: str | None = "hi", finish: str | None = None,
          usage: Any = None, created: int = 1, choices: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A chat completion chunk with one choice (or the given choices)."""
    delta: dict[str, Any] = {"content": content}
    if role != "absent":
        delta["role"] = role
    found = choices if choices is not None else [{"index": index, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]
    return {"id": "c1", "object": "chat.completion.chunk", "created": created, "model": "m", "choices": found,
            "usage": usage}


def sse(chunks: list[dict[str, Any]], *, done: bool = True) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + ("data: [DONE]\n\n" if done else "")


def answer(body_text: str, request: dict[str, Any] | None = None, status: int = 200,
           content_type: str = "text/event-stream") -> Exchange:
    """An exchange as a plain (non-streaming) read gives it: the SSE text in the body."""
    return Exchange("POST", "http://x/v1/chat/completions", {}, json.dumps({"stream": True, **(request or {})}),
                    status, {"content-type": content_type}, body_text, 0.1)


ENVELOPE_RULES = ("errors.envelope.shape", "errors.envelope.hf-fields", "errors.envelope.openai-fields")
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
GOOD = [chunk(content="Hel"), chunk(role="absent", content="lo", finish="stop")]


def test_every_judge_names_an_active_clause_and_unknown_ids_are_refused() -> None:
    active = {c.id for c in load_catalogue().active()}
    assert set(judges.JUDGES) <= active
    assert set(STREAM_RULES) | set(ENVELOPE_RULES) <= set(judges.JUDGES)
    with pytest.raises(CatalogueError):
        judges.judge("stream.no-such-rule")
    with pytest.raises(judges.UnknownJudge):
        judges.problems("request.messages.accepted", answer(sse(GOOD)))


def test_a_conforming_stream_keeps_every_stream_rule() -> None:
    ex = answer(sse(GOOD))
    broken = {cid: p for cid in judges.JUDGES if cid.startswith("stream.") and cid != "stream.errors.before-stream"
              for p in judges.problems(cid, ex)}
    assert broken == {}


def test_the_fuzz_stream_check_is_the_clause_judges() -> None:
    """fuzz.stream_problems reports exactly what the stream clauses' judges find, named by clause."""
    broken = [chunk(content="a"), chunk(role="absent", content="b", finish="stop"),
              chunk(role="absent", content="c", finish="stop")]
    text = sse(broken) + "data: {\"late\": 1}\n\n"
    found = stream_problems(text.encode(), json.dumps({"stream": True}))
    direct = judges.problems_of(STREAM_RULES, answer(text))
    assert found == [f"{cid}: {p.describe()}" for cid, p in direct]
    assert {line.split(":")[0] for line in found} == {"stream.finish-reason.exactly-once", "stream.terminator.done",
                                                      "stream.terminator.nothing-after"}


def test_a_plain_exchange_is_parsed_as_the_client_parses_a_stream() -> None:
    stream = as_stream(answer(sse(GOOD)))
    assert isinstance(stream, StreamExchange) and stream.done and len(stream.chunks) == 2
    assert as_stream(stream) is stream
    assert judges.problems("stream.chunk.object", answer(sse(GOOD), status=422)) == []  # not an answered stream


def test_a_null_role_breaks_role_first_in_any_delta() -> None:
    later_null = [chunk(content="a"), chunk(role=None, content="b", finish="stop")]
    first_null = [chunk(role=None, content="a"), chunk(role="absent", content="b", finish="stop")]
    for chunks in (later_null, first_null):
        assert judges.problems("stream.delta.role-first", answer(sse(chunks)))


def test_the_usage_chunk_is_the_one_with_a_usage_whatever_its_choices() -> None:
    """LiteLLM's n 2 stream: the usage chunk carries a choice; only last-chunk is broken."""
    choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": None}
    chunks = [chunk(0, content="a", finish="length"), chunk(1, content="b", finish="length"),
              chunk(choices=[choice], usage=USAGE)]
    ex = answer(sse(chunks), {"n": 2, "stream_options": {"include_usage": True}})
    assert judges.problems("stream.usage.null-elsewhere", ex) == []
    assert judges.problems("stream.usage.explicit-null", ex) == []
    assert [p.message for p in judges.problems("stream.usage.last-chunk", ex)] == [
        "the usage chunk (chunk 2) has a choices list that is not empty"]
    everywhere = answer(sse([chunk(usage=USAGE), chunk(role="absent", finish="stop", usage=USAGE),
                             chunk(choices=[], usage=USAGE)]), {"stream_options": {"include_usage": True}})
    assert len(judges.problems("stream.usage.null-elsewhere", everywhere)) == 2


def test_created_differs_only_when_stamps_differ() -> None:
    assert judges.problems("stream.chunk.created-consistent", answer(sse(GOOD))) == []
    stamped = [chunk(content="a", created=10), chunk(role="absent", content="b", finish="stop", created=11)]
    assert judges.problems("stream.chunk.created-consistent", answer(sse(stamped)))


def _timed(elapsed: float, first: float, ended_at: float | None) -> TimedStream:
    ex = StreamExchange("POST", "u", {}, "{}", 200, {}, "", elapsed, first_event_s=first)
    return TimedStream(ex, ended_at)


def test_a_stream_spans_a_second_only_when_a_boundary_lies_between_first_event_and_end() -> None:
    assert spanned(_timed(0.5, 0.1, 1000.3))  # events from 999.9 to 1000.3
    assert not spanned(_timed(0.5, 0.1, 1000.9))  # events from 1000.5 to 1000.9
    assert not spanned(_timed(0.5, 0.1, 1000.0 + TAIL_S / 2))  # the boundary may have come after the last chunk
    assert not spanned(_timed(0.5, None, 1000.3))  # type: ignore[arg-type]  # no event at all
    assert spanned(_timed(2.0, 0.1, None)) and not spanned(_timed(0.9, 0.1, None))  # no clock: a full second


def test_one_envelope_judgement_for_refusals_checks_and_fuzz() -> None:
    hf = answer(json.dumps({"error": "temperature: too high", "error_type": "validation"}), status=422,
                content_type="application/json")
    openai = answer(json.dumps({"error": {"message": "bad", "type": "invalid_request_error", "param": None,
                                          "code": None}}), status=400, content_type="application/json")
    blank = answer(json.dumps({"error": " ", "error_type": "validation"}), status=400, content_type="application/json")
    detail = answer(json.dumps({"detail": "bad"}), status=422, content_type="application/json")
    assert refused_clearly(hf) and refused_clearly(openai) and clear_refusal(hf)
    assert not refused_clearly(blank) and not refused_clearly(detail)
    assert judges.problems_of(ENVELOPE_RULES, hf) == [] and judges.problems_of(ENVELOPE_RULES, openai) == []
    assert [cid for cid, _ in judges.problems_of(ENVELOPE_RULES, blank)] == ["errors.envelope.hf-fields"]
    assert [cid for cid, _ in judges.problems_of(ENVELOPE_RULES, detail)] == ["errors.envelope.shape"]
    # fuzz.valid.accepted asks for "an error envelope": the shape's judge; the fields are their clauses' own
    assert _envelope(blank) and not _envelope(detail)
    plain = answer("bad request", status=400, content_type="text/plain")
    assert judges.problems("errors.envelope.content-type", plain)
    with pytest.raises(Fail, match="errors as text: the error is not application/json"):
        judges.enforce("errors.envelope.content-type", plain, "errors as text")


def test_the_spec_constants_come_from_the_document() -> None:
    properties = shared_document()["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert set(limits.finish_reasons()) | set(limits.LEGACY_FINISH_REASONS) == set(
        shared_document()["components"]["schemas"]["FinishReason"]["enum"])
    assert "stop" in limits.finish_reasons() and "eos_token" not in limits.finish_reasons()
    assert list(limits.reasoning_efforts()) == [v for v in properties["reasoning_effort"]["enum"] if v is not None]
    assert limits.top_logprobs_range() == (properties["top_logprobs"]["minimum"], properties["top_logprobs"]["maximum"])
    assert limits.max_stop_sequences() == next(v["maxItems"] for v in properties["stop"]["oneOf"] if "maxItems" in v)
    top_p = limits.bounds("top_p")
    assert top_p.low_exclusive and top_p.high == properties["top_p"]["maximum"]
