"""Stream checks: the SSE framing and the chunk state machine (clause order of spec/clauses.yaml)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from conformance.client import StreamExchange, Target
from conformance.expectations import EVENT_STREAM_TYPE, is_json_content_type, refused_4xx
from conformance.registry import clause
from conformance.samples import Deferred, Sample, SampleSet, need_answer, require_repeatable
from conformance.sse import DONE
from conformance.verdicts import need, require


def _ex(sample: Sample) -> StreamExchange:
    ex = sample.exchange
    assert isinstance(ex, StreamExchange)
    return ex


def _choices(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    choices = chunk.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _with_usage(sample: Sample) -> bool:
    options = sample.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _need_every_choice(sample: Sample, seen: set[Any]) -> None:
    """NotExercised unless the stream has chunks and a choice for every index below n: a missing choice
    of an n 2 stream is request.n.multiple's failure, a stream without chunks stream.event.json's."""
    ex = _ex(sample)
    need(bool(ex.chunks), f"a JSON chunk in stream {sample.label}", root="stream.event.json", exchanges=ex)
    n = sample.body.get("n") or 1
    missing = sorted(set(range(n)) - seen)
    need(not missing, f"choices {missing} in the n {n} stream {sample.label}",
         root="request.n.multiple" if n > 1 else "stream.finish-reason.exactly-once",
         actual=sorted(map(str, seen)), exchanges=ex)


def _stream_text(ex: StreamExchange) -> tuple[dict[int, str], dict[int, Any]]:
    """Concatenated delta content and the finish_reason per choice index."""
    texts: dict[int, str] = defaultdict(str)
    reasons: dict[int, Any] = {}
    for chunk in ex.chunks:
        for choice in _choices(chunk):
            index = choice.get("index")
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            if isinstance(delta.get("content"), str):
                texts[index] += delta["content"]
            if choice.get("finish_reason") is not None:
                reasons[index] = choice["finish_reason"]
    return texts, reasons


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _usage_of(ex: Any) -> dict[str, Any]:
    """The token counts of a non-streaming answer's usage."""
    usage = ex.json.get("usage") if isinstance(ex.json, dict) else None
    return {k: usage.get(k) for k in USAGE_KEYS} if isinstance(usage, dict) else {}


def _need_stream(ex: StreamExchange, what: str, root: str = "stream.content-type.event-stream") -> None:
    """NotExercised (root) unless the stream a check compares against was answered 200."""
    need(ex.status == 200, f"a 200 answer to {what}", root=root, actual=f"{ex.status} {ex.body_text[:200]}",
         exchanges=ex)


@clause("usage.stream.parity")
def test_usage_stream_parity(target: Target) -> None:
    """At temperature 0, the usage chunk of a stream equals the usage of the same request made without streaming."""
    body = target.body(max_tokens=12, temperature=0, seed=17, messages=[{"role": "user", "content": "Name two rivers."}])
    plain, stream = target.many([
        lambda: target.chat(body, headers={"x-use-cache": "false"}),
        lambda: target.chat_stream(dict(body, stream=True, stream_options={"include_usage": True}),
                                   headers={"x-use-cache": "false"})])
    need_answer(plain, "the non-streaming request", "request.messages.accepted")
    need(isinstance(plain.json.get("usage"), dict), "a usage object in the non-streaming answer",
         root="response.usage.present", actual=plain.json.get("usage", "(absent)"), exchanges=plain)
    _need_stream(stream, "the stream with include_usage")
    usages = [c["usage"] for c in stream.chunks if isinstance(c.get("usage"), dict)]
    need(bool(usages), "a usage chunk in the stream with include_usage", root="stream.usage.last-chunk", exchanges=stream)
    expected, actual = _usage_of(plain), {k: usages[-1].get(k) for k in USAGE_KEYS}
    if actual != expected:
        require_repeatable(target, body, plain, _usage_of)
    require(actual == expected, "stream and non-stream usage differ", expected=expected, actual=actual,
            exchanges=(plain, stream))


@clause("stream.content-type.event-stream")
def test_content_type(streams: SampleSet) -> None:
    """A request with stream true is answered 200 with Content-Type text/event-stream."""
    for sample in streams.rooted("stream.content-type.event-stream"):
        require(sample.exchange.status == 200, f"stream {sample.label}: not answered 200",
                expected=200, actual=f"{sample.exchange.status} {sample.exchange.body_text[:200]}",
                exchanges=sample.exchange)
    for sample in streams.judged():
        ex = _ex(sample)
        require(bool(EVENT_STREAM_TYPE.match(ex.header("content-type") or "")),
                f"stream {sample.label}: Content-Type is not text/event-stream",
                expected="text/event-stream", actual=ex.header("content-type"), exchanges=ex)


@clause("stream.framing.data-lines")
def test_framing(streams: SampleSet) -> None:
    """Every event carries its payload on a data: line and ends with a blank line; any other line is an SSE comment starting with a colon or an SSE event, id or retry field."""
    for sample in streams.judged():
        ex = _ex(sample)
        require(not ex.framing_errors, f"stream {sample.label}: SSE framing errors",
                expected="data: lines, each event ended by a blank line", actual=ex.framing_errors[:10], exchanges=ex)
        # Two data: lines without a blank line between them merge into one event: a missing event end.
        merged = [d for d in ex.data if "\n" in d]
        require(not merged, f"stream {sample.label}: consecutive data: lines without the blank line that ends an event",
                expected="one data: line per event", actual=merged[:3], exchanges=ex)


@clause("stream.event.json")
def test_event_json(streams: SampleSet) -> None:
    """Every data payload other than [DONE] is one JSON object."""
    for sample in streams.judged():
        ex = _ex(sample)
        require(not ex.non_json_events, f"stream {sample.label}: data payloads that are not one JSON object",
                expected="JSON object", actual=ex.non_json_events[:5], exchanges=ex)
        require(bool(ex.chunks), f"stream {sample.label}: no JSON chunk at all", actual=ex.data[:5], exchanges=ex)


@clause("stream.chunk.schema-valid")
def test_chunk_schema(streams: SampleSet, validate: Any) -> None:
    """Every stream chunk validates against the ChatCompletionChunk schema."""
    for sample in streams.judged():
        for chunk in _ex(sample).chunks:
            validate("chunk", chunk, sample.exchange)


@clause("stream.chunk.object")
def test_chunk_object(streams: SampleSet) -> None:
    """Every chunk's object field is the string chat.completion.chunk."""
    for sample in streams.judged():
        values = [c.get("object") for c in _ex(sample).chunks]
        bad = [v for v in values if v != "chat.completion.chunk"]
        require(not bad, f"stream {sample.label}: object is not chat.completion.chunk",
                expected="chat.completion.chunk", actual=bad[:5], exchanges=sample.exchange)


def _consistent(streams: SampleSet, field: str, *, non_empty: bool = False) -> None:
    for sample in streams.judged():
        values = [c.get(field, "(absent)") for c in _ex(sample).chunks]
        distinct = list(dict.fromkeys(map(repr, values)))
        require(len(distinct) == 1, f"stream {sample.label}: chunks carry different {field} values",
                expected=f"one {field}", actual=distinct[:5], exchanges=sample.exchange)
        if non_empty:
            value = values[0]
            require(isinstance(value, str) and value.strip() != "", f"stream {sample.label}: {field} is not a non-empty string",
                    expected="non-empty string", actual=value, exchanges=sample.exchange)


@clause("stream.chunk.id-consistent")
def test_chunk_id_consistent(streams: SampleSet) -> None:
    """Every chunk of one stream carries the same non-empty id."""
    _consistent(streams, "id", non_empty=True)


@clause("stream.chunk.model-consistent")
def test_chunk_model_consistent(streams: SampleSet) -> None:
    """Every chunk of one stream carries the same model."""
    _consistent(streams, "model")


@clause("stream.chunk.created-consistent")
def test_chunk_created_consistent(streams: SampleSet) -> None:
    """Every chunk of one stream carries the same created value."""
    _consistent(streams, "created")


@clause("stream.chunk.choice-index")
def test_chunk_choice_index(streams: SampleSet) -> None:
    """Every chunk choice has an integer index between 0 and n-1."""
    for sample in streams.judged():
        n = sample.body.get("n") or 1
        for i, chunk in enumerate(_ex(sample).chunks):
            for choice in _choices(chunk):
                index = choice.get("index")
                ok = isinstance(index, int) and not isinstance(index, bool) and 0 <= index < n
                require(ok, f"stream {sample.label} chunk {i}: choice index outside 0..{n - 1}",
                        expected=f"integer in [0, {n - 1}]", actual=index, exchanges=sample.exchange)


@clause("stream.delta.role-first")
def test_role_first(streams: SampleSet) -> None:
    """The first chunk of each choice has delta.role assistant, and any later delta.role is also assistant."""
    later = Deferred()
    for sample in streams.judged():
        seen: set[Any] = set()
        for i, chunk in enumerate(_ex(sample).chunks):
            for choice in _choices(chunk):
                index = choice.get("index")
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                if index not in seen:
                    seen.add(index)
                    require(delta.get("role") == "assistant",
                            f"stream {sample.label} chunk {i}: the first delta of choice {index} has no role assistant",
                            expected="assistant", actual=delta.get("role", "(absent)"), exchanges=sample.exchange)
                elif "role" in delta and delta["role"] is not None:
                    require(delta["role"] == "assistant", f"stream {sample.label} chunk {i}: a later delta.role is not assistant",
                            expected="assistant", actual=delta["role"], exchanges=sample.exchange)
        with later:
            _need_every_choice(sample, seen)
    later.settle()


@clause("stream.delta.content-string")
def test_delta_content_string(streams: SampleSet) -> None:
    """Every delta.content is a string, null or absent."""
    for sample in streams.judged():
        for i, chunk in enumerate(_ex(sample).chunks):
            for choice in _choices(chunk):
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                content = delta.get("content")
                require(content is None or isinstance(content, str),
                        f"stream {sample.label} chunk {i}: delta.content is neither string nor null",
                        expected="string or null", actual=content, exchanges=sample.exchange)


@clause("stream.finish-reason.exactly-once")
def test_finish_exactly_once(streams: SampleSet) -> None:
    """Each choice has exactly one chunk with a non-null finish_reason."""
    later = Deferred()
    for sample in streams.judged():
        counts: dict[Any, int] = defaultdict(int)
        for chunk in _ex(sample).chunks:
            for choice in _choices(chunk):
                counts[choice.get("index")] += 0
                if choice.get("finish_reason") is not None:
                    counts[choice.get("index")] += 1
        with later:  # a stream without chunks, or an n 2 stream missing a choice: judged elsewhere
            _need_every_choice(sample, set(counts) | {0})
        # choice 0 is judged whenever there are chunks: a stream whose chunks never finish it breaks this rule
        judged = sorted(set(counts) & set(range(sample.body.get("n") or 1)) | ({0} if _ex(sample).chunks else set()))
        for index in judged:
            require(counts.get(index, 0) == 1, f"stream {sample.label}: choice {index} has {counts.get(index, 0)} finish_reason chunks",
                    expected=1, actual=counts.get(index, 0), exchanges=sample.exchange)
    later.settle()


@clause("stream.finish-reason.last")
def test_finish_last(streams: SampleSet) -> None:
    """No chunk after the one carrying a choice's finish_reason adds content or tool_calls to that choice."""
    for sample in streams.judged():
        finished: set[Any] = set()
        for i, chunk in enumerate(_ex(sample).chunks):
            for choice in _choices(chunk):
                index = choice.get("index")
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                if index in finished:
                    adds = bool(delta.get("content")) or bool(delta.get("tool_calls"))
                    require(not adds, f"stream {sample.label} chunk {i}: choice {index} grows after its finish_reason",
                            expected="no content or tool_calls", actual=delta, exchanges=sample.exchange)
                if choice.get("finish_reason") is not None:
                    finished.add(index)


def _answer_of(ex: Any) -> tuple[Any, Any]:
    """(content, finish_reason) of choice 0 of a non-streaming answer."""
    choices = ex.json.get("choices") if isinstance(ex.json, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    return message.get("content"), choice.get("finish_reason")


@clause("stream.content.parity")
def test_content_parity(target: Target) -> None:
    """At temperature 0, the concatenated delta contents and the finish_reason of a stream equal the content and finish_reason of the same request made without streaming."""
    body = target.body(max_tokens=16, temperature=0, seed=17,
                       messages=[{"role": "user", "content": "Count from one to five."}])
    plain, stream = target.many([lambda: target.chat(body, headers={"x-use-cache": "false"}),
                                 lambda: target.chat_stream(dict(body, stream=True), headers={"x-use-cache": "false"})])
    need_answer(plain, "the non-streaming request", "request.messages.accepted")
    _need_stream(stream, "the stream")
    texts, reasons = _stream_text(stream)
    expected, actual = _answer_of(plain), (texts.get(0, ""), reasons.get(0))
    if actual != expected:
        require_repeatable(target, body, plain, _answer_of)
    require(actual == expected, "stream and non-stream answers differ at temperature 0",
            expected=expected, actual=actual, exchanges=(plain, stream))


@clause("stream.usage.absent-unless-requested")
def test_usage_absent_unless_requested(streams: SampleSet) -> None:
    """Without stream_options.include_usage true, every chunk has at least one choice and a null or absent usage."""
    for sample in streams.judged(lambda s: not _with_usage(s)):
        for i, chunk in enumerate(_ex(sample).chunks):
            require(bool(_choices(chunk)), f"stream {sample.label} chunk {i}: no choice although usage was not requested",
                    expected="at least one choice", actual=chunk.get("choices"), exchanges=sample.exchange)
            require(chunk.get("usage") is None, f"stream {sample.label} chunk {i}: usage although not requested",
                    expected="null or absent", actual=chunk.get("usage"), exchanges=sample.exchange)


@clause("stream.usage.last-chunk")
def test_usage_last_chunk(streams: SampleSet) -> None:
    """With stream_options.include_usage true, exactly one chunk carries a usage object, it is the last chunk before [DONE], and its choices list is empty."""
    for sample in streams.judged(_with_usage):
        chunks = _ex(sample).chunks
        carrying = [i for i, c in enumerate(chunks) if isinstance(c.get("usage"), dict)]
        require(len(carrying) == 1, f"stream {sample.label}: {len(carrying)} chunks carry usage",
                expected=1, actual=len(carrying), exchanges=sample.exchange)
        require(carrying[0] == len(chunks) - 1, f"stream {sample.label}: the usage chunk is not the last chunk",
                expected=len(chunks) - 1, actual=carrying[0], exchanges=sample.exchange)
        require(chunks[-1].get("choices") == [], f"stream {sample.label}: the usage chunk's choices list is not empty",
                expected=[], actual=chunks[-1].get("choices"), exchanges=sample.exchange)


@clause("stream.usage.null-elsewhere")
def test_usage_null_elsewhere(streams: SampleSet) -> None:
    """With stream_options.include_usage true, every chunk other than the usage chunk has usage null or absent."""
    for sample in streams.judged(_with_usage):
        chunks = _ex(sample).chunks
        usage_chunk = max((i for i, c in enumerate(chunks) if isinstance(c.get("usage"), dict) and c.get("choices") == []),
                          default=None)
        for i, chunk in enumerate(chunks):
            if i != usage_chunk:
                require(chunk.get("usage") is None, f"stream {sample.label} chunk {i}: usage outside the usage chunk",
                        expected="null or absent", actual=chunk.get("usage"), exchanges=sample.exchange)


@clause("stream.usage.explicit-null")
def test_usage_explicit_null(streams: SampleSet) -> None:
    """With stream_options.include_usage true, every chunk other than the usage chunk carries the usage field with the value null."""
    for sample in streams.judged(_with_usage):
        chunks = _ex(sample).chunks
        for i, chunk in enumerate(chunks):
            if isinstance(chunk.get("usage"), dict) and chunk.get("choices") == []:
                continue
            require("usage" in chunk and chunk["usage"] is None, f"stream {sample.label} chunk {i}: usage is not an explicit null",
                    expected="usage: null", actual=chunk.get("usage", "(absent)"), exchanges=sample.exchange)


@clause("stream.terminator.done")
def test_done_last(streams: SampleSet) -> None:
    """The last event of every stream is data: [DONE]."""
    for sample in streams.judged():
        ex = _ex(sample)
        last = ex.data[-1] if ex.data else None
        require(ex.done and last is not None and last.strip() == DONE,
                f"stream {sample.label}: the last event is not data: [DONE]",
                expected=DONE, actual=last, exchanges=ex)


@clause("stream.terminator.nothing-after")
def test_nothing_after_done(streams: SampleSet) -> None:
    """Nothing but whitespace follows data: [DONE], and the response ends after it."""
    for sample in streams.judged():
        ex = _ex(sample)
        need(ex.done, f"data: [DONE] in stream {sample.label}", root="stream.terminator.done", exchanges=ex)
        require(not ex.after_done, f"stream {sample.label}: lines after data: [DONE]",
                expected="nothing", actual=ex.after_done[:5], exchanges=ex)
        require(not ex.stalled and not ex.overran, f"stream {sample.label}: the response did not end after data: [DONE]",
                expected="end of response", actual="connection held open", exchanges=ex)


@clause("stream.liveness.no-stall")
def test_no_stall(target: Target, streams: SampleSet) -> None:
    """The wait for the first event and between consecutive events never exceeds the suite's stall timeout (30 s by default)."""
    longer = target.chat_stream(target.body(max_tokens=32, stream=True))
    for label, ex in [(s.label, _ex(s)) for s in streams.judged()] + [("32 tokens", longer)]:
        require(not ex.stalled, f"stream {label}: no byte for {target.config.timeout:g} s",
                expected=f"an event at least every {target.config.timeout:g} s", actual="stalled", exchanges=ex)
        require(not ex.overran, f"stream {label}: still streaming after {4 * target.config.timeout:g} s",
                expected="the stream ends", actual="abandoned", exchanges=ex)


@clause("stream.errors.before-stream")
def test_error_before_stream(target: Target) -> None:
    """A request with stream true and an invalid parameter is refused with a 4xx JSON error response, not a 200 event stream."""
    for field, value in (("temperature", 5), ("max_tokens", -1)):
        ex = target.chat_stream(target.body(stream=True, **{field: value}))
        refused_4xx(ex, f"stream true with {field} {value}")
        require(is_json_content_type(ex) and isinstance(ex.json, dict),
                f"stream true with {field} {value}: the 4xx is not a JSON body",
                expected="application/json error envelope", actual=f"{ex.header('content-type')} {ex.body_text[:200]}",
                exchanges=ex)


