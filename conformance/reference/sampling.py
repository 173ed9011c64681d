"""Seeded sampling, judged by what can be compared across implementations.

Two implementations given the same seed draw different random numbers, so sampled tokens cannot
be compared one for one. What can be compared is where a token may come from: with temperature T
and top_p p, the rule (temperature first, then top_p on the tempered distribution, as transformers,
TGI and vLLM do) allows only the top-p set of the tempered distribution. A token outside that set
is a sampler that applies top_p before temperature, or ignores top_p, or tempers the wrong way.

What the HTTP API lets us know of a distribution is its five most likely tokens; the other tokens
hold the remaining mass R, each no likelier than the fifth. For T <= 1 that bounds their tempered
mass: sum exp(l_j / T) <= R exp(l_5 (1/T - 1)) (in probabilities). A token is certainly outside the
set when the tokens certainly likelier than it hold at least p of the tempered mass even with the
unknown tokens at that bound and every margin moved by the tolerance against it. Positions past
the first are never judged: the chat API cannot feed the oracle the target's sampled prefix
(there is no assistant prefill), so only the first token's distribution is known, and it is known
exactly from a greedy answer to the same conversation. Each sampled request asks for one token.

Logprobs of a sampled token are judged against two readings: the model's distribution before
temperature (what the oracle, OpenAI's API and llama.cpp report) or the tempered one. A target
must match one of them, the same one throughout. Temperatures above 1 are never used: the tempered
mass of the unknown tokens then has no useful bound. Frequencies are not judged (they would need
many samples per position and say nothing more about the rule above).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from conformance.reference.answers import Alt, same_token
from conformance.reference.tolerance import FLOAT_SLACK

TEMPERATURES = (0.15, 0.25, 0.35, 0.5, 0.7, 0.85)
TOP_PS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
SAMPLED_CONVERSATIONS = 6  # conversations sampled, the most telling first
SEEDS = tuple(range(101, 109))  # eight seeds per conversation
MIN_DETECTION = 0.02  # a plan whose wrong-order mass is below this tells nothing: not used
PLAN_SLACK = 1e-3  # the margin tolerance the plan assumes (the judgement uses the real one)


@dataclass(frozen=True)
class Dist:
    """The listed tokens of one position, most likely first."""

    tokens: tuple[Alt, ...]

    @property
    def logprobs(self) -> tuple[float, ...]:
        """The listed logprobs, highest first."""
        return tuple(t.logprob for t in self.tokens)

    @property
    def rest(self) -> float:
        """The probability mass of the tokens not listed."""
        return max(0.0, 1.0 - sum(math.exp(lp) for lp in self.logprobs))

    def logprob(self, token: Alt) -> float | None:
        """The logprob of a listed token (None when it is not listed)."""
        return next((t.logprob for t in self.tokens if same_token(t, token)), None)

    def rest_tempered(self, temperature: float) -> float:
        """Upper bound of the unlisted tokens' tempered numerators (T <= 1)."""
        return self.rest * math.exp(self.logprobs[-1] * (1.0 / temperature - 1.0))


def outside_bound(dist: Dist, token: Alt | None, temperature: float, slack: float) -> float:
    """Lower bound of the tempered mass of the tokens certainly likelier than `token` (None: an unlisted one).

    The token lies outside the top-p set whenever this bound reaches p.
    """
    own = dist.logprob(token) if token is not None else None
    floor = own if own is not None else dist.logprobs[-1]
    above = [lp for lp in dist.logprobs if lp > floor + slack + FLOAT_SLACK]
    if not above:
        return 0.0
    others = [lp for lp in dist.logprobs if lp <= floor + slack + FLOAT_SLACK]
    top = max(dist.logprobs)  # numerators relative to the top one, so nothing underflows
    s_above = sum(math.exp((lp - top) / temperature) for lp in above)
    s_other = sum(math.exp((lp - top) / temperature) for lp in others)
    rest = dist.rest * math.exp(dist.logprobs[-1] * (1.0 / temperature - 1.0) - top / temperature)
    return s_above / (s_above + math.exp(slack / temperature) * (s_other + rest))


def certainly_outside(dist: Dist, token: Alt, temperature: float, top_p: float, slack: float) -> bool:
    """The token cannot lie in the top-p set of the tempered distribution, whatever the unknown tokens hold."""
    listed = token if dist.logprob(token) is not None else None  # an unlisted token is below every listed one
    return outside_bound(dist, listed, temperature, slack) >= top_p


def raw_nucleus(dist: Dist, top_p: float) -> tuple[list[int], bool]:
    """Indices of the listed tokens in the top-p set of the untempered distribution, and whether unlisted ones join."""
    chosen: list[int] = []
    mass = 0.0
    for i, lp in enumerate(dist.logprobs):
        if mass >= top_p:
            return chosen, False
        chosen.append(i)
        mass += math.exp(lp)
    return chosen, mass < top_p


def wrong_order_mass(dist: Dist, temperature: float, top_p: float) -> float:
    """Probability that top_p applied before temperature draws a token certainly outside the right set."""
    indices, unlisted = raw_nucleus(dist, top_p)
    top = max(dist.logprobs)
    weights = {i: math.exp((dist.logprobs[i] - top) / temperature) for i in indices}
    total = sum(weights.values()) + (dist.rest_tempered(temperature) * math.exp(-top / temperature) if unlisted else 0)
    hit = sum(w for i, w in weights.items()
              if certainly_outside(dist, dist.tokens[i], temperature, top_p, PLAN_SLACK))
    return hit / total if total > 0 else 0.0


def best_setting(dist: Dist) -> tuple[float, float, float]:
    """(temperature, top_p, wrong-order mass) that best tells the two orders apart at this position."""
    best = (TEMPERATURES[-1], TOP_PS[-1], 0.0)
    for temperature in TEMPERATURES:
        for top_p in TOP_PS:
            mass = wrong_order_mass(dist, temperature, top_p)
            if mass > best[2] + 1e-12:
                best = (temperature, top_p, mass)
    return best


def tempered_interval(dist: Dist, token: Alt, temperature: float, slack: float) -> tuple[float, float] | None:
    """Range of the tempered logprob of a listed token (None: not listed)."""
    own = dist.logprob(token)
    if own is None:
        return None
    top = max(dist.logprobs)
    listed = [math.exp((lp - top) / temperature) for lp in dist.logprobs]
    rest = dist.rest_tempered(temperature) * math.exp(-top / temperature)
    numerator = (own - top) / temperature
    spread = slack / temperature
    high = numerator - math.log(sum(listed)) + spread
    low = numerator - math.log(sum(listed) + rest) - spread
    return low - FLOAT_SLACK, min(0.0, high + FLOAT_SLACK)


def raw_interval(dist: Dist, token: Alt, margin: float) -> tuple[float, float] | None:
    """Range of the untempered logprob of a listed token when every margin may move by `margin`."""
    own = dist.logprob(token)
    if own is None:
        return None
    p = math.exp(min(own, 0.0))
    ratio = -math.expm1(min(own, 0.0)) / p
    return (-math.log1p(ratio * math.exp(margin)) - FLOAT_SLACK,
            min(0.0, -math.log1p(ratio * math.exp(-margin)) + FLOAT_SLACK))


def readings(dist: Dist, token: Alt, temperature: float, margin: float) -> set[str]:
    """Which readings of a sampled token's logprob fit: "before temperature", "after temperature" (empty: none)."""
    found = set()
    logprob = token.logprob
    raw = raw_interval(dist, token, margin)
    if raw is None:
        if logprob <= dist.logprobs[-1] + margin + FLOAT_SLACK:
            found.add("before temperature")
    elif raw[0] <= logprob <= raw[1]:
        found.add("before temperature")
    tempered = tempered_interval(dist, token, temperature, margin)
    if tempered is not None and tempered[0] <= logprob <= tempered[1]:
        found.add("after temperature")
    return found


def dist_of(tokens: Sequence[Alt]) -> Dist:
    """A Dist of the listed tokens, sorted most likely first."""
    return Dist(tuple(sorted(tokens, key=lambda t: -t.logprob)))
