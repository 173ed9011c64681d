"""Cassettes: one recorded HTTP exchange per JSON file, a person can read and edit.

Written by `chatconform serve --record DIR --upstream URL`, served by `chatconform serve --replay DIR`,
judged offline by `chatconform lint DIR`. This module owns the format; it needs nothing beyond the
standard library, so the suite's light install reads cassettes too.

A cassette (format "chatconform.cassette/1"):

    {
      "format": "chatconform.cassette/1",
      "recorded": "2026-12-02T11:40:00Z",          # when the request went out (UTC)
      "upstream": "http://127.0.0.1:8081",          # where it went (no credentials)
      "request": {
        "method": "POST",
        "path": "/v1/chat/completions",
        "query": "",                                # the raw query string, "" when none
        "headers": {"content-type": "application/json", "authorization": "***"},
        "json": {"model": "...", "messages": [...]} # the body when it is JSON; else "text": "..."; neither: no body
      },
      "response": {
        "status": 200,
        "headers": {"content-type": "text/event-stream"},
        "body": "...",                              # a whole answer: its exact text
        "frames": [{"at": 0.0412, "text": "data: {...}\\n\\n"}, ...],
                                                    # a stream instead: each SSE event's exact text
                                                    # (blank line included) and the seconds since
                                                    # the request went out when its last byte came
        "elapsed_s": 0.52                           # request out to the answer's last byte
      }
    }

A response has either `body` or `frames`; the bytes replayed are exactly the body's UTF-8 bytes, or
the frames' joined in order (a body that is not UTF-8 is kept as `body_base64`, a frame as
`base64`). Secrets never reach a file: credential headers become "***", and any secret value the
recorder knows (the upstream key) is replaced by "***" wherever it appears.

Shapes: Cassette.frames is list[Frame]; Frame.at in seconds (float, non-decreasing).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.exchange import REDACTED, Exchange, StreamExchange
from conformance.sse import parse_sse

FORMAT = "chatconform.cassette/1"
SUFFIX = ".json"
# Request and response headers whose values are credentials: always stored as "***".
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie",
                            "set-cookie", "x-goog-api-key"})
# Hop-by-hop and transfer headers: they describe one connection, not the answer, so they are not kept
# (the stored body is the decoded one; replay sets its own length or chunking).
TRANSFER_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                              "content-encoding", "proxy-connection", "upgrade", "te", "trailer"})


class CassetteError(ValueError):
    """A cassette file that is not JSON or does not have the format's shape; the message names the file and field."""


@dataclass(frozen=True)
class Frame:
    """One SSE event as it was received: its exact bytes and when its last byte arrived (seconds)."""

    at: float
    data: bytes


@dataclass
class Cassette:
    """One recorded exchange. `frames` is non-empty for a streamed answer, else `body` holds the answer."""

    method: str
    path: str
    status: int
    query: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    request_json: Any = None  # the parsed request body (None when the body was not JSON or absent)
    request_text: str | None = None  # a request body that was not JSON
    response_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    frames: list[Frame] = field(default_factory=list)
    elapsed_s: float = 0.0
    recorded: str = ""
    upstream: str = ""
    source: Path | None = None  # the file it was read from, when it was

    @property
    def streamed(self) -> bool:
        """True when the answer was an SSE stream (recorded as frames)."""
        return bool(self.frames)

    @property
    def response_bytes(self) -> bytes:
        """The exact bytes of the answer's body: the body, or the frames joined in order."""
        return b"".join(frame.data for frame in self.frames) if self.frames else self.body

    @property
    def request_body_text(self) -> str | None:
        """The request body as text (JSON re-serialised compactly), or None when there was none."""
        if self.request_json is not None:
            return json.dumps(self.request_json, ensure_ascii=False)
        return self.request_text

    @property
    def name(self) -> str:
        """The file name when read from one, else the method and path."""
        return self.source.name if self.source is not None else f"{self.method} {self.path}"

    def header(self, name: str) -> str | None:
        """A response header by case-insensitive name."""
        wanted = name.lower()
        return next((value for key, value in self.response_headers.items() if key.lower() == wanted), None)

    def to_json(self) -> dict[str, Any]:
        """The cassette as the JSON object written to its file."""
        request: dict[str, Any] = {"method": self.method, "path": self.path, "query": self.query,
                                   "headers": dict(self.request_headers)}
        if self.request_json is not None:
            request["json"] = self.request_json
        elif self.request_text is not None:
            request["text"] = self.request_text
        response: dict[str, Any] = {"status": self.status, "headers": dict(self.response_headers)}
        if self.frames:
            response["frames"] = [{"at": round(frame.at, 6)} | _text_field(frame.data, "text", "base64")
                                  for frame in self.frames]
        else:
            response |= _text_field(self.body, "body", "body_base64")
        response["elapsed_s"] = round(self.elapsed_s, 6)
        return {"format": FORMAT, "recorded": self.recorded, "upstream": self.upstream,
                "request": request, "response": response}

    def to_exchange(self, base_url: str = "") -> Exchange:
        """The cassette as the suite's evidence: an Exchange, or a parsed StreamExchange for a stream.

        `base_url` prefixes the path in the exchange's URL (the upstream's when empty).
        """
        url = (base_url or self.upstream).rstrip("/") + self.path + (f"?{self.query}" if self.query else "")
        text = self.response_bytes.decode("utf-8", errors="replace")
        if not self.frames:
            return Exchange(self.method, url, dict(self.request_headers), self.request_body_text, self.status,
                            dict(self.response_headers), text, self.elapsed_s)
        parse = parse_sse(self.response_bytes)
        first = _first_event_at(self.frames)
        return StreamExchange(
            self.method, url, dict(self.request_headers), self.request_body_text, self.status,
            dict(self.response_headers), text, self.elapsed_s,
            raw_lines=parse.raw_lines, data=parse.data, chunks=parse.chunks, done=parse.done,
            after_done=parse.after_done, error_event=parse.error_event, first_event_s=first,
            framing_errors=parse.framing_errors, non_json_events=parse.non_json_events,
        )


def split_events(data: bytes) -> list[bytes]:
    """Cut SSE bytes after each blank line (LF, CRLF or CR line ends): the events, exactly; a tail without one last.

    Joining the pieces gives `data` back byte for byte.
    """
    pieces: list[bytes] = []
    start = 0
    for match in _EVENT_END.finditer(data):
        pieces.append(data[start:match.end()])
        start = match.end()
    if start < len(data):
        pieces.append(data[start:])
    return pieces


def redact_headers(headers: Iterable[tuple[str, str]], secrets: Iterable[str] = ()) -> dict[str, str]:
    """Headers as stored: credentials "***", transfer headers dropped, known secrets replaced; names lower-case."""
    kept: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in TRANSFER_HEADERS:
            continue
        kept[key] = REDACTED if key in SECRET_HEADERS else redact_text(value, secrets)
    return kept


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """The text with every secret value (at least 4 characters long) replaced by "***"."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def redact_bytes(data: bytes, secrets: Iterable[str]) -> bytes:
    """As redact_text, on bytes."""
    for secret in secrets:
        if len(secret) >= 4:
            data = data.replace(secret.encode(), REDACTED.encode())
    return data


def from_json(doc: Any, source: Path | None = None) -> Cassette:
    """A Cassette from its JSON object; CassetteError names the file and the field that is wrong."""
    where = str(source) if source is not None else "cassette"
    if not isinstance(doc, dict):
        raise CassetteError(f"{where}: a cassette is a JSON object")
    if doc.get("format") != FORMAT:
        raise CassetteError(f"{where}: format must be {FORMAT!r}, got {doc.get('format')!r}")
    request = _object(doc, "request", where)
    response = _object(doc, "response", where)
    method = _string(request, "method", where, "request.")
    path = _string(request, "path", where, "request.")
    if not path.startswith("/"):
        raise CassetteError(f"{where}: request.path must start with '/', got {path!r}")
    status = response.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise CassetteError(f"{where}: response.status must be an HTTP status (100-599), got {status!r}")
    cassette = Cassette(
        method=method.upper(), path=path, status=status, query=str(request.get("query") or ""),
        request_headers=_headers(request, where, "request."), request_json=request.get("json"),
        request_text=request.get("text") if isinstance(request.get("text"), str) else None,
        response_headers=_headers(response, where, "response."),
        elapsed_s=float(response.get("elapsed_s") or 0.0), recorded=str(doc.get("recorded") or ""),
        upstream=str(doc.get("upstream") or ""), source=source,
    )
    if "frames" in response:
        cassette.frames = _frames(response["frames"], where)
    else:
        cassette.body = _bytes_field(response, "body", "body_base64", where, "response.")
    return cassette


def load(path: Path) -> Cassette:
    """Read one cassette file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CassetteError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise CassetteError(f"{path}: not JSON: {exc}") from None
    return from_json(doc, path)


def files(folder: Path) -> list[Path]:
    """The cassette files of a folder (and its subfolders), in name order: the order they were recorded."""
    return sorted(p for p in folder.rglob(f"*{SUFFIX}") if p.is_file())


def load_folder(folder: Path) -> Iterator[Cassette]:
    """Every cassette of a folder, in recording order (CassetteError at the first bad file)."""
    for path in files(folder):
        yield load(path)


def save(cassette: Cassette, path: Path) -> Path:
    """Write a cassette (indented, UTF-8, keys in the format's order); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(cassette.to_json(), ensure_ascii=False, indent=2) + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a cassette
    return path


_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


def _first_event_at(frames: list[Frame]) -> float | None:
    for frame in frames:
        if any(line.startswith(b"data:") for line in frame.data.splitlines()):
            return frame.at
    return None


def _text_field(data: bytes, text_key: str, base64_key: str) -> dict[str, str]:
    try:
        return {text_key: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {base64_key: base64.b64encode(data).decode("ascii")}


def _bytes_field(doc: dict[str, Any], text_key: str, base64_key: str, where: str, prefix: str) -> bytes:
    if base64_key in doc:
        try:
            return base64.b64decode(str(doc[base64_key]), validate=True)
        except (binascii.Error, ValueError):
            raise CassetteError(f"{where}: {prefix}{base64_key} is not base64") from None
    value = doc.get(text_key, "")
    if not isinstance(value, str):
        raise CassetteError(f"{where}: {prefix}{text_key} must be a string, got {type(value).__name__}")
    return value.encode("utf-8")


def _frames(value: Any, where: str) -> list[Frame]:
    if not isinstance(value, list) or not value:
        raise CassetteError(f"{where}: response.frames must be a non-empty list")
    frames: list[Frame] = []
    last = 0.0
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise CassetteError(f"{where}: response.frames[{i}] must be an object")
        at = item.get("at", last)
        if not isinstance(at, (int, float)) or isinstance(at, bool) or at < 0:
            raise CassetteError(f"{where}: response.frames[{i}].at must be seconds >= 0, got {at!r}")
        frames.append(Frame(max(float(at), last), _bytes_field(item, "text", "base64", where,
                                                               f"response.frames[{i}].")))
        last = frames[-1].at
    return frames


def _object(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise CassetteError(f"{where}: {key} must be an object")
    return value


def _string(doc: dict[str, Any], key: str, where: str, prefix: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise CassetteError(f"{where}: {prefix}{key} must be a non-empty string, got {value!r}")
    return value


def _headers(doc: dict[str, Any], where: str, prefix: str) -> dict[str, str]:
    value = doc.get("headers") or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise CassetteError(f"{where}: {prefix}headers must be an object of strings")
    return {str(k).lower(): v for k, v in value.items()}


__all__ = ["FORMAT", "Cassette", "CassetteError", "Frame", "files", "from_json", "load", "load_folder",
           "redact_bytes", "redact_headers", "redact_text", "save", "split_events"]
