"""The requests the server received, for tests that check what an application sent.

On when the server runs with `--record-requests` (always for the pytest fixture). Every request
is recorded once, when its answer starts (before its headers are sent), so a test that holds an
answer, streamed or not, always finds its entry; a request whose client went away before any
answer is recorded with status 499. The log is a ring buffer of at most `max_entries` entries
and `max_bytes` bytes of bodies (the oldest go first), shared between the server's event loop and
the test's thread under a lock. Credentials never enter it: the values of `authorization` and the
other credential headers are redacted, keeping only the scheme (`Bearer ***`).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

MAX_ENTRIES = 1000
MAX_BYTES = 64 * 1024 * 1024  # of recorded bodies, all entries together
REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})
CHAT_SUFFIX = "/v1/chat/completions"
CLIENT_GONE = 499  # nginx's "client closed request": no answer was sent


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it, and how it was answered."""

    method: str
    path: str
    query: dict[str, str]  # a repeated name keeps its last value
    headers: dict[str, str]  # names lower case; credentials redacted
    body: Any  # the parsed JSON body; None when there was none or it was not JSON (see `text`)
    text: str | None  # the body as text when it was not JSON (undecodable bytes as U+FFFD), else None
    status: int  # the answer's HTTP status; 499 when the client went away before any answer
    streamed: bool  # the answer was an SSE stream (text/event-stream)
    timestamp: float  # unix seconds when the request arrived

    @property
    def user(self) -> str | None:
        """The chat request's `user` field (OpenAI's end-user id), when the body has one."""
        value = self.body.get("user") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None

    @property
    def is_chat(self) -> bool:
        """Whether this is a POST to a chat completions route."""
        return self.method == "POST" and self.path.endswith(CHAT_SUFFIX)

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object (GET /mock/requests)."""
        return asdict(self)


def redact(name: str, value: str) -> str:
    """A header value safe to record: credentials keep only their scheme."""
    if name.lower() not in REDACTED_HEADERS:
        return value
    scheme, space, token = value.strip().partition(" ")
    return f"{scheme} ***" if space and token.strip() else "***"


def decode_body(raw: bytes | None) -> tuple[Any, str | None]:
    """(parsed JSON, None), or (None, text) for a body that is not JSON, or (None, None) for no body."""
    if not raw:
        return None, None
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError):
        return None, raw.decode("utf-8", errors="replace")


def make_entry(*, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], raw: bytes | None,
               status: int, streamed: bool, timestamp: float) -> RecordedRequest:
    """An entry from what the server saw (a repeated header's values joined with ', ')."""
    merged: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    body, text = decode_body(raw)
    return RecordedRequest(method=method, path=path, query=dict(query),
                           headers={k: redact(k, v) for k, v in merged.items()}, body=body, text=text,
                           status=status, streamed=streamed, timestamp=timestamp)


class RequestLog:
    """The recorded requests, oldest first; thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        if max_entries < 1 or max_bytes < 0:
            raise ValueError(f"max_entries must be >= 1 and max_bytes >= 0, got {max_entries}, {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: deque[tuple[RecordedRequest, int]] = deque()  # (entry, its body size)
        self._bytes = 0
        self._lock = threading.Lock()

    def record(self, entry: RecordedRequest, body_bytes: int = 0) -> None:
        """Append an entry, dropping the oldest beyond the entry and byte bounds (server side)."""
        with self._lock:
            self._entries.append((entry, body_bytes))
            self._bytes += body_bytes
            while len(self._entries) > self.max_entries or (self._bytes > self.max_bytes and len(self._entries) > 1):
                _, size = self._entries.popleft()
                self._bytes -= size

    def all(self) -> list[RecordedRequest]:
        """Every recorded request, oldest first."""
        with self._lock:
            return [entry for entry, _ in self._entries]

    def last(self) -> RecordedRequest:
        """The most recent request; LookupError when none was recorded."""
        with self._lock:
            if not self._entries:
                raise LookupError("the mock server has recorded no request (since the log was last cleared)")
            return self._entries[-1][0]

    def chat(self) -> list[RecordedRequest]:
        """The chat completion requests (POST .../v1/chat/completions), oldest first."""
        return [entry for entry in self.all() if entry.is_chat]

    def chat_bodies(self) -> list[Any]:
        """The parsed JSON bodies of the chat completion requests, oldest first (None for a body that was not JSON)."""
        return [entry.body for entry in self.chat()]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.all())
