"""Greedy-decode eight chats with llama.cpp and write the top-10 logits per step as a golden.

Two runs make two files: the F32 copy of the GGUF (the exactness reference for the ONNX engine)
and the Q4_1 file itself (llama.cpp's int8-activation kernels; diverges only at near-ties).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import TypedDict

import llama_cpp
import numpy as np

from bench.peer.chat_prompt import gguf_chat_template, render_chatml
from bench.peer.decode_prompts import DecodePrompt, decode_prompts
from bench.peer.f32_gguf import ensure_f32_copy
from bench.peer.golden_json import write_golden
from bench.peer.llama_session import (
    LLAMA_CPP_PYTHON_VERSION,
    PeerConfig,
    eval_tokens,
    load_model,
    load_vocab,
    tokenize,
)
from bench.peer.model_files import GOLDEN_DIR, SOURCE_GGUF_SHA256, sha256_of, source_gguf

DATA_DIR = GOLDEN_DIR
GENERATOR = "bench/peer/make_decode_goldens.py"
N_STEPS = 64
TOP_K = 10


class PromptCase(TypedDict):
    """One conversation, rendered to ChatML and tokenized by llama.cpp."""

    name: str
    messages: list[dict[str, str]]
    prompt_text: str
    prompt_ids: list[int]


def top_entries(logits: np.ndarray, k: int) -> list[list[float | int]]:
    """Return [[token_id, raw_logit, logprob], ...] for the k highest logits of [n_vocab] float32."""
    wide = logits.astype(np.float64)
    # log-softmax over the full vocabulary in float64, shifted by the max for stability.
    shifted = wide - wide.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    # Highest logit first; equal logits by ascending id, the same tie rule as np.argmax.
    order = np.lexsort((np.arange(logits.size), -wide))[:k]
    return [[int(i), float(logits[i]), float(logprobs[i])] for i in order]


def greedy_steps(gguf_path: Path, prompt_ids: list[int], config: PeerConfig) -> list[list[list[float | int]]]:
    """Greedy-decode N_STEPS tokens (never stopping at eos) and return each step's top entries."""
    llm = load_model(gguf_path, config)  # a fresh context per case: no state carried across cases
    try:
        logits = eval_tokens(llm, prompt_ids)
        steps = []
        for step in range(N_STEPS):
            top = top_entries(logits, TOP_K)
            steps.append(top)
            if step + 1 < N_STEPS:
                logits = eval_tokens(llm, [int(top[0][0])])
        return steps
    finally:
        llm.close()


def prompt_case(template: str, vocab_llm: llama_cpp.Llama, prompt: DecodePrompt) -> PromptCase:
    """Render one conversation to ChatML and tokenize it with control tokens parsed."""
    text = render_chatml(template, prompt.messages, add_generation_prompt=True)
    return {"name": prompt.name, "messages": prompt.messages, "prompt_text": text,
            "prompt_ids": tokenize(vocab_llm, text, special=True)}


def run_goldens(model_path: Path, weights: str, prompts: list[PromptCase], config: PeerConfig,
                output: Path) -> None:
    """Decode every prompt on `model_path` and write the golden file for `weights`."""
    cases = []
    for prompt in prompts:
        steps = greedy_steps(model_path, prompt["prompt_ids"], config)
        generated = [int(top[0][0]) for top in steps]
        cases.append({**prompt, "generated_ids": generated, "steps": [{"top": top} for top in steps]})
        print(f"{weights} {prompt['name']}: {len(prompt['prompt_ids'])} prompt tokens -> {generated[:12]}...")
    header = {
        "generator": GENERATOR,
        "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION,
        "gguf_sha256": sha256_of(model_path),
        "source_gguf_sha256": SOURCE_GGUF_SHA256,
        "weights": weights,
        "n_threads": config.n_threads,
        "n_ctx": config.n_ctx,
        "n_batch": config.n_batch,
        "kv_cache_type": config.kv_cache_type,
        "flash_attn": False,
        "n_steps": N_STEPS,
        "top_k": TOP_K,
        "top_format": ["token_id", "raw_logit", "logprob"],
    }
    write_golden(output, header, "cases", cases, nested_key="steps")
    print(f"wrote {output} ({output.stat().st_size} bytes)")


def main(argv: list[str] | None = None) -> int:
    """CLI: write llamacpp_f32_goldens.json and llamacpp_q4_1_goldens.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer.make_decode_goldens", description=__doc__)
    parser.add_argument("--gguf", type=Path, default=None, help="the Q4_1 GGUF (default: ensure_gguf())")
    parser.add_argument("--output-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--weights", choices=("f32", "q4_1", "both"), default="both")
    args = parser.parse_args(argv)
    q4_path = source_gguf(args.gguf)
    # The F32 run is the exactness reference, so its KV cache is f32 too; the Q4_1 run is
    # llama.cpp as it is normally run (f16 KV cache).
    f32_config, q4_config = PeerConfig(kv_cache_type="f32"), PeerConfig(kv_cache_type="f16")
    template = gguf_chat_template(q4_path)
    vocab_llm = load_vocab(q4_path)
    prompts = [prompt_case(template, vocab_llm, p) for p in decode_prompts()]
    vocab_llm.close()
    print(f"config: f32 {asdict(f32_config)}, q4_1 {asdict(q4_config)}")
    if args.weights in ("f32", "both"):
        f32 = ensure_f32_copy(q4_path)
        run_goldens(f32.path, "f32", prompts, f32_config, args.output_dir / "llamacpp_f32_goldens.json")
    if args.weights in ("q4_1", "both"):
        run_goldens(q4_path, "q4_1", prompts, q4_config, args.output_dir / "llamacpp_q4_1_goldens.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
