"""Which requests a reference run makes, derived from the corpus and the oracle's own answers only.

First the greedy corpus; then, from the oracle's greedy answers, the max_tokens cases (cut before
the oracle's end), the stop cases (a stop sequence across a token boundary and one inside a
token, chosen from the oracle's text) and the sampling settings (a temperature and top_p per
conversation, chosen from the oracle's first-token distribution). Nothing depends on the target,
so a reference file made by `reference export` holds every answer a check will look up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conformance.reference.answers import Answer
from conformance.reference.corpus import CORPUS, TOP_LOGPROBS, Conversation, greedy_body
from conformance.reference.oracle import Oracle, OracleReply
from conformance.reference.sampling import (
    MIN_DETECTION,
    SAMPLED_CONVERSATIONS,
    SEEDS,
    Dist,
    best_setting,
    dist_of,
)

MAX_TOKENS = (1, 2, 5)  # cut points of the max_tokens cases
MAX_TOKENS_CONVERSATIONS = 4
STOP_CONVERSATIONS = 4
FALLBACK_SETTING = (0.7, 0.8)  # sampling setting when no conversation tells the two orders apart


@dataclass(frozen=True)
class Case:
    """One request both sides answer, with the oracle's reply."""

    name: str  # e.g. "greedy/plain", "max-tokens-5/plain", "stop-inside/plain"
    kind: str  # greedy | max-tokens | stop
    conversation: Conversation
    body: dict[str, Any]  # without `model`
    reply: OracleReply


@dataclass(frozen=True)
class SamplingPlan:
    """Seeded one-token requests for one conversation at one temperature and top_p."""

    conversation: Conversation
    temperature: float
    top_p: float
    detection: float  # probability that a top_p-before-temperature sampler draws a token outside the set
    first: Dist  # the oracle's first-token distribution (five alternatives)

    def bodies(self) -> list[tuple[int, dict[str, Any]]]:
        """(seed, body) per seed."""
        return [(seed, {"messages": self.conversation.as_messages(), "max_tokens": 1,
                        "temperature": self.temperature, "top_p": self.top_p, "seed": seed, "logprobs": True,
                        "top_logprobs": TOP_LOGPROBS}) for seed in SEEDS]


@dataclass(frozen=True)
class OraclePlan:
    """Every oracle answer a reference run uses."""

    greedy: tuple[Case, ...]
    max_tokens: tuple[Case, ...]
    stops: tuple[Case, ...]
    sampling: tuple[SamplingPlan, ...]

    def cases(self) -> Iterable[Case]:
        """Every case, greedy first."""
        yield from self.greedy
        yield from self.max_tokens
        yield from self.stops


def build_plan(oracle: Oracle, corpus: tuple[Conversation, ...] = CORPUS) -> OraclePlan:
    """Ask the oracle the greedy corpus, then the cases derived from its answers."""
    greedy = tuple(Case(f"greedy/{c.id}", "greedy", c, body, oracle.ask(body))
                   for c in corpus for body in [greedy_body(c.as_messages())])
    answered = [case for case in greedy if case.reply.ok]
    max_tokens = tuple(_max_tokens_cases(oracle, answered))
    stops = tuple(_stop_cases(oracle, answered))
    return OraclePlan(greedy, max_tokens, stops, tuple(_sampling_plans(answered)))


def _max_tokens_cases(oracle: Oracle, greedy: list[Case]) -> Iterable[Case]:
    long_enough = [c for c in greedy if c.reply.answer and c.reply.answer.generated() > max(MAX_TOKENS)]
    for case in long_enough[:MAX_TOKENS_CONVERSATIONS]:
        for n in MAX_TOKENS:
            body = greedy_body(case.conversation.as_messages(), max_tokens=n)
            yield Case(f"max-tokens-{n}/{case.conversation.id}", "max-tokens", case.conversation, body,
                       oracle.ask(body))


def stop_sequences(answer: Answer) -> list[tuple[str, str]]:
    """(label, stop) chosen from a greedy answer: one across a token boundary, one inside a token.

    Each stop first occurs where it was taken from, holds no line break (some servers trim those),
    and starts after the first token.
    """
    entries = answer.entries or ()
    texts = [e.chosen.text_bytes.decode("utf-8", errors="replace") for e in entries]
    content = answer.content
    found: list[tuple[str, str]] = []
    boundary = inside = None
    for i in range(1, len(texts)):
        prev, text = texts[i - 1], texts[i]
        offset = len(answer.text_of(i))  # characters before token i
        clean = "\ufffd" not in prev + text and not entries[i].chosen.is_end
        if boundary is None and clean and len(prev.strip()) >= 2 and len(text) >= 2:
            stop = prev[-2:] + text[:2]
            if "\n" not in stop and stop.strip() and content.find(stop) == offset - 2:
                boundary = stop
        if inside is None and clean and len(text) >= 4:
            stop = text[1:3]
            if "\n" not in stop and stop.strip() and content.find(stop) == offset + 1:
                inside = stop
    if boundary:
        found.append(("stop-boundary", boundary))
    if inside:
        found.append(("stop-inside", inside))
    return found


def _stop_cases(oracle: Oracle, greedy: list[Case]) -> Iterable[Case]:
    made = 0
    for case in greedy:
        pairs = stop_sequences(case.reply.answer) if case.reply.answer else []
        if not pairs or made >= STOP_CONVERSATIONS:
            continue
        made += 1
        for label, stop in pairs:
            body = greedy_body(case.conversation.as_messages(), stop=[stop])
            yield Case(f"{label}/{case.conversation.id}", "stop", case.conversation, body, oracle.ask(body))


def first_dist(answer: Answer) -> Dist | None:
    """The first generated token's listed distribution (None without at least two alternatives)."""
    if not answer.entries or len(answer.entries[0].tops) < 2:
        return None
    return dist_of(answer.entries[0].tops)


def _sampling_plans(greedy: list[Case]) -> list[SamplingPlan]:
    scored = []
    for case in greedy:
        dist = first_dist(case.reply.answer) if case.reply.answer else None
        if dist is not None:
            temperature, top_p, mass = best_setting(dist)
            scored.append(SamplingPlan(case.conversation, temperature, top_p, mass, dist))
    # Conversations whose likely first tokens are whole text come first: a server may hold back (or
    # report without bytes) a token that ends inside a UTF-8 character, leaving nothing to judge.
    telling = sorted((p for p in scored if p.detection >= MIN_DETECTION),
                     key=lambda p: (any(t.partial or t.is_end for t in p.first.tokens), -p.detection))
    if telling:
        return telling[:SAMPLED_CONVERSATIONS]
    temperature, top_p = FALLBACK_SETTING
    return [SamplingPlan(p.conversation, temperature, top_p, 0.0, p.first) for p in scored[:SAMPLED_CONVERSATIONS]]
