"""A strict Server-Sent Events reader: bytes in, lines and events out, framing errors recorded.

The parser is incremental (feed bytes as they arrive) so the client can keep a stall timeout on
the socket while reading. Lines end with LF, CRLF or a lone CR (the SSE grammar allows all three);
a CR at the end of one chunk may be the first half of a CRLF split across reads, so it is held
until the next byte decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Field names the SSE grammar defines besides `data`; lines with them are legal but carry no data.
_OTHER_FIELDS = ("event", "id", "retry")
DONE = "[DONE]"


@dataclass
class SseParse:
    """What a stream's bytes contained: every line, every data event, and what was wrong."""

    raw_lines: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    chunks: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    after_done: list[str] = field(default_factory=list)
    error_event: dict[str, Any] | None = None
    framing_errors: list[str] = field(default_factory=list)
    non_json_events: list[str] = field(default_factory=list)


class SseParser:
    """Feed raw bytes; lines are split, decoded and assembled into events per the SSE grammar."""

    def __init__(self) -> None:
        self.result = SseParse()
        self._buffer = b""
        self._pending: list[str] | None = None  # data lines of the event being assembled
        self._line_no = 0

    def feed(self, data: bytes) -> int:
        """Consume bytes; return the number of data events completed by them."""
        before = len(self.result.data)
        self._buffer += data
        while True:
            cut, width = _line_end(self._buffer)
            if cut < 0:
                break
            line, self._buffer = self._buffer[:cut], self._buffer[cut + width:]
            self._line(line)
        return len(self.result.data) - before

    def close(self) -> SseParse:
        """End of stream: a trailing partial line or an event without its blank line is a framing error."""
        if self._buffer.endswith(b"\r"):
            self._buffer = self._buffer[:-1]
            self._line(self._buffer)
            self._buffer = b""
        if self._buffer:
            self._line(self._buffer)
            self.result.framing_errors.append(
                f"line {self._line_no}: stream ended inside a line (no line terminator)"
            )
            self._buffer = b""
        if self._pending is not None:
            self.result.framing_errors.append(
                f"line {self._line_no}: stream ended before the blank line that ends the last event"
            )
            self._dispatch()
        return self.result

    def _line(self, raw: bytes) -> None:
        self._line_no += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.decode("utf-8", errors="replace")
            self.result.framing_errors.append(f"line {self._line_no}: not UTF-8 ({exc.reason})")
        self.result.raw_lines.append(line)
        if self.result.done and line.strip():
            self.result.after_done.append(line)
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            return  # comment, e.g. a keep-alive
        name, colon, value = line.partition(":")
        if not colon:
            self.result.framing_errors.append(f"line {self._line_no}: no field name and colon: {line[:200]!r}")
            return
        value = value.removeprefix(" ")
        if name == "data":
            if self._pending is None:
                self._pending = []
            self._pending.append(value)
        elif name not in _OTHER_FIELDS:
            self.result.framing_errors.append(
                f"line {self._line_no}: unknown field {name!r} (expected data, event, id, retry or a ':' comment)"
            )

    def _dispatch(self) -> None:
        if self._pending is None:
            return
        payload = "\n".join(self._pending)
        self._pending = None
        result = self.result
        result.data.append(payload)
        if result.done:
            return  # after [DONE]: recorded in after_done already
        if payload.strip() == DONE:
            result.done = True
            return
        try:
            value = json.loads(payload)
        except ValueError:
            result.non_json_events.append(payload)
            return
        if isinstance(value, dict) and "error" in value and "choices" not in value:
            if result.error_event is None:
                result.error_event = value
            return
        if isinstance(value, dict):
            result.chunks.append(value)
        else:
            result.non_json_events.append(payload)


def _line_end(buffer: bytes) -> tuple[int, int]:
    """Index and width of the first line terminator; (-1, 0) if none is certain yet."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr < 0 or (0 <= lf < cr):
        return (lf, 1) if lf >= 0 else (-1, 0)
    # CR first: CRLF, or a lone CR; a CR as the last byte must wait for the next one.
    if cr + 1 < len(buffer):
        return (cr, 2) if buffer[cr + 1:cr + 2] == b"\n" else (cr, 1)
    return (-1, 0)


def parse_sse(data: bytes) -> SseParse:
    """Parse a complete SSE body at once."""
    parser = SseParser()
    parser.feed(data)
    return parser.close()
