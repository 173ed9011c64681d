"""The tiny model: deterministic from its seed, same builder and graph contract as the real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from reference_model.convert.graph import GraphOptions, build_graph
from reference_model.tiny import TINY_CONFIG, build_tiny, tiny_weights


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b, c = tiny_weights(7), tiny_weights(7), tiny_weights(8)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    np.testing.assert_array_equal(a.layers[1].down.q, b.layers[1].down.q)
    assert not np.array_equal(a.embedding, c.embedding)


def test_tiny_config_keeps_the_real_vocabulary_and_architecture_shape() -> None:
    assert TINY_CONFIG.vocab_size == 49152
    assert TINY_CONFIG.n_heads % TINY_CONFIG.n_kv_heads == 0 and TINY_CONFIG.n_kv_heads < TINY_CONFIG.n_heads


@pytest.mark.parametrize("weights", ["int4", "fp32"])
def test_tiny_graph_loads_in_onnxruntime_with_the_engine_contract(tmp_path: Path, weights: str) -> None:
    import onnxruntime as ort

    model = build_tiny(tmp_path, weights)
    proto = onnx.load(str(model.onnx_path))
    # onnx.checker would refuse SimplifiedLayerNormalization (an ONNX Runtime operator registered
    # in the default domain); ONNX Runtime itself is the graph's consumer, so it is the check.
    ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    assert inputs[:4] == ["input_ids", "seqlens_k", "total_seq_len", "num_logits"]
    assert "past_key.1" in inputs and "present_value.1" in outputs and outputs[0] == "logits"
    ops = {n.op_type for n in proto.graph.node}
    assert {"GroupQueryAttention", "SkipSimplifiedLayerNormalization"} <= ops
    assert ("MatMulNBits" in ops) == (weights == "int4")


def test_int4_and_fp32_graphs_hold_the_same_weights() -> None:
    """The fp32 graph stores exactly the dequantized Q4_1 values that the int4 graph encodes."""
    w = tiny_weights()
    fp32 = {t.name: onnx.numpy_helper.to_array(t) for t in build_graph(w, GraphOptions(weights="fp32")).graph.initializer}
    down = w.layers[0].down
    np.testing.assert_array_equal(fp32["layer0.down.weight"], down.dequantize().T)


def test_accuracy_level_4_is_an_approximation_of_the_exact_int4_graph(tmp_path: Path) -> None:
    """accuracy_level=4 (int8 activations where the CPU supports them) stays close to level 0."""
    from reference_model.engine import Engine

    ids = [504, 2365, 6354, 16438, 27003]
    out = {}
    for level in (0, 4):
        model = build_tiny(tmp_path, "int4", accuracy_level=level)
        levels = {a.i for n in onnx.load(str(model.onnx_path)).graph.node if n.op_type == "MatMulNBits"
                  for a in n.attribute if a.name == "accuracy_level"}
        assert levels == {level}
        eng = Engine(model, device="cpu", threads=1, max_batch=1)
        out[level] = eng.prefill(eng.start(ids, 0))
    diff = np.abs(out[0] - out[4]).max()
    assert diff < 0.5  # 0.27 observed on the development CPU (AVX-512)
