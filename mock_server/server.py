"""Running the application: in the foreground (`chatconform serve`), or in a background thread (tests).

Both use aiohttp's AppRunner with handler cancellation on, so a client that disconnects cancels
its handler, which cancels its generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
import threading
from collections.abc import Callable

from aiohttp import web

from mock_server import log_redact
from mock_server.app import REQUEST_LOG_KEY, SLOT_KEY, create_app
from mock_server.appkeys import CONFIG_KEY
from mock_server.backend import Backend
from mock_server.config import ServerConfig
from mock_server.request_log import RequestLog
from mock_server.state import ModelSlot

ACCESS_LOG = logging.getLogger("mock_server.access")
ACCESS_FORMAT = '%a "%r" %s %b %Tfs'


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start listening; returns the runner and the bound port (port 0 picks a free one)."""
    # shutdown_timeout: on Ctrl-C, requests still running get this long, then they are cancelled
    # (a stream then ends with an error event saying so).
    # One line per request at level info, written when the answer ends (a stream's whole duration):
    # client, request line, status, bytes, seconds.
    # keepalive_timeout: aiohttp closes a connection that has not sent a whole request's headers
    # this long after it opened or after its previous answer (slowloris); the body has the same
    # bound in app.read_body.
    config = app[CONFIG_KEY]
    log_redact.install(config.api_key)
    # The recorder is the exception to handler cancellation: a client that closes as soon as it has read
    # `data: [DONE]` (the openai client does) must not cancel the writing of a cassette it has all the bytes of.
    # It notices a client that left mid-answer at its next write instead, and then records nothing.
    runner = web.AppRunner(app, handler_cancellation=not config.record, access_log=ACCESS_LOG, access_log_format=ACCESS_FORMAT,
                           shutdown_timeout=0.5, keepalive_timeout=config.read_timeout)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, sock.getsockname()[1]


async def serve_forever(config: ServerConfig, *, announce: Callable[[str], None] = print,
                        backend: Backend | None = None) -> None:
    """Serve until SIGINT/SIGTERM; prints the URL and the model at start and when the model is ready."""
    app = build_app(config, backend)
    runner, port = await start_site(app, config.host, config.port)
    host = f"[{config.host}]" if ":" in config.host else config.host
    slot = app.get(SLOT_KEY)
    if slot is None:  # record or replay: no model
        announce(f"chatconform mock server on http://{host}:{port} - {cassette_mode(config)}")
    else:
        announce(f"chatconform mock server on http://{host}:{port} - model {slot.model_id} "
                 f"({config.weights}{', loading' if not slot.ready else ''})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if slot is not None and not slot.ready:
            waiter = asyncio.create_task(_announce_ready(slot, announce))
            await stop.wait()
            waiter.cancel()
        else:
            await stop.wait()
    finally:
        announce("chatconform mock server: stopping")
        await runner.cleanup()


def build_app(config: ServerConfig, backend: Backend | None = None) -> web.Application:
    """The model server's application; with --record the recording proxy's, with --replay the replayer's (no model)."""
    if config.record is not None:
        from mock_server.recorder import create_record_app

        return create_record_app(config)
    if config.replay is not None:
        from mock_server.replayer import create_replay_app

        return create_replay_app(config)
    return create_app(config, backend)


def cassette_mode(config: ServerConfig) -> str:
    """The startup line's words for record or replay."""
    if config.record is not None:
        upstream = re.sub(r"//[^/@]*@", "//", config.upstream or "")  # no user:password on screen
        return f"recording {upstream} into {config.record}"
    return f"replaying {config.replay} (speed {config.replay_speed})"


async def _announce_ready(slot: ModelSlot, announce: Callable[[str], None]) -> None:
    while not slot.ready and slot.error is None:
        await asyncio.sleep(0.2)
    if slot.error is not None or slot.backend is None:
        announce(f"chatconform mock server: the model failed to load: {slot.error}")
    else:
        info = slot.backend.info
        announce(f"chatconform mock server: model {info.id} ready ({info.weights}, {info.provider}, "
                 f"context {info.context_length})")


class ServerThread:
    """A server on 127.0.0.1 and a free port, in a daemon thread with its own event loop."""

    def __init__(self, config: ServerConfig, backend: Backend | None = None) -> None:
        self.config = config
        self.backend = backend
        self.port = 0
        self.app: web.Application | None = None
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name="mock-server", daemon=True)

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://{self.config.host}:{self.port}"

    @property
    def requests(self) -> RequestLog:
        """The requests this server received (its config must have record_requests on)."""
        if self.app is None:
            raise RuntimeError("the mock server has not started")
        if REQUEST_LOG_KEY not in self.app:
            raise RuntimeError("this mock server does not record requests: start it with record_requests=True "
                               "(--record-requests)")
        return self.app[REQUEST_LOG_KEY]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.app = build_app(self.config, self.backend)
            self._runner, self.port = self._loop.run_until_complete(
                start_site(self.app, self.config.host, self.config.port))
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Start and wait until the socket listens."""
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the mock server did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def wait_ready(self, timeout: float) -> None:
        """Block until GET /health answers 200; raise when loading failed or took too long."""
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while True:
            slot = self.app[SLOT_KEY] if self.app is not None and SLOT_KEY in self.app else None
            if slot is not None and slot.error is not None:
                raise RuntimeError(f"the mock server's model failed to load: {slot.error}")
            try:
                if httpx.get(self.base_url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the mock server was not ready within {timeout} s")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and wait for the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
