"""conformance.effects: the evidence that makes an IGNORED sampling verdict safe."""

from __future__ import annotations

import math
from typing import Any

from conformance.effects import (
    PENALTY_SAFETY_NATS,
    SEED_CONTENT_PROBABILITY,
    predicted_change,
    same_tokens_through,
    seed_pinned,
    token_entries,
)


def entry(token: str, logprob: float, *alternatives: tuple[str, float]) -> dict[str, Any]:
    """A logprobs.content entry whose top_logprobs hold the token itself and the alternatives."""
    top = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
    top += [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alternatives]
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": top}


def choice(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"index": 0, "logprobs": {"content": list(entries)}}


YES_YES = choice(entry(" Yes", -0.1, (" No", -3.0)), entry(" Yes", -0.4, (" No", -1.9)))


def test_a_repeated_token_that_leads_by_less_than_its_penalty_must_change() -> None:
    entries = token_entries(YES_YES)
    found = predicted_change(entries, presence=2.0)
    assert found is not None and found.index == 1 and found.rival == " No"
    assert math.isclose(found.lead, 1.5) and found.penalty == 2.0


def test_no_prediction_within_the_safety_margin_or_without_a_penalty() -> None:
    lead = 2.0 - PENALTY_SAFETY_NATS / 2  # short of the penalty, but by less than the margin
    entries = token_entries(choice(entry(" Yes", -0.1), entry(" Yes", -0.1, (" No", -0.1 - lead))))
    assert predicted_change(entries, presence=2.0) is None
    assert predicted_change(token_entries(YES_YES)) is None


def test_frequency_penalty_grows_with_the_count() -> None:
    third = entry(" Yes", -0.1, (" No", -3.0))  # leads by 2.9: under 2 x 2.0 at its third occurrence
    entries = token_entries(choice(entry(" Yes", -0.1), entry(" Yes", -0.1), third))
    found = predicted_change(entries, frequency=2.0)
    assert found is not None and found.index == 2 and found.penalty == 4.0


def test_rivals_already_generated_or_in_the_prompt_are_passed_over() -> None:
    entries = token_entries(choice(entry(" No", -0.2), entry(" Yes", -0.1), entry(" Yes", -0.4, (" No", -0.5))))
    assert predicted_change(entries, presence=2.0) is None  # " No" was generated: it carries a penalty too
    assert predicted_change(token_entries(YES_YES), presence=2.0, prompt="Answer No or Yes.") is None


def test_tokens_with_one_text_but_other_bytes_are_distinct() -> None:
    fallback = {"token": "\ufffd", "logprob": -0.1, "bytes": [0xE2], "top_logprobs": []}
    other = {"token": "\ufffd", "logprob": -0.1, "bytes": [0x98],
             "top_logprobs": [{"token": "x", "logprob": -0.2, "bytes": [120]}]}
    assert predicted_change(token_entries(choice(fallback, other)), presence=2.0) is None


def test_same_tokens_through_compares_the_prefix_only() -> None:
    base = token_entries(YES_YES)
    other = token_entries(choice(entry(" Yes", -0.1), entry(" No", -0.2)))
    assert same_tokens_through(base, other, 0) and not same_tokens_through(base, other, 1)
    assert not same_tokens_through(base, base[:1], 1)


def test_seed_pinned_needs_an_unlikely_content() -> None:
    unlikely = token_entries(choice(*[entry("a", math.log(SEED_CONTENT_PROBABILITY) / 2)] * 3))
    likely = token_entries(choice(entry("a", -0.01), entry("b", -0.02)))
    assert seed_pinned(unlikely) is True
    assert seed_pinned(likely) is False
    assert seed_pinned(None) is None and token_entries({"logprobs": None}) is None
