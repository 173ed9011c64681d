"""Usage checks: token counts add up and follow the prompt (clause order of spec/clauses.yaml)."""

from __future__ import annotations

from typing import Any

from conformance.client import Exchange, Target
from conformance.judges import enforce
from conformance.judges.usage import finish_and_usage, usages
from conformance.registry import clause
from conformance.samples import Deferred, SampleSet, need_answer
from conformance.verdicts import NotApplicable, need, not_exercised, require


def _judge_usages(responses: SampleSet, streams: SampleSet, clause_id: str) -> None:
    """The clause's judge on every usage object of the accepted responses and streams; then NotExercised for a
    lost sample, or (root response.usage.present) when no answer carried a usage object."""
    seen = 0
    for kind, samples in (("response", responses), ("stream", streams)):
        for sample in samples.accepted:
            enforce(clause_id, sample.exchange, f"{kind} {sample.label}")
            seen += len(usages(sample.exchange))
    responses.need_all()
    streams.need_all()
    need(seen > 0, "a usage object in any response", root="response.usage.present",
         actual=[s.label for s in responses.accepted], exchanges=[s.exchange for s in responses.accepted])


@clause("usage.total.sum")
def test_usage_total_sum(responses: SampleSet, streams: SampleSet) -> None:
    """In every usage object, total_tokens equals prompt_tokens plus completion_tokens."""
    _judge_usages(responses, streams, "usage.total.sum")


@clause("usage.prompt-tokens.positive")
def test_prompt_tokens_positive(responses: SampleSet, streams: SampleSet) -> None:
    """prompt_tokens is a positive integer, since every chat prompt renders to at least one token."""
    _judge_usages(responses, streams, "usage.prompt-tokens.positive")


@clause("usage.prompt-tokens.grows")
def test_prompt_tokens_grows(target: Target) -> None:
    """Appending a message to a conversation increases prompt_tokens, and repeating a request repeats prompt_tokens."""
    short = [{"role": "user", "content": "Say hello."}]
    longer = short + [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Say it again, please."}]

    def prompt_tokens(messages: list[dict[str, Any]], root: str) -> tuple[int, Exchange]:
        ex = target.chat(target.body(max_tokens=1, messages=messages), headers={"x-use-cache": "false"})
        need_answer(ex, f"a conversation of {len(messages)} message(s)", root)
        usage = ex.json_object.get("usage")
        if not isinstance(usage, dict):
            raise not_exercised("a usage object", root="response.usage.present",
                                actual=ex.json_object.get("usage", "(absent)"), exchanges=ex)
        value = usage.get("prompt_tokens")
        if not isinstance(value, int) or isinstance(value, bool):
            raise not_exercised("an integer prompt_tokens", root="usage.prompt-tokens.positive", actual=value,
                                exchanges=ex)
        return value, ex
    a, ex_a = prompt_tokens(short, "request.messages.accepted")
    b, ex_b = prompt_tokens(short, "request.messages.accepted")
    c, ex_c = prompt_tokens(longer, "message.assistant.multi-turn")
    require(a == b, "repeating a request changed prompt_tokens", expected=a, actual=b, exchanges=(ex_a, ex_b))
    require(c > a, "appending two messages did not increase prompt_tokens", expected=f"> {a}", actual=c,
            exchanges=(ex_a, ex_c))


@clause("usage.n.all-choices")
def test_usage_all_choices(responses: SampleSet, streams: SampleSet) -> None:
    """With n 2 and both choices cut off by max_tokens, completion_tokens counts the tokens of both choices (2 times max_tokens)."""
    later = Deferred()
    judged = 0
    # a choice missing from the response means n was not honoured; from a stream whose response had both,
    # that the stream lost a choice's end (stream.finish-reason.exactly-once judges that)
    for kind, samples, usage_root, choices_root in (
            ("response", responses, "response.usage.present", "request.n.multiple"),
            ("stream", streams, "stream.usage.last-chunk", "stream.finish-reason.exactly-once")):
        if samples.get("n-2").refused:
            continue  # n refused clearly, as request.n.multiple permits: nothing to count
        with later:
            sample = samples.need("n-2")
            reasons, usage = finish_and_usage(sample.exchange)
            need(sorted(reasons, key=repr) == [0, 1], f"two choices (indices 0 and 1) in the n 2 {kind}",
                 root=choices_root, actual=reasons, exchanges=sample.exchange)
            if set(reasons.values()) != {"length"}:
                continue  # a choice ended early: the expected count is unknown
            need(isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int),
                 f"usage.completion_tokens in the n 2 {kind}", root=usage_root, actual=usage, exchanges=sample.exchange)
            judged += 1
            enforce("usage.n.all-choices", sample.exchange, f"n 2 {kind}")
    later.settle()
    if not judged:
        raise NotApplicable("n 2 was refused, or no n 2 answer had both choices cut off by max_tokens: "
                            "the count could not be observed")
