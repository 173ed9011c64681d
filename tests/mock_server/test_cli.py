"""`chatconform serve` / `python -m mock_server`: flags, startup line, serving, clean Ctrl-C."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mock_server.cli import register
from mock_server.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_register_adds_serve_with_its_flags() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model", "tiny", "--port", "0", "--api-key", "k", "--error-style", "openai",
                              "--allow-remote-images", "--keepalive", "2.5", "--record-requests"])
    config = load_config(vars(args), env={"CHATCONFORM_MOCK_PORT": "1234", "CHATCONFORM_MOCK_WEIGHTS": "fp32",
                                          "CHATCONFORM_MOCK_KEEPALIVE": "0"})
    assert (config.model, config.port, config.api_key, config.error_style) == ("tiny", 0, "k", "openai")
    assert config.weights == "fp32" and config.allow_remote_images is True
    assert config.keepalive == 2.5 and config.record_requests is True
    defaults = load_config(vars(parser.parse_args(["serve"])), env={"CHATCONFORM_MOCK_KEEPALIVE": "0"})
    assert defaults.keepalive == 0.0 and defaults.record_requests is False
    assert args.func.__name__ == "run"


def test_bad_environment_value_exits_2() -> None:
    env = {**os.environ, "CHATCONFORM_MOCK_PORT": "not-a-port"}
    proc = subprocess.run([sys.executable, "-m", "mock_server", "--model", "tiny"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "CHATCONFORM_MOCK_PORT" in proc.stderr


def test_python_m_mock_server_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "CHATCONFORM_MOCK_API_KEY": "sekret"}
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "--model", "tiny", "--port", "0",
                             "--log-level", "warning"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert match and "chatconform/tiny-random" in first, first
        url = match.group(0)
        deadline = time.monotonic() + 600  # a hang guard: a loaded machine can take minutes
        while httpx.get(url + "/health", timeout=60).status_code != 200:
            assert time.monotonic() < deadline, "the tiny model did not load within 600 s"
            time.sleep(0.2)
        r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sekret"}, timeout=120,
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert r.status_code == 200
        assert httpx.get(url + "/v1/models", timeout=60).status_code == 401
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        assert "Traceback" not in out and "stopping" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
