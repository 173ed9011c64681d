"""The engine's spin option: passive intra-op waits change scheduling, never results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reference_model.engine import Engine
from reference_model.engine_session import EngineError
from reference_model.tiny import build_tiny


def test_passive_waits_give_identical_logits(tmp_path: Path) -> None:
    tiny = build_tiny(tmp_path, "int4")
    prompt = [504, 2365, 6354, 16438, 27003, 690]
    results = []
    for spin in (True, False):
        engine = Engine(tiny, device="cpu", threads=2, max_batch=2, spin=spin)
        seq = engine.start(prompt, 2)
        results.append((engine.prefill(seq), engine.step({seq: 42})[seq]))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_spin_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="spin must be a bool, got 'no'"):
        Engine(build_tiny(tmp_path, "int4"), device="cpu", spin="no")  # type: ignore[arg-type]
