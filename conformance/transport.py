"""Reading one HTTP answer within bounds, and the record of what the transport did during a run.

`read` sends one request and reads its answer with three bounds, so that no target can hang the
run or exhaust its memory: the read timeout (`--timeout`, no byte for that long), an overall
deadline of `DEADLINE_FACTOR` x `--timeout` for the whole answer, and `--max-response-bytes` for its
body. It tells apart a request that got no HTTP response at all (reset, closed, garbage, timeout
before the status line) from one whose response head arrived, and says whether the request went
out on a reused (kept-alive) connection or on a fresh one, from httpcore's trace events.

`TransportLog` is what the Target records for the transport.* checks: requests sent, retries on a
fresh connection, the failures those retries recovered, and the requests that got no answer at
all; after `UNRESPONSIVE_AFTER` consecutive requests without an answer it declares the target
unresponsive, and the client stops sending.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from conformance.exchange import Exchange

DEADLINE_FACTOR = 4.0  # the whole answer must arrive within this many times --timeout
UNRESPONSIVE_AFTER = 3  # consecutive requests without an answer (each tried twice) that stop the run
CONNECT_TIMEOUT_CAP_S = 10.0
TRANSPORT_ANSWER = "transport.answer.every-request"
TRANSPORT_KEEP_ALIVE = "transport.keep-alive.reusable"


@dataclass
class Reading:
    """One attempt at a request: the response head (if any), the body read, and how the read ended."""

    status: int | None = None  # None: no HTTP response head arrived
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    encoding: str = "utf-8"
    failure: str | None = None  # the exception that ended the read early, as "Name: text"
    stalled: bool = False  # no byte for --timeout seconds (a read timeout)
    overran: bool = False  # still sending at the overall deadline: abandoned
    cut: bool = False  # the body passed the size limit: the rest was not read
    connect_failed: bool = False  # no connection could be opened (TCP or TLS)
    reused: bool = False  # sent on a kept-alive connection of the pool
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        """A whole HTTP response: head and body, within the deadline and the size limit."""
        return self.status is not None and not (self.failure or self.stalled or self.overran or self.cut)

    @property
    def connection(self) -> str:
        """'reused' or 'fresh': the connection the request went out on."""
        return "reused" if self.reused else "fresh"

    def text(self) -> str:
        """The body read so far, decoded (bad bytes replaced)."""
        return self.body.decode(self.encoding or "utf-8", errors="replace")


class _Trace:
    """httpcore trace callback: did this request open a new connection, and did the request go out on one?"""

    def __init__(self) -> None:
        self.opened = False  # a new connection was started for it (else the pool's kept-alive one served)
        self.established = False  # the request started going out: a connection (TLS included) was up

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started":
            self.opened = True
        elif event.startswith(("http11.", "http2.")):
            self.established = True


def timeout_of(seconds: float) -> httpx.Timeout:
    """The per-operation httpx timeout of a run: --timeout, and at most 10 s to connect."""
    return httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_CAP_S))


def fresh_client(seconds: float) -> httpx.Client:
    """A client that keeps no connection alive: its one request goes out on a new connection."""
    return httpx.Client(timeout=timeout_of(seconds), follow_redirects=False,
                        limits=httpx.Limits(max_keepalive_connections=0))


def read(client: httpx.Client, method: str, url: str, *, headers: dict[str, str], content: bytes | None,
         timeout: float, max_bytes: int, raw: bool = False,
         on_piece: Callable[[bytes], None] | None = None) -> tuple[Reading, bool]:
    """Send one request and read its answer within the bounds; (the reading, whether the request went out).

    raw: read the bytes as sent (a stream) instead of decoded; on_piece sees every piece as it arrives.
    """
    reading, trace = Reading(), _Trace()
    started = time.monotonic()
    deadline = started + DEADLINE_FACTOR * timeout
    try:
        with client.stream(method, url, headers=headers, content=content, extensions={"trace": trace}) as response:
            reading.status, reading.headers = response.status_code, dict(response.headers)
            reading.encoding = response.encoding or "utf-8"
            for piece in (response.iter_raw() if raw else response.iter_bytes()):
                room = max_bytes - len(reading.body)
                if len(piece) > room:
                    reading.body += piece[:room]
                    reading.cut = True
                    break
                reading.body += piece
                if on_piece is not None:
                    on_piece(piece)
                if time.monotonic() > deadline:
                    reading.overran = True
                    break
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        reading.connect_failed = True
        reading.failure = f"{type(exc).__name__}: {exc}"
    except httpx.ReadTimeout as exc:
        reading.stalled = True
        reading.failure = f"{type(exc).__name__}: no byte within {timeout:g} s"
    except httpx.LocalProtocolError:
        raise  # the suite built a request HTTP forbids: its own error, not the target's
    except httpx.HTTPError as exc:
        reading.failure = f"{type(exc).__name__}: {exc}"
    reading.reused = not trace.opened  # no new connection was opened for it: the pool's kept-alive one
    reading.elapsed_s = time.monotonic() - started
    return reading, trace.established or reading.status is not None


def why_no_answer(reading: Reading, timeout: float, max_bytes: int) -> str:
    """Why an attempt is no complete answer, in one line."""
    if reading.cut:
        return (f"the {reading.status} response's body is larger than {max_bytes} bytes (--max-response-bytes): "
                "cut there")
    if reading.overran:
        return f"the {reading.status} response was still arriving after {DEADLINE_FACTOR * timeout:g} s: abandoned"
    if reading.status is None:
        return f"no HTTP response: {reading.failure}"
    return f"the {reading.status} response ended early: {reading.failure}"


@dataclass(frozen=True)
class TransportEvent:
    """A request that failed at the transport level: its attempts, in order, and whether the retry was answered."""

    attempts: tuple[Exchange, ...]
    recovered: bool

    @property
    def reused(self) -> bool:
        """The first attempt went out on a kept-alive connection."""
        return bool(self.attempts) and self.attempts[0].connection == "reused"


class TransportLog:
    """What the transport did during a run (thread-safe): the evidence of the transport.* clauses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0  # requests answered or not (the burst's aside)
        self.reused = 0  # requests whose (first) attempt went out on a kept-alive connection
        self.retries = 0  # second attempts on a fresh connection
        self.recovered: list[TransportEvent] = []  # failed, then answered on a fresh connection
        self.failures: list[TransportEvent] = []  # no complete answer at all
        self.burst_unanswered = 0  # burst requests without an answer: tolerated by design, never judged
        self.consecutive = 0  # requests without an answer since the last answered one
        self.unresponsive: str | None = None  # set once the run stops sending
        self.ever_connected = False  # a request went out once: later refused connections are no answers

    def sent(self, reading: Reading) -> None:
        """A request's first attempt was made."""
        with self._lock:
            self.requests += 1
            self.reused += reading.reused

    def connected(self) -> None:
        """A request went out on an established connection (or a response head arrived)."""
        self.ever_connected = True

    def retry(self) -> None:
        """A second attempt, on a fresh connection."""
        with self._lock:
            self.retries += 1

    def answered(self) -> None:
        """A request got its answer."""
        with self._lock:
            self.consecutive = 0

    def recover(self, attempts: tuple[Exchange, ...]) -> None:
        """A request failed, and its retry on a fresh connection was answered."""
        with self._lock:
            self.recovered.append(TransportEvent(attempts, recovered=True))
            self.consecutive = 0

    def fail(self, attempts: tuple[Exchange, ...]) -> None:
        """A request got no answer, on a fresh connection either; may declare the target unresponsive."""
        with self._lock:
            self.failures.append(TransportEvent(attempts, recovered=False))
            self.consecutive += 1
            if self.consecutive >= UNRESPONSIVE_AFTER and self.unresponsive is None:
                self.unresponsive = f"target unresponsive: {self.consecutive} consecutive requests got no answer"

    def lost_exchanges(self) -> list[Exchange]:
        """The last attempt of every request that got no answer, in order."""
        with self._lock:
            return [event.attempts[-1] for event in self.failures]

    def describe(self) -> str:
        """One line: requests, reused connections, retries, recoveries and failures."""
        return (f"{self.requests} requests ({self.reused} on a reused connection), {self.retries} retried on a "
                f"fresh connection, {len(self.recovered)} recovered by the retry, {len(self.failures)} without an "
                "answer")


__all__ = [
    "DEADLINE_FACTOR", "TRANSPORT_ANSWER", "TRANSPORT_KEEP_ALIVE", "UNRESPONSIVE_AFTER", "Reading", "TransportEvent",
    "TransportLog", "fresh_client", "read", "timeout_of", "why_no_answer",
]
