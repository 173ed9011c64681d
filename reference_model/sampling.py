"""Sampling parameters and the sampler: one token id from one row of logits.

The sampler applies these stages, in this order, to the logits of one position
(float32 [vocab] from the engine, widened to float64 [vocab] first):

1. logit bias: `logit[i] += logit_bias[i]` (OpenAI's `logit_bias`).
2. penalties (OpenAI's definition, counted over the tokens generated so far in this choice,
   never over the prompt): `logit[i] -= frequency_penalty * count[i]
   + presence_penalty * (count[i] > 0)`.
3. logprobs are taken here: log-softmax of the biased, penalized logits (see `logprobs.py`).
   The constraint mask is not in it, so every token has a finite logprob and there are always
   `top_logprobs` alternatives; temperature and top_p are not in it, so the numbers describe
   the model (as penalized by the request), not the randomness of this draw.
4. constraint mask: tokens the grammar forbids get -inf (llguidance; see `constraints.py`, `grammar.py`).
5. temperature: 0 means greedy, the highest logit wins (ties: lowest id) and stages 6-7 are
   skipped; otherwise `logit /= temperature`.
6. top_p: keep the smallest set of most likely tokens (sorted by probability, ties by id)
   whose probability adds up to at least top_p (within 1e-9, so that rounding in the sum never
   adds a token); at least one token is always kept.
7. draw: one uniform number u in [0, 1) per token from the sampler's generator, then inverse-CDF
   over the kept probabilities in token-id order (float64 cumulative sum), so the random stream
   advances by exactly one draw per token whatever the vocabulary or the sort.

The generator is PCG64 seeded from `seed` (a given seed gives the same tokens on any machine of
the same platform); without a seed, 64 bits from the OS are drawn and exposed as `seed_used`.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from reference_model.errors import Param, ReferenceModelError, RequestError
from reference_model.logprobs import log_softmax, top_alternatives

# The engine's own bounds. An API's (how many stop sequences, how many alternatives, how large a
# bias) are the API's to check: the engine takes any number the sampler can honour.
MAX_SEED = 2**64 - 1  # the PCG64 seed is 64 bits
TOP_P_TOLERANCE = 1e-9  # float64 sums of probabilities are off by ~1e-16 per term


class SamplingParamError(RequestError):
    """A sampling parameter is out of range or of the wrong type; names the parameter, rule and value."""

    def __init__(self, param: Param, rule: str, value: object, *, index: int | None = None) -> None:
        where = param.value if index is None else f"{param.value}[{index}]"
        super().__init__(param, f"must be {rule}, got {value!r}", index=index, rule=rule,
                         message=f"{where} must be {rule}, got {value!r}")
        self.value = value


class SamplingError(ReferenceModelError, RuntimeError):
    """Sampling could not choose a token (logits not finite, or nothing allowed)."""


def _number(param: Param, value: object, rule: str, index: int | None = None) -> float:
    """A finite int or float (never a bool) as a float; SamplingParamError otherwise."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise SamplingParamError(param, rule, value, index=index)
    return float(value)


def _check_range(param: Param, value: object, low: float, high: float, *, low_open: bool = False) -> None:
    rule = f"a number in {'(' if low_open else '['}{low:g}, {high:g}]"
    number = _number(param, value, rule)
    if (number <= low if low_open else number < low) or number > high:
        raise SamplingParamError(param, rule, value)


@dataclass(frozen=True)
class SamplingParams:
    """Validated generation parameters of one request; out-of-range values are refused, never clamped."""

    #: Softmax temperature in [0, 2]; 0 means greedy (argmax, ties to the lowest id).
    temperature: float = 1.0
    #: Nucleus mass in (0, 1]: sample among the fewest most likely tokens holding at least this mass.
    top_p: float = 1.0
    #: In [-2, 2]: subtracted from a token's logit once per earlier occurrence in the output.
    frequency_penalty: float = 0.0
    #: In [-2, 2]: subtracted from a token's logit once if it occurred in the output at all.
    presence_penalty: float = 0.0
    #: At most this many generated tokens (>= 1); None means up to the context window.
    max_tokens: int | None = None
    #: Seed of the random stream in [0, 2^64 - 1]; None draws fresh OS entropy.
    seed: int | None = None
    #: Whether to return each chosen token's logprob.
    logprobs: bool = False
    #: Alternatives per position (>= 0, at most the vocabulary); needs logprobs=True when above 0.
    top_logprobs: int = 0
    #: Non-empty stop sequences (a single string counts as one).
    stop: tuple[str, ...] = ()
    #: Token id -> finite bias added to its logit (OpenAI's logit_bias).
    logit_bias: tuple[tuple[int, float], ...] = field(default=())

    def __post_init__(self) -> None:
        _check_range(Param.TEMPERATURE, self.temperature, 0.0, 2.0)
        _check_range(Param.TOP_P, self.top_p, 0.0, 1.0, low_open=True)
        _check_range(Param.FREQUENCY_PENALTY, self.frequency_penalty, -2.0, 2.0)
        _check_range(Param.PRESENCE_PENALTY, self.presence_penalty, -2.0, 2.0)
        if self.max_tokens is not None and (
                not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1):
            raise SamplingParamError(Param.MAX_TOKENS, "an integer >= 1 or None", self.max_tokens)
        if self.seed is not None and (
                not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED):
            raise SamplingParamError(Param.SEED, f"an integer in [0, {MAX_SEED}] or None", self.seed)
        if not isinstance(self.logprobs, bool):
            raise SamplingParamError(Param.LOGPROBS, "a boolean", self.logprobs)
        if not isinstance(self.top_logprobs, int) or isinstance(self.top_logprobs, bool) or self.top_logprobs < 0:
            raise SamplingParamError(Param.TOP_LOGPROBS, "an integer >= 0", self.top_logprobs)
        if self.top_logprobs > 0 and not self.logprobs:
            raise SamplingParamError(Param.TOP_LOGPROBS, "0 unless logprobs is true", self.top_logprobs)
        object.__setattr__(self, "stop", _normalize_stop(self.stop))
        object.__setattr__(self, "logit_bias", _normalize_bias(self.logit_bias))


def _normalize_stop(stop: object) -> tuple[str, ...]:
    # OpenAI accepts one string as well as a list; both become a tuple (hashable, immutable).
    items = (stop,) if isinstance(stop, str) else stop
    if not isinstance(items, Sequence):
        raise SamplingParamError(Param.STOP, "a string or a sequence of strings", stop)
    items = tuple(items)
    for n, s in enumerate(items):
        if not isinstance(s, str) or not s:
            raise SamplingParamError(Param.STOP, "a non-empty string", s, index=n)
    return items


def _normalize_bias(bias: object) -> tuple[tuple[int, float], ...]:
    # A mapping (the API's form) or a sequence of (id, bias) pairs (the stored form).
    if isinstance(bias, Mapping):
        pairs = list(bias.items())
    elif isinstance(bias, Sequence) and not isinstance(bias, str):
        pairs = list(bias)
    else:
        raise SamplingParamError(Param.LOGIT_BIAS, "a mapping of token id to number", bias)
    out: dict[int, float] = {}
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise SamplingParamError(Param.LOGIT_BIAS, "a mapping of token id to number", bias)
        token, value = pair
        if not isinstance(token, int) or isinstance(token, bool) or token < 0:
            raise SamplingParamError(Param.LOGIT_BIAS, "keyed by non-negative integer token ids", token)
        out[token] = _number(Param.LOGIT_BIAS, value, "a finite number", index=token)
    return tuple(sorted(out.items()))


# --- stages: pure functions over float64 [vocab] logits ------------------------------------------


def apply_logit_bias(logits: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Stage 1: add a [vocab] bias vector (None: unchanged)."""
    return logits if bias is None else logits + bias


def apply_penalties(logits: np.ndarray, counts: np.ndarray, frequency_penalty: float,
                    presence_penalty: float) -> np.ndarray:
    """Stage 2: OpenAI's penalties, logit - fp * count - pp * (count > 0), counts int [vocab]."""
    if frequency_penalty == 0.0 and presence_penalty == 0.0:
        return logits
    return logits - frequency_penalty * counts - presence_penalty * (counts > 0)


def apply_mask(logits: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """Stage 4: forbidden tokens (allowed bool [vocab] is False) get -inf; None allows all."""
    if allowed is None:
        return logits
    return np.where(allowed, logits, -np.inf)


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Stage 5: divide by a positive temperature (0 is handled by `choose` as greedy)."""
    if temperature <= 0.0:
        raise SamplingError(f"apply_temperature needs a temperature > 0, got {temperature!r}; 0 means argmax")
    return logits if temperature == 1.0 else logits / temperature


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities float64 [vocab] of logits that may hold -inf (at least one finite)."""
    shifted: np.ndarray = np.exp(logits - np.max(logits))
    total = float(shifted.sum())
    return shifted / total


def apply_top_p(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Stage 6: keep the fewest most likely tokens whose mass reaches top_p (at least one); others -inf."""
    if top_p >= 1.0:
        return logits
    probs = softmax(logits)
    # Stable sort of -p puts the most likely first and breaks ties by the lower id.
    order = np.argsort(-probs, kind="stable")
    cumulative = np.cumsum(probs[order])
    # Number kept: first position whose running mass reaches top_p, counted inclusively.
    keep = min(int(np.searchsorted(cumulative, top_p - TOP_P_TOLERANCE, side="left")) + 1, len(order))
    out = np.full_like(logits, -np.inf)
    kept = order[:keep]
    out[kept] = logits[kept]
    return out


def choose_greedy(logits: np.ndarray) -> int:
    """Temperature 0: the id of the highest logit, the lowest id among equals."""
    return int(np.argmax(logits))


def choose_sample(logits: np.ndarray, uniform: float) -> int:
    """Stage 7: inverse-CDF draw in token-id order from one uniform in [0, 1)."""
    probs = np.exp(logits - np.max(logits))  # unnormalized, float64 [vocab]; -inf -> 0
    cdf = np.cumsum(probs)
    # The first id whose cumulative mass exceeds u * total; a zero-probability id never wins,
    # since its cdf equals its predecessor's.
    index = int(np.searchsorted(cdf, uniform * cdf[-1], side="right"))
    return min(index, len(cdf) - 1)


def check_vocabulary(params: SamplingParams, vocab_size: int) -> None:
    """The parameters' rules that depend on the model: bias ids in the vocabulary, alternatives at most it."""
    for token, _ in params.logit_bias:
        if token >= vocab_size:
            raise SamplingParamError(Param.LOGIT_BIAS, f"keyed by token ids in [0, {vocab_size})", token, index=token)
    if params.top_logprobs > vocab_size:
        raise SamplingParamError(Param.TOP_LOGPROBS, f"at most the vocabulary size {vocab_size}", params.top_logprobs)


@dataclass(frozen=True)
class Choice:
    """One sampled token, with its logprob and the top alternatives (id, logprob) when asked for."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


class Sampler:
    """Chooses tokens for one choice of one request, following the stage order of this module."""

    def __init__(self, params: SamplingParams, vocab_size: int) -> None:
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise SamplingError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        check_vocabulary(params, vocab_size)
        self.params = params
        self.vocab_size = vocab_size
        # Without a seed, draw 64 bits of OS entropy (a valid API seed) so a run can be replayed.
        self.seed_used: int = params.seed if params.seed is not None else secrets.randbits(64)
        self._rng = np.random.Generator(np.random.PCG64(self.seed_used))
        self._counts = np.zeros(vocab_size, dtype=np.int64)  # occurrences of each id in the output
        self._bias: np.ndarray | None = None
        if params.logit_bias:
            self._bias = np.zeros(vocab_size, dtype=np.float64)
            for token, value in params.logit_bias:
                self._bias[token] = value

    @property
    def counts(self) -> np.ndarray:
        """A copy of the per-id counts of generated tokens, int64 [vocab]."""
        return self._counts.copy()

    def record(self, token_id: int) -> None:
        """Count a generated token (done by `sample`; call it for tokens appended without sampling)."""
        if not 0 <= token_id < self.vocab_size:
            raise SamplingError(f"token_id must be in [0, {self.vocab_size}), got {token_id}")
        self._counts[token_id] += 1

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Stages 1-2: the biased, penalized logits, float64 [vocab] (the logprob distribution's input)."""
        row = np.asarray(logits)
        if row.shape != (self.vocab_size,):
            raise SamplingError(f"logits must have shape ({self.vocab_size},), got {row.shape}")
        row = row.astype(np.float64)
        if not np.all(np.isfinite(row)):
            raise SamplingError("logits hold NaN or infinite values; the engine output is broken")
        row = apply_logit_bias(row, self._bias)
        p = self.params
        return apply_penalties(row, self._counts, p.frequency_penalty, p.presence_penalty)

    def sample(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> Choice:
        """Choose the next token from float32 [vocab] logits and an optional bool [vocab] allowed mask."""
        scored = self.scores(logits)
        logprobs = log_softmax(scored)  # stage 3
        masked = apply_mask(scored, allowed)
        if not np.any(np.isfinite(masked)):
            raise SamplingError("no token is allowed at this position (the constraint mask is empty)")
        p = self.params
        if p.temperature == 0.0:
            token = choose_greedy(masked)
        else:
            shaped = apply_top_p(apply_temperature(masked, p.temperature), p.top_p)
            token = choose_sample(shaped, float(self._rng.random()))
        self.record(token)
        top = top_alternatives(logprobs, p.top_logprobs) if p.top_logprobs else ()
        return Choice(token_id=token, logprob=float(logprobs[token]), top=top)
