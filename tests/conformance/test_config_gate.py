"""SuiteConfig precedence and validation; the CI gate's decision from a results document."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.config import (
    PROFILES,
    ConfigError,
    SuiteConfig,
    load_config,
    select_clauses,
)
from conformance.gate import ExpectFileError, gate, read_expect
from spec.clauses import load_catalogue


def test_cli_beats_environment_beats_defaults() -> None:
    env = {"CHATCONFORM_BASE_URL": "http://env:1", "CHATCONFORM_TIMEOUT": "5", "CHATCONFORM_STRICT": "yes",
           "CHATCONFORM_CLAUSE": "stream,response.id", "CHATCONFORM_API_KEY": "k"}
    config = load_config({"base_url": "http://cli:2/v1/", "timeout": None, "seed": 7}, env=env)
    assert config.base_url == "http://cli:2" and config.timeout == 5.0 and config.strict is True
    assert config.seed == 7 and config.clause_prefixes == ("stream", "response.id") and config.api_key == "k"
    assert load_config({"base_url": "http://x"}, env={}).delay == 0.0


@pytest.mark.parametrize(("values", "message"), [
    ({"dialect": "tgi"}, "dialect: must be one of hf, openai, got 'tgi'"),
    ({"profile": "everything"}, "profile: must be one of"),
    ({"timeout": 0}, "timeout: must be a number > 0"),
    ({"concurrency": 0}, "concurrency: must be an integer >= 1 and <= 64, got 0"),
    ({"concurrency": 65}, "concurrency: must be an integer >= 1 and <= 64, got 65"),
    ({"burst": 257}, "burst: must be an integer >= 0 and <= 256, got 257"),
    ({"burst": -1}, "burst: must be an integer >= 0 and <= 256, got -1"),
    ({"fuzz_shrink": -1}, "fuzz_shrink: must be an integer >= 0, got -1"),
    ({"fuzz_budget": 0}, "fuzz_budget: must be an integer >= 1, got 0"),
    ({"clause_prefixes": ("nope",)}, "clause: prefix 'nope' selects no active clause"),
])
def test_bad_values_name_the_parameter(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        SuiteConfig(base_url="http://x", **values)


def test_concurrency_burst_and_shrink_budget_defaults_and_environment() -> None:
    config = load_config({"base_url": "http://x"}, env={})
    assert (config.concurrency, config.burst, config.fuzz_shrink) == (1, 16, 20)
    env = {"CHATCONFORM_CONCURRENCY": "4", "CHATCONFORM_BURST": "0", "CHATCONFORM_FUZZ_SHRINK": "3"}
    config = load_config({"base_url": "http://x"}, env=env)
    assert (config.concurrency, config.burst, config.fuzz_shrink) == (4, 0, 3)
    assert load_config({"base_url": "http://x", "burst": 256}, env=env).burst == 256  # the CLI wins


def test_environment_values_are_converted_with_clear_errors() -> None:
    with pytest.raises(ConfigError, match="seed: must be int, got 'abc'"):
        load_config({"base_url": "http://x"}, env={"CHATCONFORM_SEED": "abc"})
    with pytest.raises(ConfigError, match="base_url: required"):
        load_config({}, env={})


def test_api_key_is_redacted_in_the_json_form() -> None:
    data = SuiteConfig(base_url="http://x", api_key="secret", report_dir=Path("r")).to_json()
    assert data["api_key"] == "***" and data["report_dir"] == "r" and "secret" not in str(data)


def test_profiles_are_default_plus_one_per_group() -> None:
    groups = load_catalogue().group_names
    opt_in = ("reference",)  # needs a target serving the reference model: never in default
    assert PROFILES["default"] == tuple(g for g in groups if g not in opt_in) and all(PROFILES[g] == (g,) for g in groups)
    assert {c.group for c in select_clauses("errors")} == {"errors"}
    assert [c.id for c in select_clauses("default", ("stream.terminator",))] == [
        "stream.terminator.done", "stream.terminator.nothing-after"]


def doc(*clauses: tuple[str, str, str]) -> dict:
    return {"clauses": [{"id": cid, "level": level, "verdict": verdict,
                         "checks": [{"nodeid": f"t::{cid}", "verdict": verdict}]} for cid, level, verdict in clauses]}


def test_gate_codes() -> None:
    assert gate(doc(("a.b.c", "MUST", "PASS"), ("a.b.d", "SHOULD", "WARN"))).code == 0
    assert gate(doc(("a.b.c", "MUST", "PASS"), ("a.b.d", "SHOULD", "WARN")), strict=True).code == 1
    assert gate(doc(("a.b.c", "MUST", "FAIL"))).regressions == ["a.b.c"]
    assert gate(doc(("a.b.c", "MUST", "IGNORED"))).code == 1
    assert gate(doc(("a.b.c", "MAY", "FAIL"))).code == 0  # optional features do not gate
    assert gate(doc(("a.b.c", "MUST", "UNSUPPORTED"))).code == 0
    assert gate(doc(("a.b.c", "MUST", "ERROR"), ("a.b.d", "MUST", "FAIL"))).code == 2
    assert gate(doc(("a.b.c", "MUST", "SKIPPED"))).code == 3
    expected = gate(doc(("a.b.c", "MUST", "FAIL"), ("a.b.d", "MUST", "PASS")), frozenset({"a.b.c", "a.b.d"}))
    assert (expected.code, expected.expected, expected.fixed) == (0, ["a.b.c"], ["a.b.d"])


def test_gate_and_clauses_not_exercised() -> None:
    def run(root_level: str, root_verdict: str, expected: frozenset[str] = frozenset()) -> tuple[int, list[str]]:
        document = doc(("r.o.ot", root_level, root_verdict), ("x.y.z", "MUST", "NOT_EXERCISED"))
        document["clauses"][1]["root"] = "r.o.ot"
        result = gate(document, expected)
        return result.code, result.orphaned

    assert run("MUST", "FAIL") == (1, [])                  # red through its root
    assert run("MUST", "PASS") == (1, ["x.y.z"])           # nothing else holds it red: orphaned
    assert run("SHOULD", "WARN") == (1, ["x.y.z"])         # a WARN root gates nothing without --strict
    assert run("MAY", "FAIL") == (0, [])                   # an optional feature the server lacks excuses it
    assert run("MAY", "UNSUPPORTED") == (0, [])
    assert run("MAY", "PASS") == (1, ["x.y.z"])            # the feature works: the gap is real
    assert run("MUST", "PASS", frozenset({"x.y.z"})) == (0, [])


def test_expect_file_format(tmp_path: Path) -> None:
    path = tmp_path / "expect.txt"
    path.write_text("# header\n\nresponse.id.present   # why\n  stream.terminator.done\n")
    assert read_expect(path) == {"response.id.present", "stream.terminator.done"}
    with pytest.raises(ExpectFileError, match="cannot read"):
        read_expect(tmp_path / "missing.txt")
