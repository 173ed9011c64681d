"""Starting and stopping the two servers as child processes on 127.0.0.1 and free ports.

Each child runs in its own session with its output in a log file; it is ready when its ready path
answers 200 (ours: GET /health, 503 while loading; llama.cpp's: GET /v1/models, it has no /health),
polled within a bounded time. Stopping sends SIGTERM to the child's process group, then SIGKILL
after a grace period.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
OUR_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
PEER_PYTHON = REPO_ROOT / ".venv-peer" / "bin" / "python"
PEER_ALIAS = "SmolLM2-135M-Instruct.Q4_1"
POLL_S = 0.25


class ServerStartError(RuntimeError):
    """A server did not become ready; carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server."""

    name: str  # "ours" or "llama.cpp"
    command: list[str]
    port: int
    ready_path: str

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.port}"


def ours_spec(port: int, threads: int, max_queue: int, max_batch: int | None) -> ServerSpec:
    """Our mock: real SmolLM2 int4 graph on the CPU, `threads` intra-op threads."""
    command = [str(OUR_PYTHON), "-m", "mock_server", "--host", "127.0.0.1", "--port", str(port),
               "--model", "smollm2", "--weights", "int4", "--device", "cpu", "--threads", str(threads),
               "--max-queue", str(max_queue), "--log-level", "warning"]
    if max_batch is not None:
        command += ["--max-batch", str(max_batch)]
    return ServerSpec("ours", command, port, "/health")


def peer_spec(port: int, threads: int, gguf: Path, n_ctx: int = 4096) -> ServerSpec:
    """llama-cpp-python's OpenAI-compatible server on the same GGUF; queued requests wait, never interrupt."""
    command = [str(PEER_PYTHON), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", PEER_ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads),
               "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx), "--interrupt_requests", "False"]
    return ServerSpec("llama.cpp", command, port, "/v1/models")


def llama_server_spec(port: int, threads: int, command: str, slots: int = 16, ctx_per_slot: int = 1024) -> ServerSpec:
    """llama.cpp's C++ llama-server with `slots` parallel slots and continuous batching.

    command: how to start it, as a shell-quoted string; `{port}` in it is replaced by the port,
    else `--port PORT` is appended (e.g. a start script taking the port: "start.sh {port}").
    """
    words = shlex.split(command)
    if any("{port}" in w for w in words):
        words = [w.replace("{port}", str(port)) for w in words]
    else:
        words += ["--port", str(port)]
    words += ["-np", str(slots), "-cb", "-c", str(slots * ctx_per_slot), "-t", str(threads), "-tb", str(threads)]
    return ServerSpec("llama-server", words, port, "/health")


def child_env() -> dict[str, str]:
    """This environment without the CHATCONFORM_MOCK_<option> variables our server would read as flags
    (CHATCONFORM_CACHE and CHATCONFORM_GGUF, which locate the model, are kept)."""
    from mock_server.config import ENV_PREFIX, ServerConfig

    options = {ENV_PREFIX + f.name.upper() for f in fields(ServerConfig)}
    return {k: v for k, v in os.environ.items() if k not in options}


class ManagedServer:
    """A running server child; use as a context manager (stops on exit, even on errors)."""

    def __init__(self, spec: ServerSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None  # spawn -> ready

    def start(self, timeout_s: float) -> Self:
        """Spawn the child and wait until its ready path answers 200."""
        start = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.spec.command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            env=child_env(), start_new_session=True)
        deadline = start + timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise ServerStartError(f"{self.spec.name} exited with status {self.process.returncode} "
                                           f"before it was ready; log {self.log_path}:\n{self.log_tail()}")
                try:
                    if client.get(self.spec.base_url + self.spec.ready_path).status_code == 200:
                        self.startup_s = time.perf_counter() - start
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(POLL_S)
        self.stop()
        raise ServerStartError(f"{self.spec.name} was not ready within {timeout_s:g} s; "
                               f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the child's group, SIGKILL after `grace_s`; safe to call twice."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
