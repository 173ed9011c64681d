"""Transforms of the semantics breakers: servers that validate a value and then ignore it, coerce
wrongly typed fields, hold a request while "loading", or cache behind the client's back."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tests.conformance.breaker_requests import number
from tests.conformance.breaking_proxy import Call, Reply, ReplyHook, RequestHook

Body = dict[str, Any]
HOLD_S = 10.0  # well above the loading check's 5 s floor and 5x a tiny request, even on a busy machine


def strip_in_range(key: str, low: float, high: float) -> Callable[[Body], Body]:
    """A server that range-checks `key` (out-of-range values still reach the mock and get refused)
    and then drops a valid value before generating."""
    def fn(body: Body) -> Body:
        value = number(body, key)
        if value is not None and low <= value <= high:
            body.pop(key)
        return body
    return fn


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def coerce_wrong_types(body: Body) -> Body:
    """A lenient server: wrongly typed non-string values are coerced or dropped instead of refused.

    A number for stop and a boolean for a number are dropped (the default applies), a fractional
    max_tokens or n is truncated, a number for logprobs is read as a boolean. Strings are left as
    they are, so only the non-string probes of errors.field.wrong-type can see this server.
    """
    if isinstance(body.get("stop"), int | float) and not isinstance(body.get("stop"), bool):
        body.pop("stop")
    for key in ("frequency_penalty", "presence_penalty", "temperature", "top_p"):
        if isinstance(body.get(key), bool):
            body.pop(key)
    for key in ("max_tokens", "n"):
        value = body.get(key)
        if isinstance(value, float):
            body[key] = max(1, int(value))
    if _is_int(body.get("logprobs")):
        body["logprobs"] = bool(body["logprobs"])
    return body


def hold_first_chat(seconds: float = HOLD_S) -> RequestHook:
    """A gateway that holds its first chat request while its upstream "loads", then forwards it.

    The run's first chat request is the loading probe without x-wait-for-model; the answer is 200,
    never the 503 the seeds' default asks for. The hold blocks the proxy's loop, which is idle then.
    """
    def hook(call: Call) -> Call:
        if call.is_chat and not call.state.get("held"):
            call.state["held"] = True
            time.sleep(seconds)
        return call
    return hook


def _cache_key(call: Call) -> tuple[str, bytes]:
    return call.path, call.body


def cached_by_default() -> tuple[RequestHook, ReplyHook]:
    """A gateway that drops x-use-cache and serves repeated chat bodies from its own cache.

    The upstream never sees x-use-cache false; the gateway (like a provider whose default is to
    cache) answers an identical body with the first answer again.
    """
    def request(call: Call) -> Call | Reply:
        if not call.is_chat:
            return call
        kept = call.state.get(_cache_key(call))
        if kept is not None:
            return kept
        return replace(call, headers={k: v for k, v in call.headers.items() if k != "x-use-cache"})

    def reply(call: Call, answer: Reply) -> Reply:
        if call.is_chat and answer.ok_json:
            call.state.setdefault(_cache_key(call), answer)
        return answer
    return request, reply
