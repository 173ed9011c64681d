"""Latency profiles: time to first token and inter-token delay added to an answer, with seeded jitter.

For testing how an app feels, and times out, against a slow provider. Chosen with `--latency PROFILE`
(CHATCONFORM_MOCK_LATENCY) for every request, or per request with the header `x-mock-latency: PROFILE`,
which replaces the server's profile (`none`: no added latency). The header is honoured without
`--allow-faults`: a slow answer breaks no rule of the spec. A profile is a preset name, key=value
pairs, or a preset followed by pairs that override it (`mobile,seed=3`):

  ttft=S    added before the answer's first token, seconds in [0, 60]
  itl=S     added before every later token, seconds in [0, 5]
  jitter=F  each delay is the base times (1 + F x u), u uniform in [-1, 1] from a seeded RNG; F in [0, 1]
  seed=N    the jitter's seed (default: the request's `seed`, else 0), an integer >= 0

The delays add to the model's own pace: a token is held its delay after it is ready (and after the
previous one was sent), never instead of it. A stream sends its role chunk at once and holds the
tokens; keep-alive comments fill long waits. A non-streamed answer comes after the sum of the delays
its tokens would have had streamed: ttft + itl x (tokens - 1), jittered. Every delay is logged at
debug level on the `mock_server.latency` logger.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, replace

from mock_server.errors import BadRequest

HEADER = "x-mock-latency"
MAX_TTFT_S = 60.0
MAX_ITL_S = 5.0
MAX_JITTER = 1.0
NONE = "none"

log = logging.getLogger("mock_server.latency")


class LatencyError(ValueError):
    """A latency profile names an unknown preset or key, or a value out of its bounds."""


@dataclass(frozen=True)
class LatencyProfile:
    """Seconds added before the first token (ttft) and each later one (itl), and their jitter."""

    ttft: float = 0.0
    itl: float = 0.0
    jitter: float = 0.0  # fraction of each delay: delay = base x (1 + jitter x u), u in [-1, 1]
    seed: int | None = None  # None: the request's seed, else 0

    @property
    def off(self) -> bool:
        """Nothing is added."""
        return self.ttft == 0 and self.itl == 0

    def text(self) -> str:
        """The canonical form, which parse_profile reads back to this profile."""
        if self.off and self.seed is None:
            return NONE
        text = f"ttft={self.ttft:g},itl={self.itl:g},jitter={self.jitter:g}"
        return text + (f",seed={self.seed}" if self.seed is not None else "")

    def schedule(self, request_seed: int | None) -> LatencySchedule:
        """The delays of one answer, drawn from this profile's seed, else the request's, else 0."""
        seed = self.seed if self.seed is not None else request_seed if request_seed is not None else 0
        return LatencySchedule(self, seed)


NO_LATENCY = LatencyProfile()

# name -> profile (seconds)
PRESETS: dict[str, LatencyProfile] = {
    NONE: NO_LATENCY,
    "fast": LatencyProfile(ttft=0.15, itl=0.01, jitter=0.2),  # a fast hosted API, close by
    "typical": LatencyProfile(ttft=0.5, itl=0.03, jitter=0.3),  # a hosted API at an ordinary load
    "slow-ttft": LatencyProfile(ttft=4.0, itl=0.03, jitter=0.3),  # a long queue or a cold start, then normal
    "mobile": LatencyProfile(ttft=1.2, itl=0.08, jitter=0.6),  # a phone on a poor network: slow and bursty
}
BOUNDS = {"ttft": MAX_TTFT_S, "itl": MAX_ITL_S, "jitter": MAX_JITTER}
KEYS = (*BOUNDS, "seed")


class LatencySchedule:
    """The delays of one answer, in order: the first token's (ttft-based), then every later one's (itl-based)."""

    def __init__(self, profile: LatencyProfile, seed: int) -> None:
        self.profile = profile
        self.seed = seed
        self._rng = random.Random(seed)
        self.drawn = 0  # delays drawn so far

    def next(self) -> float:
        """The next token's delay in seconds (one u drawn per delay, jitter or not)."""
        p = self.profile
        base = p.ttft if self.drawn == 0 else p.itl
        self.drawn += 1
        return max(0.0, base * (1 + p.jitter * self._rng.uniform(-1.0, 1.0)))

    def take(self, count: int) -> list[float]:
        """The next `count` delays."""
        return [self.next() for _ in range(count)]


def parse_profile(text: str) -> LatencyProfile:
    """`fast`, `ttft=0.8,itl=0.05,jitter=0.3,seed=7` or `mobile,seed=3` -> profile; LatencyError otherwise."""
    items = [item.strip() for item in text.split(",")]
    profile = NO_LATENCY
    if items and "=" not in items[0]:
        name = items.pop(0).lower()
        if name not in PRESETS:
            raise LatencyError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}, or keys "
                               f"{'=, '.join(KEYS)}= (as ttft=0.8,itl=0.05,jitter=0.3,seed=7); got {text!r}")
        profile = PRESETS[name]
    seen: set[str] = set()
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in KEYS:
            raise LatencyError(f"{item!r} is not one of {'=, '.join(KEYS)}= (a preset name comes first only; "
                               f"presets: {', '.join(PRESETS)}); got {text!r}")
        if key in seen:
            raise LatencyError(f"{key} is given twice; got {text!r}")
        seen.add(key)
        value = value.strip()
        if key == "seed":
            profile = replace(profile, seed=_seed(value, text))
        elif key == "ttft":
            profile = replace(profile, ttft=_bounded(key, value, text))
        elif key == "itl":
            profile = replace(profile, itl=_bounded(key, value, text))
        else:
            profile = replace(profile, jitter=_bounded(key, value, text))
    return profile


def _bounded(key: str, value: str, text: str) -> float:
    limit = BOUNDS[key]
    unit = "" if key == "jitter" else " seconds"
    try:
        number = float(value)
    except ValueError:
        raise LatencyError(f"{key} must be a number in [0, {limit:g}]{unit}, got {value!r} in {text!r}") from None
    if not (math.isfinite(number) and 0 <= number <= limit):
        raise LatencyError(f"{key} must be in [0, {limit:g}]{unit}, got {value!r} in {text!r}")
    return number


def _seed(value: str, text: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**63:
        raise LatencyError(f"seed must be an integer in [0, 2^63), got {value!r} in {text!r}")
    return seed


def latency_for(header: str | None, default: str | None) -> LatencyProfile:
    """A request's profile: the `x-mock-latency` header if sent, else the server's; 400 naming a bad header."""
    if header is None or not header.strip():
        return NO_LATENCY if default is None else parse_profile(default)
    try:
        return parse_profile(header)
    except LatencyError as exc:
        raise BadRequest(f"{HEADER}: {exc}", param=HEADER, code="invalid_header") from None


def log_delay(answer_id: str, index: int, seconds: float) -> None:
    """Record one applied delay (debug level): the answer, which delay of its schedule, how long."""
    log.debug("%s: latency %d: %.6f s", answer_id, index, seconds)
