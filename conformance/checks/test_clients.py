"""The official openai and huggingface_hub clients parse every response and stream.

The openai client runs over an httpx transport that records the raw bytes it received, so its
parsed objects can be compared with the raw JSON (and the raw SSE events) of the same response.
Any exception a client raises is a failure, with the exception text as evidence.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from conformance.client import Exchange, Target
from conformance.config import REDACTED, SuiteConfig
from conformance.registry import clause
from conformance.samples import Deferred
from conformance.sse import parse_sse
from conformance.verdicts import Fail, NotApplicable, NotExercised, refused_clearly, require

FRESH = {"x-use-cache": "false"}
TOOL = {"type": "function", "function": {"name": "weather", "description": "Weather.", "parameters": {
    "type": "object", "properties": {"city": {"enum": ["Paris", "Tokyo"]}}, "required": ["city"],
    "additionalProperties": False}}}


def variants(config: SuiteConfig) -> dict[str, dict[str, Any]]:
    """Request variants whose responses exercise the optional parts of the response shape."""
    fmt = ({"type": "json", "value": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                                      "required": ["ok"], "additionalProperties": False}}
           if config.dialect == "hf" else {"type": "json_object"})
    return {
        "plain": {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8},
        "logprobs": {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6, "logprobs": True,
                     "top_logprobs": 2, "temperature": 0},
        "stop": {"messages": [{"role": "user", "content": "Count to ten."}], "max_tokens": 12, "stop": [","],
                 "seed": config.seed},
        "tools": {"messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 36,
                  "tools": [TOOL], "tool_choice": "required", "temperature": 0},
        "format": {"messages": [{"role": "user", "content": "Answer in JSON."}], "max_tokens": 24,
                   "response_format": fmt, "temperature": 0},
    }


# The clause that judges whether each variant is answered (non-streaming, then streaming): a client has
# nothing to parse where the server did not answer, and that is the root's failure, not the client's.
ROOTS = {"plain": "request.messages.accepted", "logprobs": "logprobs.content.present",
         "stop": "params.stop.ends-generation", "tools": "tools.choice.required", "format": "format.json.schema-valid"}
STREAM_ROOTS = {"plain": "stream.content-type.event-stream", "logprobs": "logprobs.stream.entries",
                "stop": "params.stop.stream-excluded", "tools": "tools.choice.required",
                "format": "format.stream.constrained"}
# json_object may be refused with a clear 4xx (format.openai.json-object): then there is nothing to parse.
OPENAI_FORMAT_ROOT = "format.openai.json-object"
# Roots whose clause lets the server refuse the variant clearly (UNSUPPORTED there): nothing is lost.
REFUSABLE_ROOTS = frozenset({OPENAI_FORMAT_ROOT, "format.json.schema-valid", "format.stream.constrained"})


def root_of(name: str, config: SuiteConfig, *, stream: bool) -> str:
    """The clause judging whether the variant `name` is answered."""
    if name == "format" and config.dialect != "hf":
        return OPENAI_FORMAT_ROOT
    return (STREAM_ROOTS if stream else ROOTS)[name]


@dataclass
class Recorder:
    """The exchanges an httpx client made, each with the raw response body, in order."""

    exchanges: list[Exchange] = field(default_factory=list)

    def clear(self) -> None:
        self.exchanges.clear()


class _TeeStream(httpx.SyncByteStream):
    """Pass the response bytes through unchanged; when they end, record the whole exchange."""

    def __init__(self, inner: httpx.SyncByteStream, done: Callable[[bytes], None]) -> None:
        self._inner, self._done = inner, done

    def __iter__(self) -> Iterator[bytes]:
        parts: list[bytes] = []
        try:
            for part in self._inner:
                parts.append(part)
                yield part
        finally:
            self._done(b"".join(parts))

    def close(self) -> None:
        self._inner.close()


class RecordingTransport(httpx.HTTPTransport):
    """An httpx transport that records every request and raw response body as an Exchange."""

    def __init__(self, recorder: Recorder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        response = super().handle_request(request)
        sent = {k: (REDACTED if k.lower() == "authorization" else v) for k, v in request.headers.items()}

        def done(body: bytes) -> None:
            self.recorder.exchanges.append(Exchange(
                request.method, str(request.url), sent, request.content.decode("utf-8", errors="replace"),
                response.status_code, dict(response.headers), body.decode("utf-8", errors="replace"),
                time.monotonic() - started))

        # httpx types Response.stream as sync or async; a sync HTTPTransport's response stream is always sync.
        response.stream = _TeeStream(response.stream, done)  # type: ignore[arg-type]
        return response


def _headers(target: Target) -> dict[str, str]:
    return {k: v for k, v in target.base_headers(FRESH).items() if k.lower() != "authorization"}


def _body(target: Target, variant: dict[str, Any]) -> dict[str, Any]:
    return target.body(**variant)


def _client_module(name: str) -> Any:
    """Import a client library; NotApplicable naming the package when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise NotApplicable(f"the {name} package is not installed (pip install {name})") from None


@pytest.fixture(scope="module")
def openai_client(target: Target, suite_config: SuiteConfig) -> Any:
    """An openai.OpenAI client over a recording transport, and its recorder."""
    openai = _client_module("openai")

    recorder = Recorder()
    http = httpx.Client(transport=RecordingTransport(recorder), timeout=suite_config.timeout)
    client = openai.OpenAI(base_url=target.url("/v1"), api_key=suite_config.api_key or "none",
                           max_retries=0, timeout=suite_config.timeout, http_client=http,
                           default_headers=_headers(target))
    yield client, recorder
    http.close()


def _differences(raw: Any, parsed: Any, path: str = "$") -> list[str]:
    """Paths where the client's parsed value differs from the raw JSON (fields the raw JSON holds)."""
    if isinstance(raw, dict):
        if not isinstance(parsed, dict):
            return [f"{path}: {raw!r} parsed as {parsed!r}"]
        found = []
        for key, value in raw.items():
            if key not in parsed:
                found.append(f"{path}.{key}: dropped by the client")
            else:
                found += _differences(value, parsed[key], f"{path}.{key}")
        return found
    if isinstance(raw, list):
        if not isinstance(parsed, list) or len(parsed) != len(raw):
            return [f"{path}: {raw!r} parsed as {parsed!r}"]
        return [d for i, (r, p) in enumerate(zip(raw, parsed, strict=True)) for d in _differences(r, p, f"{path}[{i}]")]
    if raw != parsed or type(raw) is not type(parsed) and not (isinstance(raw, int | float)
                                                               and isinstance(parsed, int | float)):
        return [f"{path}: {raw!r} parsed as {parsed!r}"]
    return []


def _unanswered(exchanges: Sequence[Exchange], name: str, root: str, later: Deferred) -> bool:
    """Whether the variant was answered with a non-2xx status: then a client has nothing to parse. A
    clear 4xx refusal its root permits loses nothing; any other status is kept in `later` as
    NotExercised (root), raised once the other variants are judged."""
    if not exchanges or 200 <= exchanges[-1].status < 300:
        return False
    ex = exchanges[-1]
    if not (root in REFUSABLE_ROOTS and refused_clearly(ex)):
        later.keep(NotExercised(f"not exercised: the {name} variant was answered {ex.status} (judged by {root})",
                                root=root, actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex))
    return True


def _client_failure(client: str, name: str, exc: BaseException, exchanges: Sequence[Exchange]) -> Fail:
    """A Fail carrying the client's exception text and the exchange(s) it choked on."""
    return Fail(f"{client} raised on the {name} variant: {type(exc).__name__}: {exc}",
                expected="parsed without error", actual=f"{type(exc).__name__}: {exc}", exchanges=exchanges)


def _reproduce(target: Target, body: dict[str, Any]) -> list[Exchange]:
    """The same request sent again by the suite's own client, as evidence of what the server answers."""
    if body.get("stream"):
        return [target.chat_stream(body, headers=FRESH)]
    return [target.chat(body, headers=FRESH)]


@clause("clients.openai.completion")
def test_openai_completion(target: Target, suite_config: SuiteConfig, openai_client: Any) -> None:
    """The official openai Python client parses every non-streaming response without error, and its fields equal the raw JSON."""
    client, recorder = openai_client
    later = Deferred()
    for name, variant in variants(suite_config).items():
        body = _body(target, variant)
        recorder.clear()
        try:
            parsed = client.chat.completions.create(**body)
        except Exception as exc:  # every client exception is the finding, but for an unanswered variant
            if _unanswered(recorder.exchanges, name, root_of(name, suite_config, stream=False), later):
                continue
            raise _client_failure("openai", name, exc, recorder.exchanges) from None
        require(bool(recorder.exchanges), "no response was recorded", actual=name)
        seen = recorder.exchanges[-1]
        diffs = _differences(seen.json, parsed.model_dump(mode="json"))
        require(not diffs, f"openai's parsed {name} completion differs from the raw JSON",
                expected="fields equal to the raw JSON", actual=diffs[:10], exchanges=seen)
    later.settle()


@clause("clients.openai.stream")
def test_openai_stream(target: Target, suite_config: SuiteConfig, openai_client: Any) -> None:
    """The official openai Python client iterates every stream to its end without error, and its chunks equal the raw events."""
    client, recorder = openai_client
    later = Deferred()
    for name, variant in variants(suite_config).items():
        body = _body(target, {**variant, "stream": True, "stream_options": {"include_usage": True}})
        recorder.clear()
        try:
            chunks = [chunk.model_dump(mode="json") for chunk in client.chat.completions.create(**body)]
        except Exception as exc:
            if _unanswered(recorder.exchanges, name, root_of(name, suite_config, stream=True), later):
                continue
            raise _client_failure("openai (stream)", name, exc, recorder.exchanges) from None
        require(bool(recorder.exchanges), "no stream was recorded", actual=name)
        seen = recorder.exchanges[-1]
        events = parse_sse(seen.body_text.encode("utf-8")).chunks
        require(len(chunks) == len(events), f"openai yielded another number of chunks than the {name} stream sent",
                expected=len(events), actual=len(chunks), exchanges=seen)
        for i, (raw, parsed) in enumerate(zip(events, chunks, strict=True)):
            diffs = _differences(raw, parsed, f"chunk[{i}]")
            require(not diffs, f"openai's parsed {name} chunk differs from the raw event",
                    expected="fields equal to the raw event", actual=diffs[:10], exchanges=seen)
    later.settle()


def _hf_client(target: Target, config: SuiteConfig) -> Any:
    return _client_module("huggingface_hub").InferenceClient(base_url=target.config.base_url, api_key=config.api_key or None,
                           timeout=config.timeout, headers=_headers(target))


def _hf_arguments(target: Target, variant: dict[str, Any]) -> dict[str, Any]:
    """chat_completion keyword arguments for a variant: the same names, plus the served model when known."""
    arguments = dict(variant)
    if target.model is not None:
        arguments["model"] = target.model
    return arguments


@clause("clients.hf.completion")
def test_hf_completion(target: Target, suite_config: SuiteConfig) -> None:
    """The huggingface_hub InferenceClient parses every non-streaming response without error."""
    client = _hf_client(target, suite_config)
    later = Deferred()
    for name, variant in variants(suite_config).items():
        try:
            output = client.chat_completion(**_hf_arguments(target, variant))
            _ = output.choices[0].message.content, output.choices[0].finish_reason
        except Exception as exc:
            evidence = _reproduce(target, _body(target, variant))
            if _unanswered(evidence, name, root_of(name, suite_config, stream=False), later):
                continue
            raise _client_failure("huggingface_hub", name, exc, evidence) from None
    later.settle()


@clause("clients.hf.stream")
def test_hf_stream(target: Target, suite_config: SuiteConfig) -> None:
    """The huggingface_hub InferenceClient iterates every stream to its end without error, reading choices[0].delta.content from every chunk that has choices."""
    client = _hf_client(target, suite_config)
    later = Deferred()
    for name, variant in variants(suite_config).items():
        seen = 0
        try:
            for chunk in client.chat_completion(**_hf_arguments(target, variant), stream=True,
                                                stream_options={"include_usage": True}):
                if chunk.choices:
                    _ = chunk.choices[0].delta.content
                    seen += 1
        except Exception as exc:
            body = _body(target, {**variant, "stream": True, "stream_options": {"include_usage": True}})
            evidence = _reproduce(target, body)
            if _unanswered(evidence, name, root_of(name, suite_config, stream=True), later):
                continue
            raise _client_failure("huggingface_hub (stream)", name, exc, evidence) from None
        if seen == 0:  # nothing to read: the stream's own clauses judge a stream without choices
            body = _body(target, {**variant, "stream": True})
            later.keep(NotExercised(f"not exercised: the {name} stream had no chunk with choices (judged by "
                                    "stream.finish-reason.exactly-once)", root="stream.finish-reason.exactly-once",
                                    exchanges=_reproduce(target, body)))
    later.settle()
