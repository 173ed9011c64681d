"""The pytest plugin's fixtures, used by a real pytest run in a subprocess."""

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
    assert httpx.get(chatconform_server + "/health", timeout=60).status_code == 200

def test_reads_what_the_server_received(chatconform_server, chatconform_requests):
    assert len(chatconform_requests) == 0  # the tests before sent requests: cleared for this one
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}
    r = httpx.post(chatconform_server + "/v1/chat/completions", json=body, timeout=60,
                   headers={"Authorization": "Bearer sk-my-app"})
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\\n\\n")
    last = chatconform_requests.last()
    assert (last.method, last.path, last.status, last.streamed) == ("POST", "/v1/chat/completions", 200, True)
    assert last.headers["authorization"] == "Bearer ***"
    assert chatconform_requests.chat_bodies() == [body]

def test_the_log_is_cleared_between_tests(chatconform_requests):
    assert chatconform_requests.all() == []

def test_the_providers_snippet_runs_unchanged(chatconform_providers, chatconform_requests):
    import os
    from huggingface_hub import InferenceClient

    client = InferenceClient(provider="cerebras", api_key=os.environ["HF_TOKEN"])
    completion = client.chat.completions.create(
        model="meta-llama/Llama-3.3-70B-Instruct",
        messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=4)
    assert completion.model == "meta-llama/Llama-3.3-70B-Instruct"
    assert chatconform_requests.last().path == "/cerebras/v1/chat/completions"
'''


def _installed_as_entry_point() -> bool:
    return any(ep.value == "mock_server.pytest_plugin" for ep in entry_points(group="pytest11"))


def test_fixtures_yield_a_ready_server_and_its_requests(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Once the pytest11 entry point is installed the plugin loads by itself; -p would load it twice.
    load = [] if _installed_as_entry_point() else ["-p", "mock_server.pytest_plugin"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", *load,
                           "-p", "no:cacheprovider", "--chatconform-mock-model", "tiny", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout
