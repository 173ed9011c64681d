"""A raw HTTP server for client tests: answers every request with scripted bytes and pauses, and counts
how many requests it was answering at the same time.

A script is a list of steps (bytes to send, or seconds to wait), or a function of the request that
yields its steps lazily: an endless body, or a huge one, never sits in memory. `reused` says what
happens after an answer: "close" the connection (the default), "answer" the next request on it
too, or "drop": read the next request and close without answering it (a broken keep-alive).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

Step = bytes | float  # bytes to send, or seconds to wait
Script = Sequence[Step] | Callable[[bytes], Iterable[Step]]
REUSED = ("close", "answer", "drop")
READ_TIMEOUT_S = 30.0  # how long a connection may stay silent before the server gives up on it (a busy machine is slow)


@dataclass
class RawServer:
    """Serve a scripted answer (steps of bytes and pauses) to each request."""

    script: Script
    get_script: Script | None = None  # the answer to GET requests (default: the same script)
    reused: str = "close"  # after an answer: "close", "answer" the next request, or "drop" it unanswered
    received: list[bytes] = field(default_factory=list)
    max_active: int = 0  # the most requests being answered at the same time
    dropped: int = 0  # requests read on a reused connection and left unanswered ("drop")

    def __post_init__(self) -> None:
        assert self.reused in REUSED, self.reused
        self._active = 0
        self._count_lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(READ_TIMEOUT_S)
            buffer = b""
            served = 0
            try:
                while not self._stop.is_set():
                    request, buffer = _read_request(conn, buffer)
                    if request is None:
                        return
                    self.received.append(request)
                    if served and self.reused == "drop":
                        self.dropped += 1
                        return  # closed without an answer to the request it read
                    self._answer(conn, request)
                    served += 1
                    if self.reused == "close":
                        return
            except OSError:
                return

    def _answer(self, conn: socket.socket, request: bytes) -> None:
        script = self.get_script if request.startswith(b"GET ") and self.get_script is not None else self.script
        steps = script(request) if callable(script) else script
        last = len(steps) - 1 if isinstance(steps, Sequence) else -1
        with self._count_lock:
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        active = True
        try:
            for i, step in enumerate(steps):
                if self._stop.is_set():
                    return
                if isinstance(step, bytes):
                    if i == last:
                        # The request stops counting before its last bytes go out: a client
                        # may start its next request as soon as it has them.
                        active = self._leave()
                    conn.sendall(step)
                else:
                    end = time.monotonic() + step
                    while time.monotonic() < end and not self._stop.is_set():
                        time.sleep(0.02)
        finally:
            if active:
                self._leave()

    def _leave(self) -> bool:
        """One request fewer being answered; returns False (no longer active)."""
        with self._count_lock:
            self._active -= 1
        return False


def _read_request(conn: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
    """The next request (head and Content-Length body) and what was read beyond it; None at the end."""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def sse_head(extra: str = "") -> bytes:
    """Response head of an event stream without a length (the body ends when the connection closes)."""
    return (f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n{extra}\r\n").encode()


def json_answer(status: int, body: str, content_type: str = "application/json", keep_alive: bool = False) -> bytes:
    """A complete response with a JSON (or other) body; `Connection: close` unless keep_alive."""
    raw = body.encode()
    connection = "" if keep_alive else "Connection: close\r\n"
    return (f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(raw)}\r\n"
            f"{connection}\r\n").encode() + raw
