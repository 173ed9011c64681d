"""Request transforms of the breakers: a lenient server that rewrites what it should refuse or honour."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any

import jsonschema

Body = dict[str, Any]  # a request's JSON object
BodyFn = Callable[[Body], Body]
Predicate = Callable[[Body], bool]


def set_when(key: str, value: Callable[[Body], Any], when: Callable[[Body], bool]) -> Callable[[Body], Body]:
    """A request rewrite: body[key] = value(body) when `when(body)`."""
    def fn(body: Body) -> Body:
        if when(body):
            body[key] = value(body)
        return body
    return fn


def pop_when(*keys: str, when: Callable[[Body], bool] = lambda b: True) -> Callable[[Body], Body]:
    """A request rewrite removing `keys` when `when(body)`."""
    def fn(body: Body) -> Body:
        if when(body):
            for key in keys:
                body.pop(key, None)
        return body
    return fn


def number(body: Body, key: str) -> float | None:
    """body[key] when it is a number (not a bool), else None."""
    value = body.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def outside_range(key: str, low: float, high: float) -> Callable[[Body], bool]:
    """A predicate: body[key] is a number outside [low, high]."""
    return lambda b: (v := number(b, key)) is not None and not low <= v <= high


def clamp(key: str, low: float, high: float) -> Callable[[Body], Body]:
    """Lenient server: an out-of-range number is silently clamped instead of refused."""
    return set_when(key, lambda b: min(max(b[key], low), high), outside_range(key, low, high))


def format_type_is(kind: str) -> Callable[[Body], bool]:
    """A predicate: response_format.type is `kind`."""
    return lambda b: isinstance(b.get("response_format"), dict) and b["response_format"].get("type") == kind


def strip_images(body: Body) -> Body:
    """The request without image parts."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            message["content"] = [p for p in message["content"] if not (isinstance(p, dict) and p.get("type") == "image_url")] \
                or [{"type": "text", "text": "(image)"}]
    return body


def has_image(message: Body) -> bool:
    """The message holds an image_url part."""
    return isinstance(message.get("content"), list) and any(
        isinstance(p, dict) and p.get("type") == "image_url" for p in message["content"])


def has_detail(message: Body) -> bool:
    """The message holds an image_url part with detail."""
    return has_image(message) and any(isinstance(p.get("image_url"), dict) and "detail" in p["image_url"]
                                       for p in message["content"] if isinstance(p, dict))


def random_seed(_body: Body) -> int:
    """A random seed."""
    return random.randrange(1 << 31)


def coerce_strings(body: Body) -> Body:
    """Numbers and booleans sent as strings are parsed instead of refused."""
    for key, value in list(body.items()):
        if isinstance(value, str) and key not in ("model", "stop", "tool_choice", "reasoning_effort", "tool_prompt"):
            try:
                body[key] = json.loads(value)
            except ValueError:
                pass
    return body


def repair_messages(body: Body) -> Body:
    """User messages without string or list content get content "" instead of a 4xx."""
    for message in body.get("messages") or []:
        if (isinstance(message, dict) and message.get("role") == "user"
                and not isinstance(message.get("content"), (str, list))):
            message["content"] = ""
    return body


def drop_bad_parts(body: Body) -> Body:
    """Content parts of unknown type, or lacking their field, are dropped instead of refused."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            kept = [p for p in message["content"] if isinstance(p, dict) and (
                (p.get("type") == "text" and isinstance(p.get("text"), str))
                or (p.get("type") == "image_url" and isinstance(p.get("image_url"), dict)))]
            message["content"] = kept or [{"type": "text", "text": ""}]
    return body


def drop_bad_tools(body: Body) -> Body:
    """Tools of another type than function, or without a name, are dropped instead of refused."""
    if isinstance(body.get("tools"), list):
        body["tools"] = [t for t in body["tools"] if isinstance(t, dict) and t.get("type") == "function"
                         and isinstance((t.get("function") or {}).get("name"), str)]
        if not body["tools"]:
            body.pop("tools")
            body.pop("tool_choice", None)
    return body


def format_value_invalid(body: Body) -> bool:
    """The json value is not a valid JSON Schema, or the regex value does not compile."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return False
    value = fmt.get("value")
    if fmt.get("type") == "json":
        try:
            schema = json.loads(value) if isinstance(value, str) else value
            jsonschema.Draft202012Validator.check_schema(schema)
        except (ValueError, jsonschema.SchemaError):
            return True
    if fmt.get("type") == "json_schema":
        try:
            jsonschema.Draft202012Validator.check_schema((fmt.get("json_schema") or {}).get("schema"))
        except jsonschema.SchemaError:
            return True
    if fmt.get("type") == "regex":
        try:
            re.compile(value)
        except (re.error, TypeError):
            return True
    return False


def include_usage_truthy(body: Body) -> Body:
    """A non-boolean stream_options.include_usage is read as truthy instead of refused."""
    options = body.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options and not isinstance(options["include_usage"], bool):
        options["include_usage"] = bool(options["include_usage"])
    return body


def invert_penalty(key: str) -> BodyFn:
    """A positive penalty sent as its negative: repetition grows instead of shrinking."""
    return set_when(key, lambda b: -b[key], lambda b: (number(b, key) or 0) > 0)


def is_plain_chat(body: Body) -> bool:
    """One user message with string content, nothing else special."""
    messages = body.get("messages")
    return (isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], dict)
            and messages[0].get("role") == "user" and isinstance(messages[0].get("content"), str))


def has_jpeg(message: Body) -> bool:
    """The message holds a JPEG data URL image part."""
    return has_image(message) and any(
        isinstance(p, dict) and str((p.get("image_url") or {}).get("url", "")).startswith("data:image/jpeg")
        for p in message["content"])
