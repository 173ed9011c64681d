"""Verdict defects seen on real servers (llama-server, LiteLLM, mockllm, mock-llm): what the suite must
not conclude, each shown on a breaking proxy in front of the tiny mock.

Each test runs `chatconform check` (in-process, see test_breakers.run_suite) and asserts the verdict the
old checks got wrong: a clean refusal of the hf formats failed the format clauses, stream.errors.before-stream
failed on a value the server never validates, stream.chunk.created-consistent passed without any stream that
could show the rule, the usage chunk was found by its empty choices, a deterministic server failed the cache
clause, missing usage skipped MUST clauses, and a fuzz run left a .hypothesis folder behind.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
from schemathesis import GenerationMode

import conformance.checks.test_streaming as streaming_checks
from conformance import stream_clock
from conformance.client import Target
from conformance.config import SuiteConfig
from conformance.fuzz import run_phase
from tests.conformance.breaker_followups_hooks import (
    canned_content,
    openai_refusal_of_hf_formats,
    usage_chunk_with_choice,
)
from tests.conformance.breaker_hooks import breaker as _b
from tests.conformance.breaker_hooks import each_chunk, on_answer, on_chunks
from tests.conformance.breakers import BREAKERS_BY_NAME
from tests.conformance.suite_verdicts import Use, root, verdict
from tests.conformance.test_breakers import run_suite

HF_FORMATS_400 = _b("hf-formats-400", "format.json.schema-valid", "a clean 400 naming response_format to json and regex",
                    request=openai_refusal_of_hf_formats)
CANNED = _b("canned-answers", "headers.x-use-cache.false-fresh", "one canned text for every request, ids fresh",
            reply=on_answer(canned_content))
USAGE_WITH_CHOICE = _b("usage-with-choice", "stream.usage.last-chunk", "the usage chunk also carries a choice",
                       reply=on_chunks(usage_chunk_with_choice))


def _stamp_now(_req: dict[str, Any], chunk: dict[str, Any]) -> dict[str, Any]:
    """A server that stamps each chunk with the current second (as mockllm does)."""
    chunk["created"] = int(time.time())
    return chunk


PER_SECOND = _b("created-per-second", "stream.chunk.created-consistent", "each chunk stamped with the current second",
                reply=each_chunk(_stamp_now))






def test_a_clean_refusal_of_the_hf_formats_is_unsupported(using: Use, tmp_path: Path) -> None:
    """llama-server refuses json and regex with a clean 400: no content was produced, so nothing FAILs (dialect hf)."""
    run = run_suite(using(HF_FORMATS_400).url, tmp_path, ("format.",))
    for cid in ("format.json.schema-valid", "format.json.value-string", "format.regex.full-match"):
        assert verdict(run, cid) == "UNSUPPORTED", run.describe(cid)
    assert verdict(run, "format.stream.constrained") == "SKIPPED", run.describe("format.stream.constrained")
    for cid in ("format.openai.text", "format.openai.json-object", "format.openai.json-schema"):
        assert verdict(run, cid) == "PASS", run.describe(cid)


def test_before_stream_uses_a_value_the_server_refuses(using: Use, tmp_path: Path) -> None:
    """A server that clamps temperature but refuses max_tokens -1: the streamed max_tokens -1 is judged (PASS)."""
    run = run_suite(using(BREAKERS_BY_NAME["temperature-clamped"]).url, tmp_path, ("stream.errors.before-stream",))
    assert verdict(run, "stream.errors.before-stream") == "PASS", run.describe("stream.errors.before-stream")


def test_before_stream_is_not_exercised_without_validation(using: Use, tmp_path: Path) -> None:
    """A server that answers every invalid non-streamed request 200: rooted in errors.temperature.range."""
    run = run_suite(using(BREAKERS_BY_NAME["bad-input-200"]).url, tmp_path, ("stream.errors.before-stream",))
    assert verdict(run, "stream.errors.before-stream") == "NOT_EXERCISED", run.describe("stream.errors.before-stream")
    assert root(run, "stream.errors.before-stream") == "errors.temperature.range"


def test_created_is_never_a_coin_flip(using: Use, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-second stamping server whose streams span no second of the client's clock is SKIPPED, never PASS.

    The client's clock is frozen just before a whole second, so no short stream can span one; the
    server's own stamps follow the real clock and may differ (a FAIL, which is right too).
    """
    monkeypatch.setattr(stream_clock, "time", SimpleNamespace(time=lambda: 1000.999, sleep=lambda s: None))
    monkeypatch.setattr(streaming_checks, "LONG_STREAM_TOKENS", 8)
    run = run_suite(using(PER_SECOND).url, tmp_path, ("stream.chunk.created-consistent",))
    found = verdict(run, "stream.chunk.created-consistent")
    assert found in ("SKIPPED", "FAIL"), run.describe("stream.chunk.created-consistent")
    if found == "SKIPPED":
        assert "no stream spanned a whole second" in run.describe("stream.chunk.created-consistent")


def test_the_usage_chunk_is_found_by_its_usage(using: Use, tmp_path: Path) -> None:
    """A usage chunk that also carries a choice breaks last-chunk only, not the rules about the other chunks."""
    run = run_suite(using(USAGE_WITH_CHOICE).url, tmp_path, ("stream.usage.",))
    assert verdict(run, "stream.usage.last-chunk") == "FAIL", run.describe("stream.usage.last-chunk")
    for cid in ("stream.usage.null-elsewhere", "stream.usage.explicit-null"):
        assert verdict(run, cid) == "PASS", run.describe(cid)


def test_a_deterministic_server_is_not_a_cache(using: Use, tmp_path: Path) -> None:
    """One canned text with fresh ids: headers.x-use-cache.false-fresh is NOT_EXERCISED, rooted in params.seed.varies."""
    run = run_suite(using(CANNED).url, tmp_path, ("headers.x-use-cache.false-fresh",))
    assert verdict(run, "headers.x-use-cache.false-fresh") == "NOT_EXERCISED", run.describe(
        "headers.x-use-cache.false-fresh")
    assert root(run, "headers.x-use-cache.false-fresh") == "params.seed.varies"


def test_missing_usage_leaves_max_tokens_not_exercised(using: Use, tmp_path: Path) -> None:
    """Without usage, the max_tokens MUST clauses are NOT_EXERCISED (rooted in response.usage.present), not SKIPPED."""
    run = run_suite(using(BREAKERS_BY_NAME["no-usage"]).url, tmp_path,
                    ("params.max-tokens.respected", "params.max-tokens.length-reported"))
    for cid in ("params.max-tokens.respected", "params.max-tokens.length-reported"):
        assert verdict(run, cid) == "NOT_EXERCISED", run.describe(cid)
        assert root(run, cid) == "response.usage.present"


def test_tool_finish_reason_needs_a_tool_call(using: Use, tmp_path: Path) -> None:
    """A server that ignores tools: tools.finish-reason.tool-calls is NOT_EXERCISED, rooted in tools.choice.required."""
    run = run_suite(using(BREAKERS_BY_NAME["tools-ignored"]).url, tmp_path, ("tools.finish-reason.tool-calls",))
    assert verdict(run, "tools.finish-reason.tool-calls") == "NOT_EXERCISED", run.describe(
        "tools.finish-reason.tool-calls")
    assert root(run, "tools.finish-reason.tool-calls") == "tools.choice.required"


def test_a_fuzz_phase_writes_no_hypothesis_storage(tiny_mock: str, tmp_path: Path) -> None:
    """Hypothesis writes its caches under its home (./.hypothesis by default) even with database=None;
    a fuzz phase keeps them in a temporary directory and restores the home afterwards."""
    previous = storage_directory(intent_to_write=False).home_directory
    home = tmp_path / "hypothesis-home"
    set_hypothesis_home_dir(home)
    config = SuiteConfig(base_url=tiny_mock, fuzz_budget=2, fuzz_shrink=2, seed=3)
    target = Target(config)
    try:
        result = run_phase(target, config, GenerationMode.POSITIVE)
        assert storage_directory(intent_to_write=False).home_directory == home
    finally:
        target.close()
        set_hypothesis_home_dir(previous)
    assert result.examples > 0 and result.error is None, result.to_json()
    assert not home.exists(), sorted(str(p.relative_to(home)) for p in home.rglob("*"))


def test_a_max_tokens_overrun_is_judged_once(using: Use, tmp_path: Path) -> None:
    """mockllm: 5 tokens for max_tokens 3. The overrun FAILs max-tokens.respected; nothing was cut off, so
    length-reported is NOT_EXERCISED under it instead of a second FAIL."""
    run = run_suite(using(BREAKERS_BY_NAME["max-tokens-ignored"]).url, tmp_path,
                    ("params.max-tokens.respected", "params.max-tokens.length-reported"))
    assert verdict(run, "params.max-tokens.respected") == "FAIL", run.describe("params.max-tokens.respected")
    assert verdict(run, "params.max-tokens.length-reported") == "NOT_EXERCISED", run.describe(
        "params.max-tokens.length-reported")
    assert root(run, "params.max-tokens.length-reported") == "params.max-tokens.respected"


def test_no_model_list_leaves_the_entry_rule_not_exercised(using: Use, tmp_path: Path) -> None:
    """mockllm has no /v1/models: lists-served FAILs once, the entry rule has nothing to judge."""
    run = run_suite(using(BREAKERS_BY_NAME["models-empty"]).url, tmp_path, ("routes.models.",))
    assert verdict(run, "routes.models.lists-served") == "FAIL", run.describe("routes.models.lists-served")
    assert verdict(run, "routes.models.entry") == "NOT_EXERCISED", run.describe("routes.models.entry")
    assert root(run, "routes.models.entry") == "routes.models.lists-served"


def test_a_clean_refusal_of_the_hf_formats_leaves_the_clients_judged(using: Use, tmp_path: Path) -> None:
    """llama-server refuses the hf json variant with a clean 400: the official clients still parse the rest (PASS)."""
    run = run_suite(using(HF_FORMATS_400).url, tmp_path, ("clients.",))
    for cid in ("clients.openai.completion", "clients.openai.stream", "clients.hf.completion", "clients.hf.stream"):
        assert verdict(run, cid) == "PASS", run.describe(cid)
