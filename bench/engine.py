"""Engine bench: our ONNX engine against llama.cpp on the same prompt, same machine, one run.

Run: .venv/bin/python -m bench.engine [--weights int4|fp32] [--reps 3] [--threads 2]
                                      [--json PATH] [--no-peer] [--quick] [--passive]

Prints prefill and decode tokens/s and peak RSS for both engines with their ratios against the
issue's targets (decode >= 1.3x, prefill >= 2.5x, peak < 600 MB), batched decode for 1, 2, 4, 8
sequences (8/1 >= 4x), and the physical limit (weight bytes per token over measured bandwidth).

Each engine runs in its own child process so each peak RSS is its own: ours with this
interpreter (`bench.engine_ours`), llama.cpp with `.venv-peer` (`bench.peer.measure`), one
repetition per process, alternating ours and llama.cpp for `--reps` rounds. Both get
the same prompt: the peer's long instruction, rendered with the GGUF's chat template, repeated
until it reaches `--prompt-tokens` ids (ours tokenized by `reference_model.tokenizer`, which
matches llama.cpp's tokenization) and the same number of greedy decode tokens.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.engine_limits import (
    measure_bandwidth,
    physical_limit,
    weight_bytes_per_token,
)
from bench.engine_render import render, verdicts
from bench.engine_types import BenchReport, MachineInfo, OurMeasurement, merge_peer
from bench.peer.measure import positive_int

REPO_ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = REPO_ROOT / ".venv-peer" / "bin" / "python"
REPORT_VERSION = 1
BUILD_PEER_HINT = ("build it with `make peer` (that is: bench/peer/build.sh, llama-cpp-python 0.3.36 "
                   "from source, about 10 minutes on 2 cores)")


def bench_prompt(n_tokens: int) -> list[int]:
    """Exactly `n_tokens` ids of the peer's measurement prompt, tokenized by our tokenizer."""
    from bench.peer.chat_prompt import render_chatml
    from bench.peer.decode_prompts import decode_prompts
    from reference_model.chat_template import ChatTemplate
    from reference_model.tokenizer import Tokenizer

    # The GGUF's template string (what the peer renders with) and our tokenizer, each read once.
    template = ChatTemplate.load().source
    tokenizer = Tokenizer.load()
    instruction = next(p for p in decode_prompts() if p.name == "long_instruction").messages[0]["content"]
    ids: list[int] = []
    repeat = 1
    while len(ids) < n_tokens:  # the same loop as bench.peer.measure.measurement_prompt
        text = render_chatml(template, [{"role": "user", "content": " ".join([instruction] * repeat)}])
        ids = tokenizer.encode(text, special=True)
        repeat += 1
    return ids[:n_tokens]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cuda_status() -> str | None:
    """None if the CUDA provider can run here, else why not."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider"
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1 does not load): this machine has no GPU"
    return None


def run_ours(prompt_file: Path, args: argparse.Namespace, device: str, repeats: int) -> OurMeasurement:
    """Measure our engine in a fresh child of this interpreter."""
    command = [sys.executable, "-m", "bench.engine_ours", "--prompt-file", str(prompt_file),
               "--model", "tiny" if args.quick else "real", "--weights", args.weights,
               "--device", device, "--threads", str(args.threads),
               "--decode-tokens", str(args.decode_tokens), "--batch-tokens", str(args.batch_tokens),
               "--batches", ",".join(map(str, args.batches)), "--repeats", str(repeats)]
    if args.passive:
        command.append("--no-spin")
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"our engine's child exited {done.returncode}: {done.stderr.strip()[-3000:]}")
    return OurMeasurement.from_dict(json.loads(done.stdout.strip().splitlines()[-1]))


def peer_unavailable(args: argparse.Namespace) -> str | None:
    """Why llama.cpp is not measured in this run, or None if it is."""
    if args.quick:
        return "skipped (--quick runs the tiny random model, which llama.cpp has no GGUF of)"
    if args.no_peer:
        return "skipped (--no-peer)"
    if not PEER_PYTHON.exists():
        return f"{PEER_PYTHON.relative_to(REPO_ROOT)} is missing; {BUILD_PEER_HINT}"
    return None


def run_peer(args: argparse.Namespace, repeats: int) -> tuple[dict[str, Any] | None, str | None]:
    """llama.cpp's measurement (bench.peer.measure in .venv-peer), or None and the reason."""
    reason = peer_unavailable(args)
    if reason is not None:
        return None, reason
    from reference_model.weights import ensure_gguf

    # Through bench.peer.measure's CLI (this interpreter; it imports no llama_cpp), which starts
    # the timed child itself: a child forked straight from this large process would inherit its
    # high-water RSS into ru_maxrss (kept across exec), and report our 1 GB bandwidth array as
    # llama.cpp's peak.
    command = [sys.executable, "-m", "bench.peer.measure", "--gguf", str(ensure_gguf()),
               "--threads", str(args.threads), "--prompt-tokens", str(args.prompt_tokens),
               "--decode-tokens", str(args.decode_tokens), "--repeats", str(repeats),
               "--python", str(PEER_PYTHON), "--json"]
    if args.passive:
        command += ["--omp-wait-policy", "passive"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None, (f"bench.peer.measure exited {done.returncode}: {done.stderr.strip()[-1500:]}; "
                      f"if llama_cpp is broken, {BUILD_PEER_HINT}")
    return json.loads(done.stdout.strip().splitlines()[-1]), None


def graph_path(args: argparse.Namespace, scratch: Path) -> Path:
    """The graph our engine runs (prepared here, before the child starts, so conversion is not
    timed and does not count in the child's peak RSS)."""
    if args.quick:
        from reference_model.tiny import build_tiny

        return build_tiny(scratch, args.weights).onnx_path
    from reference_model.prepared import prepare

    return prepare(args.weights, progress=True).onnx_path


def run_bench(args: argparse.Namespace) -> BenchReport:
    """Run every measurement and assemble the report."""
    import onnxruntime

    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as scratch:
        graph = graph_path(args, Path(scratch))
        weight_bytes = weight_bytes_per_token(graph)
        prompt_file = Path(scratch) / "prompt.json"
        prompt_file.write_text(json.dumps(bench_prompt(args.prompt_tokens)))
        bandwidth = measure_bandwidth(args.bandwidth_bytes, threads=args.threads)
        # Alternate the two engines, one repetition per process each round, so that load from
        # other processes on a shared machine falls on both alike; medians pool every round.
        ours_rounds: list[OurMeasurement] = []
        peer_rounds: list[dict[str, Any]] = []
        peer_note = peer_unavailable(args)
        for _ in range(args.reps):
            ours_rounds.append(run_ours(prompt_file, args, "cpu", repeats=1))
            if peer_note is None:
                peer_round, peer_note = run_peer(args, repeats=1)
                if peer_round is not None:
                    peer_rounds.append(peer_round)
        ours = OurMeasurement.merge(ours_rounds)
        peer = merge_peer(peer_rounds) if peer_note is None else None
        cuda_note = cuda_status()
        cuda = run_ours(prompt_file, args, "cuda", repeats=args.reps) if cuda_note is None else None
    machine = MachineInfo(cpu_model=cpu_model(), logical_cpus=os.cpu_count() or 0,
                          onnxruntime=onnxruntime.__version__, n_threads=args.threads,
                          load_average_start=load_start,
                          load_average_end=[round(x, 2) for x in os.getloadavg()])
    config = {k: v for k, v in vars(args).items() if k != "json"}
    config["batches"] = list(args.batches)
    return BenchReport(
        version=REPORT_VERSION, config=config, machine=machine, ours=ours, peer=peer, peer_note=peer_note,
        limit=physical_limit(bandwidth, weight_bytes, ours.decode_tok_s), cuda=cuda, cuda_note=cuda_note,
        verdicts=verdicts(ours, peer),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the CLI; --quick switches to the tiny model with small sizes unless they are given."""
    p = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", choices=("int4", "fp32"), default="int4")
    p.add_argument("--reps", type=positive_int("--reps"), default=None, help="repetitions, median reported (3)")
    p.add_argument("--threads", type=positive_int("--threads"), default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    p.add_argument("--no-peer", action="store_true", help="measure our engine only")
    p.add_argument("--passive", action="store_true",
                   help="idle worker threads of both engines wait passively instead of spinning (ORT "
                        "allow_spinning=0, OMP_WAIT_POLICY=PASSIVE): fairer on a machine shared with busy processes")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny random model, short prompt, no peer, 1 repetition")
    p.add_argument("--prompt-tokens", type=positive_int("--prompt-tokens"), default=None, help="(400)")
    p.add_argument("--decode-tokens", type=positive_int("--decode-tokens"), default=None, help="(128)")
    p.add_argument("--batch-tokens", type=positive_int("--batch-tokens"), default=None,
                   help="greedy steps per batched run (128)")
    args = p.parse_args(argv)
    quick = args.quick
    args.reps = args.reps or (1 if quick else 3)
    args.prompt_tokens = args.prompt_tokens or (48 if quick else 400)
    args.decode_tokens = args.decode_tokens or (16 if quick else 128)
    args.batch_tokens = args.batch_tokens or (8 if quick else 128)
    args.batches = (1, 2, 4, 8)
    args.bandwidth_bytes = (64 if quick else 1024) << 20
    if quick and args.prompt_tokens + max(args.decode_tokens, args.batch_tokens) >= 256:
        p.error(f"--prompt-tokens + --decode-tokens: rule 'below the tiny model's context 256 with "
                f"--quick', got {args.prompt_tokens} + {max(args.decode_tokens, args.batch_tokens)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: measure, print the tables, optionally write JSON."""
    args = parse_args(argv)
    report = run_bench(args)
    render(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
