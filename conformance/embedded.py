"""The embedded target: the mock provider started as a subprocess (never imported) for one run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DEFAULT_MOCK_MODEL = "smollm2"
KEPT_ENV = ("CHATCONFORM_CACHE", "CHATCONFORM_GGUF")  # model locations the child must share
# Seconds the embedded mock reports itself as loading after start, so the loading clauses
# (503, estimated_time, x-wait-for-model) are observable even with a model that loads instantly.
# Long enough to outlast pytest's start on a busy machine: the suite's first request must still
# find the model loading.
DEFAULT_LOAD_DELAY = 5.0
# The embedded mock decodes up to EMBEDDED_MAX_BATCH sequences together and queues only what the run
# needs beyond them, so that the suite's burst (16 concurrent requests by default) overflows it and
# gets 429s: headers.retry-after.429 is then judged instead of skipped.
EMBEDDED_MAX_BATCH = 8
MAX_CHOICES_PER_REQUEST = 2  # the largest n the checks and the fuzzer (after clamping) send
# The model's preparation steps (download, verify, convert) print lines that start so in the child's
# log (reference_model.weights.PLAIN_PREFIX); start() relays them, so a first run is never silent.
MODEL_STEP_PREFIX = "chatconform model: "


def embedded_max_queue(concurrency: int) -> int:
    """The embedded mock's --max-queue: room for `concurrency` requests of n 2 beyond the batch, no more."""
    return max(0, MAX_CHOICES_PER_REQUEST * concurrency - EMBEDDED_MAX_BATCH)


class EmbeddedStartError(RuntimeError):
    """The embedded mock did not start: a suite-side error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedMock:
    """A running `python -m mock_server` child process and its base URL."""

    model: str = DEFAULT_MOCK_MODEL
    api_key: str | None = None
    load_delay: float = DEFAULT_LOAD_DELAY
    start_timeout: float = 600.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    max_batch: int = EMBEDDED_MAX_BATCH
    max_queue: int = 0

    @property
    def base_url(self) -> str:
        """The mock's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The child's command line."""
        cmd = [sys.executable, "-m", "mock_server", "--host", "127.0.0.1", "--port", str(self.port),
               "--model", self.model, "--load-delay", str(self.load_delay), "--log-level", "warning",
               "--max-batch", str(self.max_batch), "--max-queue", str(self.max_queue),
               "--strict-models"]  # unknown model ids get 404, so the suite can judge errors.model.unknown-route
        return cmd + self.extra_args  # the API key travels in the environment, not on a visible command line

    def start(self, on_step: Callable[[str], None] | None = None) -> str:
        """Start the child, wait until /health answers HTTP (any status), return the base URL.

        `on_step` receives each model preparation step the child logs meanwhile (prefix removed).
        """
        self.port = self.port or free_port()
        # The child reads CHATCONFORM_MOCK_* (a user's own `serve` settings): give it only the explicit
        # flags, and of the other variables only where the model lives (cache, GGUF).
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATCONFORM_") or k in KEPT_ENV}
        if self.api_key:
            env["CHATCONFORM_MOCK_API_KEY"] = self.api_key
        handle, name = tempfile.mkstemp(prefix="chatconform-mock-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(handle, "wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        relayed = 0  # bytes of the log already scanned for model steps
        while time.monotonic() < deadline:
            if on_step is not None:
                relayed = self._relay_steps(relayed, on_step)
            if self.process.poll() is not None:
                if on_step is not None:  # what it logged between the last look and its exit
                    self._relay_steps(relayed, on_step)
                raise EmbeddedStartError(
                    f"the embedded mock exited with status {self.process.returncode} before answering; "
                    f"log: {self.log_path}\n{self.log_tail()}")
            try:
                httpx.get(self.base_url + "/health", timeout=2.0)
                return self.base_url
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise EmbeddedStartError(f"the embedded mock did not answer within {self.start_timeout:g} s; log: {self.log_path}")

    def _relay_steps(self, offset: int, on_step: Callable[[str], None]) -> int:
        """Pass the complete model-step lines logged since `offset` to on_step; the new offset."""
        if self.log_path is None:
            return offset
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                data = log.read()
        except OSError:
            return offset
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.decode("utf-8", errors="replace").splitlines():
            if line.startswith(MODEL_STEP_PREFIX):
                on_step(line[len(MODEL_STEP_PREFIX):])
        return offset + len(complete)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the child: SIGTERM, then SIGKILL after 10 s. Safe to call twice."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the child and anything it spawned
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> EmbeddedMock:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
