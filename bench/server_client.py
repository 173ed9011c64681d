"""The bench's HTTP side (httpx, async): the request body, one stream, and N streams at once.

Every request has a total deadline (`asyncio.timeout`) on top of httpx's per-phase timeouts, so a
server that stalls or queues forever costs at most `timeout_s` per level. Proxies from the
environment are ignored (`trust_env=False`): the servers are on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.server_sse import StreamResult, TimedLine, failed, summarize
from bench.server_stats import LevelRun

CHAT_PATH = "/v1/chat/completions"
# Sent to both servers; only ours reads it (its cache never answers a streamed request anyway).
HEADERS = {"x-use-cache": "false"}
CONNECT_TIMEOUT_S = 10.0

# A short prompt (39 tokens with SmolLM2's default system turn) whose greedy answer is a long story,
# so both servers run to max_tokens.
MESSAGES: list[dict[str, str]] = [
    {"role": "user", "content": "Write a long story about a lighthouse keeper."},
]
# SmolLM2's default system turn (what its chat template adds when there is none), for --distinct-prompts.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def messages_for(request_index: int | None) -> list[dict[str, str]]:
    """MESSAGES, or with --distinct-prompts (request_index given) the same conversation whose system
    turn starts with `Request <index>.`, so no two prompts share more than their first 3 tokens
    (llama.cpp reuses the KV of the longest prefix shared with the previous request; ours does not)."""
    if request_index is None:
        return [dict(m) for m in MESSAGES]
    return [{"role": "system", "content": f"Request {request_index}. {DEFAULT_SYSTEM}"}, *MESSAGES]


def chat_body(model: str, max_tokens: int, messages: Sequence[dict[str, str]] = MESSAGES) -> dict[str, Any]:
    """The streamed, greedy request both servers get (only `model` differs: each server's own id)."""
    return {"model": model, "messages": list(messages), "temperature": 0, "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}}


def client_for(streams: int, timeout_s: float) -> httpx.AsyncClient:
    """A client with one connection per concurrent stream."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=streams, max_keepalive_connections=streams),
        timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S), trust_env=False)


async def one_stream(client: httpx.AsyncClient, url: str, body: dict[str, Any], timeout_s: float) -> StreamResult:
    """Send one streamed request and record every line with its read time."""
    lines: list[TimedLine] = []
    start = time.perf_counter()
    status = 0
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", url, json=body, headers=HEADERS) as response:
                status = response.status_code
                if status != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    return failed(status, f"HTTP {status}: {text[:200]}", time.perf_counter() - start)
                async for line in response.aiter_lines():
                    lines.append((time.perf_counter(), line))
    except TimeoutError:
        return failed(status, f"no complete answer within {timeout_s:g} s", time.perf_counter() - start)
    except httpx.HTTPError as exc:
        return failed(status, f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
    return summarize(lines, start=start, end=time.perf_counter(), status=status)


async def run_level(base_url: str, bodies: Sequence[dict[str, Any]], round_index: int, timeout_s: float) -> LevelRun:
    """One request per body, all sent at once; wall time from the first send to the last end."""
    async with client_for(len(bodies), timeout_s) as client:
        url = base_url + CHAT_PATH
        start = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, url, body, timeout_s) for body in bodies))
        wall = time.perf_counter() - start
    return LevelRun(streams=len(bodies), round=round_index, wall_s=wall, results=list(results))


async def fetch_model_id(base_url: str, timeout_s: float = 10.0) -> str:
    """The first model id the server lists at GET /v1/models."""
    async with client_for(1, timeout_s) as client:
        response = await client.get(base_url + "/v1/models")
        response.raise_for_status()
        return str(response.json()["data"][0]["id"])
