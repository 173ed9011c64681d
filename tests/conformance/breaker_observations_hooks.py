"""Transforms of the breakers in breakers_observations.py: the bugs users report most, each on one field.

Streamed tool calls come whole in one delta or as argument fragments (both are valid); the transforms
handle either, and build what they need (fragments, a second call) from the call the mock made, as a
server with the bug would send it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from tests.conformance.breaker_hooks import choices

Chunks = list[dict[str, Any]]
ChunksFn = Callable[[dict[str, Any], Chunks], Chunks]


def _calls(chunk: dict[str, Any]) -> list[Any]:
    """delta.tool_calls of the chunk's first choice as sent ([] when there are none)."""
    first = choices(chunk)[0] if choices(chunk) else {}
    calls = (first.get("delta") or {}).get("tool_calls")
    return calls if isinstance(calls, list) else []


def _fragments(text: str, size: int = 4) -> list[str]:
    """The text cut into pieces of `size` characters (one piece when shorter)."""
    return [text[i:i + size] for i in range(0, len(text), size)] or [text]


def _split_whole_calls(chunks: Chunks) -> Chunks:
    """Chunks where a tool call sent whole in one delta is sent as several argument fragments instead."""
    out: Chunks = []
    for chunk in chunks:
        calls = _calls(chunk)
        arguments = (calls[0].get("function") or {}).get("arguments") if len(calls) == 1 else None
        if not (isinstance(arguments, str) and calls[0].get("id") and _complete(arguments)):
            out.append(chunk)
            continue
        for n, piece in enumerate(_fragments(arguments)):
            copied = copy.deepcopy(chunk)
            delta = _calls(copied)[0]
            delta["function"]["arguments"] = piece
            if n:  # a later fragment: the index and the arguments only
                _calls(copied)[0] = {"index": delta.get("index"), "function": {"arguments": piece}}
            out.append(copied)
    return out


def _complete(arguments: str) -> bool:
    """The text is a whole JSON value (not a fragment) longer than one fragment."""
    try:
        json.loads(arguments)
    except ValueError:
        return False
    return len(arguments) > 4


def fragments_repeat_header(_req: dict[str, Any], chunks: Chunks) -> Chunks:
    """Every argument fragment of a streamed tool call repeating the call's id, type and function.name."""
    chunks = _split_whole_calls(chunks)
    headers: dict[Any, dict[str, Any]] = {}
    for chunk in chunks:
        for call in _calls(chunk):
            if not isinstance(call, dict):
                continue
            function = call.setdefault("function", {})
            if call.get("id"):
                headers[call.get("index")] = {"id": call["id"], "type": call.get("type"), "name": function.get("name")}
            elif call.get("index") in headers:
                header = headers[call.get("index")]
                call.update(id=header["id"], type=header["type"])
                function["name"] = header["name"]
    return chunks


def id_in_function(call: dict[str, Any], first: bool) -> None:
    """A tool-call delta whose id sits inside function instead of beside it."""
    if "id" in call:
        call.setdefault("function", {})["id"] = call.pop("id")


def drop_type(call: dict[str, Any], first: bool) -> None:
    """A tool-call delta without type."""
    call.pop("type", None)


def tool_calls_object(_req: dict[str, Any], chunks: Chunks) -> Chunks:
    """delta.tool_calls sent as the one call object instead of an array (older TGI)."""
    for chunk in chunks:
        for choice in choices(chunk):
            delta = choice.get("delta") or {}
            if isinstance(delta.get("tool_calls"), list) and len(delta["tool_calls"]) == 1:
                delta["tool_calls"] = delta["tool_calls"][0]
    return chunks


def arguments_object(_req: dict[str, Any], chunks: Chunks) -> Chunks:
    """Each streamed call's arguments sent once, as a JSON object instead of string fragments."""
    fragments: dict[Any, list[dict[str, Any]]] = {}
    for chunk in chunks:
        for choice in choices(chunk):
            delta = choice.get("delta") or {}
            for call in delta.get("tool_calls") or []:
                if isinstance((call.get("function") or {}).get("arguments"), str):
                    fragments.setdefault(call.get("index"), []).append(call["function"])
    for parts in fragments.values():
        try:
            value = json.loads("".join(p["arguments"] for p in parts))
        except ValueError:
            continue
        parts[0]["arguments"] = value
        for part in parts[1:]:
            part.pop("arguments")  # the later fragments carry nothing more
    return chunks


def second_call_same_index(_req: dict[str, Any], chunks: Chunks) -> Chunks:
    """A second tool call (the first one streamed again under a new id) sent with the first call's index."""
    positions = [i for i, chunk in enumerate(chunks) if _calls(chunk)]
    if not positions or not _calls(chunks[positions[0]])[0].get("id"):
        return chunks
    twin = [copy.deepcopy(chunks[i]) for i in positions]
    first = _calls(twin[0])[0]
    first["id"] = f"{first['id']}_second"  # a new call, yet its index is the first call's
    end = positions[-1] + 1
    return chunks[:end] + twin + chunks[end:]


def completions_shape(req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """logprobs in the legacy completions shape ({tokens, token_logprobs, top_logprobs, text_offset})."""
    for choice in choices(body):
        content = (choice.get("logprobs") or {}).get("content")
        if not isinstance(content, list):
            continue
        offsets, at = [], 0
        for entry in content:
            offsets.append(at)
            at += len(entry.get("token", ""))
        choice["logprobs"] = {
            "tokens": [e.get("token") for e in content],
            "token_logprobs": [e.get("logprob") for e in content],
            "top_logprobs": [{t.get("token"): t.get("logprob") for t in e.get("top_logprobs") or []} for e in content],
            "text_offset": offsets,
        }
    return body


def twenty_alternatives(req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """With logprobs true and top_logprobs absent, 20 alternatives per token instead of none."""
    if req.get("logprobs") is not True or req.get("top_logprobs") is not None:
        return body
    for choice in choices(body):
        for entry in (choice.get("logprobs") or {}).get("content") or []:
            entry["top_logprobs"] = [
                {"token": f"{entry['token']}~{i}", "logprob": entry["logprob"] - 1 - i,
                 "bytes": list(f"{entry['token']}~{i}".encode())} for i in range(20)]
    return body


def shift_logprob(entry: dict[str, Any]) -> None:
    """A chosen logprob lowered by 0.01 (ten times the parity tolerance)."""
    entry["logprob"] -= 0.01


def usage_one_choice(req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """With n above 1, usage counting the tokens of one choice only (an answer or a usage chunk)."""
    usage, n = body.get("usage"), req.get("n")
    if isinstance(usage, dict) and isinstance(n, int) and n > 1:
        usage["completion_tokens"] //= n
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return body


def refuses_tool_calls_content(message: dict[str, Any]) -> bool:
    """An assistant message with tool_calls whose content is null or "" (absent content is let through)."""
    return (message.get("role") == "assistant" and bool(message.get("tool_calls"))
            and "content" in message and message["content"] in (None, ""))

