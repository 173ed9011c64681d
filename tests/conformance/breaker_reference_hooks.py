"""Transforms of the reference breakers: a server that serves the reference model but gets its answers wrong.

Each emulates one bug that the API's own rules cannot see (see conformance/checks/test_reference.py):
a chat template with an extra space or a doubled BOS, logprobs scaled or tempered without
renormalising, alternatives one position off, detokenisation that drops a space, max_tokens cut one
token early, stop sequences matched on whole tokens, and top_p applied before temperature. Where a
reply must know what the request asked before the rewrite, the request hook passes it on in the
ORIGINAL header (the mock ignores unknown headers).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import replace
from typing import Any

from tests.conformance.breaking_proxy import Call, Reply

ORIGINAL = "x-breaker-original"  # what the request asked before the breaker rewrote it (JSON)


def _forward_with(call: Call, body: dict[str, Any], original: dict[str, Any]) -> Call:
    """The call with another body, the original fields in the ORIGINAL header."""
    return replace(call, body=json.dumps(body).encode(), headers={**call.headers, ORIGINAL: json.dumps(original)})


def _original(call: Call) -> dict[str, Any] | None:
    raw = call.headers.get(ORIGINAL)
    return json.loads(raw) if raw else None


def _plain_answer(call: Call, reply: Reply) -> dict[str, Any] | None:
    """The chat completion of a non-streaming 200 chat answer, else None."""
    if not (call.is_chat and reply.ok_json):
        return None
    return reply.json()


def extra_space(body: dict[str, Any]) -> dict[str, Any]:
    """A template that writes a space after each message's content (one token more per message)."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            message["content"] += " "
    return body


def double_bos(usage: dict[str, Any]) -> None:
    """A template that adds a second BOS: one prompt token more (total kept consistent)."""
    usage["prompt_tokens"] += 1
    usage["total_tokens"] += 1


def completion_plus_one(usage: dict[str, Any]) -> None:
    """completion_tokens one more than generated, always (total kept consistent)."""
    usage["completion_tokens"] += 1
    usage["total_tokens"] += 1


def _each_logprob(answer: dict[str, Any], fn: Any) -> dict[str, Any]:
    for choice in answer.get("choices") or []:
        for entry in (choice.get("logprobs") or {}).get("content") or []:
            entry["logprob"] = fn(entry["logprob"])
            for top in entry.get("top_logprobs") or []:
                top["logprob"] = fn(top["logprob"])
    return answer


def scale_logprobs(_req: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Every logprob times 1.1 (logprobs of a distribution the server shaped differently)."""
    return _each_logprob(answer, lambda lp: lp * 1.1)


def temper_logprobs(req: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Logprobs divided by the temperature, not renormalised (scaled logits reported as logprobs)."""
    temperature = req.get("temperature")
    if not isinstance(temperature, int | float) or temperature <= 0 or temperature == 1:
        return answer
    return _each_logprob(answer, lambda lp: lp / temperature)


def shift_tops(_req: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Each token gets the alternatives of the next position (an indexing error)."""
    for choice in answer.get("choices") or []:
        entries = (choice.get("logprobs") or {}).get("content") or []
        for here, after in itertools.pairwise(entries):
            here["top_logprobs"] = after.get("top_logprobs")
    return answer


def drop_first_space(_req: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """Detokenisation that loses the first space of the content (the tokens stay right)."""
    for choice in answer.get("choices") or []:
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            message["content"] = message["content"].replace(" ", "", 1)
    return answer


def one_token_early(body: dict[str, Any]) -> dict[str, Any]:
    """A generation loop that stops one token before max_tokens (from 2 up)."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 2:
            body[key] = value - 1
    return body


# --- stops matched on tokens ---------------------------------------------------------------------------


def stops_on_tokens_request(call: Call) -> Call:
    """Generate without the stop sequences (with logprobs, to see the tokens); the reply applies them."""
    body = call.json()
    if not (call.is_chat and isinstance(body, dict) and body.get("stop") and not body.get("stream")):
        return call
    stops = body["stop"] if isinstance(body["stop"], list) else [body["stop"]]
    original = {"stop": stops, "logprobs": body.get("logprobs"), "top_logprobs": body.get("top_logprobs")}
    forwarded = {k: v for k, v in body.items() if k != "stop"}
    forwarded.update(logprobs=True, top_logprobs=body.get("top_logprobs") or 0)
    return _forward_with(call, forwarded, original)


def stops_on_tokens_reply(call: Call, reply: Reply) -> Reply:
    """Cut at the first token whose text is a stop sequence: a stop spread over tokens is never seen."""
    original, answer = _original(call), _plain_answer(call, reply)
    if original is None or answer is None:
        return reply
    for choice in answer.get("choices") or []:
        entries = choice["logprobs"]["content"]
        cut = next((i for i, e in enumerate(entries) if e["token"] in original["stop"]), None)
        if cut is not None:
            kept = entries[:cut]
            choice["message"]["content"] = b"".join(bytes(e["bytes"]) for e in kept).decode("utf-8", "replace")
            choice["finish_reason"] = "stop"
            choice["logprobs"]["content"] = kept
            answer["usage"]["completion_tokens"] = cut + 1
            answer["usage"]["total_tokens"] = answer["usage"]["prompt_tokens"] + cut + 1
        if not original["logprobs"]:
            choice["logprobs"] = None
    return reply.with_json(answer)


# --- top_p before temperature ------------------------------------------------------------------------------


def _one_sampled_token(body: dict[str, Any]) -> bool:
    temperature, top_p = body.get("temperature"), body.get("top_p")
    return (body.get("max_tokens") == 1 and not body.get("stream") and isinstance(temperature, int | float)
            and temperature > 0 and isinstance(top_p, int | float) and top_p < 1)


def top_p_first_request(call: Call) -> Call:
    """Ask the model's first-token distribution (greedy, five alternatives); the reply samples from it."""
    body = call.json()
    if not (call.is_chat and isinstance(body, dict) and _one_sampled_token(body)):
        return call
    original = {k: body.get(k) for k in ("temperature", "top_p", "seed", "logprobs", "top_logprobs")}
    forwarded = {k: v for k, v in body.items() if k not in ("top_p", "seed")}
    forwarded.update(temperature=0, logprobs=True, top_logprobs=5)
    return _forward_with(call, forwarded, original)


def top_p_first_reply(call: Call, reply: Reply) -> Reply:
    """Sample the one token as a sampler that applies top_p to the untempered distribution, then temperature."""
    original, answer = _original(call), _plain_answer(call, reply)
    if original is None or answer is None:
        return reply
    choice = answer["choices"][0]
    entries = choice["logprobs"]["content"]
    if not entries:
        return reply  # the model ended its turn at once: nothing to sample
    tops = entries[0]["top_logprobs"]
    nucleus, mass = [], 0.0
    for top in tops:  # top_p on the raw probabilities (the listed tokens only)
        if mass >= original["top_p"]:
            break
        nucleus.append(top)
        mass += math.exp(top["logprob"])
    weights = [math.exp((t["logprob"] - tops[0]["logprob"]) / original["temperature"]) for t in nucleus]
    draw = random.Random(original["seed"]).random() * sum(weights)
    picked = nucleus[-1]
    for top, weight in zip(nucleus, weights, strict=True):
        draw -= weight
        if draw <= 0:
            picked = top
            break
    choice["message"]["content"] = bytes(picked["bytes"]).decode("utf-8", "replace")
    entry = {"token": picked["token"], "logprob": picked["logprob"], "bytes": picked["bytes"],
             "top_logprobs": tops[:original["top_logprobs"] or 0]}
    choice["logprobs"] = {"content": [entry]} if original["logprobs"] else None
    return reply.with_json(answer)

