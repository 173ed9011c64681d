"""Compare the F32 and Q4_1 greedy goldens: common prefix per prompt and the margins at divergence."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.peer.model_files import GOLDEN_DIR as DATA_DIR


@dataclass(frozen=True)
class Divergence:
    """Where two greedy runs of one prompt part, with each run's top-2 logit margin there."""

    name: str
    common_prefix: int
    n_steps: int
    f32_margin: float | None
    q4_1_margin: float | None
    f32_token: int | None
    q4_1_token: int | None
    max_logit_diff_in_prefix: float


def _margin(step: dict[str, Any]) -> float:
    """Return top-1 minus top-2 raw logit of one step."""
    top: list[list[float]] = step["top"]  # [[token_id, raw_logit, logprob], ...]
    return top[0][1] - top[1][1]


def compare(f32: dict[str, Any], q4: dict[str, Any]) -> list[Divergence]:
    """Return one Divergence per case, matching cases by name."""
    q4_cases = {case["name"]: case for case in q4["cases"]}
    found = []
    for case in f32["cases"]:
        other = q4_cases[case["name"]]
        a, b = case["generated_ids"], other["generated_ids"]
        prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        # Logit gap of the chosen token while both runs still share a context.
        diffs = [abs(case["steps"][i]["top"][0][1] - other["steps"][i]["top"][0][1]) for i in range(prefix + 1)
                 if i < len(a)]
        split = prefix < len(a)
        found.append(Divergence(
            name=case["name"], common_prefix=prefix, n_steps=len(a),
            f32_margin=round(_margin(case["steps"][prefix]), 4) if split else None,
            q4_1_margin=round(_margin(other["steps"][prefix]), 4) if split else None,
            f32_token=a[prefix] if split else None, q4_1_token=b[prefix] if split else None,
            max_logit_diff_in_prefix=round(max(diffs), 4),
        ))
    return found


def main(argv: list[str] | None = None) -> int:
    """CLI: print one line per prompt and a JSON list."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer.compare_goldens", description=__doc__)
    parser.add_argument("--f32", type=Path, default=DATA_DIR / "llamacpp_f32_goldens.json")
    parser.add_argument("--q4-1", type=Path, default=DATA_DIR / "llamacpp_q4_1_goldens.json")
    args = parser.parse_args(argv)
    result = compare(json.loads(args.f32.read_text()), json.loads(args.q4_1.read_text()))
    for d in result:
        where = (f"diverge at step {d.common_prefix}: f32 {d.f32_token} (margin {d.f32_margin}) "
                 f"vs q4_1 {d.q4_1_token} (margin {d.q4_1_margin})") if d.f32_token is not None else "identical"
        print(f"{d.name:18s} common prefix {d.common_prefix:2d}/{d.n_steps}  {where}  "
              f"max |top-1 logit diff| {d.max_logit_diff_in_prefix}")
    print(json.dumps([asdict(d) for d in result]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
