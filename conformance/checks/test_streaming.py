"""Stream checks: the SSE framing and the chunk state machine (clause order of spec/clauses.yaml).

Each rule of one stream is judged by its judge in conformance.judges (the fuzz phases use the same
ones); a check here picks the streams to judge and says what it must have observed first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conformance.client import Exchange, StreamExchange, Target
from conformance.config import SuiteConfig
from conformance.invalid_requests import invalid_cases
from conformance.judges import enforce
from conformance.judges.stream import chunk_choices, stream_texts
from conformance.judges.stream_usage import usage_chunk, with_usage
from conformance.registry import clause
from conformance.samples import Deferred, Sample, SampleSet, need_answer, require_repeatable
from conformance.stream_clock import TimedStream, long_streams, spanned
from conformance.verdicts import NOTE_PROPERTY, NotApplicable, NotExercised, need, not_exercised, require

# Invalid values tried without stream, in order, for stream.errors.before-stream (invalid_requests labels).
BEFORE_STREAM_CASES = ("temperature 2.5", "max_tokens -1", "messages empty", "n 0")
LONG_STORY = [{"role": "user", "content": "Write a long story about a cat."}]


def _ex(sample: Sample) -> StreamExchange:
    ex = sample.exchange
    assert isinstance(ex, StreamExchange)
    return ex


def _indices(sample: Sample) -> set[Any]:
    """The choice indices the stream's chunks hold."""
    return {choice.get("index") for chunk in _ex(sample).chunks for choice in chunk_choices(chunk)}


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


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _usage_of(ex: Exchange) -> dict[str, Any]:
    """The token counts of a non-streaming answer's usage."""
    usage = ex.json_object.get("usage")
    return {k: usage.get(k) for k in USAGE_KEYS} if isinstance(usage, dict) else {}


def _need_stream(ex: StreamExchange, what: str, root: str = "stream.content-type.event-stream") -> None:
    """NotExercised (root) unless the stream a check compares against was answered 200."""
    need(ex.status == 200, f"a 200 answer to {what}", root=root, actual=f"{ex.status} {ex.body_text[:200]}",
         exchanges=ex)


@clause("usage.stream.parity")
def test_usage_stream_parity(target: Target) -> None:
    """At temperature 0, the usage chunk of a stream equals the usage of the same request made without streaming."""
    body = target.body(max_tokens=12, temperature=0, seed=17, messages=[{"role": "user", "content": "Name two rivers."}])
    plain, stream = target.both(
        lambda: target.chat(body, headers={"x-use-cache": "false"}),
        lambda: target.chat_stream(dict(body, stream=True, stream_options={"include_usage": True}),
                                   headers={"x-use-cache": "false"}))
    need_answer(plain, "the non-streaming request", "request.messages.accepted")
    need(isinstance(plain.json_object.get("usage"), dict), "a usage object in the non-streaming answer",
         root="response.usage.present", actual=plain.json_object.get("usage", "(absent)"), exchanges=plain)
    _need_stream(stream, "the stream with include_usage")
    found = usage_chunk(stream.chunks)
    usage = stream.chunks[found]["usage"] if found is not None else None
    if not isinstance(usage, dict):
        raise not_exercised("a usage chunk in the stream with include_usage", root="stream.usage.last-chunk",
                            actual=usage, exchanges=stream)
    expected, actual = _usage_of(plain), {k: usage.get(k) for k in USAGE_KEYS}
    if actual != expected:
        require_repeatable(target, body, plain, _usage_of)
    require(actual == expected, "stream and non-stream usage differ", expected=expected, actual=actual,
            exchanges=(plain, stream))


def _judge_all(streams: SampleSet, clause_id: str, where: Callable[[Sample], bool] | None = None) -> None:
    """The clause's judge on every accepted stream (of those `where` selects); NotExercised for a lost one."""
    for sample in streams.judged(where):
        enforce(clause_id, sample.exchange, f"stream {sample.label}")


def _judge_chunks(streams: SampleSet, clause_id: str, where: Callable[[Sample], bool] | None = None) -> None:
    """As _judge_all, for a rule about chunks: a stream without a JSON chunk is stream.event.json's to judge."""
    later = Deferred()
    for sample in streams.judged(where):
        with later:
            need(bool(_ex(sample).chunks), f"a JSON chunk in stream {sample.label}", root="stream.event.json",
                 exchanges=sample.exchange)
            enforce(clause_id, sample.exchange, f"stream {sample.label}")
    later.settle()


@clause("stream.content-type.event-stream")
def test_content_type(streams: SampleSet) -> None:
    """A request with stream true is answered 200 with Content-Type text/event-stream."""
    for sample in streams.rooted("stream.content-type.event-stream"):
        enforce("stream.content-type.event-stream", sample.exchange, f"stream {sample.label}")
    _judge_all(streams, "stream.content-type.event-stream")


@clause("stream.framing.data-lines")
def test_framing(streams: SampleSet) -> None:
    """Every event carries its payload on a data: line and ends with a blank line; any other line is an SSE comment starting with a colon or an SSE event, id or retry field."""
    _judge_all(streams, "stream.framing.data-lines")


@clause("stream.event.json")
def test_event_json(streams: SampleSet) -> None:
    """Every data payload other than [DONE] is one JSON object."""
    _judge_all(streams, "stream.event.json")


@clause("stream.chunk.schema-valid")
def test_chunk_schema(streams: SampleSet) -> None:
    """Every stream chunk validates against the ChatCompletionChunk schema."""
    _judge_chunks(streams, "stream.chunk.schema-valid")


@clause("stream.chunk.object")
def test_chunk_object(streams: SampleSet) -> None:
    """Every chunk's object field is the string chat.completion.chunk."""
    _judge_chunks(streams, "stream.chunk.object")


@clause("stream.chunk.id-consistent")
def test_chunk_id_consistent(streams: SampleSet) -> None:
    """Every chunk of one stream carries the same non-empty id."""
    _judge_chunks(streams, "stream.chunk.id-consistent")


@clause("stream.chunk.model-consistent")
def test_chunk_model_consistent(streams: SampleSet) -> None:
    """Every chunk of one stream carries the same model."""
    _judge_chunks(streams, "stream.chunk.model-consistent")


# Long enough to outlast a second on most servers; the stream is timed to straddle one (stream_clock).
LONG_STREAM_TOKENS = 128


@clause("stream.chunk.created-consistent")
def test_chunk_created_consistent(target: Target, streams: SampleSet,
                                  record_property: Callable[[str, object], None]) -> None:
    """Every chunk of one stream carries the same created value.

    Only a stream whose chunks straddle a whole second of the client's clock can show a server that
    stamps each chunk with the current second; short streams rarely do. So besides the shared
    streams the check sends long ones, timed to straddle a boundary (conformance.stream_clock). A
    run in which no stream did cannot tell such a server from a conforming one: not observable.
    """
    later = Deferred()
    with later:
        _judge_chunks(streams, "stream.chunk.created-consistent")
    body = target.body(max_tokens=LONG_STREAM_TOKENS, stream=True, messages=LONG_STORY)
    timed = long_streams(lambda: target.chat_stream(body, headers={"x-use-cache": "false"}))
    for i, item in enumerate(timed):
        _need_stream(item.exchange, f"a long stream ({LONG_STREAM_TOKENS} tokens)")
        enforce("stream.chunk.created-consistent", item.exchange, f"long stream {i + 1}")
    later.settle()
    shared = [TimedStream(_ex(s)) for s in streams.accepted]
    spans = [round(item.span_s, 3) if item.span_s is not None else None for item in timed]
    across = [f"long stream {i + 1}" for i, item in enumerate(timed) if spanned(item)]
    across += [f"stream {s.label}" for s, item in zip(streams.accepted, shared, strict=True) if spanned(item)]
    if not across:
        raise NotApplicable(
            f"no stream spanned a whole second of the client's clock (the long streams lasted {spans} s from first "
            "event to end): a server that stamps each chunk with the current second would look the same, so the "
            "rule could not be observed", actual=spans, exchanges=[item.exchange for item in timed])
    record_property(NOTE_PROPERTY, f"one created value per stream; {', '.join(across)} spanned a whole second")


@clause("stream.chunk.choice-index")
def test_chunk_choice_index(streams: SampleSet) -> None:
    """Every chunk choice has an integer index between 0 and n-1."""
    _judge_chunks(streams, "stream.chunk.choice-index")


@clause("stream.delta.role-first")
def test_role_first(streams: SampleSet) -> None:
    """The first chunk of each choice has delta.role assistant, and any later delta.role is also assistant."""
    later = Deferred()
    for sample in streams.judged():
        enforce("stream.delta.role-first", sample.exchange, f"stream {sample.label}")
        with later:
            _need_every_choice(sample, _indices(sample))
    later.settle()


@clause("stream.delta.content-string")
def test_delta_content_string(streams: SampleSet) -> None:
    """Every delta.content is a string, null or absent."""
    _judge_chunks(streams, "stream.delta.content-string")


@clause("stream.finish-reason.exactly-once")
def test_finish_exactly_once(streams: SampleSet) -> None:
    """Each choice has exactly one chunk with a non-null finish_reason."""
    later = Deferred()
    for sample in streams.judged():
        with later:  # a stream without chunks, or an n 2 stream missing a choice: judged elsewhere
            _need_every_choice(sample, _indices(sample) | {0})
        # choice 0 is judged whenever there are chunks: a stream whose chunks never finish it breaks this rule
        enforce("stream.finish-reason.exactly-once", sample.exchange, f"stream {sample.label}")
    later.settle()


@clause("stream.finish-reason.last")
def test_finish_last(streams: SampleSet) -> None:
    """No chunk after the one carrying a choice's finish_reason adds content or tool_calls to that choice."""
    _judge_chunks(streams, "stream.finish-reason.last")


def _answer_of(ex: Exchange) -> tuple[Any, Any]:
    """(content, finish_reason) of choice 0 of a non-streaming answer."""
    choices = ex.json_object.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    found = choice.get("message")
    message = found if isinstance(found, dict) else {}
    return message.get("content"), choice.get("finish_reason")


@clause("stream.content.parity")
def test_content_parity(target: Target) -> None:
    """At temperature 0, the concatenated delta contents and the finish_reason of a stream equal the content and finish_reason of the same request made without streaming."""
    body = target.body(max_tokens=16, temperature=0, seed=17,
                       messages=[{"role": "user", "content": "Count from one to five."}])
    plain, stream = target.both(lambda: target.chat(body, headers={"x-use-cache": "false"}),
                                lambda: target.chat_stream(dict(body, stream=True), headers={"x-use-cache": "false"}))
    need_answer(plain, "the non-streaming request", "request.messages.accepted")
    _need_stream(stream, "the stream")
    texts, reasons = stream_texts(stream)
    expected, actual = _answer_of(plain), (texts.get(0, ""), reasons.get(0))
    if actual != expected:
        require_repeatable(target, body, plain, _answer_of)
    require(actual == expected, "stream and non-stream answers differ at temperature 0",
            expected=expected, actual=actual, exchanges=(plain, stream))


@clause("stream.usage.absent-unless-requested")
def test_usage_absent_unless_requested(streams: SampleSet) -> None:
    """Without stream_options.include_usage true, every chunk has at least one choice and a null or absent usage."""
    _judge_chunks(streams, "stream.usage.absent-unless-requested", lambda s: not with_usage(s.exchange))


@clause("stream.usage.last-chunk")
def test_usage_last_chunk(streams: SampleSet) -> None:
    """With stream_options.include_usage true, exactly one chunk carries a usage object, it is the last chunk before [DONE], and its choices list is empty."""
    _judge_chunks(streams, "stream.usage.last-chunk", lambda s: with_usage(s.exchange))


@clause("stream.usage.null-elsewhere")
def test_usage_null_elsewhere(streams: SampleSet) -> None:
    """With stream_options.include_usage true, every chunk other than the usage chunk has usage null or absent."""
    _judge_chunks(streams, "stream.usage.null-elsewhere", lambda s: with_usage(s.exchange))


@clause("stream.usage.explicit-null")
def test_usage_explicit_null(streams: SampleSet) -> None:
    """With stream_options.include_usage true, every chunk other than the usage chunk carries the usage field with the value null."""
    _judge_chunks(streams, "stream.usage.explicit-null", lambda s: with_usage(s.exchange))


@clause("stream.terminator.done")
def test_done_last(streams: SampleSet) -> None:
    """The last event of every stream is data: [DONE]."""
    _judge_all(streams, "stream.terminator.done")


@clause("stream.terminator.nothing-after")
def test_nothing_after_done(streams: SampleSet) -> None:
    """Nothing but whitespace follows data: [DONE], and the response ends after it."""
    for sample in streams.judged():
        ex = _ex(sample)
        need(ex.done, f"data: [DONE] in stream {sample.label}", root="stream.terminator.done", exchanges=ex)
        enforce("stream.terminator.nothing-after", ex, f"stream {sample.label}")


@clause("stream.liveness.no-stall")
def test_no_stall(target: Target, streams: SampleSet) -> None:
    """The wait for the first event and between consecutive events never exceeds the suite's stall timeout (30 s by default)."""
    longer = target.chat_stream(target.body(max_tokens=32, stream=True))
    timeout = f"{target.config.timeout:g} s stall timeout, {4 * target.config.timeout:g} s deadline"
    for label, ex in [(s.label, _ex(s)) for s in streams.judged()] + [("32 tokens", longer)]:
        enforce("stream.liveness.no-stall", ex, f"stream {label} ({timeout})")


@clause("stream.errors.before-stream")
def test_error_before_stream(target: Target, suite_config: SuiteConfig) -> None:
    """A request with stream true and an invalid parameter is refused with a 4xx JSON error response, not a 200 event stream.

    The invalid value must be one the target refuses without stream: a value it never validates
    says nothing about streams (its errors.* clause judges that). So the check first looks for a
    value refused without stream (temperature, max_tokens, messages, n, in that order), then sends
    that one with stream true; a target that refuses none leaves the clause not exercised.
    """
    base = target.body(max_tokens=4)
    cases = {case.label: case for case in invalid_cases(suite_config.dialect)}
    tried = []
    for label in BEFORE_STREAM_CASES:
        case = cases[label]
        plain = target.chat(case.body(base), headers={"x-use-cache": "false"})
        tried.append(plain)
        if 400 <= plain.status < 500:
            streamed = target.chat_stream(dict(case.body(base), stream=True), headers={"x-use-cache": "false"})
            enforce("stream.errors.before-stream", streamed, f"stream true with {label} (refused without stream)")
            return
    first = cases[BEFORE_STREAM_CASES[0]]
    raise NotExercised(f"not exercised: none of {', '.join(BEFORE_STREAM_CASES)} was refused without stream, so no "
                       f"invalid value is known that this target validates (judged by {first.clause_id})",
                       root=first.clause_id, actual=[f"{ex.status} {ex.body_text[:100]}" for ex in tried],
                       exchanges=tried)
