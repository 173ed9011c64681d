"""Evidence that a sampling parameter took effect, and the bounds that make an IGNORED verdict safe.

The sampling checks (checks/test_sampling.py) call a parameter ignored only on evidence that a
conforming server cannot produce, or can produce only with a probability bounded here. The
evidence comes from the answers' logprobs (chosen token, its logprob and the top alternatives):

* seed: five distinct seeds that all give one content c. A conforming server draws five
  independent samples, so that happens with probability p(c)^5; `seed_pinned` asks that the first
  answer's own logprobs put p(c) at or below SEED_CONTENT_PROBABILITY (see there for the bound).
* penalties: at temperature 0 a conforming server is deterministic, so chance plays no part;
  `predicted_change` reads from the unpenalized answer's logprobs the first token that the
  penalty must displace (its lead over an unrepeated alternative is smaller than the penalty it
  carries), so an answer that still holds that token proves the penalty was not applied.

Penalties follow OpenAI's definition (counted over the tokens sampled so far in the choice):
logit[j] -= frequency_penalty * c[j] + presence_penalty * (c[j] > 0).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Seeds: IGNORED needs five equal answers whose content c has p(c) <= 1e-3 by the first answer's
# logprobs. For a conforming server the five distinct seeds are five independent draws, so
#   P(IGNORED) = sum over such c of p(c)^5 <= (1e-3)^4 * sum p(c) <= 1e-12.
# A server whose hidden truncation (top_k, min_p) samples more narrowly than its logprobs say raises
# p(c); a 31-fold rise still keeps the bound under (0.031)^4 < 1e-6. An ignoring server that pins
# the seed repeats one draw, whose probability on any real text of 16 tokens is far below 1e-3
# (about e^-28 for SmolLM2-135M, e^-140 for the tiny random model), so it is always caught.
SEED_CONTENT_PROBABILITY = 1e-3

# Penalties: a token is predicted displaced only when its lead over an unrepeated alternative falls
# short of the penalty by this margin. Two forward passes over one prefix differ by rounding only
# (float32: ~1e-4 nats; batch-dependent bf16 kernels on GPUs: under 0.1), so the margin covers both.
PENALTY_SAFETY_NATS = 0.25


@dataclass(frozen=True)
class TokenEntry:
    """One generated token from logprobs.content: identity, logprob, and its top alternatives."""

    token: str
    key: tuple[str, tuple[int, ...]]  # token text and bytes: two ids with one text (byte fallback) differ
    logprob: float
    alternatives: tuple[tuple[tuple[str, tuple[int, ...]], float], ...]


def _key(entry: dict[str, Any]) -> tuple[str, tuple[int, ...]]:
    raw = entry.get("bytes")
    return str(entry.get("token", "")), tuple(raw) if isinstance(raw, list) else ()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def token_entries(choice: Any) -> list[TokenEntry] | None:
    """The choice's logprobs.content as TokenEntry items; None when absent or malformed."""
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    out = []
    for entry in content:
        if not isinstance(entry, dict) or not _number(entry.get("logprob")):
            return None
        alternatives = tuple((_key(a), float(a["logprob"])) for a in entry.get("top_logprobs") or []
                             if isinstance(a, dict) and _number(a.get("logprob")))
        out.append(TokenEntry(str(entry.get("token", "")), _key(entry), float(entry["logprob"]), alternatives))
    return out


def sequence_logprob(entries: Sequence[TokenEntry]) -> float:
    """log p of the whole generated sequence (the sum of the chosen tokens' logprobs)."""
    return sum(e.logprob for e in entries)


def seed_pinned(entries: Sequence[TokenEntry] | None) -> bool | None:
    """Whether five equal answers prove the seed ignored: None without logprobs to tell."""
    if not entries:
        return None
    return sequence_logprob(entries) <= math.log(SEED_CONTENT_PROBABILITY)


@dataclass(frozen=True)
class PredictedChange:
    """The first token a penalty must displace: where, which token, its lead and the penalty it carries."""

    index: int
    token: str
    rival: str
    lead: float
    penalty: float

    def describe(self) -> str:
        """One sentence for a verdict's message."""
        return (f"token {self.index} ({self.token!r}) leads the unrepeated {self.rival!r} by {self.lead:.2f} nats "
                f"but carries a penalty of {self.penalty:.2f}")


def predicted_change(entries: Sequence[TokenEntry] | None, *, frequency: float = 0.0, presence: float = 0.0,
                     prompt: str = "") -> PredictedChange | None:
    """The first position of a greedy, unpenalized answer that the penalties must change, if any.

    Up to that position the penalized answer has the same prefix (nothing earlier was displaced,
    or the answers already differ); there the chosen token's penalized logit falls below that of
    an alternative never generated before (whose penalty is 0), by at least PENALTY_SAFETY_NATS.
    Logprob differences are logit differences, so the logprobs' normalisation does not matter.
    A rival whose text occurs in `prompt` is passed over: a server that counts the prompt's tokens
    too (a reading of "the text so far") would penalize it as well.
    """
    if not entries:
        return None
    counts: Counter[tuple[str, tuple[int, ...]]] = Counter()
    for i, entry in enumerate(entries):
        seen = counts[entry.key]
        penalty = frequency * seen + (presence if seen else 0.0)
        fresh = [(key, lp) for key, lp in entry.alternatives
                 if key != entry.key and counts[key] == 0 and not (key[0].strip() and key[0].strip() in prompt)]
        if penalty > 0 and fresh:
            rival, best = max(fresh, key=lambda item: item[1])
            lead = entry.logprob - best
            if lead < penalty - PENALTY_SAFETY_NATS:
                return PredictedChange(i, entry.token, rival[0], lead, penalty)
        counts[entry.key] += 1
    return None


def same_tokens_through(baseline: Sequence[TokenEntry], other: Sequence[TokenEntry], index: int) -> bool:
    """Whether `other` generated exactly the baseline's tokens 0..index."""
    return len(other) > index and [e.key for e in other[: index + 1]] == [e.key for e in baseline[: index + 1]]


def first_difference(a: str, b: str) -> int | None:
    """The first character position where two texts differ (None when equal)."""
    if a == b:
        return None
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


__all__ = [
    "PENALTY_SAFETY_NATS", "SEED_CONTENT_PROBABILITY", "PredictedChange", "TokenEntry", "first_difference",
    "predicted_change", "same_tokens_through", "seed_pinned", "sequence_logprob", "token_entries",
]
