"""What the suite keeps of each request: an Exchange (request, status, headers, raw body) as evidence.

`StreamExchange` adds the stream's raw SSE lines and its parse state. Both render themselves as
JSON-ready evidence (texts truncated to 64 KiB) and as a curl line that reproduces the request.

The client redacts only the configured API key in `request_headers`: `Authorization: Bearer <key>`
becomes `REDACTED` ("***"), and the key anywhere else becomes `KEY_MARKER`. The curl line expands
both from $CHATCONFORM_API_KEY; every other header value (a wrong token, an empty Bearer) is kept
literally, so the line sends exactly what was judged.

A request that got no complete HTTP response is an Exchange with status 0 and `transport_error`
saying why (reset, closed, timeout, deadline, size limit); `connection` says whether it went out on
a fresh or a reused (kept-alive) connection.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

EVIDENCE_LIMIT = 64 * 1024
REDACTED = "***"  # a whole `Authorization: Bearer <key>` value (conformance.config.REDACTED)
KEY_MARKER = "${CHATCONFORM_API_KEY}"  # the configured key inside any other header value
_UNREPRODUCED = ("content-length", "host", "accept-encoding", "connection", "user-agent")


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
    transport_error: str | None = None  # why no complete HTTP response came (status is then 0)
    connection: str | None = None  # "fresh" or "reused" (kept alive), when known

    @property
    def answered(self) -> bool:
        """True when a complete HTTP response came (whatever its status)."""
        return self.transport_error is None and self.status != 0

    @property
    def json(self) -> Any | None:
        """The parsed body, or None when it is not JSON."""
        try:
            return json.loads(self.body_text)
        except ValueError:
            return None

    @property
    def json_object(self) -> dict[str, Any]:
        """The parsed body when it is a JSON object, else {}: for reading the fields of an answer.

        A check that must judge whether the body is an object tests `json` itself (or uses `Target.ok`).
        """
        body = self.json
        return body if isinstance(body, dict) else {}

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
        } | self._transport_evidence()

    def _transport_evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {}
        if self.transport_error is not None:
            record["transport_error"] = self.transport_error
        if self.connection is not None:
            record["connection"] = self.connection
        return record

    def curl(self) -> str:
        """A curl command line that sends the request as it was sent (the API key as $CHATCONFORM_API_KEY)."""
        parts = ["curl", "-sS", "-X", self.method, shlex.quote(self.url)]
        for key, value in self.request_headers.items():
            if key.lower() in _UNREPRODUCED:
                continue
            parts += ["-H", header_argument(key, value)]
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


def header_argument(name: str, value: str) -> str:
    """A shell word for `-H`: the header as sent, the redacted key expanded from $CHATCONFORM_API_KEY."""
    if name.lower() == "authorization" and value == REDACTED:  # the whole `Bearer <key>` value was redacted
        return f'"{name}: Bearer $CHATCONFORM_API_KEY"'
    if KEY_MARKER not in value:
        return shlex.quote(f"{name}: {value}")
    # Inside double quotes only the variable may expand: escape what the shell would interpret.
    pieces = ["".join("\\" + c if c in '"$`\\' else c for c in piece)
              for piece in f"{name}: {value}".split(KEY_MARKER)]
    return '"' + KEY_MARKER.join(pieces) + '"'


def _truncate(text: str | None) -> str | None:
    if text is None or len(text) <= EVIDENCE_LIMIT:
        return text
    return text[:EVIDENCE_LIMIT] + f"... [truncated, {len(text)} characters in all]"


__all__ = ["EVIDENCE_LIMIT", "KEY_MARKER", "REDACTED", "Exchange", "StreamExchange", "header_argument"]
