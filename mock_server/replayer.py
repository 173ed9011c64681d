"""`chatconform serve --replay DIR`: answer from cassettes, offline (no model, no network).

Each request is normalised and matched (cassette_match.py); the cassettes recorded for it are played
in recording order, the last one again after that. A match is answered with the recorded status, the
recorded headers (less the transfer ones: this server sets its own length or chunking) and exactly
the recorded bytes (`Cassette.response_bytes`): a whole answer after its recorded time, a stream
frame by frame, each at its recorded time. `--replay-speed` scales the times: `recorded` (1), a factor
(2: twice as fast) or `instant` (no waits); `schedule` computes them. A request no cassette matches
gets 404 `cassette_not_found`, in the server's error envelope, naming the nearest cassette and the
fields that differ.
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

from aiohttp import web

from conformance.cassette import TRANSFER_HEADERS, Cassette, CassetteError
from mock_server.app import error_middleware, read_raw
from mock_server.appkeys import CONFIG_KEY, METRICS_KEY, check_auth
from mock_server.cassette_match import CassetteIndex, CassetteNotFound, body_of, normalise
from mock_server.config import ConfigError, ServerConfig
from mock_server.metrics import Metrics

log = logging.getLogger("mock_server.replayer")

INDEX_KEY = web.AppKey("cassettes", CassetteIndex)
SPEED_KEY = web.AppKey("replay_speed", float)
NO_BODY_STATUSES = frozenset({204, 304})


def speed_factor(speed: str) -> float:
    """`recorded` -> 1, `instant` -> infinity (no waits), a number -> itself (2: twice as fast)."""
    if speed == "recorded":
        return 1.0
    if speed == "instant":
        return math.inf
    factor = float(speed)
    if not (factor > 0 and not math.isnan(factor)):
        raise ValueError(f"a replay speed factor must be > 0, got {speed!r}")
    return factor


def schedule(cassette: Cassette, factor: float) -> list[float]:
    """Seconds after the request arrives at which each frame (a stream) or the whole body is sent.

    The recorded times divided by `factor`; all 0 when it is infinite (instant).
    """
    times = [frame.at for frame in cassette.frames] if cassette.frames else [cassette.elapsed_s]
    return [0.0 if math.isinf(factor) else at / factor for at in times]


def replay_headers(cassette: Cassette) -> list[tuple[str, str]]:
    """The recorded response headers less the transfer ones (length and chunking are this server's own)."""
    return [(k, v) for k, v in cassette.response_headers.items() if k.lower() not in TRANSFER_HEADERS]


async def answer(request: web.Request) -> web.StreamResponse:
    """Any method on any path: the matching cassette's answer, at its recorded pace; 404 naming the nearest if none."""
    loop = asyncio.get_running_loop()
    arrived = loop.time()
    check_auth(request)
    index = request.app[INDEX_KEY]
    body_json, body_text = body_of(await read_raw(request))
    wanted = normalise(request.method, request.rel_url.raw_path, request.rel_url.raw_query_string, body_json,
                       body_text, index.ignore)
    cassette = index.match(wanted)
    if cassette is None:
        raise CassetteNotFound(index.miss_message(wanted))
    log.debug("%s answered from %s", wanted.line, cassette.name)
    times = schedule(cassette, request.app[SPEED_KEY])
    if not cassette.frames:
        await _sleep_until(arrived + times[0])
        response = web.Response(status=cassette.status, headers=replay_headers(cassette))
        if cassette.body and cassette.status not in NO_BODY_STATUSES:
            response.body = cassette.body
        return response
    stream = web.StreamResponse(status=cassette.status, headers=replay_headers(cassette))
    await stream.prepare(request)
    try:
        for frame, at in zip(cassette.frames, times, strict=True):
            await _sleep_until(arrived + at)
            await stream.write(frame.data)
        await stream.write_eof()
    except ConnectionResetError:
        log.info("client of %s went away mid-stream", wanted.line)
    return stream


async def _sleep_until(when: float) -> None:
    delay = when - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


def load_index(folder: Path, ignore: tuple[str, ...]) -> CassetteIndex:
    """The folder's cassettes; ConfigError (naming --replay) when it is missing, empty or holds a bad cassette."""
    try:
        index = CassetteIndex.load(folder, ignore)
    except CassetteError as exc:
        raise ConfigError(f"--replay: {exc}") from None
    if not len(index):
        raise ConfigError(f"--replay: {folder} holds no cassettes (*.json): record some with --record {folder} "
                          f"--upstream URL")
    return index


def create_replay_app(config: ServerConfig) -> web.Application:
    """The replay server's application (config.replay set); the cassettes are read now."""
    if config.replay is None:
        raise ValueError("create_replay_app needs config.replay")
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = Metrics()
    app[INDEX_KEY] = load_index(Path(config.replay), config.match_ignore)
    app[SPEED_KEY] = speed_factor(config.replay_speed)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


__all__ = ["INDEX_KEY", "answer", "create_replay_app", "load_index", "replay_headers", "schedule", "speed_factor"]
