"""The server bench with several peers: llama-server's command, the stronger-peer comparison, the
shared-prefix pair's figures and tables. No server runs and nothing is timed."""

from __future__ import annotations

import argparse

import pytest
from rich.console import Console

from bench.server import comparison, llama_server_unavailable, parse_args
from bench.server_prefix import PrefixRun
from bench.server_procs import llama_server_spec
from bench.server_render import render
from bench.server_sse import summarize
from bench.server_stats import LevelRun, ServerRecord


def _run(streams: int, tokens: int, wall_s: float) -> LevelRun:
    body = [(1.0, 'data: {"choices":[{"delta":{"content":"x"}}]}'), (1.1, ""),
            (1.2, f'data: {{"choices":[],"usage":{{"completion_tokens":{tokens}}}}}'), (1.3, ""),
            (1.4, "data: [DONE]"), (1.5, "")]
    return LevelRun(streams, 0, wall_s, [summarize(body, start=0.9, end=1.6, status=200)] * streams)


def test_llama_server_command_takes_the_port_and_parallel_slots() -> None:
    spec = llama_server_spec(8123, 2, "'/opt/my dir/start.sh' {port}", slots=16)
    assert spec.command[:2] == ["/opt/my dir/start.sh", "8123"] and spec.name == "llama-server"
    assert spec.command[2:] == ["-np", "16", "-cb", "-c", "16384", "-t", "2", "-tb", "2"]
    plain = llama_server_spec(9000, 1, "llama-server -m m.gguf", slots=4)
    assert plain.command[:5] == ["llama-server", "-m", "m.gguf", "--port", "9000"] and plain.ready_path == "/health"


def test_llama_server_is_skipped_without_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATCONFORM_LLAMA_SERVER", raising=False)
    args = parse_args([])
    assert args.llama_server is None and "CHATCONFORM_LLAMA_SERVER" in (llama_server_unavailable(args) or "")
    monkeypatch.setenv("CHATCONFORM_LLAMA_SERVER", "run {port}")
    args = parse_args([])
    assert args.llama_server == "run {port}" and llama_server_unavailable(args) is None
    assert args.prefix_tokens == 400 and args.llama_server_slots == 16


def test_comparison_is_against_the_stronger_peer() -> None:
    ours, slow, fast = ServerRecord("ours", []), ServerRecord("llama.cpp", []), ServerRecord("llama-server", [])
    ours.runs.append(_run(4, 30, 1.0))  # 120 tok/s
    slow.runs.append(_run(4, 10, 1.0))  # 40
    fast.runs.append(_run(4, 15, 1.0))  # 60
    (row,) = comparison([4], ours, [slow, fast])
    assert row["stronger_peer"] == "llama-server" and row["peer_total_tok_s"] == 60.0 and row["ratio"] == 2.0
    assert row["peers_total_tok_s"] == {"llama.cpp": 40.0, "llama-server": 60.0}
    (alone,) = comparison([4], ours, [])
    assert alone["stronger_peer"] is None and alone["ratio"] is None


def test_prefix_pair_speedup_and_tables() -> None:
    run = PrefixRun(round=0, prefix_tokens=400, cold_ttft_s=1.5, warm_ttft_s=0.3, errors=[])
    assert run.speedup == pytest.approx(5.0) and run.to_dict()["speedup"] == pytest.approx(5.0)
    assert PrefixRun(0, 400, None, 0.3, ["HTTP 500"]).speedup is None
    ours, peer = ServerRecord("ours", [], model_id="m"), ServerRecord("llama-server", [], model_id="p")
    ours.prefix.append(run)
    ours.runs.append(_run(1, 8, 1.0))
    peer.runs.append(_run(1, 8, 2.0))
    config = vars(argparse.Namespace(threads=2, max_tokens=8, repeat=1, streams=[1]))
    report = {"machine": {"cpu_model": "cpu", "logical_cpus": 2, "load_average_start": [0.5, 0, 0],
                          "load_average_end": [0.6, 0, 0]}, "config": config,
              "peer_notes": {"llama.cpp": "missing", "llama-server": None}}
    console = Console(record=True, width=160)
    render(report, ours, [peer], console)
    text = console.export_text()
    assert "ours/llama-server" in text and "5.00x" in text and "llama.cpp: missing" in text
    assert ours.to_dict()["prefix"][0]["cold_ttft_s"] == 1.5
