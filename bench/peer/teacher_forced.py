"""llama.cpp's own greedy choices, teacher-forced on the F32 goldens' sequences (run with .venv-peer).

Run: .venv-peer/bin/python -m bench.peer.teacher_forced GGUF GOLDENS_JSON OUT_JSON

For each golden case: the prompt, then the golden's generated tokens one at a time; after each
prefix the argmax of llama.cpp's logits on GGUF (e.g. the Q4_1 file). OUT_JSON: {name: [argmax per
step]}. `bench.agreement` compares them with the F32 run's own tokens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.peer.llama_session import PeerConfig, eval_tokens, load_model


def teacher_forced(gguf: Path, goldens: Path) -> dict[str, list[int]]:
    """Per case, the argmax after the prompt and after each golden token but the last."""
    data = json.loads(goldens.read_text())
    llm = load_model(gguf, PeerConfig(kv_cache_type="f32"))
    out: dict[str, list[int]] = {}
    for case in data["cases"]:
        llm.reset()
        choices = [int(eval_tokens(llm, case["prompt_ids"]).argmax())]
        for token in case["generated_ids"][:-1]:
            choices.append(int(eval_tokens(llm, [token]).argmax()))
        out[case["name"]] = choices
    return out


def main(argv: list[str]) -> int:
    """CLI: GGUF GOLDENS_JSON OUT_JSON."""
    gguf, goldens, out = (Path(a) for a in argv)
    out.write_text(json.dumps(teacher_forced(gguf, goldens)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
