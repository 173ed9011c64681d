"""Reference runs: a target serving SmolLM2-135M-Instruct must give the reference model's answers.

The rest of the suite judges answers by the API's rules; it cannot see a chat template applied
wrongly, a tokenizer that splits differently, logprobs taken at the wrong stage, max_tokens off by
one, stops matched on tokens, or samplers that temper at the wrong stage. These checks compare the
target with an oracle, the reference model in a chatconform mock reached over HTTP (or its
answers in a reference file), request for request, within the tolerance of the weights the target
runs (conformance.reference.tolerance). They run in the `reference` profile only
(`chatconform check URL --reference`); conformance.reference holds the corpus, the plan, the
comparisons and the judgement, and the run's reference.json lists every disagreement.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance.client import Target
from conformance.config import SuiteConfig
from conformance.reference import judge
from conformance.reference.judge import Finding
from conformance.reference.oracle import open_oracle
from conformance.reference.run import ReferenceRun
from conformance.reference.tolerance import tolerance_for
from conformance.registry import clause
from conformance.verdicts import NOTE_PROPERTY, Fail, NotApplicable, NotExercised

SHOWN = 8  # disagreements named in a failure message (reference.json has them all)
Recorder = Callable[[str, object], None]


@pytest.fixture(scope="module")
def reference(target: Target, suite_config: SuiteConfig) -> Iterator[ReferenceRun]:
    """The reference run: the oracle named by the configuration and the target's weights' tolerance."""
    oracle = open_oracle(suite_config)
    run = ReferenceRun(target, oracle, tolerance_for(suite_config.target_weights))
    try:
        yield run
    finally:
        if suite_config.report_dir is not None and run.findings:
            suite_config.report_dir.mkdir(parents=True, exist_ok=True)
            (suite_config.report_dir / "reference.json").write_text(
                json.dumps(run.summary(), indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        oracle.close()


def settle(run: ReferenceRun, clause_id: str, finding: Finding, record_property: Recorder, *,
           lost: list[Any], root: str = "request.messages.accepted") -> None:
    """Turn a Finding into a verdict: Fail with both sides of the first disagreement, else pass with a note."""
    run.record(clause_id, finding.judged, finding.disagreements, finding.note)
    if finding.disagreements:
        first = finding.disagreements[0]
        others = "; ".join(f"{d.case}" + (f" @{d.position}" if d.position is not None else "")
                           for d in finding.disagreements[1:SHOWN])
        more = f" (also: {others}{' ...' if len(finding.disagreements) > SHOWN else ''})" if others else ""
        raise Fail(f"{len(finding.disagreements)} disagreement(s) with the reference model over {finding.judged} "
                   f"{finding.unit} judged; first, {first.case}: {first.message}{more} [{run.tolerance.describe()}]",
                   expected=first.reference, actual=first.target, exchanges=finding.exchanges.get(first.case, ()))
    if lost:
        raise NotExercised(f"not exercised: {len(lost)} request(s) of the reference run got no usable answer "
                           f"(judged by {root})", root=root, actual=[f"{ex.status} {ex.body_text[:120]}" for ex in lost],
                           exchanges=tuple(lost))
    if finding.judged == 0:
        raise NotApplicable(f"nothing could be judged: {finding.note} [{run.tolerance.describe()}]")
    oracle = run.oracle.info
    record_property(NOTE_PROPERTY, f"{finding.note} [oracle {oracle.get('model')} {oracle.get('weights')}; "
                                   f"{run.tolerance.describe()}]")


def _token_level(run: ReferenceRun) -> None:
    """NotApplicable where the target's weights allow no token-level comparison."""
    if not run.tolerance.judged:
        raise NotApplicable(f"not comparable token by token: {run.tolerance.why_not}")


def _lost(pairs: list[Any]) -> list[Any]:
    return [p.exchange for p in pairs if p.answer is None]


def _without_logprobs(run: ReferenceRun) -> list[Any]:
    """Greedy answers that came without logprobs: the logprobs comparisons cannot use them."""
    return [p.exchange for p in run.greedy if p.answer is not None and p.answer.entries is None]


@clause("usage.reference.prompt-tokens")
def test_prompt_tokens(reference: ReferenceRun, record_property: Recorder) -> None:
    """For every conversation of the reference corpus, usage.prompt_tokens equals the reference model's count."""
    settle(reference, "usage.reference.prompt-tokens", judge.prompt_tokens(reference), record_property,
           lost=_lost(reference.greedy))


@clause("response.reference.greedy-tokens")
def test_greedy_tokens(reference: ReferenceRun, record_property: Recorder) -> None:
    """At temperature 0, the tokens and content equal the reference model's up to the first near-tie."""
    _token_level(reference)
    settle(reference, "response.reference.greedy-tokens", judge.greedy_tokens(reference), record_property,
           lost=_lost(reference.greedy))


@clause("logprobs.reference.chosen")
def test_chosen_logprobs(reference: ReferenceRun, record_property: Recorder) -> None:
    """At temperature 0, each chosen token's logprob lies within the tolerance of the reference model's."""
    _token_level(reference)
    settle(reference, "logprobs.reference.chosen", judge.chosen_logprobs(reference), record_property,
           lost=_lost(reference.greedy) + _without_logprobs(reference), root="logprobs.content.present")


@clause("logprobs.reference.top-set")
def test_top_sets(reference: ReferenceRun, record_property: Recorder) -> None:
    """At temperature 0 with top_logprobs 5, the alternatives are the reference model's, near-ties aside."""
    _token_level(reference)
    settle(reference, "logprobs.reference.top-set", judge.top_sets(reference), record_property,
           lost=_lost(reference.greedy) + _without_logprobs(reference), root="logprobs.content.present")


@clause("params.reference.max-tokens")
def test_max_tokens(reference: ReferenceRun, record_property: Recorder) -> None:
    """At temperature 0 with max_tokens 1, 2 or 5, the target generates as many tokens as the reference model."""
    _token_level(reference)
    settle(reference, "params.reference.max-tokens", judge.max_tokens(reference), record_property,
           lost=_lost(reference.max_tokens))


@clause("params.reference.stop")
def test_stop(reference: ReferenceRun, record_property: Recorder) -> None:
    """At temperature 0 with a stop sequence from the reference's text, the content ends where the reference's does."""
    _token_level(reference)
    settle(reference, "params.reference.stop", judge.stops(reference), record_property, lost=_lost(reference.stops))


@clause("response.reference.finish-reason")
def test_finish_reason(reference: ReferenceRun, record_property: Recorder) -> None:
    """Where the generated text equals the reference model's, finish_reason equals the reference's."""
    _token_level(reference)
    settle(reference, "response.reference.finish-reason", judge.finish_reasons(reference), record_property,
           lost=_lost(reference.greedy + reference.max_tokens + reference.stops))


@clause("usage.reference.completion-tokens")
def test_completion_tokens(reference: ReferenceRun, record_property: Recorder) -> None:
    """Where the generated text equals the reference model's, completion_tokens equals the reference's."""
    _token_level(reference)
    settle(reference, "usage.reference.completion-tokens", judge.completion_tokens(reference), record_property,
           lost=_lost(reference.greedy + reference.max_tokens + reference.stops))


@clause("params.reference.top-p-set")
def test_top_p_set(reference: ReferenceRun, record_property: Recorder) -> None:
    """With a seed, temperature at most 1 and top_p, each first sampled token lies in the tempered top-p set."""
    _token_level(reference)
    settle(reference, "params.reference.top-p-set", judge.top_p_sets(reference), record_property,
           lost=[s.exchange for s in reference.samples if s.answer is None])


@clause("logprobs.reference.temperature")
def test_temperature_logprobs(reference: ReferenceRun, record_property: Recorder) -> None:
    """With a seed and temperature below 1, each sampled logprob reads the same way: before or after temperature."""
    _token_level(reference)
    samples = reference.samples
    unanswered = [s.exchange for s in samples if s.answer is None]
    without = [s.exchange for s in samples if s.answer is not None and not s.answer.entries]
    # An answer without an entry for its one token: usage.completion-tokens.logprob-count judges that.
    settle(reference, "logprobs.reference.temperature", judge.temperature_readings(reference), record_property,
           lost=unanswered or without,
           root="request.messages.accepted" if unanswered else "usage.completion-tokens.logprob-count")
