"""Measure our engine in this process: prefill and decode tokens/s, batched decode, peak RSS.

Run as a child so its peak RSS is the engine's alone (the parent passes the prompt ids):
  .venv/bin/python -m bench.engine_ours --prompt-file IDS.json [--model real|tiny] [--weights int4]
      [--device cpu] [--threads 2] [--decode-tokens 128] [--batch-tokens 128] [--batches 1,2,4,8]
      [--repeats 3] [--no-spin]
It prints one JSON line, an `OurMeasurement`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.engine_types import MB, BatchRun, OurMeasurement
from bench.peer.measure import positive_int
from reference_model.engine import Engine, EngineModel, SeqId

WARMUP_PROMPT_TOKENS = 32
WARMUP_STEPS = 4


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (VmHWM in /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("VmHWM: not found in /proc/self/status (Linux only)")


def time_prefill(engine: Engine, prompt: list[int]) -> float:
    """Prefill `prompt` into an empty slot; return tokens/s (the sequence is released)."""
    start = time.perf_counter()
    seq = engine.start(prompt, 1)
    engine.prefill(seq)
    elapsed = time.perf_counter() - start
    engine.release(seq)
    return len(prompt) / elapsed


def time_decode(engine: Engine, prompts: list[list[int]], steps: int) -> float:
    """Prefill each prompt (untimed), then greedy-decode `steps` tokens for all of them in batched
    steps; return the total tokens/s over all sequences."""
    seqs: list[SeqId] = []
    logits: dict[SeqId, np.ndarray] = {}
    for prompt in prompts:
        seq = engine.start(prompt, steps)
        logits[seq] = engine.prefill(seq)
        seqs.append(seq)
    start = time.perf_counter()
    for _ in range(steps):
        # argmax over [vocab] per sequence, as a greedy sampler would
        logits = engine.step({s: int(logits[s].argmax()) for s in seqs})
    elapsed = time.perf_counter() - start
    for seq in seqs:
        engine.release(seq)
    return len(seqs) * steps / elapsed


def open_model(model: str, weights: str, scratch: Path) -> EngineModel:
    """The real prepared graph, or the tiny random model built into `scratch`."""
    if model == "tiny":
        from reference_model.tiny import build_tiny

        return build_tiny(scratch, weights)
    from reference_model.prepared import prepare

    return prepare(weights)


def measure(prompt: list[int], *, model: str = "real", weights: str = "int4", device: str = "cpu",
            threads: int = 2, decode_tokens: int = 128, batch_tokens: int = 128,
            batches: tuple[int, ...] = (1, 2, 4, 8), repeats: int = 3, context: int = 2048,
            spin: bool = True) -> OurMeasurement:
    """Measure in this process; peak RSS is this process's, so call it in a fresh child."""
    import onnxruntime

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as scratch:
        graph = open_model(model, weights, Path(scratch))
        # Room for the largest batch; the KV cache is committed only as positions are written.
        # The context matches the peer's n_ctx (2048), capped by the model's (the tiny one: 256).
        # No prefix cache: every repetition prefills the same prompt, and each must be cold.
        engine = Engine(graph, device=device, threads=threads, max_batch=max(batches),
                        max_context=min(graph.config.context_length, context), spin=spin, prefix_cache_mb=0)
    time_prefill(engine, prompt[:WARMUP_PROMPT_TOKENS])  # warm-up: page weights in, size buffers
    time_decode(engine, [prompt[:WARMUP_PROMPT_TOKENS]], WARMUP_STEPS)
    prefill = [time_prefill(engine, prompt) for _ in range(repeats)]
    decode = [time_decode(engine, [prompt], decode_tokens) for _ in range(repeats)]
    peak_single = peak_rss_bytes()
    # Interleave batch sizes within each repetition so slow drifts in machine load hit all alike.
    runs: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(repeats):
        for b in batches:
            runs[b].append(time_decode(engine, [prompt] * b, batch_tokens))
    return OurMeasurement(
        model=model, weights=weights, device=device, provider=engine.provider,
        onnxruntime=onnxruntime.__version__, n_threads=threads, prompt_tokens=len(prompt),
        decode_tokens=decode_tokens, batch_tokens=batch_tokens, repeats=repeats,
        prefill_chunk=engine.prefill_chunk,
        prefill_tok_s=round(statistics.median(prefill), 2),
        prefill_runs_tok_s=[round(r, 2) for r in prefill],
        prefill_best_tok_s=round(max(prefill), 2),
        decode_tok_s=round(statistics.median(decode), 2),
        decode_runs_tok_s=[round(r, 2) for r in decode],
        decode_best_tok_s=round(max(decode), 2),
        batched=[BatchRun(b, round(statistics.median(r), 2), [round(x, 2) for x in r])
                 for b, r in runs.items()],
        peak_rss_mb=round(peak_single / MB, 1),
        peak_rss_batched_mb=round(peak_rss_bytes() / MB, 1),
        load_average_1m=[round(load_before, 2), round(os.getloadavg()[0], 2)],
    )




def _batches(text: str) -> tuple[int, ...]:
    """Parse '1,2,4,8' into positive batch sizes."""
    try:
        sizes = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batches: rule 'comma-separated ints', got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--batches: rule 'each >= 1', got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """CLI: measure and print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.engine_ours", description=__doc__)
    parser.add_argument("--prompt-file", type=Path, required=True, help="JSON list of prompt token ids")
    parser.add_argument("--model", choices=("real", "tiny"), default="real")
    parser.add_argument("--weights", choices=("int4", "fp32"), default="int4")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=positive_int("--threads"), default=2)
    parser.add_argument("--decode-tokens", type=positive_int("--decode-tokens"), default=128)
    parser.add_argument("--batch-tokens", type=positive_int("--batch-tokens"), default=128)
    parser.add_argument("--batches", type=_batches, default=(1, 2, 4, 8))
    parser.add_argument("--repeats", type=positive_int("--repeats"), default=3)
    parser.add_argument("--no-spin", action="store_true", help="intra-op threads wait passively")
    args = parser.parse_args(argv)
    prompt = json.loads(args.prompt_file.read_text())
    if not isinstance(prompt, list) or not prompt or not all(isinstance(t, int) for t in prompt):
        parser.error(f"--prompt-file: rule 'a non-empty JSON list of ints', got {str(args.prompt_file)!r}")
    result = measure(prompt, model=args.model, weights=args.weights, device=args.device,
                     threads=args.threads, decode_tokens=args.decode_tokens,
                     batch_tokens=args.batch_tokens, batches=args.batches, repeats=args.repeats,
                     spin=not args.no_spin)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
