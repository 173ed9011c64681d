"""The judgement of each reference clause over a ReferenceRun: what was judged, what disagrees.

Each function returns a `Finding`: how many things it judged, the disagreements, and a note for a
pass. The checks (conformance/checks/test_reference.py) turn a Finding into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.client import Exchange
from conformance.reference.compare import (
    REPORTING,
    Disagreement,
    chosen_disagreements,
    mean_chosen_difference,
    top_set_disagreements,
)
from conformance.reference.run import Pair, ReferenceRun, Sample
from conformance.reference.sampling import Dist, certainly_outside, outside_bound, readings


@dataclass
class Finding:
    """What one clause's judgement found."""

    judged: int
    unit: str  # what `judged` counts
    disagreements: list[Disagreement] = field(default_factory=list)
    note: str = ""
    exchanges: dict[str, tuple[Exchange, ...]] = field(default_factory=dict)  # case -> evidence


def _evidence(pairs: list[Pair]) -> dict[str, tuple[Exchange, ...]]:
    return {p.case.name: p.exchanges for p in pairs}


def prompt_tokens(run: ReferenceRun) -> Finding:
    """usage.prompt_tokens of every greedy pair."""
    out = Finding(0, "conversations", exchanges=_evidence(run.greedy))
    for pair in run.greedy:
        if pair.answer is None or pair.answer.prompt_tokens is None:
            continue
        out.judged += 1
        want, got = pair.oracle.prompt_tokens, pair.answer.prompt_tokens
        if want != got:
            out.disagreements.append(Disagreement(
                pair.case.name, "prompt-tokens", f"{pair.case.conversation.id} ({pair.case.conversation.purpose}): "
                f"prompt_tokens {got}, the reference's {want}", None,
                {"prompt_tokens": want, "messages": pair.case.conversation.as_messages()}, {"prompt_tokens": got}))
    out.note = f"{out.judged} conversations with the reference's prompt_tokens"
    return out


def greedy_tokens(run: ReferenceRun) -> Finding:
    """Token by token (or by text), every greedy pair."""
    out = Finding(0, "tokens", exchanges=_evidence(run.greedy))
    excused = by_text = 0
    for pair in run.greedy:
        alignment = run.alignment(pair)
        if alignment is None:
            continue
        out.judged += alignment.judged
        excused += alignment.excused_at is not None
        by_text += alignment.by_text
        out.disagreements += alignment.disagreements
    out.note = (f"{out.judged} tokens of {len(run.greedy)} conversations equal; {excused} near-ties where "
                f"judging stopped" + (f"; {by_text} compared by text (no logprobs)" if by_text else ""))
    return out


def chosen_logprobs(run: ReferenceRun) -> Finding:
    """Per-token intervals and the mean difference over the judged greedy positions."""
    alignments = [a for a in (run.alignment(p) for p in run.greedy) if a is not None and not a.by_text]
    out = Finding(0, "tokens", exchanges=_evidence(run.greedy))
    for alignment in alignments:
        out.judged += len(alignment.pairs)
        out.disagreements += chosen_disagreements(alignment, run.tolerance)
    mean, count = mean_chosen_difference(alignments)
    limit = run.tolerance.mean_chosen
    if count and mean > limit:
        out.disagreements.append(Disagreement(
            "greedy/*", "chosen-logprob-mean", f"the chosen tokens' logprobs differ from the reference's by "
            f"{mean:.4g} on average over {count} tokens, more than the mean tolerance {limit:g}", None,
            {"mean_tolerance": limit}, {"mean_abs_difference": round(mean, 6), "tokens": count}))
    out.note = f"{count} chosen tokens within their intervals; mean |difference| {mean:.3g} (tolerance {limit:g})"
    return out


def top_sets(run: ReferenceRun) -> Finding:
    """The alternatives at every judged greedy position."""
    out = Finding(0, "positions", exchanges=_evidence(run.greedy))
    for pair in run.greedy:
        alignment = run.alignment(pair)
        if alignment is None or alignment.by_text:
            continue
        out.judged += sum(1 for _, o, t in alignment.pairs if o.tops and t.tops)
        out.disagreements += top_set_disagreements(alignment, run.tolerance)
    out.note = f"{out.judged} positions with the reference's alternatives, near-ties at the list's end aside"
    return out


def max_tokens(run: ReferenceRun) -> Finding:
    """Token count and text of every max_tokens pair."""
    out = Finding(0, "requests", exchanges=_evidence(run.max_tokens))
    for pair in run.max_tokens:
        alignment = run.alignment(pair)
        if alignment is None:
            continue
        n, target = pair.oracle.generated(), pair.answer
        assert target is not None
        out.judged += 1
        # Merged logprobs entries are the greedy clause's business: count the tokens by usage when it is given.
        count = target.completion_tokens if target.completion_tokens is not None else target.generated()
        wrong = [d for d in alignment.disagreements if d.kind not in REPORTING]
        if wrong:
            out.disagreements.append(wrong[0])
        elif count != n and not (alignment.excused_at is not None and target.finish_reason == "stop"):
            out.disagreements.append(Disagreement(
                pair.case.name, "token-count", f"{pair.case.name}: the target generated {count} "
                f"tokens, the reference {n}", None, {"tokens": n, "content": pair.oracle.content},
                {"tokens": count, "content": target.content, "completion_tokens": target.completion_tokens}))
    out.note = f"{out.judged} max_tokens requests cut where the reference's are"
    return out


def _stop_judged(run: ReferenceRun, pair: Pair) -> bool:
    """The target's greedy answer to the conversation equals the reference's through the stop sequence."""
    greedy = run.greedy_of(pair.case.conversation.id)
    if greedy is None or any(d.kind not in REPORTING for d in greedy.disagreements):
        return False
    if greedy.complete:
        return True
    stop = pair.case.body["stop"][0]
    reach = len(pair.oracle.content) + len(stop)
    full = next((g for g in run.plan.greedy if g.conversation.id == pair.case.conversation.id), None)
    answer = full.reply.answer if full else None
    return answer is not None and len(answer.text_of(greedy.judged)) >= reach


def stops(run: ReferenceRun) -> Finding:
    """Content and finish_reason of every stop pair whose text the target's greedy answer shares."""
    out = Finding(0, "requests", exchanges=_evidence(run.stops))
    for pair in run.stops:
        if pair.answer is None or not _stop_judged(run, pair):
            continue
        out.judged += 1
        target, oracle = pair.answer, pair.oracle
        if target.content != oracle.content or target.finish_reason != oracle.finish_reason:
            out.disagreements.append(Disagreement(
                pair.case.name, "stop", f"{pair.case.name}: with stop {pair.case.body['stop'][0]!r} the target "
                f"answered {target.content!r} ({target.finish_reason}), the reference {oracle.content!r} "
                f"({oracle.finish_reason})", None,
                {"stop": pair.case.body["stop"], "content": oracle.content, "finish_reason": oracle.finish_reason},
                {"content": target.content, "finish_reason": target.finish_reason}))
    out.note = f"{out.judged} stop sequences (across and inside tokens) matched on the text"
    return out


def _same_text(run: ReferenceRun) -> list[Pair]:
    """Pairs whose whole generation is judged equal (greedy and max_tokens), and judged stop pairs with equal text."""
    same = [p for p in run.greedy + run.max_tokens if (a := run.alignment(p)) is not None and a.complete]
    same += [p for p in run.stops if p.answer is not None and _stop_judged(run, p)
             and p.answer.content == p.oracle.content]
    return same


def finish_reasons(run: ReferenceRun) -> Finding:
    """finish_reason wherever the text is the same."""
    pairs = _same_text(run)
    out = Finding(len(pairs), "requests", exchanges=_evidence(pairs))
    for pair in pairs:
        assert pair.answer is not None
        if pair.answer.finish_reason != pair.oracle.finish_reason:
            out.disagreements.append(Disagreement(
                pair.case.name, "finish-reason", f"{pair.case.name}: finish_reason {pair.answer.finish_reason!r}, "
                f"the reference's {pair.oracle.finish_reason!r} for the same text", None,
                {"finish_reason": pair.oracle.finish_reason, "content": pair.oracle.content},
                {"finish_reason": pair.answer.finish_reason}))
    out.note = f"{len(pairs)} generations with the reference's text and finish_reason"
    return out


def completion_tokens(run: ReferenceRun) -> Finding:
    """completion_tokens wherever the text is the same (one more allowed after an end of turn)."""
    pairs = _same_text(run)
    out = Finding(0, "requests", exchanges=_evidence(pairs))
    counted_end = 0
    for pair in pairs:
        assert pair.answer is not None
        got, want = pair.answer.completion_tokens, pair.oracle.completion_tokens
        if got is None or want is None:
            continue
        out.judged += 1
        ended = pair.case.kind != "stop" and pair.oracle.finish_reason == "stop"
        counted_end += ended and got == want + 1
        if got != want and not (ended and got == want + 1):
            out.disagreements.append(Disagreement(
                pair.case.name, "completion-tokens", f"{pair.case.name}: completion_tokens {got}, the reference's "
                f"{want} for the same text ({pair.oracle.finish_reason})", None,
                {"completion_tokens": want, "content": pair.oracle.content}, {"completion_tokens": got}))
    out.note = f"{out.judged} generations with the reference's completion_tokens" + (
        f" ({counted_end} counting the end-of-turn token)" if counted_end else "")
    return out


def top_p_sets(run: ReferenceRun) -> Finding:
    """Every sampled first token against the top-p set after temperature."""
    out = Finding(0, "samples", exchanges={_sample_case(s): (s.exchange,) for s in run.samples})
    sources = set()
    for sample in run.samples:
        token = sample.token
        if token is None:
            continue
        dist, slack, source = run.sampling_dist(sample)
        sources.add(source)
        out.judged += 1
        plan = sample.plan
        if certainly_outside(dist, token, plan.temperature, plan.top_p, slack):
            bound = outside_bound(dist, token if dist.logprob(token) is not None else None, plan.temperature, slack)
            out.disagreements.append(Disagreement(
                _sample_case(sample), "top-p",
                f"temperature {plan.temperature}, top_p {plan.top_p}, seed {sample.seed}: the target drew "
                f"{token.token!r}, yet the tokens certainly likelier hold at least {bound:.3f} of the tempered "
                f"mass", 0, {**_dist_evidence(dist, slack, source), "temperature": plan.temperature,
                             "top_p": plan.top_p}, token.show()))
    out.note = (f"{out.judged} sampled first tokens in {len(run.plan.sampling)} conversations inside the top-p set "
                f"after temperature; settings " + ", ".join(
                    f"{p.conversation.id} T {p.temperature} top_p {p.top_p}" for p in run.plan.sampling)
                + f"; distributions from {' and '.join(sorted(sources)) or 'nowhere'}")
    return out


def temperature_readings(run: ReferenceRun) -> Finding:
    """Every sampled token's logprob against the untempered and the tempered reading."""
    out = Finding(0, "samples", exchanges={_sample_case(s): (s.exchange,) for s in run.samples})
    common = {"before temperature", "after temperature"}
    first_break: Disagreement | None = None
    for sample in run.samples:
        answer = sample.answer
        if answer is None or not answer.entries or answer.entries[0].chosen.is_end:
            continue
        # The reference's distribution, margins free to move by the tolerance: the clause compares with it.
        dist, slack, source = sample.plan.first, run.tolerance.margin, "the reference's first-token logprobs"
        chosen = answer.entries[0].chosen
        fits = readings(dist, chosen, sample.plan.temperature, slack)
        out.judged += 1
        if common & fits:
            common &= fits
            continue
        if first_break is not None:
            continue
        first_break = Disagreement(
            _sample_case(sample), "temperature-logprob",
            f"temperature {sample.plan.temperature}, seed {sample.seed}: token {chosen.token!r} has logprob "
            f"{chosen.logprob:.6g}, which fits " + (" / ".join(sorted(fits)) if fits else "neither reading")
            + (f" while earlier answers fit only {' / '.join(sorted(common))}" if fits else ""), 0,
            {**_dist_evidence(dist, slack, source), "temperature": sample.plan.temperature}, chosen.show())
    if first_break is not None:
        out.disagreements.append(first_break)
    out.note = f"{out.judged} sampled logprobs read consistently as {' or '.join(sorted(common))}"
    return out


def _sample_case(sample: Sample) -> str:
    return f"sample/{sample.plan.conversation.id}/seed-{sample.seed}"


def _dist_evidence(dist: Dist, slack: float, source: str) -> dict[str, object]:
    return {"first_token_logprobs": [t.show() for t in dist.tokens], "distribution_from": source, "slack": slack}
