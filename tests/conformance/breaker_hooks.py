"""Building blocks of breakers: hooks that rewrite one kind of traffic (answers, chunks, events, errors, requests)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tests.conformance.breaking_proxy import (
    Breaker,
    Call,
    Reply,
    ReplyHook,
    RequestHook,
    sse_text,
)

JsonFn = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]  # (request body, answer or chunk) -> new
KEYED_TOKEN = "chatconform-test-token"  # the token the "keyed" upstream requires


def hf_error(status: int, message: str, error_type: str = "validation") -> Reply:
    """An error answer in the HF envelope shape."""
    body = json.dumps({"error": message, "error_type": error_type}).encode()
    return Reply(status, {"content-type": "application/json"}, body)


def request_json(call: Call) -> dict[str, Any]:
    """The call's JSON object body, or {} when it has none."""
    body = call.json()
    return body if isinstance(body, dict) else {}


def on_answer(fn: JsonFn) -> ReplyHook:
    """A reply hook that rewrites each non-streaming 200 chat completion."""
    def hook(call: Call, reply: Reply) -> Reply:
        if not (call.is_chat and reply.ok_json):
            return reply
        return reply.with_json(fn(request_json(call), copy.deepcopy(reply.json())))
    return hook


def on_chunks(fn: Callable[[dict[str, Any], list[dict[str, Any]]], list[dict[str, Any]]]) -> ReplyHook:
    """A reply hook that rewrites the JSON chunks of each chat stream ([DONE] kept where it was)."""
    def hook(call: Call, reply: Reply) -> Reply:
        if not (call.is_chat and reply.events is not None):
            return reply
        chunks = [json.loads(e) for e in reply.events if e != "[DONE]"]
        done = ["[DONE]"] if "[DONE]" in reply.events else []
        new = fn(request_json(call), copy.deepcopy(chunks))
        return replace(reply, events=[json.dumps(c) for c in new] + done)
    return hook


def each_chunk(fn: JsonFn) -> ReplyHook:
    """A reply hook that rewrites every chunk of each chat stream on its own."""
    return on_chunks(lambda req, chunks: [fn(req, c) for c in chunks])


def on_events(fn: Callable[[list[str]], list[str]]) -> ReplyHook:
    """A reply hook that rewrites the raw event payloads of each chat stream."""
    def hook(call: Call, reply: Reply) -> Reply:
        if not (call.is_chat and reply.events is not None):
            return reply
        return replace(reply, events=fn(list(reply.events)))
    return hook


def on_stream_text(fn: Callable[[bytes], bytes]) -> ReplyHook:
    """A reply hook that rewrites the raw SSE bytes of each chat stream."""
    def hook(call: Call, reply: Reply) -> Reply:
        if not (call.is_chat and reply.events is not None):
            return reply
        return replace(reply, events=None, body=fn(sse_text(reply.events)))
    return hook


def on_error(fn: Callable[[Call, Reply], Reply]) -> ReplyHook:
    """A reply hook for the 4xx/5xx answers to chat requests."""
    def hook(call: Call, reply: Reply) -> Reply:
        return fn(call, reply) if call.is_chat and reply.status >= 400 else reply
    return hook


def rewrite_request(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> RequestHook:
    """A request hook that rewrites the JSON object body of each chat request before forwarding it."""
    def hook(call: Call) -> Call:
        body = call.json()
        if not (call.is_chat and isinstance(body, dict)):
            return call
        return call.with_json(fn(copy.deepcopy(body)))
    return hook


def refuse_when(pred: Callable[[dict[str, Any]], bool], message: str, status: int = 422) -> RequestHook:
    """A request hook that answers a chat request matching `pred` with an error instead of forwarding it."""
    def hook(call: Call) -> Call | Reply:
        body = call.json()
        if call.is_chat and isinstance(body, dict) and pred(body):
            return hf_error(status, message, "validation" if status < 500 else "internal")
        return call
    return hook


def messages_have(pred: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    """True for a request with a message matching `pred`."""
    return lambda body: any(isinstance(m, dict) and pred(m) for m in body.get("messages") or [])


def choices(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The choices of an answer or chunk ([] when absent)."""
    found = body.get("choices")
    return found if isinstance(found, list) else []


def set_in_choices(key: str, value: Any) -> JsonFn:
    """Set message[key] (answer) or nothing else, in every choice."""
    def fn(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        for choice in choices(body):
            choice["message"][key] = value
        return body
    return fn


def set_field(key: str, value: Any) -> JsonFn:
    """Set one top-level field of an answer or chunk."""
    def fn(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        body[key] = value
        return body
    return fn


def drop_field(key: str) -> JsonFn:
    """Remove one top-level field of an answer or chunk."""
    def fn(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        body.pop(key, None)
        return body
    return fn


def logprob_entries(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every logprobs.content entry of an answer or chunk, over all choices."""
    out: list[dict[str, Any]] = []
    for choice in choices(body):
        lp = choice.get("logprobs")
        if isinstance(lp, dict) and isinstance(lp.get("content"), list):
            out.extend(lp["content"])
    return out


def each_logprob_entry(fn: Callable[[dict[str, Any]], None]) -> JsonFn:
    """Apply `fn` in place to every logprobs.content entry."""
    def apply(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        for entry in logprob_entries(body):
            fn(entry)
        return body
    return apply


def tool_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tool call of an answer (message) or chunk (delta), over all choices."""
    out: list[dict[str, Any]] = []
    for choice in choices(body):
        part = choice.get("message") or choice.get("delta") or {}
        out.extend(part.get("tool_calls") or [])
    return out


def each_tool_call(fn: Callable[[dict[str, Any]], None]) -> JsonFn:
    """Apply `fn` in place to every tool call of an answer or chunk."""
    def apply(_req: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        for call in tool_calls(body):
            fn(call)
        return body
    return apply


def both(*hooks: ReplyHook) -> ReplyHook:
    """Reply hooks applied one after the other."""
    def hook(call: Call, reply: Reply) -> Reply:
        for h in hooks:
            reply = h(call, reply)
        return reply
    return hook


def breaker(name: str, clauses: str, description: str, **hooks: Any) -> Breaker:
    """A Breaker whose clauses are given as one space-separated string (the catalogue's shorthand)."""
    return Breaker(name, tuple(clauses.split()), description, **hooks)


def limit_in_flight(limit: int) -> tuple[RequestHook, ReplyHook]:
    """Hooks that answer 429 without Retry-After to a chat request arriving while `limit` are being answered.

    The request hook counts the chat requests it forwards, the reply hook counts them done (the
    proxy runs in one event loop, so the count needs no lock). Only requests sent together can
    overflow it: with --concurrency 1 only the suite's burst does.
    """
    def request(call: Call) -> Call | Reply:
        if not call.is_chat:
            return call
        if call.state.get("in_flight", 0) >= limit:
            return hf_error(429, "too many requests at once", "overloaded")
        call.state["in_flight"] = call.state.get("in_flight", 0) + 1
        return call

    def reply(call: Call, answer: Reply) -> Reply:
        if call.is_chat:
            call.state["in_flight"] -= 1
        return answer
    return request, reply
