"""Sampling parameters whose effect the suite must see: seed variation, top_p and the two penalties.

A server may check the range of seed, top_p or a penalty and then ignore the value; only the
effect tells. Each check compares answers with and without the parameter (or with distinct
values) and calls the parameter IGNORED only on evidence that a conforming server cannot
produce, or can only with a probability bounded in conformance/effects.py; when the model's
own answers leave the effect unobservable, the check says so (SKIPPED) instead of passing.
The logprobs of the answers are what makes the evidence safe: a target without them is judged
on what can be shown without them.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pytest

from conformance.checks.test_sampling import FRESH, POEM, _ask, _choice, _content, _seeds
from conformance.client import Exchange, Target
from conformance.config import SuiteConfig
from conformance.effects import (
    SEED_CONTENT_PROBABILITY,
    PredictedChange,
    TokenEntry,
    first_difference,
    predicted_change,
    same_tokens_through,
    seed_pinned,
    sequence_logprob,
    token_entries,
)
from conformance.registry import clause
from conformance.verdicts import NOTE_PROPERTY, Ignored, NotApplicable, NotExercised, require
from spec import limits

REPEAT = "List the word 'yes' twenty times."
PENALTY = 2.0
PENALTY_TOKENS = 48  # long enough for a repetition the penalty must break, on SmolLM2 and on random weights
TOP_LOGPROBS = limits.top_logprobs_range()[1]  # the most the spec allows: the more alternatives, the likelier an unrepeated rival is seen
TOP_P_SEEDS = 3


@pytest.fixture(scope="module")
def logprob_fields(target: Target) -> dict[str, Any]:
    """The logprobs fields the target answers with usable logprobs: with top_logprobs 5, without, or none.

    They do not change the generation; seed and top_p need the chosen tokens' logprobs, the
    penalties also need the alternatives.
    """
    for fields in ({"logprobs": True, "top_logprobs": TOP_LOGPROBS}, {"logprobs": True}):
        ex = target.chat(target.body(max_tokens=2, temperature=0, **fields), headers=FRESH)
        choices = ex.json.get("choices") if ex.status == 200 and isinstance(ex.json, dict) else None
        if isinstance(choices, list) and choices and token_entries(choices[0]) is not None:
            return fields
    return {}


def _ask_lp(target: Target, logprobs: dict[str, Any], prompt: str, feature: str, **params: Any) -> Exchange:
    """_ask with the logprobs fields the target takes (see logprob_fields)."""
    return _ask(target, prompt, feature, **params, **logprobs)


def _entries(ex: Exchange) -> list[TokenEntry] | None:
    return token_entries(_choice(ex))


# --- params.seed.varies -----------------------------------------------------------------------------


@clause("params.seed.varies")
def test_seed_varies(target: Target, suite_config: SuiteConfig, logprob_fields: dict[str, Any],
                     record_property: Any) -> None:
    """Among requests at temperature 1 that differ only in seed (five seeds), at least two contents differ."""
    seeds = _seeds(suite_config)
    plan = [*seeds, seeds[0]]  # the first seed once more: variation the seed does not explain is not its effect
    answers = target.many(partial(_ask_lp, target, logprob_fields, POEM, "seed", max_tokens=16, temperature=1.0,
                                  top_p=1, seed=s) for s in plan)
    varied, repeat = answers[:len(seeds)], answers[-1]
    contents = [_content(ex) for ex in varied]
    if len(set(contents)) >= 2:
        if _content(repeat) != contents[0]:
            raise NotExercised(
                f"the contents vary, but seed {seeds[0]} sent twice gave two contents: the variation is not the "
                "seed's doing, so its effect cannot be seen (judged by params.seed.reproducible)",
                root="params.seed.reproducible", actual=[contents[0], _content(repeat)], exchanges=(varied[0], repeat))
        record_property(NOTE_PROPERTY, f"{len(set(contents))} distinct contents from {len(seeds)} seeds; "
                                       f"seed {seeds[0]} sent again gave its content again")
        return
    entries = _entries(varied[0])
    pinned = seed_pinned(entries)
    if pinned is None or entries is None:
        raise NotApplicable("five seeds at temperature 1 gave one content, and without logprobs the suite cannot "
                            "tell an ignored seed from a model nearly certain of this answer",
                            actual=contents[0], exchanges=varied)
    odds = math.exp(sequence_logprob(entries))
    if not pinned:
        raise NotApplicable(f"five seeds gave one content, which the model's logprobs give probability {odds:.3g}: "
                            "equal answers are not unlikely enough to call the seed ignored",
                            actual=contents[0], exchanges=varied)
    raise Ignored(f"five different seeds at temperature 1 gave one content, of probability {odds:.3g} by its "
                  f"logprobs: seeds that select the draw repeat it with probability below "
                  f"{SEED_CONTENT_PROBABILITY ** 4:.0e}; the seed has no effect",
                  expected=">= 2 distinct contents", actual=contents[0], exchanges=varied)


# --- params.top-p.narrows ---------------------------------------------------------------------------


def _confident_prefix(entries: list[TokenEntry]) -> str:
    """The greedy content up to the first token whose probability is below 0.01.

    top_p 0.01 keeps only the most likely token exactly where that token holds at least 1% of the
    mass; on a flat distribution (e.g. random weights) the nucleus is wider and the clause's
    premise does not hold from that token on.
    """
    prefix = []
    for entry in entries:
        if entry.logprob < math.log(0.01):
            break
        prefix.append(entry.token)
    return "".join(prefix)


@clause("params.top-p.narrows")
def test_top_p_narrows(target: Target, suite_config: SuiteConfig, logprob_fields: dict[str, Any],
                       record_property: Any) -> None:
    """At temperature 1, a top_p of 0.01 yields the same content as temperature 0 for every seed tried.

    A conforming server decodes greedily wherever the greedy token holds at least 1% of the mass, so
    every seed must give the greedy prefix: chance plays no part. The contrast is the same seeds
    without top_p: a server that drops top_p answers each seed exactly as its contrast (the same
    request), so once a contrast leaves the greedy prefix, its top_p twin does too and the check
    says IGNORED. When no contrast leaves it, top_p has nothing to narrow: the clause cannot be
    observed. (A server ignoring the seed as well passes only if every top_p answer matches the
    greedy prefix by chance: p(prefix)^3 by the logprobs, about e^-43 on SmolLM2-135M.)
    """
    greedy = _ask_lp(target, logprob_fields, POEM, "temperature", max_tokens=12, temperature=0)
    expected = _content(greedy)
    entries = _entries(greedy)
    if entries is not None:  # without logprobs the premise is assumed for the whole content (any trained model)
        confident = _confident_prefix(entries)
        if not confident:
            raise NotApplicable("the greedy first token holds under 1% of the mass: top_p 0.01 need not be greedy",
                                exchanges=greedy)
        if expected.startswith(confident):
            expected = confident  # compare only where the premise holds
    seeds = _seeds(suite_config, TOP_P_SEEDS)
    answers = target.many(partial(_ask, target, POEM, "top_p", max_tokens=12, temperature=1.0, seed=s, **p)
                          for p in ({"top_p": 0.01}, {}) for s in seeds)
    narrowed, contrast = answers[:len(seeds)], answers[len(seeds):]
    for seed, ex, twin in zip(seeds, narrowed, contrast, strict=True):
        if not _content(ex).startswith(expected):
            raise Ignored(f"top_p 0.01 at temperature 1 (seed {seed}) left the greedy prefix, as the same seed does "
                          f"without top_p: top_p has no effect", expected=expected, actual=_content(ex),
                          exchanges=(greedy, ex, twin))
    departed = [s for s, twin in zip(seeds, contrast, strict=True) if not _content(twin).startswith(expected)]
    if not departed:
        raise NotApplicable(f"without top_p the seeds {seeds} also give the greedy prefix: there is nothing for "
                            "top_p 0.01 to narrow, so its effect cannot be observed", actual=expected,
                            exchanges=(greedy, *contrast))
    record_property(NOTE_PROPERTY, f"top_p 0.01 kept the greedy prefix {expected!r} for seeds {seeds}; "
                                   f"without it seeds {departed} left it")


# --- params.*-penalty ---------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    """Whitespace-separated, case-folded words (the clauses' unit of repetition)."""
    return text.casefold().split()


def _repeated(text: str) -> int:
    words = _words(text)
    return len(words) - len(set(words))


def _distinct_share(text: str) -> float:
    words = _words(text)
    return len(set(words)) / len(words) if words else 1.0


class PenaltyRun:
    """The same greedy request without and with a penalty, and what the baseline's logprobs predict."""

    def __init__(self, target: Target, name: str, logprobs: dict[str, Any]) -> None:
        plain, penal = target.many(
            partial(_ask_lp, target, logprobs, REPEAT, name, max_tokens=PENALTY_TOKENS, temperature=0, **{name: v})
            for v in (0, PENALTY))
        self.name, self.plain, self.penal = name, plain, penal
        self.before, self.after = _content(plain), _content(penal)
        self.base_entries = _entries(plain)
        weights = {"frequency": PENALTY} if name == "frequency_penalty" else {"presence": PENALTY}
        self.predicted: PredictedChange | None = predicted_change(self.base_entries, prompt=REPEAT, **weights)

    @property
    def exchanges(self) -> tuple[Exchange, Exchange]:
        return self.plain, self.penal

    def assert_effect(self) -> None:
        """Ignored when the penalized answer still holds the token the penalty had to displace.

        At temperature 0 both answers are deterministic; up to the predicted token they share a
        prefix unless the penalty acted earlier, and at that token a conforming server must choose
        otherwise (effects.predicted_change). So keeping it is proof, not chance.
        """
        if self.predicted is None or self.base_entries is None:
            return
        index = self.predicted.index
        penal_entries = _entries(self.penal)
        if penal_entries is not None:
            kept = same_tokens_through(self.base_entries, penal_entries, index)
        else:  # no logprobs on this answer: only an identical text shows the token kept
            kept = self.after == self.before
        if kept:
            raise Ignored(f"{self.name} {PENALTY} left the greedy answer unchanged through token {index}, where "
                          f"the unpenalized answer's logprobs show the penalty must change it: "
                          f"{self.predicted.describe()}", expected=f"another token at position {index}",
                          actual=self.after, exchanges=self.exchanges)

    def unobservable(self, what: str) -> NotApplicable:
        """The NotApplicable to raise when the baseline leaves nothing to judge, saying what was seen."""
        if self.predicted is not None:
            seen = f"the penalty did change the answer where predicted ({self.predicted.describe()})"
        elif self.before == self.after:
            seen = ("the answer is unchanged, and " + ("its logprobs show no token the penalty must displace"
                                                       if self.base_entries else "without logprobs the suite cannot "
                                                       "show that a conforming server would have changed it"))
        else:
            seen = f"the answer changed at character {first_difference(self.before, self.after)}"
        return NotApplicable(f"{what}; {seen}", actual=[self.before, self.after], exchanges=self.exchanges)

    def note(self) -> str:
        where = first_difference(self.before, self.after)
        return f"{self.name} {PENALTY} changed the greedy answer at character {where}"


@clause("params.frequency-penalty.reduces-repetition")
def test_frequency_penalty_reduces_repetition(target: Target, logprob_fields: dict[str, Any],
                                              record_property: Any) -> None:
    """At temperature 0, frequency_penalty 2.0 yields no more repeated words (whitespace-separated, case-folded) than frequency_penalty 0 for the same prompt and max_tokens."""
    run = PenaltyRun(target, "frequency_penalty", logprob_fields)
    run.assert_effect()
    before, after = _repeated(run.before), _repeated(run.after)
    if before == 0:
        raise run.unobservable("the unpenalized answer repeats no whitespace word, so no reduction can be seen")
    if run.before == run.after:
        raise run.unobservable(f"the answer with frequency_penalty {PENALTY} equals the one without")
    require(after <= before, f"frequency_penalty {PENALTY} gave more repeated words than 0",
            expected=f"<= {before}", actual=after, exchanges=run.exchanges)
    record_property(NOTE_PROPERTY, f"{run.note()}; repeated words {before} -> {after}")


@clause("params.presence-penalty.reduces-repetition")
def test_presence_penalty_reduces_repetition(target: Target, logprob_fields: dict[str, Any],
                                             record_property: Any) -> None:
    """At temperature 0, presence_penalty 2.0 yields at least as large a share of distinct words (whitespace-separated, case-folded) as presence_penalty 0 for the same prompt and max_tokens."""
    run = PenaltyRun(target, "presence_penalty", logprob_fields)
    run.assert_effect()
    before, after = _distinct_share(run.before), _distinct_share(run.after)
    if before == 1.0:
        raise run.unobservable("the unpenalized answer repeats no whitespace word, so no reduction can be seen")
    if run.before == run.after:
        raise run.unobservable(f"the answer with presence_penalty {PENALTY} equals the one without")
    require(after >= before, f"presence_penalty {PENALTY} gave a smaller share of distinct words than 0",
            expected=f">= {before:.3f}", actual=round(after, 3), exchanges=run.exchanges)
    record_property(NOTE_PROPERTY, f"{run.note()}; share of distinct words {before:.3f} -> {after:.3f}")
