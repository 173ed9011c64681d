"""`chatconform model info` and `chatconform model prepare`, run in-process through the dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.cli import main
from reference_model.weights import GGUF_SHA256

pytestmark = pytest.mark.slow


def test_prepare_then_info_show_the_cached_graph(gguf_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "prepare", "--weights", "int4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("int4: ready ") and "model.onnx" in out and "sha256 " in out

    assert main(["model", "info"]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {GGUF_SHA256}" in out
    assert "onnx int4: ready" in out and "model.onnx" in out

    assert main(["model", "info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gguf"]["present"] is True and data["gguf"]["expected_sha256"] == GGUF_SHA256
    int4 = next(g for g in data["onnx"] if g["weights"] == "int4")
    assert int4["status"] == "ready" and int4["gguf_sha256"] == GGUF_SHA256
    assert int4["files"][0]["size"] == Path(int4["directory"], "model.onnx").stat().st_size


def test_bad_weights_choice_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["model", "prepare", "--weights", "int8"])
    assert info.value.code == 2
    assert "invalid choice: 'int8'" in capsys.readouterr().err


def test_model_without_action_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model"]) == 2
    assert "prepare" in capsys.readouterr().out
