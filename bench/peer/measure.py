"""Measure llama.cpp on a GGUF: prefill tokens/s, decode tokens/s and peak RSS (in a child process).

Run: python -m bench.peer.measure --gguf PATH [--threads 2] [--json]
This module imports no llama_cpp, so a bench running in the project's .venv can call measure():
the timing itself runs in a child `.venv-peer/bin/python -m bench.peer.measure_run`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.peer.model_files import REPO_ROOT

PEER_PYTHON = REPO_ROOT / ".venv-peer" / "bin" / "python"


@dataclass(frozen=True)
class MeasureSpec:
    """What to measure: prompt length, decode length, repeats (median and best are reported)."""

    prompt_tokens: int = 400
    decode_tokens: int = 128
    repeats: int = 3


@dataclass(frozen=True)
class PeerMeasurement:
    """One measurement of llama.cpp on one GGUF; `*_tok_s` are medians over `repeats` runs."""

    gguf: str
    gguf_sha256: str
    llama_cpp_python: str
    n_threads: int
    prompt_tokens: int
    decode_tokens: int
    repeats: int
    prefill_tok_s: float
    prefill_runs_tok_s: list[float]
    decode_tok_s: float
    decode_runs_tok_s: list[float]
    prefill_best_tok_s: float
    decode_best_tok_s: float
    llama_prefill_tok_s: float  # from llama.cpp's perf counters (no Python overhead)
    llama_decode_tok_s: float
    peak_rss_mib: float  # the child's ru_maxrss
    load_average_1m: list[float]  # before and after: above n_threads means a disturbed run
    omp_wait_policy: str  # the child's OMP_WAIT_POLICY ("default" when unset: GNU OpenMP spins)


def measure(gguf_path: Path, n_threads: int = 2, spec: MeasureSpec = MeasureSpec(),
            python: Path = PEER_PYTHON, omp_wait_policy: str | None = None) -> PeerMeasurement:
    """Measure in a fresh child process of the peer's interpreter, so peak RSS is the model's alone.

    omp_wait_policy "passive" stops llama.cpp's OpenMP threads from spinning; on a busy machine
    that keeps decode near its quiet rate instead of collapsing (None: inherit the environment).
    """
    env = dict(os.environ)
    if omp_wait_policy is not None:
        if omp_wait_policy.upper() not in ("ACTIVE", "PASSIVE"):
            raise ValueError(f"omp_wait_policy: rule 'active or passive', got {omp_wait_policy!r}")
        env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    if not python.is_file():
        raise FileNotFoundError(f"python: rule 'the peer interpreter must exist (bench/peer/build.sh)', got {python}")
    command = [
        str(python), "-m", "bench.peer.measure_run", "--gguf", str(gguf_path), "--threads", str(n_threads),
        "--prompt-tokens", str(spec.prompt_tokens), "--decode-tokens", str(spec.decode_tokens),
        "--repeats", str(spec.repeats),
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measure child exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return PeerMeasurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def positive_int(name: str) -> Callable[[str], int]:
    """Return an argparse type that accepts positive integers, naming `name` in errors."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: rule 'an integer > 0', got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name}: rule 'an integer > 0', got {value}")
        return value
    return parse


def add_measure_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options shared by this CLI and the child's: --gguf, --threads, sizes, repeats."""
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--threads", type=positive_int("--threads"), default=2)
    parser.add_argument("--prompt-tokens", type=positive_int("--prompt-tokens"), default=MeasureSpec.prompt_tokens)
    parser.add_argument("--decode-tokens", type=positive_int("--decode-tokens"), default=MeasureSpec.decode_tokens)
    parser.add_argument("--repeats", type=positive_int("--repeats"), default=MeasureSpec.repeats)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the measurement as one JSON line (and a readable summary unless --json)."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer.measure", description=__doc__)
    add_measure_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--python", type=Path, default=PEER_PYTHON, help="the peer interpreter (.venv-peer)")
    parser.add_argument("--omp-wait-policy", choices=("active", "passive"), default=None,
                        help="OMP_WAIT_POLICY for the child (default: inherited; GNU OpenMP spins)")
    args = parser.parse_args(argv)
    if not args.gguf.is_file():
        parser.error(f"--gguf: rule 'must be an existing file', got {str(args.gguf)!r}")
    result = measure(args.gguf, args.threads, MeasureSpec(args.prompt_tokens, args.decode_tokens, args.repeats),
                     args.python, args.omp_wait_policy)
    if not args.json:
        print(f"prefill {result.prefill_tok_s} tok/s (best {result.prefill_best_tok_s}, "
              f"{result.prompt_tokens} tokens), decode {result.decode_tok_s} tok/s "
              f"(best {result.decode_best_tok_s}, {result.decode_tokens} tokens), "
              f"peak RSS {result.peak_rss_mib} MiB, {result.n_threads} threads, "
              f"load average {result.load_average_1m}, OMP_WAIT_POLICY {result.omp_wait_policy}", file=sys.stderr)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
