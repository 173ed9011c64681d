"""The model's weights in one typed value, read from a GGUF file (or generated for the tiny model)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reference_model.config import ModelConfig
from reference_model.convert.quant import (
    ConversionError,
    Q4_1Matrix,
    decode_q4_1,
    dequantize_q8_0,
    unpermute_rope_rows,
)
from reference_model.gguf_file import open_gguf


@dataclass(frozen=True)
class LayerWeights:
    """One transformer block. Q and K rows are already in HF order (half-split rotary)."""

    attn_norm: np.ndarray  # [hidden] float32
    q: Q4_1Matrix  # [n_heads*head_dim, hidden]
    k: Q4_1Matrix  # [n_kv_heads*head_dim, hidden]
    v: Q4_1Matrix  # [n_kv_heads*head_dim, hidden]
    o: Q4_1Matrix  # [hidden, n_heads*head_dim]
    ffn_norm: np.ndarray  # [hidden] float32
    gate: Q4_1Matrix  # [ffn, hidden]
    up: Q4_1Matrix  # [ffn, hidden]
    down: Q4_1Matrix  # [hidden, ffn]


@dataclass(frozen=True)
class ModelWeights:
    """All weights; the embedding table doubles as the LM head (tied)."""

    config: ModelConfig
    embedding: np.ndarray  # [vocab, hidden] float32 (dequantized Q8_0)
    layers: tuple[LayerWeights, ...]
    output_norm: np.ndarray  # [hidden] float32


_TOKEN_TABLES = {"tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                 "tokenizer.ggml.scores"}


def _fields(reader: Any) -> dict[str, Any]:
    """Metadata key -> decoded value, without the large token tables."""
    return {k: f.contents() for k, f in reader.fields.items() if k not in _TOKEN_TABLES}


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """Metadata key -> value of a GGUF file (token tables skipped)."""
    return _fields(open_gguf(path))


def load_gguf_weights(path: Path, name: str = "model") -> ModelWeights:
    """Read a llama GGUF with Q4_1 linear weights, a Q8_0 (or F32) embedding and F32 norms."""
    import gguf  # heavy; only for the quantization type constants

    reader = open_gguf(path)  # shared per process: parsing the metadata takes ~2 s
    fields = _fields(reader)
    config = ModelConfig.from_gguf_fields(fields, name=name)
    tensors = {t.name: t for t in reader.tensors}

    def get(tname: str) -> Any:
        if tname not in tensors:
            raise ConversionError(f"GGUF {path.name}: missing tensor {tname!r}")
        return tensors[tname]

    def q4(tname: str, rows: int, cols: int) -> Q4_1Matrix:
        t = get(tname)
        if t.tensor_type != gguf.GGMLQuantizationType.Q4_1:
            raise ConversionError(f"GGUF tensor {tname!r}: expected type Q4_1, got {t.tensor_type.name}")
        if tuple(int(x) for x in t.shape) != (cols, rows):
            raise ConversionError(f"GGUF tensor {tname!r}: expected ggml shape [{cols}, {rows}], "
                                  f"got {list(t.shape)}")
        return decode_q4_1(t.data, rows, cols, tname)

    def f32(tname: str, size: int) -> np.ndarray:
        t = get(tname)
        if t.tensor_type != gguf.GGMLQuantizationType.F32 or int(t.n_elements) != size:
            raise ConversionError(f"GGUF tensor {tname!r}: expected F32 [{size}], "
                                  f"got {t.tensor_type.name} {list(t.shape)}")
        return np.array(t.data, np.float32).reshape(size)

    c = config
    emb_t = get("token_embd.weight")
    if emb_t.tensor_type == gguf.GGMLQuantizationType.Q8_0:
        embedding = dequantize_q8_0(emb_t.data, c.vocab_size, c.hidden_size, "token_embd.weight")
    elif emb_t.tensor_type == gguf.GGMLQuantizationType.F32:
        embedding = np.array(emb_t.data, np.float32).reshape(c.vocab_size, c.hidden_size)
    else:
        raise ConversionError(f"GGUF token_embd.weight: unsupported type {emb_t.tensor_type.name}")
    if "output.weight" in tensors:
        raise ConversionError("GGUF has a separate output.weight; only tied embeddings are supported")

    q_perm = unpermute_rope_rows(c.q_size, c.n_heads)
    k_perm = unpermute_rope_rows(c.kv_size, c.n_kv_heads)
    layers = []
    for i in range(c.n_layers):
        p = f"blk.{i}."
        layers.append(LayerWeights(
            attn_norm=f32(p + "attn_norm.weight", c.hidden_size),
            q=q4(p + "attn_q.weight", c.q_size, c.hidden_size).take_rows(q_perm),
            k=q4(p + "attn_k.weight", c.kv_size, c.hidden_size).take_rows(k_perm),
            v=q4(p + "attn_v.weight", c.kv_size, c.hidden_size),
            o=q4(p + "attn_output.weight", c.hidden_size, c.q_size),
            ffn_norm=f32(p + "ffn_norm.weight", c.hidden_size),
            gate=q4(p + "ffn_gate.weight", c.ffn_size, c.hidden_size),
            up=q4(p + "ffn_up.weight", c.ffn_size, c.hidden_size),
            down=q4(p + "ffn_down.weight", c.hidden_size, c.ffn_size),
        ))
    return ModelWeights(config=config, embedding=np.ascontiguousarray(embedding), layers=tuple(layers),
                        output_norm=f32("output_norm.weight", c.hidden_size))
