"""The pytest plugin's fixture, used by a real pytest run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USER_TEST = '''
import httpx

def test_uses_the_server(chatconform_server):
    assert chatconform_server.startswith("http://127.0.0.1:")
    r = httpx.post(chatconform_server + "/v1/chat/completions", timeout=60,
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 200 and r.json()["model"] == "chatconform/tiny-random"

def test_same_server_for_the_session(chatconform_server):
    assert httpx.get(chatconform_server + "/health", timeout=10).status_code == 200
'''


def _installed_as_entry_point() -> bool:
    return any(ep.value == "mock_server.pytest_plugin" for ep in entry_points(group="pytest11"))


def test_fixture_yields_a_ready_server(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Once the pytest11 entry point is installed the plugin loads by itself; -p would load it twice.
    load = [] if _installed_as_entry_point() else ["-p", "mock_server.pytest_plugin"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", *load,
                           "-p", "no:cacheprovider", "--chatconform-model", "tiny", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
