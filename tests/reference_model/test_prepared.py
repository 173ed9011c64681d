"""The prepared-model cache: manifest contents, fast reuse, and rebuilds of corrupt or partial graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reference_model import prepared
from reference_model.prepared import (
    CONVERTER_VERSION,
    MANIFEST_NAME,
    PreparedModelError,
    cache_entries,
    find_prepared,
    onnx_dir,
    prepare,
)
from reference_model.weights import ENV_CACHE, GGUF_SHA256, cache_dir, sha256_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_int4(gguf_path: Path) -> prepared.PreparedModel:
    """The int4 graph in the real cache (converted on first use)."""
    return prepare("int4")


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_int4: prepared.PreparedModel) -> Path:
    """A private cache sharing the real verified GGUF and starting with a copy of the int4 graph."""
    real_weights = cache_dir() / "weights"
    monkeypatch.setenv(ENV_CACHE, str(tmp_path))
    (tmp_path / "weights").symlink_to(real_weights, target_is_directory=True)
    shutil.copytree(real_int4.directory, onnx_dir("int4"), copy_function=shutil.copy2)
    return tmp_path


def test_manifest_records_gguf_converter_and_file_hashes(real_int4: prepared.PreparedModel) -> None:
    m = real_int4.manifest
    assert (m.weights, m.converter_version, m.gguf_sha256) == ("int4", CONVERTER_VERSION, GGUF_SHA256)
    assert m.config["n_layers"] == 30 and m.options["weights"] == "int4"
    (rec,) = m.files
    assert rec.name == "model.onnx" and rec.size == real_int4.onnx_path.stat().st_size
    assert sha256_file(real_int4.onnx_path) == rec.sha256
    assert real_int4.onnx_path.parent == onnx_dir("int4")


def test_intact_copy_is_reused_without_conversion(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_conversion(*args, **kwargs):
        raise AssertionError("an intact cached graph was converted again")

    monkeypatch.setattr(prepared, "convert_gguf", no_conversion)
    model = prepare("int4", verify=True)
    assert model.directory == isolated_cache / "SmolLM2-135M-Instruct" / "onnx" / "int4"


def test_corrupt_graph_is_detected_and_rebuilt_identically(isolated_cache: Path) -> None:
    graph = onnx_dir("int4") / "model.onnx"
    good_sha = find_prepared("int4").manifest.files[0].sha256
    with open(graph, "r+b") as fh:  # same size, one byte flipped in the middle
        fh.seek(graph.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert find_prepared("int4") is None
    assert {e.weights: e.status for e in cache_entries()}["int4"] == "corrupt"
    rebuilt = prepare("int4")
    assert sha256_file(rebuilt.onnx_path) == good_sha  # the conversion is deterministic


def test_partial_graph_without_manifest_is_rebuilt(isolated_cache: Path) -> None:
    directory = onnx_dir("int4")
    (directory / MANIFEST_NAME).unlink()
    (directory / ".tmp-999-model.onnx").write_bytes(b"half written")
    assert find_prepared("int4") is None
    assert {e.weights: e.status for e in cache_entries()}["int4"] == "missing"
    model = prepare("int4")
    assert model.manifest.files[0].sha256 == sha256_file(model.onnx_path)
    assert not list(directory.glob(".tmp-*"))


def test_graph_from_another_converter_version_is_stale(isolated_cache: Path) -> None:
    path = onnx_dir("int4") / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["converter_version"] = CONVERTER_VERSION - 1
    path.write_text(json.dumps(data))
    assert find_prepared("int4") is None
    assert {e.weights: e.status for e in cache_entries()}["int4"] == "stale"


def test_unknown_weight_format_is_refused() -> None:
    with pytest.raises(PreparedModelError, match=r"weights must be one of \('int4', 'fp32'\), got 'int8'"):
        prepare("int8")


def test_open_engine_prepares_and_runs_the_real_model(real_int4: prepared.PreparedModel) -> None:
    from reference_model.engine import open_engine

    engine = open_engine("int4", device="cpu", threads=2, max_batch=1, max_context=64)
    assert engine.config.n_layers == 30 and engine.context_length == 64
    logits = engine.prefill(engine.start([1, 9690, 198], 4))
    assert logits.shape == (49152,) and np.isfinite(logits).all()
