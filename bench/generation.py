"""Constrained versus unconstrained decoding speed on the real int4 model, and the grammar mask cost.

Run: .venv/bin/python -m bench.generation [--threads 2] [--tokens 64] [--repeats 3] [--json]

Every mode decodes the same prompt through `BatchGenerator` (one request) for `--tokens`
tokens; end-of-turn is biased by -100 in every mode so each runs to the limit. Decode rate =
(tokens - 1) / time of the steps after the first (the first step is prefill + first token).
Modes run interleaved, `--repeats` rounds, and the median rate per mode is reported, with its
ratio to the unconstrained rate (target: at least 0.9).

Mask cost, two numbers per constrained mode:
- compute: the generated tokens replayed through a fresh grammar, timing each synchronous
  mask computation (what the loop would pay without overlap);
- stall: time the decode loop actually waited in `allowed_mask()` (the mask is prefetched
  right after each token, so it computes while the engine runs the next forward pass).
A `json, no prefetch` mode (prefetch disabled) shows what the overlap saves.

On a shared machine the tok/s ratio is noisy (the forward pass dominates and its time varies with
other load), so the loop time outside the forward pass is reported too, and `ratio*` combines it
with one forward time shared by all modes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from reference_model.chat_template import ChatTemplate
from reference_model.constraints import Constraint
from reference_model.engine import Engine, SeqId
from reference_model.generation import BatchGenerator, Finished, GenerationRequest, TokenEvent
from reference_model.grammar import (
    CompiledGrammar,
    JsonSchema,
    Regex,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
    compile_constraint,
    compile_response_format,
)
from reference_model.sampling import SamplingParams
from reference_model.tokenizer import Tokenizer

PROMPT = [{"role": "user", "content": "List some people with their name, age and city, in JSON."}]
PEOPLE_SCHEMA = {"type": "object", "properties": {"people": {"type": "array", "items": {
    "type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                                     "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                     "city": {"type": "string", "maxLength": 24}},
    "required": ["name", "age", "city"], "additionalProperties": False}}},
    "required": ["people"], "additionalProperties": False}
SENTENCE_REGEX = r"([A-Z][a-z]{1,12}( [a-z]{1,12}){2,12}[.!?] ){1,40}"
WEATHER = ToolSpec("get_weather", {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                                     "days": {"type": "integer", "minimum": 1,
                                                                              "maximum": 14}},
                                   "required": ["city", "days"], "additionalProperties": False})


@dataclass(frozen=True)
class Run:
    """One decode of one mode: rate, tokens, and the per-token mask stalls in seconds."""

    tok_s: float
    tokens: int
    stalls: list[float]
    token_ids: list[int]
    forward_s: float  # time inside Engine.step over the decode steps
    loop_s: float  # the rest of the decode steps: masks, sampling, content assembly


@dataclass(frozen=True)
class ModeResult:
    """The median over repeats of one mode, and its mask costs (milliseconds per token)."""

    mode: str
    tok_s: float
    ratio: float
    runs_tok_s: list[float]
    forward_ms: float  # per token, median over runs
    loop_ms: float  # per token outside the forward pass, median over runs
    ratio_from_loop: float  # (forward + unconstrained loop) / (forward + this loop), same forward time
    tokens: int
    mask_compute_ms_median: float | None
    mask_compute_ms_p90: float | None
    stall_ms_median: float | None
    stall_ms_p90: float | None


_STALLS: list[float] = []


@contextmanager
def _timed_masks(prefetch: bool) -> Iterator[None]:
    """Record how long each `allowed_mask()` call blocks; optionally turn prefetching off."""
    original_mask, original_prefetch = Constraint.allowed_mask, Constraint.prefetch

    def timed(self: Constraint) -> np.ndarray:
        start = time.perf_counter()
        try:
            return original_mask(self)
        finally:
            _STALLS.append(time.perf_counter() - start)

    # The bench swaps methods on the class for the duration of a run (and restores them after):
    # mypy forbids assigning to a method, so each swap is marked.
    Constraint.allowed_mask = timed  # type: ignore[method-assign]  # timing wrapper, restored below
    if not prefetch:
        Constraint.prefetch = lambda self: None  # type: ignore[method-assign]  # the no-prefetch mode
    try:
        yield
    finally:
        Constraint.allowed_mask = original_mask  # type: ignore[method-assign]  # restore the class's method
        Constraint.prefetch = original_prefetch  # type: ignore[method-assign]  # restore the class's method


def decode_once(engine: Engine, tokenizer: Tokenizer, prompt: tuple[int, ...], compiled: CompiledGrammar | None,
                tokens: int, prefetch: bool = True) -> Run:
    """Decode one request of `tokens` tokens, timing each step."""
    params = SamplingParams(temperature=0.0, max_tokens=tokens, logit_bias=((tokenizer.eos_id, -100.0),))
    gen = BatchGenerator(engine, tokenizer, max_batch=1)
    forward: list[float] = []
    original_step = engine.step

    def timed_step(tokens: Mapping[SeqId, int]) -> dict[SeqId, np.ndarray]:
        start = time.perf_counter()
        try:
            return original_step(tokens)
        finally:
            forward.append(time.perf_counter() - start)

    engine.step = timed_step  # type: ignore[method-assign]  # timing wrapper on this instance; `del` restores
    _STALLS.clear()
    with _timed_masks(prefetch):
        rid = gen.add(GenerationRequest(prompt, params, compiled))
        _STALLS.clear()  # the first mask is waited for during prefill; count decode steps only
        times, ids = [], []
        while gen.has_work():
            start = time.perf_counter()
            events = gen.step().get(rid, [])
            times.append(time.perf_counter() - start)
            ids += [e.token_id for e in events if isinstance(e, TokenEvent)]
            done = [e for e in events if isinstance(e, Finished)]
    del engine.step  # back to the class's method
    n = done[0].completion_tokens
    decode_time = sum(times[1:])
    return Run(tok_s=(n - 1) / decode_time if n > 1 else 0.0, tokens=n, stalls=list(_STALLS[1:]), token_ids=ids,
               forward_s=sum(forward), loop_s=decode_time - sum(forward))


def mask_compute_times(tokenizer: Tokenizer, compiled: CompiledGrammar, ids: list[int]) -> list[float]:
    """Seconds per synchronous mask computation along a replay of `ids` through a fresh grammar."""
    constraint = Constraint(compiled, tokenizer)
    out = []
    for token in ids:
        start = time.perf_counter()
        constraint.allowed_mask()
        out.append(time.perf_counter() - start)
        constraint.advance(token)
    return out


def _ms(values: list[float], q: float) -> float:
    return float(np.quantile(np.array(values), q) * 1000.0)


def _forward_s(run: Run) -> float:
    return run.forward_s


def _loop_s(run: Run) -> float:
    return run.loop_s


def _per_token(runs: list[Run], seconds: Callable[[Run], float]) -> float:
    """Median over runs of a time in seconds per decoded token after the first."""
    return statistics.median(seconds(r) / (r.tokens - 1) for r in runs)


def measure(threads: int | None, tokens: int, repeats: int) -> list[ModeResult]:
    """Run every mode `repeats` times, interleaved; medians and ratios to unconstrained."""
    from reference_model.prepared import prepare

    tokenizer, template = Tokenizer.load(), ChatTemplate.load()
    engine = Engine(prepare("int4"), device="cpu", threads=threads, max_batch=1, max_context=1024)
    prompt = tuple(template.encode(PROMPT, tokenizer))
    grammars: dict[str, CompiledGrammar | None] = {
        "unconstrained": None,
        "json schema": compile_response_format(JsonSchema(PEOPLE_SCHEMA), tokenizer),
        "regex": compile_response_format(Regex(SENTENCE_REGEX), tokenizer),
        "tools (required)": compile_constraint(tokenizer, tools=[WEATHER],
                                               tool_choice=ToolChoice(ToolChoiceMode.REQUIRED)),
        "json schema, no prefetch": compile_response_format(JsonSchema(PEOPLE_SCHEMA), tokenizer),
    }
    decode_once(engine, tokenizer, prompt, None, 8)  # warm-up: ORT allocations, first-run effects
    runs: dict[str, list[Run]] = {mode: [] for mode in grammars}
    for _ in range(repeats):
        for mode, compiled in grammars.items():
            runs[mode].append(decode_once(engine, tokenizer, prompt, compiled, tokens,
                                          prefetch=not mode.endswith("no prefetch")))
    base = statistics.median(r.tok_s for r in runs["unconstrained"])
    forward_all = statistics.median(r.forward_s / (r.tokens - 1) for rs in runs.values() for r in rs)
    base_loop = _per_token(runs["unconstrained"], _loop_s)
    results = []
    for mode, compiled in grammars.items():
        rates = [r.tok_s for r in runs[mode]]
        compute = stalls = None
        if compiled is not None:
            compute = mask_compute_times(tokenizer, compiled, runs[mode][0].token_ids)
            stalls = [s for r in runs[mode] for s in r.stalls]
        results.append(ModeResult(
            mode=mode, tok_s=statistics.median(rates), ratio=statistics.median(rates) / base, runs_tok_s=rates,
            forward_ms=_per_token(runs[mode], _forward_s) * 1000, loop_ms=_per_token(runs[mode], _loop_s) * 1000,
            ratio_from_loop=(forward_all + base_loop) / (forward_all + _per_token(runs[mode], _loop_s)),
            tokens=runs[mode][0].tokens,
            mask_compute_ms_median=_ms(compute, 0.5) if compute else None,
            mask_compute_ms_p90=_ms(compute, 0.9) if compute else None,
            stall_ms_median=_ms(stalls, 0.5) if stalls else None,
            stall_ms_p90=_ms(stalls, 0.9) if stalls else None))
    return results


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    """Print (or write as JSON) the constrained/unconstrained decode rates and mask costs."""
    parser = argparse.ArgumentParser(prog="python -m bench.generation", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens decoded per run (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all modes (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.tokens < 2 or args.repeats < 1:
        parser.error(f"--tokens must be >= 2 and --repeats >= 1, got {args.tokens} and {args.repeats}")
    results = measure(args.threads, args.tokens, args.repeats)
    if args.json:
        json.dump([asdict(r) for r in results], sys.stdout, indent=2)
        print()
        return 0
    print(f"int4 model, CPU, {args.threads} threads, {args.tokens} tokens per run, median of {args.repeats}")
    print(f"{'mode':26} {'tok/s':>7} {'ratio':>6} {'fwd ms':>7} {'loop ms':>7} {'ratio*':>6} "
          f"{'mask ms med':>11} {'p90':>6} {'stall ms med':>12} {'p90':>6}  runs tok/s")
    for r in results:
        print(f"{r.mode:26} {r.tok_s:7.1f} {r.ratio:6.3f} {r.forward_ms:7.2f} {r.loop_ms:7.3f} "
              f"{r.ratio_from_loop:6.3f} {_fmt(r.mask_compute_ms_median):>11} {_fmt(r.mask_compute_ms_p90):>6} "
              f"{_fmt(r.stall_ms_median):>12} {_fmt(r.stall_ms_p90):>6}  " + " ".join(f"{x:.1f}" for x in r.runs_tok_s))
    print("ratio: median tok/s over unconstrained; ratio*: the same from loop time per token, with one shared "
          "forward time (robust to other load on the machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
