"""A tiny random-weight model of the same architecture, built in about a second, for fast tests.

It goes through the same graph builder as the real model (both weight formats) and keeps the
real vocabulary size, so the real tokenizer's ids are valid inputs. Weights are Q4_1 blocks drawn
from a fixed seed, so the int4 and fp32 graphs compute the same function up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference_model.config import QUANT_BLOCK, ModelConfig
from reference_model.convert.graph import GraphOptions, build_graph
from reference_model.convert.quant import Q4_1Matrix
from reference_model.convert.weights_model import LayerWeights, ModelWeights

TINY_CONFIG = ModelConfig(
    n_layers=2, hidden_size=64, ffn_size=128, n_heads=4, n_kv_heads=2, head_dim=16,
    rope_theta=10000.0, rms_eps=1e-5, vocab_size=49152, context_length=256, name="tiny",
)
TINY_SEED = 1234


def _random_q4_1(rng: np.random.Generator, rows: int, cols: int) -> Q4_1Matrix:
    """Random Q4_1 blocks whose values have standard deviation about 1/sqrt(cols)."""
    nb = cols // QUANT_BLOCK
    q = rng.integers(0, 16, size=(rows, nb, QUANT_BLOCK), dtype=np.uint8)
    # (q - 7.5) has std ~4.6, so d ~ 1/(4.6 sqrt(cols)) keeps each output near unit variance.
    d = (rng.uniform(0.5, 1.5, size=(rows, nb)) / (4.6 * np.sqrt(cols))).astype(np.float16)
    m = (-7.5 * d.astype(np.float32) + rng.normal(0, 0.01, size=(rows, nb))).astype(np.float16)
    return Q4_1Matrix(d=d, m=m, q=q)


def tiny_weights(seed: int = TINY_SEED, config: ModelConfig = TINY_CONFIG) -> ModelWeights:
    """Deterministic random weights for `config` from `seed`."""
    rng = np.random.default_rng(seed)
    c = config
    layers = []
    for _ in range(c.n_layers):
        layers.append(LayerWeights(
            attn_norm=rng.uniform(0.8, 1.2, c.hidden_size).astype(np.float32),
            q=_random_q4_1(rng, c.q_size, c.hidden_size),
            k=_random_q4_1(rng, c.kv_size, c.hidden_size),
            v=_random_q4_1(rng, c.kv_size, c.hidden_size),
            o=_random_q4_1(rng, c.hidden_size, c.q_size),
            ffn_norm=rng.uniform(0.8, 1.2, c.hidden_size).astype(np.float32),
            gate=_random_q4_1(rng, c.ffn_size, c.hidden_size),
            up=_random_q4_1(rng, c.ffn_size, c.hidden_size),
            down=_random_q4_1(rng, c.hidden_size, c.ffn_size),
        ))
    embedding = rng.normal(0, 0.25, size=(c.vocab_size, c.hidden_size)).astype(np.float32)
    output_norm = rng.uniform(0.8, 1.2, c.hidden_size).astype(np.float32)
    return ModelWeights(config=c, embedding=embedding, layers=tuple(layers), output_norm=output_norm)


@dataclass(frozen=True)
class TinyModel:
    """A built tiny graph (satisfies `engine.EngineModel`)."""

    onnx_path: Path
    config: ModelConfig
    weights: str
    seed: int


def build_tiny(directory: Path, weights: str = "int4", *, seed: int = TINY_SEED,
               config: ModelConfig = TINY_CONFIG, accuracy_level: int = 0) -> TinyModel:
    """Write the tiny model's graph for `weights` ('int4' or 'fp32') into `directory`."""
    import onnx

    options = GraphOptions(weights=weights, accuracy_level=accuracy_level)
    model = build_graph(tiny_weights(seed, config), options)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"tiny-{weights}-{seed}-al{accuracy_level}.onnx"
    onnx.save_model(model, str(path))
    return TinyModel(onnx_path=path, config=config, weights=weights, seed=seed)
