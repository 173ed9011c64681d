"""The served model's lifecycle: loading (503, or wait with x-wait-for-model), ready, or failed.

The HTTP listener starts at once; the model loads in a background thread (or is handed in ready,
as tests do). `--load-delay` keeps the model reported as loading for at least that many seconds
after start, so clients can exercise the 503 / x-wait-for-model paths.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from mock_server.backend import REFERENCE_MODEL_ID, TINY_MODEL_ID, Backend
from mock_server.config import ServerConfig
from mock_server.errors import GenerationFailed, ModelLoading

log = logging.getLogger("mock_server.state")

# Rough load time of the reference model when it is already prepared (seconds), for estimated_time.
TYPICAL_LOAD_SECONDS = 10.0


def served_model_id(config: ServerConfig) -> str:
    """The id the server lists and answers with (known before the model loads)."""
    return TINY_MODEL_ID if config.model == "tiny" else REFERENCE_MODEL_ID


class ModelSlot:
    """Holds the backend once it is ready; answers 'ready?' and 'how long still?'."""

    def __init__(self, config: ServerConfig, backend: Backend | None = None) -> None:
        self.config = config
        self.model_id = backend.info.id if backend is not None else served_model_id(config)
        self.backend: Backend | None = backend
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.ready_at: float | None = None
        self._loaded = asyncio.Event()
        if backend is not None:
            self._loaded.set()

    def start_loading(self, load: Callable[[], Backend]) -> None:
        """Load the backend in a daemon thread; the event loop learns when it is done."""
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                backend = load()
            except BaseException as exc:  # reported by /health and every chat request
                log.exception("the model failed to load")
                loop.call_soon_threadsafe(self._set_failed, exc)
                return
            loop.call_soon_threadsafe(self._set_loaded, backend)

        threading.Thread(target=run, name="mock-model-load", daemon=True).start()

    def _set_loaded(self, backend: Backend) -> None:
        self.backend = backend
        self._loaded.set()

    def _set_failed(self, exc: BaseException) -> None:
        self.error = exc
        self._loaded.set()

    def remaining(self) -> float:
        """Seconds until the model is expected to be ready (0 when it is)."""
        delay_left = self.config.load_delay - (time.monotonic() - self.started)
        load_left = 0.0 if self._loaded.is_set() else max(1.0, TYPICAL_LOAD_SECONDS - (time.monotonic() - self.started))
        return max(0.0, delay_left, load_left)

    @property
    def ready(self) -> bool:
        """Whether chat requests can be served now."""
        return self.backend is not None and self.remaining() == 0.0

    def check_failed(self) -> None:
        """Raise when loading failed for good."""
        if self.error is not None:
            raise GenerationFailed(f"the model failed to load: {type(self.error).__name__}: {self.error}")

    def loading_error(self) -> ModelLoading:
        """The 503 of a loading model."""
        return ModelLoading(f"Model {self.model_id} is currently loading", estimated_time=round(self.remaining(), 1))

    async def get(self, wait: bool) -> Backend:
        """The ready backend; without `wait`, a 503 while loading; with it, wait until ready."""
        self.check_failed()
        if self.ready:
            assert self.backend is not None
            return self.backend
        if not wait:
            raise self.loading_error()
        await self._loaded.wait()
        self.check_failed()
        while self.remaining() > 0:  # the load delay outlasts the load itself
            await asyncio.sleep(min(self.remaining(), 0.5))
        assert self.backend is not None
        return self.backend
