"""The server bench's pure parts: percentiles, token counting from recorded SSE transcripts, level
summaries, the CLI, the request bodies and the child environment. No server runs and nothing is timed.

The transcripts in data/ are raw bodies recorded with curl (max_tokens 8, temperature 0) from
`python -m mock_server` (SmolLM2 int4; the error and nodone ones with `--allow-faults` and
`x-mock-fault: error-mid-stream` / `no-done`) and from llama-cpp-python 0.3.36's server on the
same GGUF, which ignores `stream_options.include_usage`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from rich.console import Console

from bench.server import parse_args
from bench.server_client import chat_body, messages_for
from bench.server_procs import child_env
from bench.server_render import render
from bench.server_sse import (
    TOKENS_FROM_CHUNKS,
    TOKENS_FROM_USAGE,
    TimedLine,
    failed,
    percentile,
    summarize,
)
from bench.server_stats import LevelRun, ServerRecord, summarize_level

DATA = Path(__file__).parent / "data"
STEP_S = 0.01  # the synthetic read time between two lines of a transcript


def transcript(name: str, start: float = 100.0) -> list[TimedLine]:
    """A recorded body as timed lines: line i read at start + (i + 1) * STEP_S."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [(start + (i + 1) * STEP_S, line) for i, line in enumerate(lines)]


def content_line_indexes(lines: list[TimedLine]) -> list[int]:
    """Indexes of the lines whose delta has non-empty content (counted independently of the parser)."""
    return [i for i, (_, line) in enumerate(lines) if '"content":"' in line.replace(" ", "")
            and '"content":""' not in line.replace(" ", "")]


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == pytest.approx(3.97)  # 3 + 0.97 * (4 - 3)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0 and percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(map(float, range(101))), 99) == pytest.approx(99.0)
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="q must be in"):
        percentile([1.0], 101)


def test_ours_counts_tokens_from_the_usage_chunk() -> None:
    lines = transcript("mock_stream_usage.sse")
    result = summarize(lines, start=100.0, end=lines[-1][0])
    assert result.ok and result.error is None and result.status == 200
    assert (result.tokens, result.token_source) == (8, TOKENS_FROM_USAGE)
    assert result.content_chunks == 8  # the role chunk's empty content is not a token
    assert result.finish_reason == "length"
    contents = content_line_indexes(lines)
    assert result.ttft_s == pytest.approx((contents[0] + 1) * STEP_S)
    assert result.last_token_s == pytest.approx((contents[-1] + 1) * STEP_S)
    assert result.decode_tok_s == pytest.approx(7 / ((contents[-1] - contents[0]) * STEP_S))


def test_llama_cpp_sends_no_usage_so_content_chunks_are_counted() -> None:
    lines = transcript("llamacpp_stream.sse")
    result = summarize(lines, start=100.0, end=200.0)
    assert result.ok
    assert (result.tokens, result.token_source) == (8, TOKENS_FROM_CHUNKS)
    assert result.finish_reason == "length"
    assert result.latency_s == pytest.approx(100.0)
    assert result.ttft_s == pytest.approx((content_line_indexes(lines)[0] + 1) * STEP_S)


def test_without_the_usage_chunk_ours_falls_back_to_chunks() -> None:
    lines = [item for item in transcript("mock_stream_usage.sse") if '"usage":{' not in item[1]]
    result = summarize(lines, start=100.0, end=101.0)
    assert result.ok and (result.tokens, result.token_source) == (8, TOKENS_FROM_CHUNKS)


def test_comments_and_blank_lines_are_not_events() -> None:
    lines = transcript("llamacpp_stream.sse")
    lines.insert(1, (lines[0][0], ": keep-alive"))
    assert summarize(lines, start=100.0, end=101.0).tokens == 8


def test_an_error_event_or_a_missing_done_is_an_error() -> None:
    broken = summarize(transcript("mock_stream_error.sse"), start=100.0, end=101.0)
    assert not broken.ok and broken.error is not None and "injected fault" in broken.error
    no_done = summarize(transcript("mock_stream_nodone.sse"), start=100.0, end=101.0)
    assert not no_done.ok and no_done.error == "the stream ended without data: [DONE]"
    assert no_done.tokens == 8  # counted all the same, but an error stream's tokens never enter tok/s


def _ok(tokens: int, latency: float, ttft: float) -> LevelRun:
    lines = transcript("llamacpp_stream.sse")
    result = summarize(lines, start=lines[0][0] - ttft, end=lines[0][0] - ttft + latency)
    assert result.tokens == tokens
    return LevelRun(streams=1, round=0, wall_s=latency, results=[result])


def test_level_summary_pools_rounds_and_counts_errors() -> None:
    results = [summarize(transcript("llamacpp_stream.sse"), start=100.0, end=100.0 + s) for s in (1.0, 2.0)]
    rejected = failed(429, "HTTP 429: overloaded", 0.01)
    timed_out = failed(0, "no complete answer within 600 s", 600.0)
    runs = [LevelRun(4, 0, 2.0, [*results, rejected, timed_out]), LevelRun(4, 1, 4.0, list(results) * 2)]
    s = summarize_level(runs)
    assert runs[0].total_tok_s == pytest.approx(16 / 2.0) and runs[1].total_tok_s == pytest.approx(32 / 4.0)
    assert (s.rounds, s.requests, s.errors) == (2, 8, 2)
    assert s.non_200 == {"429": 1, "0": 1}
    assert s.total_tok_s == pytest.approx(8.0) and s.total_tok_s_best == pytest.approx(8.0)
    assert s.latency_p50_s == pytest.approx(1.5)  # pooled ok latencies 1, 2, 1, 2, 1, 2
    assert s.tokens_min == s.tokens_max == 8 and s.token_sources == [TOKENS_FROM_CHUNKS]
    assert s.finish_reasons == {"length": 6}
    with pytest.raises(ValueError):
        summarize_level([])


def test_cli_defaults_and_refusals(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args([])
    assert args.streams == [1, 4, 16, 64] and args.max_tokens == 64 and args.threads == 2
    assert args.max_queue == 64 and args.repeat == 1 and not args.skip_peer and not args.distinct_prompts
    args = parse_args(["--streams", "4, 1", "--max-tokens", "16", "--skip-peer", "--json", "out.json"])
    assert args.streams == [4, 1] and args.max_tokens == 16 and args.max_queue == 4
    assert args.skip_peer and args.json == Path("out.json")
    for bad in (["--streams", "1,1"], ["--streams", "0"], ["--streams", "300"], ["--streams", "a"],
                ["--max-tokens", "0"], ["--repeat", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
        assert bad[0] in capsys.readouterr().err


def test_bodies_stream_greedily_and_distinct_prompts_differ_only_by_number() -> None:
    body = chat_body("m", 16, messages_for(None))
    assert body == {"model": "m", "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
                    "temperature": 0, "max_tokens": 16, "stream": True, "stream_options": {"include_usage": True}}
    first, second = messages_for(0), messages_for(1)
    assert first != second and first[1:] == second[1:] == messages_for(None)
    assert first[0]["content"].startswith("Request 0. ") and messages_for(0) == first


def test_child_env_drops_server_options_but_keeps_the_model_location(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATCONFORM_MOCK_PORT", "1")
    monkeypatch.setenv("CHATCONFORM_MOCK_MODEL", "tiny")
    monkeypatch.setenv("CHATCONFORM_CACHE", "/somewhere")
    env = child_env()
    assert "CHATCONFORM_MOCK_PORT" not in env and "CHATCONFORM_MOCK_MODEL" not in env
    assert env["CHATCONFORM_CACHE"] == "/somewhere"


def test_render_without_the_peer_prints_every_level() -> None:
    ours = ServerRecord("ours", ["python"], model_id="m", startup_s=[1.0], load_1m=[0.5])
    ours.runs.append(_ok(8, 1.0, 0.1))
    config = vars(argparse.Namespace(threads=2, max_tokens=8, repeat=1, streams=[1]))
    report = {"machine": {"cpu_model": "cpu", "logical_cpus": 2, "load_average_start": [0.5, 0, 0],
                          "load_average_end": [0.6, 0, 0]}, "config": config, "peer_note": "skipped (--skip-peer)"}
    console = Console(record=True, width=160)
    render(report, ours, None, console)
    text = console.export_text()
    assert "1 concurrent stream" in text and "skipped (--skip-peer)" in text and "8 from content chunks" in text
