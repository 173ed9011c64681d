"""The tied Q8_0 table as int8 rows plus two exact 4-bit head halves (int4 graph)."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest

from reference_model.convert.graph import GraphOptions, build_graph
from reference_model.convert.quant import recover_q8_0, split_q8_head
from reference_model.engine import Engine
from reference_model.tiny import TINY_CONFIG, TinyModel, tiny_weights


def _q8_table(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(table, q, d) as llama.cpp's Q8_0 quantizer leaves them: |q| <= 127, one +-127 per block."""
    q = rng.integers(-127, 128, size=(rows, cols // 32, 32)).astype(np.int8)
    q[:, :, 5] = np.where(rng.random((rows, cols // 32)) < 0.5, 127, -127)
    d = rng.uniform(1e-4, 2e-2, size=(rows, cols // 32)).astype(np.float16).astype(np.float32)
    return (q.astype(np.float32) * d[:, :, None]).reshape(rows, cols), q, d


def _unpack(packed: np.ndarray) -> np.ndarray:
    """[N, nb, 16] bytes -> [N, nb, 32] nibbles (element 2j low, 2j+1 high)."""
    return np.stack([packed & 15, packed >> 4], axis=-1).reshape(*packed.shape[:2], 32).astype(np.int32)


def test_q8_blocks_are_recovered_bit_exactly() -> None:
    table, q, d = _q8_table(np.random.default_rng(0), 50, 96)
    table[3, :32] = 0.0  # an all-zero block (d = 0)
    q[3, 0], d[3, 0] = 0, 0.0
    got = recover_q8_0(table)
    assert got is not None
    np.testing.assert_array_equal(got.q, q)
    np.testing.assert_array_equal(got.d, d)


def test_tables_that_are_not_q8_are_refused() -> None:
    assert recover_q8_0(np.random.default_rng(1).normal(size=(8, 64)).astype(np.float32)) is None
    table, _, _ = _q8_table(np.random.default_rng(2), 8, 64)
    table[0, 1] += np.float32(1e-6)  # one element off the grid
    assert recover_q8_0(table) is None
    assert recover_q8_0(np.zeros((4, 40), np.float32)) is None  # row length not a multiple of 32


def test_split_halves_rebuild_q() -> None:
    _, q, d = _q8_table(np.random.default_rng(3), 20, 64)
    split = split_q8_head(recover_q8_0((q.astype(np.float32) * d[:, :, None]).reshape(20, 64)))
    high, low = _unpack(split.high) - 8, _unpack(split.low)
    assert high.min() >= -8 and high.max() <= 7 and low.min() >= 0 and low.max() <= 15
    np.testing.assert_array_equal(16 * high + low, q)
    np.testing.assert_array_equal(split.high_scales, 16 * d.reshape(-1))
    assert not split.low_zero_points.any()


@pytest.fixture(scope="module")
def q8_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyModel, TinyModel]:
    """The tiny model with a Q8_0-representable embedding, with and without the q8 head."""
    c = TINY_CONFIG
    table, _, _ = _q8_table(np.random.default_rng(4), c.vocab_size, c.hidden_size)
    weights = dataclasses.replace(tiny_weights(), embedding=table)
    directory = tmp_path_factory.mktemp("q8head")
    models = []
    for q8 in (True, False):
        path = directory / f"tiny-q8head-{q8}.onnx"
        onnx.save_model(build_graph(weights, GraphOptions(weights="int4", q8_head=q8)), str(path))
        models.append(TinyModel(onnx_path=path, config=c, weights="int4", seed=0))
    return models[0], models[1]


def test_q8_graph_holds_no_fp32_table(q8_models: tuple[TinyModel, TinyModel]) -> None:
    names = {i.name: i for i in onnx.load(str(q8_models[0].onnx_path)).graph.initializer}
    assert "embedding" not in names and "embedding.q8" in names
    assert names["embedding.q8"].data_type == onnx.TensorProto.INT8
    assert "embedding" in {i.name for i in onnx.load(str(q8_models[1].onnx_path)).graph.initializer}


def test_q8_head_matches_the_fp32_table_head(q8_models: tuple[TinyModel, TinyModel]) -> None:
    prompt = [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30]
    results = []
    for model in q8_models:
        engine = Engine(model, device="cpu", threads=2, max_batch=3)
        seq = engine.start(prompt, 4)
        every = engine.prefill(seq, all_logits=True)  # [10, vocab]: many rows through the head
        other = engine.start(prompt[:4], 4)
        engine.prefill(other)
        step = engine.step({seq: 7, other: 9})  # two rows
        results.append((every, step[seq], step[other]))
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
        assert np.array_equal(got.argmax(-1), expected.argmax(-1))
