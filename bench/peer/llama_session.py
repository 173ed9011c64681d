"""Thin helpers over llama-cpp-python 0.3.36: load a GGUF, evaluate tokens, read raw logits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

LLAMA_CPP_PYTHON_VERSION = "0.3.36"

# KV cache element types by name -> ggml type ids (GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1).
KV_CACHE_TYPES = {"f32": 0, "f16": 1}


@dataclass(frozen=True)
class PeerConfig:
    """How the peer runs the model; recorded in every golden and measurement."""

    n_threads: int = 2
    n_ctx: int = 2048
    n_batch: int = 512
    # llama.cpp's default KV cache is f16 (~1e-2 logit error); the exactness reference needs f32.
    kv_cache_type: str = "f16"

    def __post_init__(self) -> None:
        if self.kv_cache_type not in KV_CACHE_TYPES:
            raise ValueError(
                f"kv_cache_type: rule 'one of {sorted(KV_CACHE_TYPES)}', got {self.kv_cache_type!r}"
            )


def check_version() -> None:
    """Raise RuntimeError unless the imported llama_cpp is the pinned version."""
    if llama_cpp.__version__ != LLAMA_CPP_PYTHON_VERSION:
        raise RuntimeError(
            f"llama_cpp: rule 'version must be {LLAMA_CPP_PYTHON_VERSION}' "
            f"(build with bench/peer/build.sh), got {llama_cpp.__version__}"
        )


def load_vocab(path: Path) -> llama_cpp.Llama:
    """Load only the vocabulary of a GGUF (enough to tokenize)."""
    check_version()
    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


def load_model(path: Path, config: PeerConfig) -> llama_cpp.Llama:
    """Load a GGUF for evaluation with the given threads and context size."""
    check_version()
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=config.n_ctx,
        n_batch=config.n_batch,
        n_threads=config.n_threads,
        n_threads_batch=config.n_threads,
        type_k=KV_CACHE_TYPES[config.kv_cache_type],
        type_v=KV_CACHE_TYPES[config.kv_cache_type],
        flash_attn=False,  # explicit: the plain attention path, as in the goldens' headers
        verbose=False,
    )


def tokenize(llm: llama_cpp.Llama, text: str, special: bool) -> list[int]:
    """Tokenize text without a BOS token, parsing control-token texts only when `special`."""
    return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))


def last_logits(llm: llama_cpp.Llama) -> np.ndarray:
    """Return a copy of the raw logits [n_vocab] float32 of the last evaluated position."""
    # 0.3.36 no longer fills llm.scores unless logits_all; read the context's buffer directly.
    pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).copy()


def eval_tokens(llm: llama_cpp.Llama, tokens: list[int]) -> np.ndarray:
    """Append `tokens` to the context and return the logits [n_vocab] after the last one."""
    if not tokens:
        raise ValueError("tokens: rule 'must not be empty', got []")
    llm.eval(tokens)
    return last_logits(llm)
