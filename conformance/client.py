"""The suite's HTTP client: every request becomes an Exchange (conformance.exchange) kept as evidence.

Synchronous httpx. Streams are read from the raw bytes and parsed by `conformance.sse` line by
line; a stream that sends no byte for `timeout` seconds is abandoned (`stalled`), and one that
keeps trickling beyond `STREAM_DEADLINE_FACTOR * timeout` in total is abandoned too, so a broken
target can never hang the run.

Concurrency: `--concurrency N` means at most N requests in flight. Every request holds one slot of
a semaphore while it is sent and read, and `--delay` paces the starts (a request starts at least
`delay` seconds after the previous request started or ended). Checks stay sequential; a check with
several independent requests sends them through `Target.many`, which runs them on up to N threads.
The one exception is `Target.burst`, which sends its requests all at once on purpose (to provoke a
429) without slots or pacing; `--burst 0` turns it off.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from conformance.config import REDACTED, SuiteConfig
from conformance.exchange import EVIDENCE_LIMIT, Exchange, StreamExchange  # noqa: F401 - re-exported
from conformance.sse import SseParser

STREAM_DEADLINE_FACTOR = 4.0
_SENSITIVE = ("authorization", "api-key", "x-api-key")
BURST_START_TIMEOUT_S = 10.0  # the burst's threads wait at most this long for each other before sending
_T = TypeVar("_T")


class TargetUnreachable(RuntimeError):
    """The target could not be reached at all: a suite-side error, not a target failure."""


def _redacted(headers: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in _SENSITIVE and v else v) for k, v in headers.items()}


class Target:
    """The server under test: builds requests, paces them and records each as an Exchange."""

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self._http = httpx.Client(
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max(20, config.concurrency)),
        )
        self._last_request = 0.0
        self._slots = threading.BoundedSemaphore(config.concurrency)  # requests in flight, at most
        self._pace_lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0  # the most requests this client had in flight at once (the burst aside)
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
        """Send one request and read the whole answer (holding one of the `concurrency` slots)."""
        with self._slot():
            return self._send(method, path, headers=headers, content=content, content_type=content_type)

    def _send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> Exchange:
        """One request, sent now: no slot and no pacing (the caller's business)."""
        sent = self.base_headers(headers, content_type if content is not None else None)
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
        with self._slot():
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
        from conformance.verdicts import (  # verdicts imports Exchange for typing
            Fail,
            unsupported_or_fail,
        )

        ex = self.chat(body, **kw)
        if ex.status != 200:
            unsupported_or_fail(ex, feature)
        if not isinstance(ex.json, dict):
            raise Fail(f"{feature}: 200 but the body is not a JSON object", expected="JSON object",
                       actual=ex.body_text[:300], exchanges=(ex,))
        return ex

    # -- several requests --------------------------------------------------------------------

    def many(self, calls: Iterable[Callable[[], _T]]) -> list[_T]:
        """Run independent request thunks, up to `concurrency` at a time; their results in order.

        With concurrency 1 they run one after the other in this thread and the first exception
        stops the rest, exactly as a loop would. With more, every thunk runs, then the first
        exception in order is raised. Each request still takes a slot, so nesting never exceeds
        `concurrency` requests in flight.
        """
        thunks = list(calls)
        workers = min(self.config.concurrency, len(thunks))
        if workers <= 1:
            return [call() for call in thunks]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chatconform") as pool:
            futures = [pool.submit(call) for call in thunks]
            for future in futures:
                future.exception()  # wait for all before raising any
            return [future.result() for future in futures]

    def burst(self, bodies: list[dict[str, Any]], *, headers: dict[str, str] | None = None) -> list[Exchange]:
        """POST every body at once, one thread each, released together: neither slots nor --delay apply.

        Meant to provoke a 429 from a server with a bounded queue (see `--burst`); the 429s and
        503s land in `throttled` like any other. Connection failures count as no response (status 0).
        """
        if not bodies:
            return []
        start = threading.Barrier(len(bodies))

        def one(body: dict[str, Any]) -> Exchange:
            try:
                start.wait(BURST_START_TIMEOUT_S)
            except threading.BrokenBarrierError:
                pass  # a thread was late: send anyway
            with self._pace_lock:
                self.exchanges_sent += 1
            try:
                return self._send("POST", self.chat_path(), headers=headers,
                                  content=json.dumps(body).encode("utf-8"), content_type="application/json")
            except TargetUnreachable as exc:  # refused under load: not the same as a target that is gone
                return Exchange("POST", self.url(self.chat_path()), {}, json.dumps(body), 0, {}, f"[{exc}]", 0.0)

        with ThreadPoolExecutor(max_workers=len(bodies), thread_name_prefix="chatconform-burst") as pool:
            exchanges = list(pool.map(one, bodies))
        with self._pace_lock:
            self._last_request = time.monotonic()
        return exchanges

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

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """Hold one of the `concurrency` slots for a request, paced by `delay`."""
        with self._slots:
            self._pace()
            with self._pace_lock:
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                yield
            finally:
                with self._pace_lock:
                    self._in_flight -= 1
                    self._last_request = time.monotonic()

    def _pace(self) -> None:
        """Sleep so that a request starts at least `delay` seconds after the previous one started or ended.

        With concurrency 1 that is the gap between one answer and the next request; with more, the
        starts are spread `delay` apart. The lock is held while sleeping, so waiting requests queue.
        """
        with self._pace_lock:
            self.exchanges_sent += 1
            if self.config.delay > 0:
                wait = self._last_request + self.config.delay - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._last_request = time.monotonic()


def _body_text(content: bytes | None) -> str | None:
    if content is None:
        return None
    return content.decode("utf-8", errors="replace")
