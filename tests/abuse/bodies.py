"""A seeded generator of malformed and extreme chat completion requests, as an attacker would send them.

`abuse_requests(seed, count)` yields `AbuseRequest`s: raw body bytes plus extra headers, each made
by one mutation of a small valid body (wrong types, huge or odd numbers, lone surrogates, deep
nesting, long strings and stops, bad UTF-8, truncated JSON, bad encodings, unknown fields...).
The same seed gives the same requests. Every one must get an answer that is not a 5xx: a 4xx
naming what is wrong, or a 200 when the mutation left the request valid. Used by
tests/abuse/test_fuzz.py (about 1,500 per run) and bench/abuse.py (10,000).
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_TOKENS = 4  # valid mutations generate this few tokens, so that a run stays short


@dataclass(frozen=True)
class AbuseRequest:
    """One request: which mutation made it, its body bytes, and headers beyond the defaults."""

    kind: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def base_body() -> dict[str, Any]:
    """A small valid request."""
    return {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": MAX_TOKENS, "temperature": 0}


def _dump(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _deep_text(depth: int, kind: str) -> str:
    """JSON text nested `depth` levels (built as text: the json module recurses, and these exceed its limit)."""
    if kind == "schema":  # a schema with properties nested depth // 2 deep: 2 JSON levels each
        half = depth // 2
        return '{"type": "object", "properties": {"a": ' * half + '{"type": "object"}' + "}}" * half
    if kind == "array":
        return "[" * depth + "1" + "]" * depth
    return '{"text": ' * depth + '"x"' + "}" * depth


def _with_deep(body: dict[str, Any], text: str) -> bytes:
    return _dump(body).replace(b'"__DEEP__"', text.encode())


def _surrogate(rng: random.Random) -> str:
    return chr(rng.choice([0xD800, 0xDBFF, 0xDC00, 0xDFFF, rng.randrange(0xD800, 0xE000)]))


ODD_VALUES: tuple[Any, ...] = (None, True, False, 0, -1, 2 ** 63, -(2 ** 64), 1e308, -1e308, 1e-320, 0.5, "", "x",
                               "0", [], {}, [None], {"": None}, "\u0000", "\ufeff", "1" * 300)
FIELDS = ("model", "messages", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "logprobs",
          "top_logprobs", "logit_bias", "frequency_penalty", "presence_penalty", "response_format", "tools",
          "tool_choice", "stream", "stream_options", "user", "max_completion_tokens", "parallel_tool_calls")


def m_odd_value(rng: random.Random) -> AbuseRequest:
    """A field set to a value of the wrong type or an extreme one."""
    body = base_body()
    name = rng.choice(FIELDS)
    body[name] = rng.choice(ODD_VALUES)
    if name in ("max_tokens", "max_completion_tokens") and isinstance(body[name], int) and body[name] > MAX_TOKENS:
        body[name] = MAX_TOKENS
    return AbuseRequest(f"odd:{name}", _dump(body))


def m_surrogate(rng: random.Random) -> AbuseRequest:
    """A lone UTF-16 surrogate (as a JSON escape) in some string of the request."""
    body = base_body()
    bad = "a" + _surrogate(rng) + "b"
    place = rng.choice(["content", "stop", "model", "user", "key", "tool", "schema", "role", "name"])
    if place == "content":
        body["messages"][0]["content"] = bad
    elif place == "stop":
        body["stop"] = [bad]
    elif place == "model":
        body["model"] = bad
    elif place == "user":
        body["user"] = bad
    elif place == "key":
        body["logit_bias"] = {bad: 1}
    elif place == "tool":
        body["tools"] = [{"type": "function", "function": {"name": bad, "parameters": {"type": "object"}}}]
    elif place == "schema":
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "x", "schema": {"type": "object", "properties": {bad: {}}}}}
    elif place == "role":
        body["messages"][0]["role"] = bad
    else:
        body["messages"][0]["name"] = bad
    # ensure_ascii writes a lone surrogate as its \\uXXXX escape, which is how a client can send one.
    return AbuseRequest(f"surrogate:{place}", json.dumps(body).encode())


def m_deep(rng: random.Random) -> AbuseRequest:
    """Deep nesting: in a schema, in a tool's parameters, in content, or the whole body."""
    depth = rng.choice([50, 100, 300, 1000, 5000])
    place = rng.choice(["schema", "tool", "content", "extra"])
    body = base_body()
    if place == "schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": "__DEEP__"}}
        text = _deep_text(depth, "schema")
    elif place == "tool":
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": "__DEEP__"}}]
        text = _deep_text(depth, rng.choice(["schema", "object"]))
    elif place == "content":
        body["messages"][0]["content"] = "__DEEP__"
        text = _deep_text(depth, "object")
    else:
        body["metadata"] = "__DEEP__"
        text = _deep_text(depth, "array")
    return AbuseRequest(f"deep:{place}", _with_deep(body, text))


def m_long(rng: random.Random) -> AbuseRequest:
    """Long strings where short ones are expected: stop, model, tool name, content, logit_bias key."""
    size = rng.choice([1025, 10_000, 60_000, 1_000_000])
    place = rng.choice(["stop", "model", "tool", "bias", "content", "user", "regex"])
    body = base_body()
    text = rng.choice("xab ") * size
    if place == "stop":
        body["stop"] = text if rng.random() < 0.5 else ["a", text]
    elif place == "model":
        body["model"] = text
    elif place == "tool":
        body["tools"] = [{"type": "function", "function": {"name": text, "parameters": {"type": "object"}}}]
    elif place == "bias":
        body["logit_bias"] = {"1" * min(size, 100_000): 1}
    elif place == "content":
        body["messages"][0]["content"] = text
    elif place == "user":
        body["user"] = text
    else:
        body["response_format"] = {"type": "regex", "value": "(a|" * 50 + "b" + ")*" * 50 if size > 5000 else "a{1000000}"}
    return AbuseRequest(f"long:{place}", _dump(body))


def m_many(rng: random.Random) -> AbuseRequest:
    """Many items: messages, stops, tools, logit_bias entries, content parts."""
    count = rng.choice([5, 100, 1000, 3000])
    place = rng.choice(["messages", "stop", "tools", "bias", "parts"])
    body = base_body()
    if place == "messages":
        body["messages"] = [{"role": "user", "content": "hi"}] * count
    elif place == "stop":
        body["stop"] = [f"s{i}" for i in range(count)]
    elif place == "tools":
        body["tools"] = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}}
                         for i in range(count)]
    elif place == "bias":
        body["logit_bias"] = {str(i): 1 for i in range(count)}
    else:
        body["messages"][0]["content"] = [{"type": "text", "text": "a"}] * count
    return AbuseRequest(f"many:{place}", _dump(body))


def m_bytes(rng: random.Random) -> AbuseRequest:
    """Bodies that are not valid JSON text: truncated, bad UTF-8, NaN, BOM, not an object, empty."""
    raw = _dump(base_body())
    choice = rng.choice(["truncate", "utf8", "nan", "bom", "array", "empty", "garbage", "dupkey", "nul"])
    if choice == "truncate":
        raw = raw[:rng.randrange(len(raw))]
    elif choice == "utf8":
        cut = rng.randrange(len(raw))
        raw = raw[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]) + raw[cut:]
    elif choice == "nan":
        raw = raw.replace(b'"temperature": 0', b'"temperature": ' + rng.choice([b"NaN", b"Infinity", b"-Infinity"]))
    elif choice == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif choice == "array":
        raw = b"[" + raw + b"]"
    elif choice == "empty":
        raw = b""
    elif choice == "garbage":
        raw = rng.randbytes(rng.randrange(1, 200))
    elif choice == "dupkey":
        raw = raw[:-1] + b', "max_tokens": -5}'
    else:
        raw = raw.replace(b"Say", b"S\x00ay")
    return AbuseRequest(f"bytes:{choice}", raw)


def m_encoding(rng: random.Random) -> AbuseRequest:
    """Content-Encoding and Content-Type games: fake gzip, a real gzip, unknown codings, odd media types."""
    raw = _dump(base_body())
    choice = rng.choice(["fake-gzip", "gzip", "deflate-fake", "unknown", "text-plain", "charset", "no-type"])
    if choice == "fake-gzip":
        return AbuseRequest(choice, raw, {"Content-Encoding": "gzip"})
    if choice == "gzip":
        return AbuseRequest(choice, gzip.compress(raw), {"Content-Encoding": "gzip"})
    if choice == "deflate-fake":
        return AbuseRequest(choice, rng.randbytes(64), {"Content-Encoding": "deflate"})
    if choice == "unknown":
        return AbuseRequest(choice, raw, {"Content-Encoding": "x-made-up"})
    if choice == "text-plain":
        return AbuseRequest(choice, raw, {"Content-Type": "text/plain"})
    if choice == "charset":
        return AbuseRequest(choice, raw, {"Content-Type": "application/json; charset=latin-1"})
    return AbuseRequest(choice, raw, {"Content-Type": ""})


def m_numbers(rng: random.Random) -> AbuseRequest:
    """Numbers at and beyond every bound, written as JSON allows: 1e999, -0, 4,300+ digits, 1.0 for ints."""
    body_text = _dump(base_body()).decode()
    name = rng.choice(["max_tokens", "temperature", "seed", "n", "top_logprobs", "top_p"])
    literal = rng.choice(["1e999", "-0", "1" * 5000, "1.0", "0.0000001", "-1e-400", "18446744073709551616", "2"])
    text = body_text[:-1] + f', "{name}": {literal}}}' if name not in body_text else body_text.replace(
        f'"{name}": {MAX_TOKENS if name == "max_tokens" else 0}', f'"{name}": {literal}')
    return AbuseRequest(f"number:{name}", text.encode())


def m_headers(rng: random.Random) -> AbuseRequest:
    """Headers an attacker varies: odd x-mock-fault, x-use-cache, Accept, a long header."""
    raw = _dump(base_body())
    choice = rng.choice(["fault", "cache", "accept", "long", "wait"])
    headers = {"fault": {"x-mock-fault": "http_500"}, "cache": {"x-use-cache": "maybe"},
               "accept": {"Accept": "image/png"}, "long": {"x-filler": "a" * 7000},
               "wait": {"x-wait-for-model": "\u00e9"}}[choice]
    return AbuseRequest(f"header:{choice}", raw, headers)


MUTATIONS: tuple[Callable[[random.Random], AbuseRequest], ...] = (
    m_odd_value, m_surrogate, m_deep, m_long, m_many, m_bytes, m_encoding, m_numbers, m_headers)


def abuse_requests(seed: int, count: int) -> Iterator[AbuseRequest]:
    """`count` requests from `seed`: the same seed, the same requests."""
    rng = random.Random(seed)
    for _ in range(count):
        yield rng.choice(MUTATIONS)(rng)
