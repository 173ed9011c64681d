"""/metrics reports the prefix cache: a second request sharing a long prompt prefix counts as a hit."""

from __future__ import annotations

import httpx

from tests.mock_server.conftest import chat_body


def _metrics(client: httpx.Client) -> dict[str, float]:
    lines = client.get("/metrics").text.splitlines()
    return {name: float(value) for name, value in
            (line.split() for line in lines if line.startswith("chatconform_prefix_cache"))}


def test_shared_prefix_is_reused_and_reported(client: httpx.Client) -> None:
    history = [{"role": "user", "content": "prefix metrics " + "alpha beta gamma delta " * 40}]
    before = _metrics(client)
    for follow_up in ("one", "two"):
        messages = [*history, {"role": "assistant", "content": "ok"}, {"role": "user", "content": follow_up}]
        r = client.post("/v1/chat/completions", json=chat_body(max_tokens=1, messages=messages),
                        headers={"x-use-cache": "false"})
        assert r.status_code == 200
    after = _metrics(client)
    assert after["chatconform_prefix_cache_lookups_total"] - before["chatconform_prefix_cache_lookups_total"] == 2
    assert after["chatconform_prefix_cache_hits_total"] - before["chatconform_prefix_cache_hits_total"] >= 1
    reused = after["chatconform_prefix_cache_reused_tokens_total"] - before["chatconform_prefix_cache_reused_tokens_total"]
    assert reused >= 128  # the history is ~170 tokens; whole 32-token blocks are reused
    assert 0 < after["chatconform_prefix_cache_hit_rate"] <= 1
    assert 0 < after["chatconform_prefix_cache_token_hit_rate"] <= 1
    assert after["chatconform_prefix_cache_bytes"] > 0
