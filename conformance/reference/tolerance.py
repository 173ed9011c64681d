"""How far a target's numbers may lie from the oracle's, by the weights and arithmetic the target runs.

One number carries every comparison: the margin tolerance M, a bound on how much the difference
of two tokens' logits (l_a - l_b) at one position may change between the oracle and the target.
Everything else follows from it:

- near-tie: where the oracle's chosen token leads another by less than M, the target may pick
  that other token; the greedy comparison then stops, and nothing after it is judged;
- chosen logprob: logprob(c) = -log(1 + sum_j exp(l_j - l_c)); each exponent moves by at most M,
  so with r = (1 - p_c) / p_c the target's value lies in [-log(1 + r e^M), -log(1 + r e^-M)]
  (widened by FLOAT_SLACK for the rounding of the reported numbers). A confident token is held
  tightly (p_c 0.99, M 1: within 0.017), an uncertain one loosely;
- top-k sets: an oracle alternative more than M above the oracle's last one cannot leave the
  target's list; a token the oracle does not list cannot rise more than M above where the
  oracle's last alternative stands;
- mean chosen-logprob difference: a second, statistical bound (`mean_chosen`) over all judged
  positions, which catches a systematic error (logprobs scaled, taken after a penalty) smaller
  than the per-token interval.

Where the values come from (oracle: the mock's int4 graph, exactly q*d + m of the Q4_1 weights,
or its fp32 graph, the same weights dequantized; the two agree within ~1e-5):

- `same-graph` (another chatconform mock): the same ONNX graph and kernels; batch shapes and
  thread counts reorder float sums (~1e-6). M = 1e-3.
- `f32` (a ggml engine on an F32 copy of the GGUF, F32 KV cache): llama.cpp's F32 logits
  agree with the fp32 graph within 5.3e-5 on 8 prompts x 64 tokens (tests/reference_model/
  test_fidelity.py). M = 1e-3.
- `f32-f16kv` (the same with llama.cpp's default F16 KV cache): rounding keys and values to
  16 bits moves logits by ~1.5e-2, so a difference of two by up to ~3e-2. M = 5e-2.
- `q4_1` (a ggml engine on the Q4_1 GGUF itself: llama.cpp's llama-server, llama-cpp-python,
  ollama): same weights, but ggml's Q4_1 kernels round activations to 8 bits (Q8_1) and the KV
  cache is F16. Measured on the committed goldens (tests/reference_model/data/llamacpp_*):
  llama.cpp Q4_1 against llama.cpp F32 along their common greedy prefixes (233 positions of 8
  prompts), the change of the margin between the top token and each of the next four is at most
  0.87 (99th percentile 0.58, mean 0.13); the chosen token's logprob moves 0.022 on average
  (max 0.18). M = 1.0 covers the largest margin change with room; mean_chosen = 0.05 is a bit
  over twice the measured mean. The two ggml servers, measured over the reference corpus at the
  positions both sides agree on (reports/reference/*-reference/NOTES.md): margin changes p99 0.53
  and 0.62, mean 0.13; chosen-logprob differences mean 0.030 (llama-server) and 0.037 (llama-cpp-python).
  Margins to unlikely alternatives, 4 to 9 logits behind the chosen token, move more (up to 1.22
  on llama-server); they never decide a near-tie (within a logit of the chosen token) and, at
  the end of a top-5 list, caused no disagreement on either server.
- `other` (any other weights: the original Hugging Face checkpoint, bf16, Q8_0, K-quants): the
  oracle's weights are the Q4_1 rounding of the originals, so such a target differs from it by
  the quantisation error itself, a logit change of the same order as the top-2 margins of
  ordinary positions. No tolerance makes a token-level comparison meaningful there; only what
  does not depend on the weights is judged (usage.prompt_tokens: the chat template and the
  tokenizer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FLOAT_SLACK = 1e-4  # reported logprobs are float32 values printed in decimal: absolute slack on every comparison


@dataclass(frozen=True)
class Tolerance:
    """The comparisons' bounds for one class of target weights."""

    name: str
    margin: float  # M: bound on the change of any logit difference at one position
    mean_chosen: float  # bound on the mean |delta logprob| of the judged chosen tokens
    summary: str  # what the target runs, in a few words
    judged: bool = True  # False: token-level comparisons cannot be made (see `why_not`)
    why_not: str = ""

    def describe(self) -> str:
        """One line for reports."""
        if not self.judged:
            return f"target weights {self.name} ({self.summary}): token-level comparisons not judged: {self.why_not}"
        return (f"target weights {self.name} ({self.summary}): margin tolerance {self.margin:g}, "
                f"mean chosen-logprob tolerance {self.mean_chosen:g}")


OTHER_WHY = ("the reference's weights are the Q4_1 rounding of the original checkpoint, so other weights differ "
             "from them by the quantisation error itself, a logit change as large as ordinary top-2 margins; "
             "only prompt_tokens (template and tokenizer) is compared")

TOLERANCES: dict[str, Tolerance] = {t.name: t for t in (
    Tolerance("same-graph", 1e-3, 1e-3, "the reference's own ONNX graph: another chatconform mock"),
    Tolerance("f32", 1e-3, 1e-3, "the GGUF dequantized to F32 in a ggml engine, F32 KV cache"),
    Tolerance("f32-f16kv", 5e-2, 1e-2, "the GGUF dequantized to F32 in a ggml engine, F16 KV cache"),
    Tolerance("q4_1", 1.0, 0.05, "the Q4_1 GGUF in a ggml engine (llama.cpp, llama-cpp-python, ollama)"),
    Tolerance("other", math.inf, math.inf, "other weights (original checkpoint, bf16, Q8_0, K-quants)",
              judged=False, why_not=OTHER_WHY),
)}
TARGET_WEIGHTS = tuple(TOLERANCES)
DEFAULT_TARGET_WEIGHTS = "q4_1"
EMBEDDED_TARGET_WEIGHTS = "same-graph"  # `check --reference` without a URL compares two mocks


def tolerance_for(name: str) -> Tolerance:
    """The Tolerance of a target-weights class (ValueError naming the choices when unknown)."""
    try:
        return TOLERANCES[name]
    except KeyError:
        raise ValueError(f"target_weights: must be one of {', '.join(TARGET_WEIGHTS)}, got {name!r}") from None


def chosen_interval(oracle_logprob: float, margin: float) -> tuple[float, float]:
    """The range of logprobs a target may report for the oracle's chosen token, given the margin tolerance."""
    lp = min(oracle_logprob, 0.0)
    p = math.exp(lp)
    rest = -math.expm1(lp)  # 1 - p without cancellation
    ratio = rest / p if p > 0 else math.inf
    low = -math.log1p(ratio * math.exp(margin)) if math.isfinite(ratio) else -math.inf
    high = -math.log1p(ratio * math.exp(-margin)) if math.isfinite(ratio) else -math.inf
    return low - FLOAT_SLACK, min(0.0, high + FLOAT_SLACK)


def within(value: float, interval: tuple[float, float]) -> bool:
    """value lies in the closed interval."""
    return interval[0] <= value <= interval[1]
