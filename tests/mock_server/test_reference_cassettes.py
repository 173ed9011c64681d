"""Cassettes recorded from real servers (reports/reference/cassettes/): they replay byte for byte and lint as seen.

llama.cpp's llama-server 0.7.0 and the LiteLLM proxy 1.108.7 (in front of that llama-server) were recorded
through `chatconform serve --record`. Their quirks are the point: llama-server leaves `usage` out of its
chunks (a SHOULD: warnings only, lint is clean), LiteLLM's usage chunk carries a choice (a MUST broken).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import openai
import pytest

from conformance.cassette import Cassette, load_folder
from conformance.lint import lint, print_run
from mock_server.config import load_config
from mock_server.server import ServerThread

CASSETTES = Path(__file__).resolve().parents[2] / "reports" / "reference" / "cassettes"
LLAMA = CASSETTES / "llama-server-0.7.0"
LITELLM = CASSETTES / "litellm-1.108.7"


def replayer(folder: Path) -> ServerThread:
    """A replay server (not started) on `folder`, instant."""
    return ServerThread(load_config({"host": "127.0.0.1", "port": 0, "replay": str(folder), "replay_speed": "instant"},
                                    env={}))


def resend(base_url: str, recorded: Cassette) -> httpx.Response:
    """The recorded request sent again (its body as JSON, no credentials)."""
    return httpx.request(recorded.method, base_url + recorded.path, json=recorded.request_json, timeout=60)


@pytest.mark.parametrize("folder", [LLAMA, LITELLM], ids=lambda p: p.name)
def test_real_server_cassettes_replay_byte_for_byte(folder: Path) -> None:
    recorded = list(load_folder(folder))
    assert {c.streamed for c in recorded} == {True, False}
    with replayer(folder) as server:
        for cassette in recorded:
            again = resend(server.base_url, cassette)
            assert again.status_code == cassette.status, cassette.name
            assert again.content == cassette.response_bytes, cassette.name


def test_the_official_client_reads_the_replayed_llama_server() -> None:
    stream = next(c for c in load_folder(LLAMA) if c.streamed)
    body = stream.request_json
    with replayer(LLAMA) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
        chunks = list(client.chat.completions.create(**body))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    recorded = [json.loads(line[len("data: "):]) for line in stream.response_bytes.decode().splitlines()
                if line.startswith("data: {")]
    assert text == "".join(ch["choices"][0]["delta"].get("content") or "" for ch in recorded if ch["choices"])
    assert text and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_llama_server_lints_clean_with_its_usage_warning() -> None:
    run = lint([LLAMA])
    assert run.exit_code == 0, run.summary()
    assert {f.clause for item in run.linted for f in item.findings} == {"stream.usage.explicit-null"}
    assert all(f.verdict == "WARN" for item in run.linted for f in item.findings)
    assert run.summary()["judged"] == len(run.linted) == 5


def test_litellm_breaks_the_usage_chunk_rule_and_lint_says_so() -> None:
    run = lint([LITELLM])
    assert run.exit_code == 1
    failed = {(item.file.name, f.clause) for item in run.linted for f in item.findings if f.verdict == "FAIL"}
    assert failed == {("0003-post-chat-completions-deaa0270.json", "stream.usage.last-chunk")}
    out = io.StringIO()
    print_run(run, out)
    assert "FAIL stream.usage.last-chunk (MUST)" in out.getvalue()
    assert "[{'index': 0, 'delta': {}}]" in out.getvalue()  # the evidence: the choice the usage chunk carries
