"""Tokenize a varied corpus with llama.cpp and write tests/reference_model/data/tokenizer_golden.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypedDict

from bench.peer.chat_prompt import control_token_texts
from bench.peer.golden_json import write_golden
from bench.peer.llama_session import LLAMA_CPP_PYTHON_VERSION, load_vocab, tokenize
from bench.peer.model_files import GOLDEN_DIR, sha256_of, source_gguf
from bench.peer.tokenizer_corpus import corpus_cases

DEFAULT_OUTPUT = GOLDEN_DIR / "tokenizer_golden.json"
GENERATOR = "bench/peer/make_tokenizer_golden.py"


class GoldenCase(TypedDict):
    """One corpus text and the ids llama.cpp tokenizes it to."""

    name: str
    text: str
    special: bool
    ids: list[int]


def golden_cases(gguf_path: Path) -> list[GoldenCase]:
    """Return [{name, text, special, ids}] for every corpus case, tokenized by llama.cpp."""
    controls = control_token_texts(gguf_path)
    llm = load_vocab(gguf_path)
    cases: list[GoldenCase] = []
    for case in corpus_cases(controls):
        ids = tokenize(llm, case.text, case.special)
        cases.append({"name": case.name, "text": case.text, "special": case.special, "ids": ids})
    _check_control_tokens(cases, len(controls))
    return cases


def _check_control_tokens(cases: list[GoldenCase], count: int) -> None:
    """Fail loudly if llama.cpp did not parse (special) or split (plain) a control token's text."""
    by_name = {case["name"]: case["ids"] for case in cases}
    for token_id in range(count):
        parsed, split = by_name[f"control.{token_id}.special"], by_name[f"control.{token_id}.plain"]
        if parsed != [token_id]:
            raise AssertionError(f"control token {token_id} with special=True gave {parsed}, not [{token_id}]")
        if any(t < count for t in split) or len(split) < 2:
            raise AssertionError(f"control token {token_id} with special=False gave {split}")


def main(argv: list[str] | None = None) -> int:
    """CLI: write the tokenizer golden and print how many cases it holds."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer.make_tokenizer_golden", description=__doc__)
    parser.add_argument("--gguf", type=Path, default=None, help="the Q4_1 GGUF (default: ensure_gguf())")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    gguf_path = source_gguf(args.gguf)
    cases = golden_cases(gguf_path)
    header = {
        "generator": GENERATOR,
        "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION,
        "gguf_sha256": sha256_of(gguf_path),
        "add_bos": False,
    }
    write_golden(args.output, header, "cases", cases)
    print(f"wrote {len(cases)} cases to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
