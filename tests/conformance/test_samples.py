"""SampleSet and Deferred: a check judges what it observed, and a lost observation is never dropped."""

from __future__ import annotations

import json

import pytest

from conformance.exchange import Exchange
from conformance.samples import Deferred, Sample, SampleSet
from conformance.verdicts import Fail, NotApplicable, NotExercised, need, require


def exchange(status: int, body: object) -> Exchange:
    """A recorded exchange answering `status` with `body` as JSON."""
    return Exchange("POST", "http://target/v1/chat/completions", {}, "{}", status, {}, json.dumps(body), 0.0)


REFUSED = exchange(422, {"error": "n: at most 1", "error_type": "validation"})
BROKEN = exchange(500, {"error": "internal error", "error_type": "internal"})


def sample_set(*pairs: tuple[str, Exchange]) -> SampleSet:
    """Samples labelled as given; `n-2` is the one whose root permits a clear refusal."""
    return SampleSet([Sample(label, {}, ex, "request.n.multiple" if label == "n-2" else "request.messages.accepted",
                             refusable=label == "n-2") for label, ex in pairs])


def test_judged_yields_the_accepted_samples_then_reports_a_lost_one_with_its_root() -> None:
    samples = sample_set(("plain", exchange(200, {"id": "a"})), ("n-2", BROKEN), ("system", exchange(200, {})))
    seen = []
    with pytest.raises(NotExercised) as caught:
        for sample in samples.judged():
            seen.append(sample.label)
    assert seen == ["plain", "system"]
    assert caught.value.root == "request.n.multiple" and caught.value.exchanges == (BROKEN,)


def test_a_fail_on_an_accepted_sample_wins_over_a_lost_one() -> None:
    samples = sample_set(("plain", exchange(200, {"id": ""})), ("n-2", BROKEN))
    with pytest.raises(Fail):
        for sample in samples.judged():
            require(sample.exchange.json["id"] != "", "empty id")


def test_a_refusal_the_root_permits_is_nothing_lost() -> None:
    samples = sample_set(("plain", exchange(200, {})), ("n-2", REFUSED))
    assert [s.label for s in samples.judged()] == ["plain"]
    with pytest.raises(NotApplicable):
        samples.need("n-2")


def test_a_refusal_the_root_does_not_permit_is_lost() -> None:
    samples = sample_set(("plain", REFUSED))
    with pytest.raises(NotExercised) as caught:
        samples.need("plain")
    assert caught.value.root == "request.messages.accepted"


def test_deferred_keeps_the_first_not_exercised_until_settled_and_lets_a_fail_through() -> None:
    later = Deferred()
    with later:
        need(False, "a tool call", root="tools.choice.required")
    with later:
        need(False, "logprobs", root="logprobs.content.present")
    with pytest.raises(Fail), later:
        require(False, "broken")
    with pytest.raises(NotExercised) as caught:
        later.settle()
    assert caught.value.root == "tools.choice.required"
