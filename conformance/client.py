"""The suite's HTTP client: every request becomes an Exchange kept as evidence.

Synchronous httpx. Streams are read from the raw bytes and parsed by `conformance.sse` line by
line; a stream that sends no byte for `timeout` seconds is abandoned (`stalled`), and one that
keeps trickling beyond `STREAM_DEADLINE_FACTOR * timeout` in total is abandoned too, so a broken
target can never hang the run.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from conformance.config import REDACTED, SuiteConfig
from conformance.sse import SseParser

EVIDENCE_LIMIT = 64 * 1024
STREAM_DEADLINE_FACTOR = 4.0
_SENSITIVE = ("authorization", "api-key", "x-api-key")


class TargetUnreachable(RuntimeError):
    """The target could not be reached at all: a suite-side error, not a target failure."""


@dataclass
class Exchange:
    """One HTTP request and its response, kept as evidence."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str | None
    status: int
    headers: dict[str, str]
    body_text: str
    elapsed_s: float

    @property
    def json(self) -> Any | None:
        """The parsed body, or None when it is not JSON."""
        try:
            return json.loads(self.body_text)
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        """A response header by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def evidence(self) -> dict[str, Any]:
        """Request, status, headers and raw body (each text truncated to 64 KiB)."""
        return {
            "request": {
                "method": self.method,
                "url": self.url,
                "headers": dict(self.request_headers),
                "body": _truncate(self.request_body),
            },
            "status": self.status,
            "headers": dict(self.headers),
            "body": _truncate(self.body_text),
            "elapsed_s": round(self.elapsed_s, 4),
            "curl": self.curl(),
        }

    def curl(self) -> str:
        """A curl command line that reproduces the request (the API key as $CHATCONFORM_API_KEY)."""
        parts = ["curl", "-sS", "-X", self.method, shlex.quote(self.url)]
        for key, value in self.request_headers.items():
            if key.lower() in ("content-length", "host", "accept-encoding", "connection", "user-agent"):
                continue
            if key.lower() == "authorization" and value != "":
                parts += ["-H", '"Authorization: Bearer $CHATCONFORM_API_KEY"']
                continue
            parts += ["-H", shlex.quote(f"{key}: {value}")]
        if self.request_body is not None:
            body = self.request_body
            if len(body) > EVIDENCE_LIMIT:
                body = body[:EVIDENCE_LIMIT]
                parts = ["#", "body truncated to 64 KiB;"] + parts
            parts += ["--data-binary", shlex.quote(body)]
        return " ".join(parts)


@dataclass
class StreamExchange(Exchange):
    """A streamed exchange: body_text holds the raw SSE text, parsed into lines and events."""

    raw_lines: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    chunks: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    after_done: list[str] = field(default_factory=list)
    error_event: dict[str, Any] | None = None
    first_event_s: float | None = None
    stalled: bool = False
    framing_errors: list[str] = field(default_factory=list)
    non_json_events: list[str] = field(default_factory=list)
    overran: bool = False  # still sending after the overall deadline: abandoned

    def evidence(self) -> dict[str, Any]:
        """As Exchange.evidence, plus the raw SSE lines and the stream's parse state."""
        record = super().evidence()
        lines = self.raw_lines
        record["sse_lines"] = lines[:2000]
        record["stream"] = {
            "done": self.done,
            "stalled": self.stalled,
            "overran": self.overran,
            "framing_errors": self.framing_errors[:50],
            "after_done": self.after_done[:20],
            "first_event_s": None if self.first_event_s is None else round(self.first_event_s, 4),
        }
        return record


def _truncate(text: str | None) -> str | None:
    if text is None or len(text) <= EVIDENCE_LIMIT:
        return text
    return text[:EVIDENCE_LIMIT] + f"... [truncated, {len(text)} characters in all]"


def _redacted(headers: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in _SENSITIVE and v else v) for k, v in headers.items()}


class Target:
    """The server under test: builds requests, paces them and records each as an Exchange."""

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self._http = httpx.Client(
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
            follow_redirects=False,
        )
        self._last_request = 0.0
        self.models: list[str] = []
        self.exchanges_sent = 0
        self.system_fingerprint: str | None = None
        # Every 429 and 503 seen during the session: the only way to observe rate limits and loading.
        self.throttled: list[Exchange] = []
        # The loading probe's two exchanges (without, then with x-wait-for-model), see observe_loading().
        self.loading_probe: tuple[Exchange, Exchange] | None = None
        discovered = self._discover_model()
        self.model: str | None = config.model if config.model is not None else discovered

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- requests ----------------------------------------------------------------------------

    def body(self, **overrides: Any) -> dict[str, Any]:
        """A minimal valid request body, then overrides (a value of None removes the key)."""
        body: dict[str, Any] = {}
        if self.model is not None:
            body["model"] = self.model
        body["messages"] = [{"role": "user", "content": "Say hello."}]
        body["max_tokens"] = 16
        for key, value in overrides.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    def url(self, path: str) -> str:
        """Absolute URL of a path on the target."""
        return self.config.base_url + (path if path.startswith("/") else "/" + path)

    def chat_path(self, route: str = "v1") -> str:
        """The chat completions path of a route: `v1` or `model` (/models/{model}/v1/...)."""
        if route == "v1":
            return "/v1/chat/completions"
        if route == "model":
            if not self.model:
                raise ValueError("route 'model' needs a model id (give --model)")
            return f"/models/{quote(self.model, safe='/')}/v1/chat/completions"
        raise ValueError(f"route: must be 'v1' or 'model', got {route!r}")

    def base_headers(self, extra: dict[str, str] | None = None, content_type: str | None = None) -> dict[str, str]:
        """Default request headers (authorization when a key is set), then the extras (value '' drops one)."""
        headers: dict[str, str] = {}
        if content_type:
            headers["Content-Type"] = content_type
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        for key, value in (extra or {}).items():
            for existing in [k for k in headers if k.lower() == key.lower()]:
                del headers[existing]
            if value is not None:
                headers[key] = value
        return headers

    def chat(
        self,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        route: str = "v1",
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Exchange:
        """POST a chat completion (non-streaming read of the whole body)."""
        if raw is None:
            raw = json.dumps(self.body() if body is None else body).encode("utf-8")
        return self.request("POST", self.chat_path(route), headers=headers, content=raw, content_type=content_type)

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> Exchange:
        """GET a path on the target."""
        return self.request("GET", path, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> Exchange:
        """Send one request and read the whole answer."""
        sent = self.base_headers(headers, content_type if content is not None else None)
        self._pace()
        started = time.monotonic()
        url = self.url(path)
        try:
            response = self._http.request(method, url, headers=sent, content=content)
            status, resp_headers, text = response.status_code, dict(response.headers), response.text
        except httpx.ConnectError as exc:
            raise TargetUnreachable(f"cannot connect to {url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            # A timeout is the target's failure to answer: status 0 marks "no response".
            status, resp_headers, text = 0, {}, f"[no response within {self.config.timeout:g} s: {type(exc).__name__}]"
        except httpx.HTTPError as exc:
            status, resp_headers, text = 0, {}, f"[transport error: {type(exc).__name__}: {exc}]"
        elapsed = time.monotonic() - started
        self._last_request = time.monotonic()
        ex = Exchange(method, url, _redacted(sent), _body_text(content), status, resp_headers, text, elapsed)
        if status == 200:
            self._note_fingerprint(ex.json)
        elif status in (429, 503):
            self.throttled.append(ex)
        return ex

    def chat_stream(
        self, body: dict[str, Any], *, headers: dict[str, str] | None = None, route: str = "v1"
    ) -> StreamExchange:
        """POST a streaming chat completion; read and parse the SSE bytes with the stall timeout."""
        url = self.url(self.chat_path(route))
        content = json.dumps(body).encode("utf-8")
        sent = self.base_headers(headers, "application/json")
        parser = SseParser()
        raw = bytearray()
        status, resp_headers = 0, {}
        stalled = overran = False
        first_event: float | None = None
        transport_note = ""
        self._pace()
        started = time.monotonic()
        deadline = started + STREAM_DEADLINE_FACTOR * self.config.timeout
        try:
            with self._http.stream("POST", url, headers=sent, content=content) as response:
                status, resp_headers = response.status_code, dict(response.headers)
                # iter_raw: the bytes exactly as sent (no decoding); the read timeout is the stall timeout.
                for piece in response.iter_raw():
                    raw += piece
                    if parser.feed(piece) and first_event is None:
                        first_event = time.monotonic() - started
                    if time.monotonic() > deadline:
                        overran = True
                        break
        except httpx.ConnectError as exc:
            raise TargetUnreachable(f"cannot connect to {url}: {exc}") from exc
        except httpx.ReadTimeout:
            stalled = True
        except httpx.TimeoutException as exc:
            stalled = True
            transport_note = f"{type(exc).__name__}"
        except httpx.HTTPError as exc:
            transport_note = f"transport error: {type(exc).__name__}: {exc}"
        parse = parser.close()
        if transport_note:
            parse.framing_errors.append(transport_note)
        self._last_request = time.monotonic()
        text = raw.decode("utf-8", errors="replace")
        if parse.chunks:
            self._note_fingerprint(parse.chunks[0])
        stream = StreamExchange(
            "POST", url, _redacted(sent), content.decode("utf-8"), status, resp_headers, text,
            time.monotonic() - started,
            raw_lines=parse.raw_lines, data=parse.data, chunks=parse.chunks, done=parse.done,
            after_done=parse.after_done, error_event=parse.error_event, first_event_s=first_event,
            stalled=stalled, framing_errors=parse.framing_errors, non_json_events=parse.non_json_events,
            overran=overran,
        )
        if status in (429, 503):
            self.throttled.append(stream)
        return stream

    def ok(self, body: dict[str, Any] | None = None, *, feature: str = "request", **kw: Any) -> Exchange:
        """chat() that raises Fail unless 200 + JSON object (Unsupported when a 4xx refuses clearly)."""
        from conformance.verdicts import Fail, unsupported_or_fail  # verdicts imports Exchange for typing

        ex = self.chat(body, **kw)
        if ex.status != 200:
            unsupported_or_fail(ex, feature)
        if not isinstance(ex.json, dict):
            raise Fail(f"{feature}: 200 but the body is not a JSON object", expected="JSON object",
                       actual=ex.body_text[:300], exchanges=(ex,))
        return ex

    # -- helpers -----------------------------------------------------------------------------

    def probe(self) -> None:
        """Raise TargetUnreachable unless something answers HTTP at the base URL."""
        try:
            self._http.get(self.url("/v1/models"), headers=self.base_headers())
        except httpx.HTTPError as exc:
            raise TargetUnreachable(f"cannot reach {self.config.base_url}: {type(exc).__name__}: {exc}") from exc

    def observe_loading(self) -> None:
        """At session start: a chat without x-wait-for-model (503 while loading), then one with it (held until ready)."""
        first = self.chat(self.body(max_tokens=1), headers={"x-wait-for-model": "false", "x-use-cache": "false"})
        second = self.chat(self.body(max_tokens=1), headers={"x-wait-for-model": "true", "x-use-cache": "false"})
        self.loading_probe = (first, second)

    def _discover_model(self) -> str | None:
        """The first model id of GET /v1/models, else None (the body then omits `model`)."""
        ex = self.get("/v1/models")
        data = ex.json
        if ex.status == 200 and isinstance(data, dict) and isinstance(data.get("data"), list):
            self.models = [m["id"] for m in data["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
        return self.models[0] if self.models else None

    def _note_fingerprint(self, body: Any) -> None:
        if self.system_fingerprint is None and isinstance(body, dict):
            value = body.get("system_fingerprint")
            if isinstance(value, str) and value:
                self.system_fingerprint = value

    def _pace(self) -> None:
        """Sleep so that consecutive requests are at least `delay` seconds apart."""
        self.exchanges_sent += 1
        if self.config.delay > 0:
            wait = self._last_request + self.config.delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)


def _body_text(content: bytes | None) -> str | None:
    if content is None:
        return None
    return content.decode("utf-8", errors="replace")
