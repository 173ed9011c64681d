"""A mock server in a subprocess under a memory cap, on 127.0.0.1 and a free port, for abuse tests and bench/abuse.py.

The cap (RLIMIT_AS, set in the child before it starts) means a regression that makes one request
take unbounded memory fails that request, or the child, never the machine.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

# The tiny model's server settles at about 0.4 GiB of RSS, but onnxruntime and numpy reserve much
# more address space than they touch (thread arenas, mmaps): 4 GiB leaves room for that.
MEMORY_CAP_BYTES = 4 * 1024 ** 3
READY_POLLS = 600  # /health polls, 0.1 s apart, before giving up on a start


def _limits(open_files: int | None) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    return apply


class MockProcess:
    """`python -m mock_server --model tiny --port 0` in a child process; its URL read from its first line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, open_files: int | None = None) -> None:
        self.args: Sequence[str] = args
        self.open_files = open_files  # RLIMIT_NOFILE of the child; None: inherited
        self.env = {**os.environ, **(env or {})}
        # Open as long as the server runs (closed by stop()).
        self.log = tempfile.NamedTemporaryFile(prefix="abuse-server-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self) -> MockProcess:
        """Start the child and wait until /health answers 200."""
        command = [sys.executable, "-m", "mock_server", "--model", "tiny", "--host", "127.0.0.1", "--port", "0",
                   "--log-level", "warning", *self.args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, env=self.env,
                                     preexec_fn=_limits(self.open_files))  # noqa: PLW1509 (only setrlimit, before exec)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        match = re.search(r"http://[\d.]+:\d+", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"the mock server did not announce its URL: {line!r}; log: {self.log_text()[-2000:]}")
        self.base_url = match.group(0)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import time

        for _ in range(READY_POLLS):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the mock server exited: {self.log_text()[-2000:]}")
            try:
                if httpx.get(self.base_url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the mock server was not ready")

    @property
    def port(self) -> int:
        """The port the child listens on."""
        return int(self.base_url.rsplit(":", 1)[1])

    def rss_bytes(self) -> int:
        """The child's resident set size now."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def alive(self) -> bool:
        """Whether the child still runs."""
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """What the child wrote to stderr (its log)."""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        """Terminate the child and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    def __enter__(self) -> MockProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
