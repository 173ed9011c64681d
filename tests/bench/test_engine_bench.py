"""The engine bench's parts on the tiny model: prompt, weight accounting, bandwidth probe, verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.engine import bench_prompt, parse_args
from bench.engine_limits import (
    measure_bandwidth,
    physical_limit,
    weight_bytes_per_token,
)
from bench.engine_ours import measure
from bench.engine_render import render, verdicts
from bench.engine_types import Bandwidth, BatchRun, OurMeasurement, WeightBytes
from reference_model.config import QUANT_BLOCK
from reference_model.tiny import TINY_CONFIG, build_tiny

GOLDENS = Path(__file__).parents[1] / "reference_model" / "data" / "llamacpp_f32_goldens.json"


def _ours(**changes: object) -> OurMeasurement:
    base = {
        "model": "real", "weights": "int4", "device": "cpu", "provider": "CPUExecutionProvider",
        "onnxruntime": "1.31.1", "n_threads": 2, "prompt_tokens": 400, "decode_tokens": 128,
        "batch_tokens": 128, "repeats": 3, "prefill_chunk": 256, "prefill_tok_s": 1000.0,
        "prefill_runs_tok_s": [1000.0], "prefill_best_tok_s": 1000.0, "decode_tok_s": 80.0,
        "decode_runs_tok_s": [80.0], "decode_best_tok_s": 80.0,
        "batched": [BatchRun(1, 80.0, [80.0]), BatchRun(8, 240.0, [240.0])],
        "peak_rss_mb": 500.0, "peak_rss_batched_mb": 700.0, "load_average_1m": [1.0, 1.0],
    }
    base.update(changes)
    return OurMeasurement(**base)  # type: ignore[arg-type]


def test_prompt_is_llama_cpp_tokenization_of_the_same_text() -> None:
    """With one copy of the instruction the bench prompt is the golden 'long_instruction' prompt,
    whose ids llama.cpp itself produced."""
    golden = next(c for c in json.loads(GOLDENS.read_text())["cases"] if c["name"] == "long_instruction")
    assert bench_prompt(len(golden["prompt_ids"])) == golden["prompt_ids"]
    longer = bench_prompt(400)
    assert len(longer) == 400 and longer[0] == 1  # <|im_start|>


def test_weight_bytes_count_each_tensor_once(tmp_path: Path) -> None:
    c = TINY_CONFIG
    got = weight_bytes_per_token(build_tiny(tmp_path, "int4").onnx_path)
    shapes = [(c.hidden_size, c.q_size + 2 * c.kv_size), (c.q_size, c.hidden_size),
              (c.hidden_size, 2 * c.ffn_size), (c.ffn_size, c.hidden_size)]  # (K, N) per layer
    per_layer = 0
    for k, n in shapes:
        blocks = k // QUANT_BLOCK
        # nibbles + fp32 scales + packed zero points + fp32 block minimums
        per_layer += n * k // 2 + n * blocks * 4 + n * ((blocks + 1) // 2) + blocks * n * 4
    assert got.linear == c.n_layers * per_layer
    assert got.head == c.vocab_size * c.hidden_size * 4  # the fp32 tied table, read whole
    norms = (2 * c.n_layers + 1) * c.hidden_size * 4
    rows = c.hidden_size * 4 + 2 * (c.head_dim // 2) * 4  # one embedding row, one cos and sin row
    assert norms + rows <= got.other < norms + rows + 4096  # plus small shape constants
    fp32 = weight_bytes_per_token(build_tiny(tmp_path, "fp32").onnx_path)
    assert fp32.linear == c.n_layers * sum(k * n * 4 for k, n in shapes)


def test_bandwidth_probe_reads_the_array_and_checks_arguments() -> None:
    bw = measure_bandwidth(8 << 20, threads=2, repeats=2)
    assert bw.gb_s > 0 and len(bw.runs_gb_s) == 2 and bw.gb_s == max(bw.runs_gb_s)
    assert bw.array_bytes == 8 << 20
    with pytest.raises(ValueError, match="threads >= 1"):
        measure_bandwidth(1 << 20, threads=0)


def test_physical_limit_divides_bandwidth_by_bytes() -> None:
    lim = physical_limit(Bandwidth(10.0, [10.0], 1 << 30, 2), WeightBytes(60_000_000, 40_000_000, 0), 50.0)
    assert lim.max_tok_s == 100.0 and lim.our_decode_fraction == 0.5


def test_verdicts_apply_each_target() -> None:
    peer = {"prefill_tok_s": 400.0, "decode_tok_s": 50.0, "prefill_best_tok_s": 410.0,
            "decode_best_tok_s": 55.0, "peak_rss_mib": 300.0}
    by = {v.name: v for v in verdicts(_ours(), peer)}
    assert by["decode ours/llama.cpp"].value == 1.6 and by["decode ours/llama.cpp"].passed
    assert by["prefill ours/llama.cpp"].value == 2.5 and by["prefill ours/llama.cpp"].passed
    assert by["peak RSS ours (MB)"].passed
    assert by["batch-8 / batch-1 total tok/s"].value == 3.0 and by["batch-8 / batch-1 total tok/s"].passed is False
    slow = {v.name: v for v in verdicts(_ours(decode_tok_s=60.0, peak_rss_mb=650.0), None)}
    assert slow["decode ours/llama.cpp"].passed is None  # no peer: not measurable, not a pass
    assert slow["peak RSS ours (MB)"].passed is False


def test_measure_on_the_tiny_model_reports_every_batch(tmp_path: Path) -> None:
    prompt = list(range(1000, 1040))  # any 40 valid ids
    result = measure(prompt, model="tiny", decode_tokens=4, batch_tokens=3, batches=(1, 3), repeats=2)
    assert result.prompt_tokens == 40 and result.provider == "CPUExecutionProvider"
    assert [b.batch for b in result.batched] == [1, 3]
    assert all(len(b.runs_tok_s) == 2 and b.total_tok_s > 0 for b in result.batched)
    assert result.prefill_tok_s == pytest.approx(float(np.median(result.prefill_runs_tok_s)), abs=0.01)
    assert 0 < result.peak_rss_mb <= result.peak_rss_batched_mb
    assert OurMeasurement.from_dict(json.loads(json.dumps(_asdict(result)))) == result


def _asdict(m: OurMeasurement) -> dict:
    from dataclasses import asdict

    return asdict(m)


def test_cli_rejects_bad_values_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--reps", "0"])
    assert "--reps: rule 'an integer > 0', got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--prompt-tokens", "250"])
    assert "tiny model's context 256" in capsys.readouterr().err
    quick = parse_args(["--quick"])
    assert (quick.reps, quick.prompt_tokens, quick.decode_tokens) == (1, 48, 16)


def test_render_prints_targets_and_the_cuda_line(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from bench.engine_types import BenchReport, MachineInfo

    ours = _ours()
    report = BenchReport(
        version=1, config={}, machine=MachineInfo("cpu", 2, "1.31.1", 2, [1.0], [1.0]), ours=ours, peer=None,
        peer_note="skipped (--no-peer)",
        limit=physical_limit(Bandwidth(10.0, [10.0], 1 << 30, 2), WeightBytes(1, 1, 0), 80.0),
        cuda=None, cuda_note="no GPU", verdicts=verdicts(ours, None))
    render(report, Console(width=160, force_terminal=False))
    out = capsys.readouterr().out
    assert "8 / 1 sequences: 3.00x (target >= 4.0x) MISS" in out
    assert "CUDA: not available (no GPU)" in out
    assert "skipped (--no-peer)" in out


def test_weight_bytes_of_the_q8_head_count_as_head(tmp_path: Path) -> None:
    """The int4 graph of a Q8_0 table: the head is two 4-bit halves, the lookup reads one int8 row."""
    import dataclasses

    import onnx

    from reference_model.convert.graph import GraphOptions, build_graph
    from reference_model.tiny import tiny_weights

    c = TINY_CONFIG
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, size=(c.vocab_size, c.hidden_size // 32, 32)).astype(np.float32)
    q[:, :, 0] = 127
    d = rng.uniform(1e-3, 1e-2, size=(c.vocab_size, c.hidden_size // 32, 1)).astype(np.float16).astype(np.float32)
    weights = dataclasses.replace(tiny_weights(), embedding=(q * d).reshape(c.vocab_size, c.hidden_size))
    path = tmp_path / "q8.onnx"
    onnx.save_model(build_graph(weights, GraphOptions(weights="int4")), str(path))
    got = weight_bytes_per_token(path)
    blocks = c.hidden_size // 32
    halves = 2 * (c.vocab_size * c.hidden_size // 2 + c.vocab_size * blocks * 4)
    assert got.head == halves + c.vocab_size * ((blocks + 1) // 2)  # plus the low half's zero points
    assert got.head < c.vocab_size * c.hidden_size * 4 / 3  # under a third of the fp32 table


def test_missing_peer_says_how_to_build_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bench.engine as bench_engine

    monkeypatch.setattr(bench_engine, "PEER_PYTHON", tmp_path / ".venv-peer" / "bin" / "python")
    monkeypatch.setattr(bench_engine, "REPO_ROOT", tmp_path)
    peer, note = bench_engine.run_peer(parse_args([]), repeats=1)
    assert peer is None and "is missing" in note and "make peer" in note and "bench/peer/build.sh" in note
    assert bench_engine.run_peer(parse_args(["--no-peer"]), repeats=1) == (None, "skipped (--no-peer)")


def test_rounds_are_pooled_before_the_median() -> None:
    from bench.engine_types import merge_peer

    a = _ours(prefill_runs_tok_s=[100.0], decode_runs_tok_s=[10.0], peak_rss_mb=300.0,
              batched=[BatchRun(1, 5.0, [5.0]), BatchRun(8, 20.0, [20.0])], load_average_1m=[1.0, 2.0])
    b = _ours(prefill_runs_tok_s=[300.0], decode_runs_tok_s=[30.0], peak_rss_mb=320.0,
              batched=[BatchRun(1, 7.0, [7.0]), BatchRun(8, 40.0, [40.0])], load_average_1m=[3.0, 4.0])
    c = _ours(prefill_runs_tok_s=[200.0], decode_runs_tok_s=[90.0], peak_rss_mb=310.0,
              batched=[BatchRun(1, 6.0, [6.0]), BatchRun(8, 10.0, [10.0])], load_average_1m=[5.0, 6.0])
    m = OurMeasurement.merge([a, b, c])
    assert (m.prefill_tok_s, m.prefill_best_tok_s, m.decode_tok_s, m.decode_best_tok_s) == (200.0, 300.0, 30.0, 90.0)
    assert m.repeats == 3 and m.peak_rss_mb == 320.0 and m.load_average_1m == [1.0, 6.0]
    assert m.batch_rate(1) == 6.0 and m.batch_rate(8) == 20.0
    peer = lambda p, d: {"prefill_runs_tok_s": [p], "decode_runs_tok_s": [d], "llama_prefill_tok_s": p,
                         "llama_decode_tok_s": d, "peak_rss_mib": p, "load_average_1m": [p, d], "repeats": 1}
    mp = merge_peer([peer(1.0, 9.0), peer(3.0, 7.0), peer(2.0, 8.0)])
    assert (mp["prefill_tok_s"], mp["prefill_best_tok_s"], mp["decode_tok_s"], mp["decode_best_tok_s"]) == (2.0, 3.0, 8.0, 9.0)
    assert mp["repeats"] == 3 and mp["peak_rss_mib"] == 3.0 and mp["load_average_1m"] == [1.0, 8.0]
