"""Greedy agreement with llama.cpp's F32 run, teacher-forced: llama.cpp's own Q4_1 run against ours.

Run: .venv/bin/python -m bench.agreement [--graph PATH ...] [--json PATH]

On the fidelity goldens' prompts (tests/reference_model/data/llamacpp_f32_goldens.json: prompt and
64 greedy tokens of llama.cpp on an F32 copy of the GGUF), each model is fed the prompt and the
golden tokens, and at every step its argmax is compared with the golden token. Agreement = share
of steps where they are equal. Models: llama.cpp on the Q4_1 GGUF (through `.venv-peer`,
`bench.peer.teacher_forced`; skipped when that interpreter is missing), our int4 graph, and each
`--graph` (e.g. a copy whose MatMulNBits run int8 activations, accuracy_level 4). The bar for a
faster but less exact graph: its agreement is at least llama.cpp's own Q4_1 agreement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDENS = REPO_ROOT / "tests" / "reference_model" / "data" / "llamacpp_f32_goldens.json"
PEER_PYTHON = REPO_ROOT / ".venv-peer" / "bin" / "python"


def agreement(choices: dict[str, list[int]], cases: list[dict[str, Any]]) -> float:
    """Share of steps whose choice equals the golden token."""
    hits = total = 0
    for case in cases:
        got, want = choices[case["name"]], case["generated_ids"]
        hits += sum(int(a == b) for a, b in zip(got, want, strict=True))
        total += len(want)
    return hits / total


def ours(onnx_path: Path, cases: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Our graph's argmax per step: one all-logits prefill of prompt + generated[:-1] per case."""
    from reference_model.engine import Engine
    from reference_model.prepared import prepare

    base = prepare("int4")

    class Graph:
        config = base.config

    Graph.onnx_path = onnx_path  # type: ignore[attr-defined]
    engine = Engine(Graph(), device="cpu", threads=2, max_batch=1, max_context=1024, spin=False)  # type: ignore[arg-type]
    out = {}
    for case in cases:
        ids = case["prompt_ids"] + case["generated_ids"][:-1]
        seq = engine.start(ids, 0)
        logits = engine.prefill(seq, all_logits=True)
        engine.release(seq)
        out[case["name"]] = [int(i) for i in np.argmax(logits[len(case["prompt_ids"]) - 1:], axis=1)]
    return out


def llama_cpp(cases_path: Path) -> dict[str, list[int]] | None:
    """llama.cpp's Q4_1 choices through .venv-peer, or None when it is missing."""
    from reference_model.weights import ensure_gguf

    if not PEER_PYTHON.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "q4_1.json"
        subprocess.run([str(PEER_PYTHON), "-m", "bench.peer.teacher_forced", str(ensure_gguf()), str(cases_path),
                        str(out)], cwd=REPO_ROOT, check=True)
        choices: dict[str, list[int]] = json.loads(out.read_text())
        return choices


def main(argv: list[str] | None = None) -> int:
    """CLI: print (and optionally write) the agreement of each model."""
    p = argparse.ArgumentParser(prog="python -m bench.agreement", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", type=Path, action="append", default=[], help="another ONNX graph of the model")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    from reference_model.prepared import prepare

    cases = json.loads(GOLDENS.read_text())["cases"]
    results: dict[str, float | None] = {}
    peer = llama_cpp(GOLDENS)
    results["llama.cpp Q4_1"] = None if peer is None else agreement(peer, cases)
    for name, path in [("ours int4", prepare("int4").onnx_path), *((str(g), g) for g in args.graph)]:
        results[name] = agreement(ours(path, cases), cases)
    steps = sum(len(c["generated_ids"]) for c in cases)
    for name, value in results.items():
        print(f"{name:40s} {'-' if value is None else f'{value:.4f}'} of {steps} teacher-forced steps")
    if args.json:
        args.json.write_text(json.dumps({"steps": steps, "agreement": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
