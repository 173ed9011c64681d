"""A raw HTTP server for client tests: answers every request with scripted bytes and pauses, and counts
how many requests it was answering at the same time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

Step = bytes | float  # bytes to send, or seconds to wait


@dataclass
class RawServer:
    """Serve one scripted answer (a list of byte strings and pauses) to each connection."""

    script: Sequence[Step]
    get_script: Sequence[Step] | None = None  # the answer to GET requests (default: the same script)
    received: list[bytes] = field(default_factory=list)
    max_active: int = 0  # the most requests being answered at the same time

    def __post_init__(self) -> None:
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
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(rest) < length:
                rest += conn.recv(65536)
            self.received.append(head + b"\r\n\r\n" + rest)
            script = self.get_script if head.startswith(b"GET ") and self.get_script is not None else self.script
            with self._count_lock:
                self._active += 1
                self.max_active = max(self.max_active, self._active)
            active = True
            try:
                for i, step in enumerate(script):
                    if isinstance(step, bytes):
                        if i == len(script) - 1:
                            # The request stops counting before its last bytes go out: a client
                            # may start its next request as soon as it has them.
                            active = self._leave()
                        conn.sendall(step)
                    else:
                        end = time.monotonic() + step
                        while time.monotonic() < end and not self._stop.is_set():
                            time.sleep(0.02)
            except OSError:
                return
            finally:
                if active:
                    self._leave()

    def _leave(self) -> bool:
        """One request fewer being answered; returns False (no longer active)."""
        with self._count_lock:
            self._active -= 1
        return False


def sse_head(extra: str = "") -> bytes:
    """Response head of an event stream without a length (the body ends when the connection closes)."""
    return (f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n{extra}\r\n").encode()


def json_answer(status: int, body: str, content_type: str = "application/json") -> bytes:
    """A complete response with a JSON (or other) body."""
    raw = body.encode()
    return (f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(raw)}\r\n"
            f"Connection: close\r\n\r\n").encode() + raw
