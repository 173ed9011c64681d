"""The pytest face of record and replay: the chatconform_cassettes fixture and its marker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import openai
import pytest

from conformance.cassette import load
from mock_server.backend import EngineBackend
from mock_server.pytest_plugin import cassette_folder
from mock_server.server import ServerThread
from tests.mock_server.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = Path(__file__).parent / "cassettes" / "test_cassette_fixture" / "test_replays_the_committed_cassettes"
MODEL = "chatconform/tiny-random"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
UPSTREAM_KEY = "sk-fixture-upstream-4242"

USER_TEST = '''
import httpx
import pytest

BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def test_chat(chatconform_cassettes):
    r = httpx.post(chatconform_cassettes + "/v1/chat/completions", json=BODY, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.chatconform_cassettes("shared")
def test_stream(chatconform_cassettes):
    r = httpx.post(chatconform_cassettes + "/v1/chat/completions", json={**BODY, "stream": True}, timeout=60)
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\\n\\n"), r.text
'''


def test_replays_the_committed_cassettes(chatconform_cassettes: str) -> None:
    cassettes = [load(p) for p in sorted(COMMITTED.glob("*.json"))]
    raw = httpx.post(chatconform_cassettes + "/v1/chat/completions", timeout=60,
                     json={"model": MODEL, "messages": MESSAGES, "max_tokens": 4})
    assert raw.content == cassettes[0].response_bytes
    oai = openai.OpenAI(base_url=chatconform_cassettes + "/v1", api_key="sk-anything", max_retries=0, timeout=60)
    whole = oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    assert whole.id == json.loads(cassettes[0].body)["id"] and whole.choices[0].finish_reason == "length"
    chunks = list(oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4,
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert {c.id for c in chunks} == {json.loads(cassettes[1].frames[0].data.decode()[len("data: "):])["id"]}


@pytest.mark.chatconform_cassettes("cassettes/test_cassette_fixture/test_replays_the_committed_cassettes",
                                   speed="recorded", match_ignore=["max_tokens"])
def test_the_marker_names_the_folder_speed_and_ignored_fields(chatconform_cassettes: str) -> None:
    r = httpx.post(chatconform_cassettes + "/v1/chat/completions", timeout=60,
                   json={"model": MODEL, "messages": MESSAGES, "max_tokens": 99})  # max_tokens is not matched
    assert r.content == load(min(COMMITTED.glob("*.json"))).response_bytes


def test_the_default_folder_is_beside_the_test_file() -> None:
    here = Path("/x/tests/test_app.py")
    assert cassette_folder(here, "test_chat[a b-1]") == Path("/x/tests/cassettes/test_app/test_chat_a_b-1")
    assert cassette_folder(here, "test_chat", "shared") == Path("/x/tests/shared")
    assert cassette_folder(here, "test_chat", "/abs") == Path("/abs")


@pytest.fixture(scope="module")
def keyed_upstream(tiny_backend: EngineBackend) -> Iterator[ServerThread]:
    with ServerThread(tiny_config(api_key=UPSTREAM_KEY), tiny_backend) as srv:
        yield srv


def _pytest(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CHATCONFORM_RECORD_UPSTREAM",
                                                               "CHATCONFORM_MOCK_UPSTREAM_KEY")}
    installed = any(ep.value == "mock_server.pytest_plugin" for ep in entry_points(group="pytest11"))
    load_plugin = [] if installed else ["-p", "mock_server.pytest_plugin"]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", *load_plugin, "-p", "no:cacheprovider", *args,
                           str(folder)], cwd=folder, env={**base, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=300, check=False)


def test_records_a_missing_folder_when_asked_then_replays_it(keyed_upstream: ServerThread, tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    missing = _pytest(tmp_path)
    assert missing.returncode == 1 and "2 errors" in missing.stdout, missing.stdout  # the fixture fails the setup
    assert "no cassettes in" in missing.stdout and "--chatconform-record" in missing.stdout

    recording = _pytest(tmp_path, "--chatconform-record", "--chatconform-upstream", keyed_upstream.base_url,
                        CHATCONFORM_MOCK_UPSTREAM_KEY=UPSTREAM_KEY)
    assert recording.returncode == 0 and "2 passed" in recording.stdout, recording.stdout + recording.stderr
    chat = sorted((tmp_path / "cassettes" / "test_user" / "test_chat").glob("*.json"))
    stream = sorted((tmp_path / "shared").glob("*.json"))
    assert [p.name[:27] for p in chat + stream] == ["0001-post-chat-completions-"] * 2
    assert load(stream[0]).streamed and not load(chat[0]).streamed
    assert not any(UPSTREAM_KEY in p.read_text() for p in chat + stream)

    replaying = _pytest(tmp_path)  # no upstream at all: offline
    assert replaying.returncode == 0 and "2 passed" in replaying.stdout, replaying.stdout
    once = _pytest(tmp_path, "--chatconform-record", CHATCONFORM_RECORD_UPSTREAM="http://127.0.0.1:9")
    assert once.returncode == 0 and "2 passed" in once.stdout, once.stdout  # folders there: replayed, not re-recorded
    assert sorted((tmp_path / "shared").glob("*.json")) == stream


def test_recording_needs_an_upstream(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    proc = _pytest(tmp_path, "--chatconform-record")
    assert proc.returncode == 1 and "--chatconform-record needs the upstream" in proc.stdout, proc.stdout
