"""The suite's HTTP client: every request becomes an Exchange (conformance.exchange) kept as evidence.

Synchronous httpx. Every answer is read within bounds (conformance.transport): a read timeout
(`--timeout`), an overall deadline (`DEADLINE_FACTOR` x `--timeout`) and a size limit
(`--max-response-bytes`), so a broken target can never hang the run or exhaust its memory.
Streams are read from the raw bytes and parsed by `conformance.sse` line by line; a stream that
sends no byte for `timeout` seconds is `stalled`, one still sending at the deadline `overran`.

Transport failures are kept apart from server answers (conformance.sender). A request that gets
no complete HTTP response (reset, closed, garbage, timeout; for a stream: no response head) is sent
once more on a fresh connection; not one whose answer was too big or too slow, which would cost as
much again. An answered retry is returned and the failure stays in `transport` (the evidence of
transport.keep-alive.reusable when the first attempt used a kept-alive connection); a second
failure, or an answer over the size limit or past the deadline, raises `NoAnswer`: a NotExercised
rooted in transport.answer.every-request, so no check ever judges "status 0". After
`UNRESPONSIVE_AFTER` requests in a row without an answer the target is unresponsive, and every
later request raises NoAnswer at once, unsent. A target no request could ever reach raises
TargetUnreachable instead (a suite-side error: a wrong URL).

Concurrency: `--concurrency N` means at most N requests in flight. Every request holds one slot of
a semaphore while it is sent and read, and `--delay` paces the starts (a request starts at least
`delay` seconds after the previous request started or ended). Checks stay sequential; a check with
several independent requests sends them through `Target.many`, which runs them on up to N threads.
The one exception is `Target.burst`, which sends its requests all at once on purpose (to provoke a
429) without slots, pacing or retries; `--burst 0` turns it off.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import quote

from conformance import observed
from conformance.config import SuiteConfig
from conformance.exchange import EVIDENCE_LIMIT, Exchange, StreamExchange  # noqa: F401 - re-exported
from conformance.sender import NoAnswer, Sender, TargetUnreachable, redact  # noqa: F401 - re-exported
from conformance.transport import TransportLog, read
from conformance.verdicts import Fail, unsupported_or_fail

BURST_START_TIMEOUT_S = 10.0  # the burst's threads wait at most this long for each other before sending
_T = TypeVar("_T")
_U = TypeVar("_U")
# Extra request headers: each replaces the default of its name (case-insensitively); None removes it.
HeaderOverrides = Mapping[str, str | None]


class Target:
    """The server under test: builds requests, paces them and records each as an Exchange."""

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self._sender = Sender(config)
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

    @property
    def transport(self) -> TransportLog:
        """Retries, recovered failures and requests without an answer: the transport.* clauses' evidence."""
        return self._sender.log

    @property
    def unresponsive(self) -> str | None:
        """Why the run stopped sending ("target unresponsive: ..."), or None while the target answers."""
        return self.transport.unresponsive

    def close(self) -> None:
        """Close the connection pool."""
        self._sender.close()

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

    def base_headers(self, extra: HeaderOverrides | None = None, content_type: str | None = None) -> dict[str, str]:
        """Default request headers (authorization when a key is set), then the extras (value None drops one)."""
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
        headers: HeaderOverrides | None = None,
        route: str = "v1",
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Exchange:
        """POST a chat completion (non-streaming read of the whole body)."""
        if raw is None:
            raw = json.dumps(self.body() if body is None else body).encode("utf-8")
        return self.request("POST", self.chat_path(route), headers=headers, content=raw, content_type=content_type)

    def get(self, path: str, *, headers: HeaderOverrides | None = None) -> Exchange:
        """GET a path on the target."""
        return self.request("GET", path, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: HeaderOverrides | None = None,
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
        headers: HeaderOverrides | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        retry: bool = True,
    ) -> Exchange:
        """One request, sent now: no slot and no pacing (the caller's business).

        retry False (the burst): one attempt, returned answered or not, and nothing recorded.
        """
        sent = self.base_headers(headers, content_type if content is not None else None)
        ex = self._sender.send(method, self.url(path), sent, content, retry=retry)
        if retry:
            observed.note(ex)
        if ex.status == 200:
            self._note_fingerprint(ex.json)
        elif ex.status in (429, 503):
            self.throttled.append(ex)
        return ex

    def chat_stream(
        self, body: dict[str, Any], *, headers: HeaderOverrides | None = None, route: str = "v1"
    ) -> StreamExchange:
        """POST a streaming chat completion; read and parse the SSE bytes within the stall timeout and the bounds.

        A stream whose response head arrived is returned whatever happened next (stalled, overran,
        closed early: the stream clauses judge that), unless its body passed the size limit.
        """
        content = json.dumps(body).encode("utf-8")
        sent = self.base_headers(headers, "application/json")
        with self._slot():
            stream = self._sender.stream(self.url(self.chat_path(route)), sent, content)
        observed.note(stream)
        if stream.chunks:
            self._note_fingerprint(stream.chunks[0])
        if stream.status in (429, 503):
            self.throttled.append(stream)
        return stream

    def ok(self, body: dict[str, Any] | None = None, *, feature: str = "request", **kw: Any) -> Exchange:
        """chat() that raises Fail unless 200 + JSON object (Unsupported when a 4xx refuses clearly)."""
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

    def both(self, first: Callable[[], _T], second: Callable[[], _U]) -> tuple[_T, _U]:
        """many() of two thunks whose results differ in type (a plain and a streamed request): both results.

        Each thunk keeps its own result, so each keeps its own type; `many` runs them as it runs any two.
        """
        firsts: list[_T] = []
        seconds: list[_U] = []
        self.many([lambda: firsts.append(first()), lambda: seconds.append(second())])
        return firsts[0], seconds[0]

    def burst(self, bodies: list[dict[str, Any]], *, headers: HeaderOverrides | None = None) -> list[Exchange]:
        """POST every body at once, one thread each, released together: neither slots, --delay nor retries apply.

        Meant to provoke a 429 from a server with a bounded queue (see `--burst`); the 429s and
        503s land in `throttled` like any other. A refusal or a dropped connection under load is
        tolerated by design: such requests are left out of the result (counted in
        `transport.burst_unanswered`), so no check ever judges a burst request without an answer.
        """
        if not bodies:
            return []
        start = threading.Barrier(len(bodies))

        def one(body: dict[str, Any]) -> Exchange | None:
            try:
                start.wait(BURST_START_TIMEOUT_S)
            except threading.BrokenBarrierError:
                pass  # a thread was late: send anyway
            with self._pace_lock:
                self.exchanges_sent += 1
            try:
                ex = self._send("POST", self.chat_path(), headers=headers, content=json.dumps(body).encode("utf-8"),
                                content_type="application/json", retry=False)
            except TargetUnreachable:  # refused under load: not the same as a target that is gone
                ex = None
            if ex is None or not ex.answered:
                with self._pace_lock:
                    self.transport.burst_unanswered += 1
                return None
            return ex

        with ThreadPoolExecutor(max_workers=len(bodies), thread_name_prefix="chatconform-burst") as pool:
            exchanges = [ex for ex in pool.map(one, bodies) if ex is not None]
        with self._pace_lock:
            self._last_request = time.monotonic()
        return exchanges

    # -- helpers -----------------------------------------------------------------------------

    def probe(self) -> None:
        """Raise TargetUnreachable unless something answers HTTP at the base URL (bounded like every read)."""
        reading, _ = read(self._sender.http, "GET", self.url("/v1/models"), headers=self.base_headers(), content=None,
                          timeout=self.config.timeout, max_bytes=self.config.max_response_bytes)
        if reading.status is None:
            raise TargetUnreachable(f"cannot reach {self.config.base_url}: {reading.failure}")

    def observe_loading(self) -> None:
        """At session start: a chat without x-wait-for-model (503 while loading), then one with it (held until ready).

        A request without an answer leaves `loading_probe` None (transport.answer.every-request judges it).
        """
        answers = []
        for wait in ("false", "true"):
            try:
                answers.append(self.chat(self.body(max_tokens=1), headers={"x-wait-for-model": wait,
                                                                           "x-use-cache": "false"}))
            except NoAnswer:
                continue  # the second request is an observation of its own: still sent
        if len(answers) == 2:
            self.loading_probe = (answers[0], answers[1])

    def _discover_model(self) -> str | None:
        """The first model id of GET /v1/models, else None (the body then omits `model`)."""
        try:
            ex = self.get("/v1/models")
        except NoAnswer:
            return None  # recorded: transport.answer.every-request judges it
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

