"""One reference run: the oracle's plan, the target's answers to the same requests, and their comparisons.

The checks of conformance/checks/test_reference.py each read one part of a `ReferenceRun`; every
part is computed once, on first use. Each check files what it found with `record`, and `summary`
gathers it for the run's reference.json (every disagreement, not only the first a check reports).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from conformance.client import Exchange, Target
from conformance.reference.answers import Alt, Answer, Entry
from conformance.reference.compare import Alignment, Disagreement, align, top_set_problem
from conformance.reference.oracle import Oracle
from conformance.reference.plan import Case, OraclePlan, SamplingPlan, build_plan
from conformance.reference.sampling import Dist, dist_of
from conformance.reference.tolerance import Tolerance, chosen_interval, within

OWN_SLACK = 1e-3  # a target's own reported logprobs, rounded for JSON: the slack their use needs


@dataclass
class Pair:
    """One case: the oracle's answer and the target's, and (greedy comparisons) how they align."""

    case: Case
    exchange: Exchange
    answer: Answer | None  # None unless 200 with a usable first choice

    @property
    def oracle(self) -> Answer:
        """The oracle's answer (pairs exist only for cases the oracle answered)."""
        assert self.case.reply.answer is not None
        return self.case.reply.answer

    @property
    def exchanges(self) -> tuple[Exchange, ...]:
        """The target's exchange, then the oracle's when it was live (evidence)."""
        own = self.case.reply.exchange
        return (self.exchange,) if own is None else (self.exchange, own)


@dataclass
class Sample:
    """One seeded one-token request of a sampling plan and the target's answer."""

    plan: SamplingPlan
    seed: int
    exchange: Exchange
    answer: Answer | None

    @property
    def token(self) -> Alt | None:
        """The sampled token: its logprobs entry, else its content (None: not observable, or no text to go by)."""
        if self.answer is None:
            return None
        if self.answer.entries:
            return self.answer.entries[0].chosen
        if self.answer.content == "":
            return None  # an end of turn, or a token inside a UTF-8 character: cannot be told apart
        return Alt(self.answer.content, 0.0, tuple(self.answer.content.encode("utf-8")))


class ReferenceRun:
    """The target against the oracle, within the tolerance of the target's weights."""

    def __init__(self, target: Target, oracle: Oracle, tolerance: Tolerance) -> None:
        self.target = target
        self.oracle = oracle
        self.tolerance = tolerance
        self.findings: dict[str, dict[str, Any]] = {}
        self._alignments: dict[str, Alignment] = {}

    @cached_property
    def plan(self) -> OraclePlan:
        """The oracle's answers (asked on first use)."""
        return build_plan(self.oracle)

    def _pairs(self, cases: tuple[Case, ...]) -> list[Pair]:
        answered = [c for c in cases if c.reply.ok]
        exchanges = self.target.many([self._sender(c.body) for c in answered])
        return [Pair(c, ex, Answer.parse(ex.json) if ex.status == 200 else None)
                for c, ex in zip(answered, exchanges, strict=True)]

    def _sender(self, body: dict[str, Any]) -> Callable[[], Exchange]:
        """A thunk that sends the body to the target (with the target's model id)."""
        return lambda: self.target.chat(self.target.body(**body))

    @cached_property
    def greedy(self) -> list[Pair]:
        """The greedy corpus, both sides."""
        return self._pairs(self.plan.greedy)

    @cached_property
    def max_tokens(self) -> list[Pair]:
        """The max_tokens cases, both sides."""
        return self._pairs(self.plan.max_tokens)

    @cached_property
    def stops(self) -> list[Pair]:
        """The stop cases, both sides."""
        return self._pairs(self.plan.stops)

    def alignment(self, pair: Pair) -> Alignment | None:
        """The greedy comparison of a pair (None when the target's answer is unusable)."""
        if pair.answer is None:
            return None
        if pair.case.name not in self._alignments:
            self._alignments[pair.case.name] = align(pair.case.name, pair.oracle, pair.answer, self.tolerance)
        return self._alignments[pair.case.name]

    def greedy_of(self, conversation_id: str) -> Alignment | None:
        """The greedy comparison of one conversation."""
        pair = next((p for p in self.greedy if p.case.conversation.id == conversation_id), None)
        return None if pair is None else self.alignment(pair)

    @cached_property
    def samples(self) -> list[Sample]:
        """Every seeded request of every sampling plan, answered by the target."""
        planned = [(plan, seed, body) for plan in self.plan.sampling for seed, body in plan.bodies()]
        exchanges = self.target.many([self._sender(b) for _, _, b in planned])
        return [Sample(plan, seed, ex, Answer.parse(ex.json) if ex.status == 200 else None)
                for (plan, seed, _), ex in zip(planned, exchanges, strict=True)]

    def sampling_dist(self, sample: Sample) -> tuple[Dist, float, str]:
        """The first-token distribution a sampled token is judged against, its slack, and where it comes from.

        The sample's own alternatives when they agree with the oracle's within the tolerance: they are the
        distribution the target drew from, known to the rounding of its numbers (a target's numbers may move
        between requests: llama.cpp computes a cached prompt in other batches). Otherwise the oracle's, every
        margin allowed to move by the tolerance.
        """
        plan = sample.plan
        own = self._own_first(sample)
        if own is not None and self.tolerance.margin > OWN_SLACK:
            return own, OWN_SLACK, "the sample's own first-token logprobs, which agree with the reference's"
        return plan.first, self.tolerance.margin, "the reference's first-token logprobs"

    def _own_first(self, sample: Sample) -> Dist | None:
        answer = sample.answer
        if answer is None or not answer.entries or len(answer.entries[0].tops) < 2:
            return None
        tops = answer.entries[0].tops
        reference = Entry(sample.plan.first.tokens[0], sample.plan.first.tokens)
        own = Entry(tops[0], tops)
        agrees = top_set_problem(reference, own, self.tolerance) is None and all(
            within(t.logprob, chosen_interval(listed, self.tolerance.margin))
            for t in tops if (listed := reference.top_logprob(t)) is not None)
        return dist_of(tops) if agrees else None

    def record(self, clause_id: str, judged: int, disagreements: list[Disagreement], note: str = "") -> None:
        """File what a check judged and found (for reference.json)."""
        self.findings[clause_id] = {"judged": judged, "note": note,
                                    "disagreements": [d.to_json() for d in disagreements]}

    def summary(self) -> dict[str, Any]:
        """reference.json: the oracle, the tolerance, and every check's findings."""
        tol = self.tolerance
        return {"oracle": self.oracle.info, "target": {"base_url": self.target.config.base_url,
                                                       "model": self.target.model},
                "tolerance": {"target_weights": tol.name, "summary": tol.summary,
                              "margin": tol.margin if tol.judged else None,
                              "mean_chosen": tol.mean_chosen if tol.judged else None, "judged": tol.judged,
                              "why_not": tol.why_not or None, "describe": tol.describe()},
                "clauses": self.findings}
