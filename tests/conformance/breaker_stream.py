"""Stream transforms of the breakers: each breaks one rule of the SSE stream of chat completions."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tests.conformance.breaker_hooks import choices, tool_calls
from tests.conformance.breaking_proxy import Call, Reply, ReplyHook


def no_role_first(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks whose first delta per choice lacks role."""
    seen: set[int] = set()
    for chunk in chunks:
        for choice in choices(chunk):
            if choice.get("index") not in seen:
                seen.add(choice.get("index"))
                (choice.get("delta") or {}).pop("role", None)
    return chunks


def finish_chunk_index(chunks: list[dict[str, Any]]) -> int | None:
    """Index of the first chunk carrying a finish_reason, or None."""
    return next((i for i, c in enumerate(chunks) if any(ch.get("finish_reason") for ch in choices(c))), None)


def double_finish(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks with the finish chunk repeated."""
    i = finish_chunk_index(chunks)
    return chunks if i is None else chunks[:i + 1] + [copy.deepcopy(chunks[i])] + chunks[i + 1:]


def content_after_finish(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks with the finish chunk moved before the last content chunk."""
    # the finish chunk swaps places with the content chunk before it: content then follows the finish
    i = finish_chunk_index(chunks)
    if i is None or i < 2:
        return chunks
    chunks[i - 1], chunks[i] = chunks[i], chunks[i - 1]
    return chunks


def usage_chunk_index(chunks: list[dict[str, Any]]) -> int | None:
    """Index of the chunk carrying a usage object, or None."""
    return next((i for i, c in enumerate(chunks) if isinstance(c.get("usage"), dict)), None)


def add_usage_chunk(req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks plus a usage chunk when the request did not ask for one."""
    if (req.get("stream_options") or {}).get("include_usage") is True or not chunks:
        return chunks
    completion = sum(1 for c in chunks for ch in choices(c) if (ch.get("delta") or {}).get("content"))
    usage = {"prompt_tokens": 10, "completion_tokens": completion, "total_tokens": 10 + completion}
    return chunks + [{**chunks[-1], "choices": [], "usage": usage}]


def usage_not_last(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks with the usage chunk moved to second place."""
    i = usage_chunk_index(chunks)
    if i is None or i == 0:
        return chunks
    return [chunks[0], chunks[i]] + chunks[1:i] + chunks[i + 1:]


def usage_everywhere(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks that all carry the usage object."""
    i = usage_chunk_index(chunks)
    if i is not None:
        for chunk in chunks:
            chunk["usage"] = dict(chunks[i]["usage"])
    return chunks


def usage_key_absent(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks without the usage key where it was null."""
    for chunk in chunks:
        if chunk.get("usage") is None:
            chunk.pop("usage", None)
    return chunks


def usage_plus_one(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks whose usage counts one completion token more."""
    i = usage_chunk_index(chunks)
    if i is not None:
        usage = chunks[i]["usage"]
        usage["completion_tokens"] += 1
        usage["total_tokens"] += 1
    return chunks


def numbered(fn: Callable[[int, dict[str, Any]], None]) -> Callable[[dict[str, Any], list[dict[str, Any]]], list[dict[str, Any]]]:
    """A chunks rewrite that calls fn(position, chunk) on each chunk in place."""
    def apply(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, chunk in enumerate(chunks):
            fn(i, chunk)
        return chunks
    return apply


def first_content(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any], list[dict[str, Any]]], list[dict[str, Any]]]:
    """Apply `fn` to the delta of the first chunk with non-empty content."""
    def apply(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for chunk in chunks:
            for choice in choices(chunk):
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    fn(delta)
                    return chunks
        return chunks
    return apply


def drop_second_logprobs(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks where the second chunk with logprobs loses them."""
    with_lp = [ch for c in chunks for ch in choices(c) if ch.get("logprobs")]
    if len(with_lp) >= 2:
        with_lp[1]["logprobs"] = None
    return chunks


def insert_after_first(payload: str) -> Callable[[list[str]], list[str]]:
    """An events rewrite that inserts `payload` after the first event."""
    return lambda events: events[:1] + [payload] + events[1:]


def garbage_line(raw: bytes) -> bytes:
    """SSE bytes with a line that is no SSE field after the first event."""
    first, sep, rest = raw.partition(b"\n\n")
    return first + sep + b"this line is not an SSE field\n\n" + rest


def drop_done(events: list[str]) -> list[str]:
    """Events without [DONE]."""
    return [e for e in events if e != "[DONE]"]


def stall_first_stream(call: Call, reply: Reply) -> Reply:
    """The first stream of a run sends two events, then nothing more."""
    # only the first stream stalls: one stall is a violation, and each costs the suite a full timeout
    if call.is_chat and reply.events is not None and not call.state.get("stalled"):
        call.state["stalled"] = True
        return replace(reply, stall_after=2)
    return reply


def content_type_as(value: str, *, stream: bool) -> ReplyHook:
    """A reply hook that sets the content type of 200 answers (streams or not)."""
    def hook(call: Call, reply: Reply) -> Reply:
        if call.is_chat and reply.status == 200 and (reply.events is not None) == stream:
            return replace(reply, headers={**reply.headers, "content-type": value})
        return reply
    return hook


def stream_error_as_200(call: Call, reply: Reply) -> Reply:
    """A refused stream request answered 200 with the error as an SSE event (the violation)."""
    if call.is_chat and call.streaming and reply.status >= 400:
        return Reply(200, {"content-type": "text/event-stream"}, events=[reply.body.decode(), "[DONE]"])
    return reply


def tool_arguments_extended(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed tool calls whose assembled arguments gain a key (the stream no longer equals the answer)."""
    fragments: dict[Any, list[dict[str, Any]]] = {}
    for chunk in chunks:
        for call in tool_calls(chunk):
            if "arguments" in (call.get("function") or {}):
                fragments.setdefault(call.get("index"), []).append(call["function"])
    for parts in fragments.values():
        try:
            arguments = json.loads("".join(p["arguments"] for p in parts))
        except ValueError:
            continue
        if isinstance(arguments, dict):
            parts[0]["arguments"] = json.dumps({**arguments, "extra_key": 1})
            for part in parts[1:]:
                part["arguments"] = ""
    return chunks
