"""Usage checks: token counts add up and follow the prompt (clause order of spec/clauses.yaml)."""

from __future__ import annotations

from typing import Any

from conformance.client import Target
from conformance.expectations import completion
from conformance.registry import clause
from conformance.samples import Sample, bodies_and_chunks
from conformance.verdicts import require


def _usages(responses: list[Sample], streams: list[Sample]) -> list[tuple[str, dict[str, Any], Any]]:
    out = []
    for label, body, ex in bodies_and_chunks(responses, streams):
        usage = body.get("usage")
        if isinstance(usage, dict):
            out.append((label, usage, ex))
    return out


@clause("usage.total.sum")
def test_usage_total_sum(responses: list[Sample], streams: list[Sample]) -> None:
    """In every usage object, total_tokens equals prompt_tokens plus completion_tokens."""
    usages = _usages(responses, streams)
    require(bool(usages), "no response carried a usage object", actual=[s.label for s in responses])
    for label, usage, ex in usages:
        p, c, t = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
        ok = all(isinstance(v, int) for v in (p, c, t)) and t == p + c
        require(ok, f"{label}: total_tokens != prompt_tokens + completion_tokens",
                expected=(p + c) if isinstance(p, int) and isinstance(c, int) else "integers", actual=t, exchanges=ex)


@clause("usage.prompt-tokens.positive")
def test_prompt_tokens_positive(responses: list[Sample], streams: list[Sample]) -> None:
    """prompt_tokens is a positive integer, since every chat prompt renders to at least one token."""
    for label, usage, ex in _usages(responses, streams):
        value = usage.get("prompt_tokens")
        require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                f"{label}: prompt_tokens is not a positive integer", expected="> 0", actual=value, exchanges=ex)


@clause("usage.prompt-tokens.grows")
def test_prompt_tokens_grows(target: Target) -> None:
    """Appending a message to a conversation increases prompt_tokens, and repeating a request repeats prompt_tokens."""
    short = [{"role": "user", "content": "Say hello."}]
    longer = short + [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Say it again, please."}]

    def prompt_tokens(messages: list[dict[str, Any]]) -> tuple[Any, Any]:
        ex = target.chat(target.body(max_tokens=1, messages=messages), headers={"x-use-cache": "false"})
        usage = completion(ex).get("usage")
        return (usage.get("prompt_tokens") if isinstance(usage, dict) else None), ex
    a, ex_a = prompt_tokens(short)
    b, ex_b = prompt_tokens(short)
    c, ex_c = prompt_tokens(longer)
    require(a == b, "repeating a request changed prompt_tokens", expected=a, actual=b, exchanges=(ex_a, ex_b))
    require(isinstance(a, int) and isinstance(c, int) and c > a,
            "appending two messages did not increase prompt_tokens", expected=f"> {a}", actual=c, exchanges=(ex_a, ex_c))


