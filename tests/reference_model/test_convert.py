"""The converter's building blocks: GGUF block decoding, the MatMulNBits repack, rotary rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from onnx import TensorProto, helper, numpy_helper

from reference_model.config import ModelConfig
from reference_model.convert.graph import GraphOptions, rotary_tables
from reference_model.convert.quant import (
    ConversionError,
    Q4_1Matrix,
    decode_q4_1,
    dequantize_q8_0,
    encode_q4_1,
    to_matmul_nbits,
    unpermute_rope_rows,
)


def _random_q4_1_bytes(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A Q4_1 tensor as gguf's own quantizer writes it: raw bytes [rows, cols/32*20]."""
    values = rng.normal(0, 1, size=(rows, cols)).astype(np.float32)
    return quantize(values, GGMLQuantizationType.Q4_1)


def test_q4_1_decode_matches_gguf_dequantize() -> None:
    rng = np.random.default_rng(0)
    raw = _random_q4_1_bytes(rng, 12, 96)
    mat = decode_q4_1(raw, 12, 96)
    expected = dequantize(raw, GGMLQuantizationType.Q4_1)
    assert mat.shape == (12, 96)
    np.testing.assert_array_equal(mat.dequantize(), expected)


def test_q4_1_encode_roundtrips_bytes() -> None:
    rng = np.random.default_rng(1)
    raw = _random_q4_1_bytes(rng, 5, 64)
    np.testing.assert_array_equal(encode_q4_1(decode_q4_1(raw, 5, 64)), raw)


def test_q8_0_matches_gguf_dequantize() -> None:
    rng = np.random.default_rng(2)
    raw = quantize(rng.normal(0, 1, size=(7, 64)).astype(np.float32), GGMLQuantizationType.Q8_0)
    np.testing.assert_array_equal(dequantize_q8_0(raw, 7, 64), dequantize(raw, GGMLQuantizationType.Q8_0))


def test_block_decoding_rejects_wrong_sizes() -> None:
    with pytest.raises(ConversionError, match="expected 40 bytes"):
        decode_q4_1(np.zeros(41, np.uint8), 2, 32, "blk.0.attn_q.weight")
    with pytest.raises(ConversionError, match="multiple of 32"):
        dequantize_q8_0(np.zeros(34, np.uint8), 1, 30)


def _matmul_nbits_model(mat: Q4_1Matrix, packed: np.ndarray) -> bytes:
    """x [M, K] -> MatMulNBits(x; packed, d, zp=0) + blocksum(x) @ mins, as a standalone graph."""
    n, k = mat.shape
    nb = to_matmul_nbits(mat)
    inits = [numpy_helper.from_array(a, name) for a, name in (
        (packed, "B"), (nb.scales, "S"), (nb.zero_points, "Z"), (nb.mins, "M"),
        (np.array([0, k // 32, 32], np.int64), "shape"), (np.array([-1], np.int64), "axes"))]
    nodes = [
        helper.make_node("MatMulNBits", ["x", "B", "S", "Z"], ["y0"], domain="com.microsoft",
                         K=k, N=n, bits=4, block_size=32),
        helper.make_node("Reshape", ["x", "shape"], ["xb"]),
        helper.make_node("ReduceSum", ["xb", "axes"], ["xs"], keepdims=0),
        helper.make_node("MatMul", ["xs", "M"], ["corr"]),
        helper.make_node("Add", ["y0", "corr"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "nbits", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model.SerializeToString()


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("m", [1, 5])
def test_matmul_nbits_repack_equals_dequantized_matmul(m: int) -> None:
    rng = np.random.default_rng(3)
    mat = decode_q4_1(_random_q4_1_bytes(rng, 48, 96), 48, 96)
    x = rng.normal(0, 1, size=(m, 96)).astype(np.float32)
    expected = x.astype(np.float64) @ mat.dequantize().astype(np.float64).T
    got = _run(_matmul_nbits_model(mat, to_matmul_nbits(mat).packed), x)
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-5)


def test_gguf_nibble_order_is_not_matmul_nbits_order() -> None:
    """Without the repack (GGUF's low/high halves used as pairs) the product is wrong: the repack matters."""
    rng = np.random.default_rng(4)
    raw = _random_q4_1_bytes(rng, 16, 64)
    mat = decode_q4_1(raw, 16, 64)
    gguf_order = np.ascontiguousarray(raw.reshape(16, 2, 20)[:, :, 4:])  # nibbles as stored in GGUF
    x = rng.normal(0, 1, size=(1, 64)).astype(np.float32)
    expected = x @ mat.dequantize().T
    assert np.abs(_run(_matmul_nbits_model(mat, gguf_order), x) - expected).max() > 0.1


def test_unpermute_inverts_llama_cpp_rope_permutation() -> None:
    n_heads, head_dim = 3, 8
    hf_rows = np.arange(n_heads * head_dim)
    # llama.cpp's converter: each head's rows viewed as [2, head_dim/2] and transposed.
    gguf_rows = hf_rows.reshape(n_heads, 2, head_dim // 2).swapaxes(1, 2).reshape(-1)
    np.testing.assert_array_equal(gguf_rows[unpermute_rope_rows(n_heads * head_dim, n_heads)], hf_rows)


def test_rotary_tables_follow_the_rope_formula() -> None:
    cfg = ModelConfig(n_layers=1, hidden_size=64, ffn_size=64, n_heads=4, n_kv_heads=2, head_dim=16,
                      rope_theta=10000.0, rms_eps=1e-5, vocab_size=10, context_length=512)
    cos, sin = rotary_tables(cfg, 512)
    assert cos.shape == sin.shape == (512, 8) and cos.dtype == np.float32
    pos = np.arange(512)[:, None]
    angles = pos * 10000.0 ** (-2 * np.arange(8) / 16)
    np.testing.assert_allclose(cos, np.cos(angles), atol=2e-4)
    np.testing.assert_allclose(sin, np.sin(angles), atol=2e-4)


def test_graph_options_reject_unknown_values() -> None:
    with pytest.raises(ConversionError, match="weights must be one of"):
        GraphOptions(weights="int8")
    with pytest.raises(ConversionError, match="accuracy_level"):
        GraphOptions(accuracy_level=7)


@pytest.mark.slow
def test_real_gguf_loads_with_the_documented_architecture(gguf_path: Path) -> None:
    from reference_model.convert.weights_model import load_gguf_weights

    w = load_gguf_weights(gguf_path)
    c = w.config
    assert (c.n_layers, c.hidden_size, c.ffn_size, c.n_heads, c.n_kv_heads, c.head_dim) == (30, 576, 1536, 9, 3, 64)
    assert (c.rope_theta, c.vocab_size, c.context_length) == (100000.0, 49152, 8192)
    assert c.rms_eps == pytest.approx(1e-5)
    assert w.embedding.shape == (49152, 576) and len(w.layers) == 30
    assert w.layers[0].q.shape == (576, 576) and w.layers[0].down.shape == (576, 1536)
