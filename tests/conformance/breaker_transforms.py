"""Answer, request, error, header and route transforms of the breakers (streams: breaker_stream.py)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tests.conformance.breaker_hooks import (
    KEYED_TOKEN,
    JsonFn,
    choices,
    hf_error,
    on_answer,
    tool_calls,
)
from tests.conformance.breaking_proxy import Call, Reply, ReplyHook, RequestHook


def extra_choice(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The answer with a copy of its first choice appended."""
    extra = copy.deepcopy(choices(body)[0])
    extra["index"] = len(choices(body))
    body["choices"].append(extra)
    return body


def drop_second_choice(req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """An answer to n 2 with only its first choice."""
    if req.get("n") == 2:
        body["choices"] = choices(body)[:1]
    return body


def choice_index(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The answer with every choice index one higher."""
    for choice in choices(body):
        choice["index"] += 1
    return body


def rename_finish(old: str | None, new: str) -> JsonFn:
    """An answer rewrite replacing finish_reason `old` (None: any) by `new`."""
    def fn(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        for choice in choices(body):
            if old is None or choice.get("finish_reason") == old:
                choice["finish_reason"] = new
        return body
    return fn


def in_usage(fn: Callable[[dict[str, Any]], None]) -> JsonFn:
    """An answer rewrite applying `fn` to its usage object in place."""
    def apply(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        if isinstance(body.get("usage"), dict):
            fn(body["usage"])
        return body
    return apply


def total_plus_one(usage: dict[str, Any]) -> None:
    """total_tokens one more than the sum."""
    usage["total_tokens"] += 1


def prompt_zero(usage: dict[str, Any]) -> None:
    """prompt_tokens 0, total kept consistent."""
    usage["prompt_tokens"], usage["total_tokens"] = 0, usage["completion_tokens"]


def prompt_fixed(usage: dict[str, Any]) -> None:
    """prompt_tokens always 7, total kept consistent."""
    usage["prompt_tokens"], usage["total_tokens"] = 7, 7 + usage["completion_tokens"]


def completion_plus_one(usage: dict[str, Any]) -> None:
    """One completion token more, total kept consistent."""
    usage["completion_tokens"] += 1
    usage["total_tokens"] += 1


def created_days_ago(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The answer created three days earlier."""
    body["created"] = int(body["created"]) - 3 * 86400
    return body


def stop_returned(req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The answer content with the first stop sequence appended."""
    stop = req.get("stop")
    text = stop if isinstance(stop, str) else (stop[0] if isinstance(stop, list) and stop else None)
    if text:
        for choice in choices(body):
            if isinstance(choice["message"].get("content"), str):
                choice["message"]["content"] += text
    return body


def logprobs_always(req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Answers carry logprobs although the request did not ask for them."""
    if req.get("logprobs") is not True:
        for choice in choices(body):
            choice["logprobs"] = {"content": [], "refusal": None}
    return body


def make_positive(entry: dict[str, Any]) -> None:
    """The chosen logprob made positive."""
    entry["logprob"] = abs(entry["logprob"]) + 0.5


def reverse_top(entry: dict[str, Any]) -> None:
    """Alternatives in ascending order."""
    entry["top_logprobs"] = list(reversed(entry.get("top_logprobs") or []))


def one_fewer_top(entry: dict[str, Any]) -> None:
    """One alternative fewer."""
    if entry.get("top_logprobs"):
        entry["top_logprobs"] = entry["top_logprobs"][:-1]


def duplicate_top(entry: dict[str, Any]) -> None:
    """The second alternative repeats the first token."""
    top = entry.get("top_logprobs") or []
    if len(top) >= 2:
        top[1]["token"], top[1]["bytes"] = top[0]["token"], top[0].get("bytes")


def heavy_top(entry: dict[str, Any]) -> None:
    """Every alternative at logprob -0.01."""
    for alt in entry.get("top_logprobs") or []:
        alt["logprob"] = -0.01  # exp(-0.01) ~ 0.99 each: the list's mass exceeds 1


def mangle_token(entry: dict[str, Any]) -> None:
    """The token gains a character (bytes to match)."""
    entry["token"] += "~"
    entry["bytes"] = list(entry["token"].encode())


def wrong_bytes(entry: dict[str, Any]) -> None:
    """bytes that are not the UTF-8 of the token."""
    entry["bytes"] = list((entry["token"] + "#").encode())


def lower_chosen(entry: dict[str, Any]) -> None:
    """The chosen logprob lowered by 0.75."""
    entry["logprob"] -= 0.75


def drop_last_entry(req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The answer with its last logprobs.content entry removed."""
    for choice in choices(body):
        lp = choice.get("logprobs")
        if isinstance(lp, dict) and lp.get("content"):
            lp["content"] = lp["content"][:-1]
    return body


def fake_tool_call(req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """An answer to a request without tools with a tool call added."""
    if not req.get("tools"):
        for choice in choices(body):
            choice["message"]["tool_calls"] = [{"id": "call_injected", "type": "function",
                                                "function": {"name": "get_weather", "arguments": "{}"}}]
            choice["finish_reason"] = "tool_calls"
    return body


def other_function(req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Tool calls renamed to another declared function (or an undeclared one)."""
    names = [t.get("function", {}).get("name") for t in req.get("tools") or [] if isinstance(t, dict)]
    for call in tool_calls(body):
        others = [n for n in names if n and n != call["function"]["name"]]
        call["function"]["name"] = others[0] if others else call["function"]["name"] + "_other"
    return body


def tool_stream(fn: Callable[[dict[str, Any], bool], None]) -> Callable[[dict[str, Any], list[dict[str, Any]]], list[dict[str, Any]]]:
    """Apply fn(tool-call delta, is_first_for_its_index) to every streamed tool-call delta."""
    def apply(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[Any] = set()
        for chunk in chunks:
            for call in tool_calls(chunk):
                key = call.get("index")
                fn(call, key not in seen)
                seen.add(key)
        return chunks
    return apply


def break_last_fragment(_req: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed tool-call arguments whose last fragment ends in ",]"."""
    calls = [c for chunk in chunks for c in tool_calls(chunk) if "arguments" in (c.get("function") or {})]
    if calls:
        calls[-1]["function"]["arguments"] += ",]"
    return chunks


def canned_completion(call: Call, reply: Reply) -> Reply:
    """A refused chat request answered 200 with a plausible completion instead (the violation)."""
    if reply.status not in (400, 422) or call.streaming:
        return reply
    body = {"id": "chatcmpl-canned", "object": "chat.completion", "created": 1_700_000_000,
            "model": "chatconform/tiny-random", "system_fingerprint": "canned",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "logprobs": None,
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
    return Reply(200, {"content-type": "application/json"}, json.dumps(body).encode())


def restatus(old: tuple[int, ...], new: int, when: Callable[[Call], bool] = lambda c: True) -> ReplyHook:
    """A reply hook changing chat statuses in `old` to `new` when `when(call)`."""
    def hook(call: Call, reply: Reply) -> Reply:
        if call.is_chat and reply.status in old and when(call):
            return replace(reply, status=new)
        return reply
    return hook


def not_json(call: Call) -> bool:
    """The request body is not JSON."""
    return call.json() is None


def hf_message(fn: Callable[[str], str]) -> Callable[[Call, Reply], Reply]:
    """A reply hook rewriting the message of an HF error envelope."""
    def apply(_call: Call, reply: Reply) -> Reply:
        body = reply.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return reply.with_json({**body, "error": fn(body["error"])})
        return reply
    return apply


def detail_envelope(_call: Call, reply: Reply) -> Reply:
    """The error envelope replaced by {detail: message}."""
    body = reply.json()
    message = body.get("error") if isinstance(body, dict) else reply.body.decode(errors="replace")
    return reply.with_json({"detail": message})


def replay_uncached(call: Call) -> Call | Reply:
    """Answer a repeated x-use-cache false request with the first answer again (the violation)."""
    if call.is_chat and call.headers.get("x-use-cache", "").lower() == "false":
        cached = call.state.get(call.body)
        if cached is not None:
            return cached
    return call


def remember_uncached(call: Call, reply: Reply) -> Reply:
    """Keep the first answer to each x-use-cache false request."""
    if call.is_chat and call.headers.get("x-use-cache", "").lower() == "false" and reply.ok_json:
        call.state.setdefault(call.body, reply)
    return reply


def refuse_header(name: str) -> RequestHook:
    """A request hook answering 400 to chat requests carrying header `name`."""
    def hook(call: Call) -> Call | Reply:
        if call.is_chat and name in call.headers:
            return hf_error(400, f"{name}: not supported", "bad_request")
        return call
    return hook


def inject_token(call: Call) -> Call:
    """The request with the keyed mock's token, whatever it carried."""
    return replace(call, headers={**call.headers, "authorization": f"Bearer {KEYED_TOKEN}"})


def refuse_any_token(call: Call) -> Call | Reply:
    """Chat requests with any Authorization header answered 401."""
    if call.is_chat and "authorization" in call.headers:
        return hf_error(401, "invalid token", "authentication")
    return call


def get_route(path: str, fn: Callable[[Reply], Reply]) -> ReplyHook:
    """A reply hook applying `fn` to GET answers of `path`."""
    def hook(call: Call, reply: Reply) -> Reply:
        return fn(reply) if call.method == "GET" and call.path.split("?")[0] == path else reply
    return hook


def models_empty(reply: Reply) -> Reply:
    """A model list with no entries."""
    body = reply.json()
    return reply.with_json({**body, "data": []}) if isinstance(body, dict) else reply


def models_no_owner(reply: Reply) -> Reply:
    """A model list whose entries lack owned_by."""
    body = reply.json()
    if isinstance(body, dict):
        for entry in body.get("data") or []:
            entry.pop("owned_by", None)
        return reply.with_json(body)
    return reply


def model_route_404(call: Call) -> Call | Reply:
    """The model route answered 404."""
    if call.is_chat and call.path.startswith("/models/"):
        return hf_error(404, "not found", "not_found")
    return call


def model_route_ignored(call: Call) -> Call:
    """Any /models/{x} chat route forwarded to /v1/chat/completions."""
    if call.is_chat and call.path.startswith("/models/"):
        return replace(call, path="/v1/chat/completions")
    return call


def model_route_differs(call: Call, reply: Reply) -> Reply:
    """Answers on the model route gain a character."""
    if call.path.startswith("/models/") and call.is_chat and reply.ok_json:
        return on_answer(append_content("…"))(call, reply)
    return reply


def append_content(text: str) -> JsonFn:
    """An answer rewrite appending `text` to every content."""
    def fn(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        for choice in choices(body):
            if isinstance(choice["message"].get("content"), str):
                choice["message"]["content"] += text
        return body
    return fn


def wrong_description(call: dict[str, Any]) -> None:
    """A tool call echoing a description that is not the declared one."""
    call["function"]["description"] = "not the declared description"


def openai_envelope_untyped(_call: Call, reply: Reply) -> Reply:
    """An HF error envelope turned into an OpenAI-shaped one whose error.type is null."""
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return reply.with_json({"error": {"message": body["error"], "type": None, "param": None, "code": None}})
    return reply


def strip_chat_token(call: Call) -> Call:
    """Chat requests forwarded without their Authorization header (the valid token is lost)."""
    if call.is_chat:
        return replace(call, headers={k: v for k, v in call.headers.items() if k != "authorization"})
    return call


def vary_cached(call: Call, reply: Reply) -> Reply:
    """Answers to x-use-cache true requests gain a different character each time (not the same content)."""
    if call.headers.get("x-use-cache", "").lower() == "true" and call.is_chat and reply.ok_json:
        call.state["n"] = call.state.get("n", 0) + 1
        return on_answer(append_content(f" #{call.state['n']}"))(call, reply)
    return reply


def die_after(requests: int) -> RequestHook:
    """A server that crashes: after `requests` chat requests, every chat request and /health get 500."""
    def hook(call: Call) -> Call | Reply:
        if call.is_chat or call.path.startswith("/health"):
            call.state["seen"] = call.state.get("seen", 0) + 1
            if call.state["seen"] > requests:
                return hf_error(500, "internal error: the server crashed", "internal")
        return call
    return hook


def drop_header(name: str) -> RequestHook:
    """Requests forwarded without header `name`."""
    def hook(call: Call) -> Call:
        return replace(call, headers={k: v for k, v in call.headers.items() if k != name})
    return hook


def drop_estimated_time(call: Call, reply: Reply) -> Reply:
    """503 envelopes without estimated_time."""
    body = reply.json()
    if reply.status == 503 and isinstance(body, dict) and "estimated_time" in body:
        return reply.with_json({k: v for k, v in body.items() if k != "estimated_time"})
    return reply


def throttle_first(count: int) -> RequestHook:
    """The first `count` chat requests answered 429 without Retry-After."""
    def hook(call: Call) -> Call | Reply:
        if call.is_chat and call.state.get("throttled", 0) < count:
            call.state["throttled"] = call.state.get("throttled", 0) + 1
            return hf_error(429, "too many requests", "overloaded")
        return call
    return hook
