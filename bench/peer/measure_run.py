"""The in-process half of bench.peer.measure: time llama.cpp itself (needs .venv-peer).

Run by measure.measure() as `PEER_PYTHON -m bench.peer.measure_run ...`; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from bench.peer.chat_prompt import gguf_chat_template, render_chatml
from bench.peer.decode_prompts import decode_prompts
from bench.peer.llama_session import LLAMA_CPP_PYTHON_VERSION, PeerConfig, eval_tokens, load_model, tokenize
from bench.peer.measure import MeasureSpec, PeerMeasurement, add_measure_arguments
from bench.peer.model_files import sha256_of


@dataclass(frozen=True)
class Rate:
    """Tokens per second seen from Python (wall clock) and by llama.cpp's own perf counters."""

    wall_tok_s: float
    llama_tok_s: float


def measurement_prompt(llm: llama_cpp.Llama, gguf_path: Path, n_tokens: int) -> list[int]:
    """Return exactly `n_tokens` ids of a ChatML prompt (the long instruction repeated as needed)."""
    template = gguf_chat_template(gguf_path)
    instruction = next(p for p in decode_prompts() if p.name == "long_instruction").messages[0]["content"]
    ids: list[int] = []
    repeat = 1
    while len(ids) < n_tokens:
        text = render_chatml(template, [{"role": "user", "content": " ".join([instruction] * repeat)}])
        ids = tokenize(llm, text, special=True)
        repeat += 1
    return ids[:n_tokens]


def _llama_rate(llm: llama_cpp.Llama, batched: bool) -> float:
    """Return llama.cpp's own tokens/s since the last perf reset (prompt or one-token evals)."""
    perf = llama_cpp.llama_perf_context(llm.ctx)
    count: int = perf.n_p_eval if batched else perf.n_eval
    millis: float = perf.t_p_eval_ms if batched else perf.t_eval_ms
    if millis <= 0:
        raise RuntimeError(f"llama.cpp perf counters recorded no time for {count} tokens")
    return 1000.0 * count / millis


def time_prefill(llm: llama_cpp.Llama, prompt_ids: list[int]) -> Rate:
    """Evaluate the prompt from an empty context; return its tokens per second."""
    llm.reset()  # the next eval drops every cached position
    llama_cpp.llama_perf_context_reset(llm.ctx)
    start = time.perf_counter()
    eval_tokens(llm, prompt_ids)
    wall = len(prompt_ids) / (time.perf_counter() - start)
    return Rate(wall, _llama_rate(llm, batched=True))


def time_decode(llm: llama_cpp.Llama, prompt_ids: list[int], n_tokens: int) -> Rate:
    """After a prefill, greedy-decode `n_tokens` one at a time; return decode tokens per second."""
    llm.reset()
    logits = eval_tokens(llm, prompt_ids)
    llama_cpp.llama_perf_context_reset(llm.ctx)
    start = time.perf_counter()
    for _ in range(n_tokens):
        logits = eval_tokens(llm, [int(np.argmax(logits))])
    wall = n_tokens / (time.perf_counter() - start)
    return Rate(wall, _llama_rate(llm, batched=False))


def measure_in_process(gguf_path: Path, config: PeerConfig, spec: MeasureSpec) -> PeerMeasurement:
    """Measure in this process; peak RSS is this process's ru_maxrss (so run it in a child)."""
    if spec.prompt_tokens + spec.decode_tokens > config.n_ctx:
        raise ValueError(
            f"prompt_tokens + decode_tokens: rule 'must fit n_ctx={config.n_ctx}', "
            f"got {spec.prompt_tokens} + {spec.decode_tokens}"
        )
    load_before = os.getloadavg()[0]
    llm = load_model(gguf_path, config)
    prompt_ids = measurement_prompt(llm, gguf_path, spec.prompt_tokens)
    time_prefill(llm, prompt_ids[:32])  # warm-up: page in the weights, size the buffers
    prefill = [time_prefill(llm, prompt_ids) for _ in range(spec.repeats)]
    decode = [time_decode(llm, prompt_ids, spec.decode_tokens) for _ in range(spec.repeats)]
    llm.close()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports KiB
    return PeerMeasurement(
        gguf=str(gguf_path),
        gguf_sha256=sha256_of(gguf_path),
        llama_cpp_python=LLAMA_CPP_PYTHON_VERSION,
        n_threads=config.n_threads,
        prompt_tokens=spec.prompt_tokens,
        decode_tokens=spec.decode_tokens,
        repeats=spec.repeats,
        prefill_tok_s=round(statistics.median(r.wall_tok_s for r in prefill), 2),
        prefill_runs_tok_s=[round(r.wall_tok_s, 2) for r in prefill],
        decode_tok_s=round(statistics.median(r.wall_tok_s for r in decode), 2),
        decode_runs_tok_s=[round(r.wall_tok_s, 2) for r in decode],
        # On a shared machine the fastest run is the least disturbed one (OpenMP threads spin-wait).
        prefill_best_tok_s=round(max(r.wall_tok_s for r in prefill), 2),
        decode_best_tok_s=round(max(r.wall_tok_s for r in decode), 2),
        llama_prefill_tok_s=round(statistics.median(r.llama_tok_s for r in prefill), 2),
        llama_decode_tok_s=round(statistics.median(r.llama_tok_s for r in decode), 2),
        peak_rss_mib=round(peak_kib / 1024, 1),
        # A 1-minute load above n_threads means other processes took cores: rates understated.
        load_average_1m=[round(load_before, 2), round(os.getloadavg()[0], 2)],
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "default"),
    )


def main(argv: list[str] | None = None) -> int:
    """CLI (child side): measure in this process and print the result as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer.measure_run", description=__doc__)
    add_measure_arguments(parser)
    args = parser.parse_args(argv)
    if not args.gguf.is_file():
        parser.error(f"--gguf: rule 'must be an existing file', got {str(args.gguf)!r}")
    spec = MeasureSpec(args.prompt_tokens, args.decode_tokens, args.repeats)
    print(json.dumps(asdict(measure_in_process(args.gguf, PeerConfig(n_threads=args.threads), spec))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
