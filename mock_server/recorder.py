"""`chatconform serve --record DIR --upstream URL`: a proxy that relays every exchange and writes it as a cassette.

Every request, on any path, is forwarded to the upstream (`upstream_url` joins the path to the base)
with `Authorization: Bearer <upstream key>` when one is configured, else with the client's own
Authorization. The answer is relayed as it arrives: the status, the headers (less the transfer
ones) and each chunk of the body as soon as it comes, so a stream reaches the client event by event.
Meanwhile the exchange is kept: a stream (text/event-stream) as its SSE events with the time each
one's last byte came, any other answer as its body. When the answer ends, one cassette is written
(conformance/cassette.py) named in arrival order: `0001-post-chat-completions-<8 hex>.json`, the hex
being the normalised request's (cassette_match.py). The upstream key and the client's bearer token
never reach a file. An exchange the client abandons before the end is not written; an upstream that
breaks off mid-answer is (the client got the same truncated answer). An upstream that cannot be
reached gets 502 naming it. No model is loaded.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from yarl import URL

from conformance.cassette import (
    SUFFIX,
    TRANSFER_HEADERS,
    Cassette,
    Frame,
    redact_bytes,
    redact_headers,
    redact_text,
    save,
    split_events,
)
from mock_server.app import error_middleware, read_raw
from mock_server.appkeys import CONFIG_KEY, METRICS_KEY, check_auth
from mock_server.cassette_match import body_of, normalise
from mock_server.config import ServerConfig
from mock_server.errors import ApiError
from mock_server.metrics import Metrics

log = logging.getLogger("mock_server.recorder")

CONNECT_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 600.0  # the longest silence of an upstream mid-answer (a long generation's first token)
# Request headers not forwarded: they describe the client's connection to the recorder, not the request.
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
                         "upgrade", "proxy-connection", "proxy-authorization", "accept-encoding", "expect"})
_EVENT_ENDS = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)\Z")  # as cassette.split_events cuts


class UpstreamUnreachable(ApiError):
    """The upstream could not be reached, or did not answer (502); names it."""

    status, error_type, openai_type, code = 502, "upstream", "server_error", "upstream_unreachable"


@dataclass
class Recording:
    """Where the cassettes go, where requests go, and the exchanges in flight (numbered in arrival order)."""

    folder: Path
    upstream: str  # the base URL as configured (may hold credentials: never written)
    key: str | None
    next_number: int = 1
    pending: int = 0  # exchanges whose cassette is not written yet

    @property
    def public_upstream(self) -> str:
        """The base URL without any user:password part (what a cassette names)."""
        parts = urlsplit(self.upstream)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def take_number(self) -> int:
        """The next cassette number (the event loop runs one handler at a time: no two get the same)."""
        number = self.next_number
        self.next_number += 1
        return number


RECORDING_KEY = web.AppKey("recording", Recording)
SESSION_KEY = web.AppKey("upstream_session", aiohttp.ClientSession)


def upstream_url(base: str, path: str) -> str:
    """The upstream URL of a request path: the base, then the path less the segments the base already ends with.

    upstream_url("https://router.huggingface.co/v1", "/v1/chat/completions") ->
    "https://router.huggingface.co/v1/chat/completions"; on "http://h:1" the path is kept whole; on
    "https://h/v1" the path "/chat/completions" gives "https://h/v1/chat/completions".
    """
    parts = urlsplit(base)
    stem = [s for s in parts.path.split("/") if s]
    segments = path.split("/")[1:]
    overlap = next((k for k in range(min(len(stem), len(segments)), 0, -1) if stem[-k:] == segments[:k]), 0)
    rest = segments[overlap:]
    joined = "/" + "/".join(stem) if stem else ""
    if rest:
        joined += "/" + "/".join(rest)
    return urlunsplit((parts.scheme, parts.netloc, joined or "/", "", ""))


def next_number(folder: Path) -> int:
    """One more than the highest cassette number in `folder` (1 when none): a new recording adds to an old one."""
    numbers = [int(m.group(1)) for p in folder.glob(f"*{SUFFIX}") if (m := re.match(r"(\d+)-", p.name))]
    return max(numbers, default=0) + 1


def cassette_name(number: int, method: str, path: str, digest: str) -> str:
    """`0001-post-chat-completions-1a2b3c4d.json`: number, method, the path's words (less `v1`), request digest."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path) if w and w.lower() != "v1"]
    slug = "-".join(words).lower()[:60].strip("-") or "root"
    return f"{number:04d}-{method.lower()}-{slug}-{digest}{SUFFIX}"


class FrameSplitter:
    """Cuts SSE bytes, as they arrive in chunks, into whole events, each stamped with its arrival time."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes, at: float) -> list[Frame]:
        """The events completed by `data` (an event's end is sure only once a CR is known not to start a CRLF)."""
        self._tail += data
        pieces = split_events(self._tail)
        if pieces and not (_EVENT_ENDS.search(pieces[-1]) and not self._tail.endswith(b"\r")):
            self._tail = pieces.pop()  # an event still arriving
        else:
            self._tail = b""
        return [Frame(at, piece) for piece in pieces]

    def close(self, at: float) -> list[Frame]:
        """Whatever is left when the stream ends (an event without its blank line), as one last frame."""
        tail, self._tail = self._tail, b""
        return [Frame(at, tail)] if tail else []


def forward_headers(headers: Iterable[tuple[str, str]], key: str | None) -> list[tuple[str, str]]:
    """The client's headers as sent upstream: hop-by-hop ones dropped, Authorization the upstream key's when given."""
    out = [(name, value) for name, value in headers
           if name.lower() not in HOP_HEADERS and not (key is not None and name.lower() == "authorization")]
    if key is not None:
        out.append(("Authorization", f"Bearer {key}"))
    out.append(("Accept-Encoding", "identity"))  # the answer's bytes as they are, for the client and the cassette
    return out


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def relay(request: web.Request) -> web.StreamResponse:
    """Any method on any path: forward, relay as it arrives, then write the cassette."""
    check_auth(request)
    recording = request.app[RECORDING_KEY]
    number = recording.take_number()
    recording.pending += 1
    try:
        return await _relay(request, recording, number)
    finally:
        recording.pending -= 1


async def _relay(request: web.Request, recording: Recording, number: int) -> web.StreamResponse:
    raw = await read_raw(request)
    secrets = [s for s in (recording.key, bearer_token(request.headers)) if s]
    path, query = request.rel_url.raw_path, request.rel_url.raw_query_string
    url = upstream_url(recording.upstream, path) + (f"?{query}" if query else "")
    recorded = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.monotonic()
    session = request.app[SESSION_KEY]
    try:
        upstream = await session.request(request.method, URL(url, encoded=True), data=raw or None,
                                         headers=forward_headers(request.headers.items(), recording.key),
                                         allow_redirects=False, skip_auto_headers=("User-Agent", "Content-Type"))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise UpstreamUnreachable(f"the upstream {recording.public_upstream} did not answer "
                                  f"{request.method} {path}: {type(exc).__name__}: {exc}") from None
    async with upstream:
        streamed = upstream.content_type == "text/event-stream"
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=[(k, v) for k, v in upstream.headers.items()
                                               if k.lower() not in TRANSFER_HEADERS])
        if upstream.content_length is not None and "Content-Encoding" not in upstream.headers:
            response.content_length = upstream.content_length
        await response.prepare(request)
        body, splitter = bytearray(), FrameSplitter()
        frames: list[Frame] = []
        at = time.monotonic() - started
        chunks = upstream.content.iter_any()
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except (aiohttp.ClientError, TimeoutError) as exc:  # the upstream broke off: the client got as much
                log.warning("upstream %s broke off %s %s: %s", recording.public_upstream, request.method, path, exc)
                break
            at = time.monotonic() - started
            try:
                await response.write(chunk)
            except ConnectionResetError:  # the client went away: the exchange is not whole, nothing is written
                log.info("client of %s %s went away; not recorded", request.method, path)
                return response
            if streamed:
                frames += splitter.feed(chunk, at)
            else:
                body += chunk
        frames += splitter.close(at)
        elapsed = time.monotonic() - started
    request_json, request_text = body_of(raw)
    cassette = Cassette(
        method=request.method, path=redact_text(path, secrets), query=redact_text(query, secrets),
        status=upstream.status, request_headers=redact_headers(request.headers.items(), secrets),
        request_json=_redact_json(request_json, secrets),
        request_text=None if request_text is None else redact_text(request_text, secrets),
        response_headers=redact_headers(upstream.headers.items(), secrets),
        body=redact_bytes(bytes(body), secrets), frames=[Frame(f.at, redact_bytes(f.data, secrets)) for f in frames],
        elapsed_s=elapsed, recorded=recorded, upstream=recording.public_upstream)
    digest = normalise(request.method, path, query, request_json, request_text).digest
    save(cassette, recording.folder / cassette_name(number, request.method, path, digest))
    with contextlib.suppress(ConnectionResetError):  # the client has every byte; its closing early is its own
        await response.write_eof()
    return response


def _redact_json(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list):
        return [_redact_json(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: _redact_json(item, secrets) for key, item in value.items()}
    return value


def create_record_app(config: ServerConfig) -> web.Application:
    """The recording proxy's application (config.record and config.upstream set)."""
    if config.record is None or config.upstream is None:
        raise ValueError("create_record_app needs config.record and config.upstream")
    folder = Path(config.record)
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = Metrics()
    app[RECORDING_KEY] = Recording(folder, config.upstream, config.upstream_key, next_number(folder))
    app.router.add_route("*", "/{tail:.*}", relay)

    async def open_session(app: web.Application) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
        app[SESSION_KEY] = aiohttp.ClientSession(timeout=timeout, auto_decompress=True)

    async def close_session(app: web.Application) -> None:
        await app[SESSION_KEY].close()

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app


__all__ = ["RECORDING_KEY", "FrameSplitter", "Recording", "UpstreamUnreachable", "cassette_name", "create_record_app",
           "forward_headers", "upstream_url"]
