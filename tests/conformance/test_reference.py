"""`chatconform check --reference` end to end: the oracle live, embedded or from a file, against the tiny mock.

The target is the tiny mock seen through the identity proxy and the oracle holds the same random
weights (a tiny mock too), so every reference clause must pass with zero disagreements. One slow
test does the same with the real model: the embedded mock against the embedded oracle.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spec.clauses import load_catalogue
from tests.conformance.breakers import IDENTITY, BreakingProxy
from tests.conformance.cli_runner import main

REFERENCE_IDS = [c.id for c in load_catalogue().by_group("reference")]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHATCONFORM_BASE_URL", "CHATCONFORM_PROFILE", "CHATCONFORM_CLAUSE", "CHATCONFORM_REFERENCE_URL",
                 "CHATCONFORM_REFERENCE_FILE", "CHATCONFORM_TARGET_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)


def run_check(report: Path, *args: str) -> tuple[int, dict, dict]:
    """`chatconform check ... --report-dir REPORT --quiet`: exit code, results.json, reference.json."""
    code = main(["check", *args, "--report-dir", str(report), "--quiet"])
    results = json.loads((report / "results.json").read_text())
    summary = json.loads((report / "reference.json").read_text()) if (report / "reference.json").exists() else {}
    return code, results, summary


def verdicts(results: dict) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in results["clauses"]}


def assert_zero_disagreements(code: int, results: dict, summary: dict) -> None:
    found = verdicts(results)
    assert code == 0, found
    assert sorted(found) == sorted(REFERENCE_IDS), "the reference profile is exactly the reference group"
    assert set(found.values()) == {"PASS"}, [c for c in results["clauses"] if c["verdict"] != "PASS"]
    assert all(not c["disagreements"] for c in summary["clauses"].values())
    assert summary["clauses"]["response.reference.greedy-tokens"]["judged"] > 100


def test_reference_profile_is_not_in_default_and_selects_only_its_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "reference." not in listed
    assert main(["check", "--list", "--reference"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == REFERENCE_IDS


def test_embedded_oracle_against_the_same_weights_finds_zero_disagreements(proxy: BreakingProxy,
                                                                          tmp_path: Path) -> None:
    """`check URL --reference`: the suite starts the oracle (tiny here) and compares over HTTP."""
    proxy.use(IDENTITY)
    code, results, summary = run_check(tmp_path, proxy.url, "--reference", "--mock-model", "tiny",
                                       "--target-weights", "same-graph")
    assert_zero_disagreements(code, results, summary)
    assert summary["oracle"]["model"] == "chatconform/tiny-random" and summary["oracle"]["weights"] == "int4"
    assert summary["tolerance"]["target_weights"] == "same-graph"
    assert results["config"]["target_weights"] == "same-graph"


def test_exported_reference_file_replaces_the_live_oracle(proxy: BreakingProxy, tiny_mock: str,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`reference export DIR` (from a running oracle), then `check URL --reference-file DIR`."""
    exported = tmp_path / "ref"
    assert main(["reference", "export", str(exported), "--reference-url", tiny_mock]) == 0
    assert "--reference-file" in capsys.readouterr().out
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["oracle"]["weights"] == "int4" and manifest["counts"]["answers"] > 20
    lines = [json.loads(line) for line in (exported / "answers.jsonl").read_text().splitlines()]
    greedy = next(line for line in lines if line["case"] == "greedy/plain")
    first = greedy["answer"]["entries"][0]
    assert {"token", "logprob", "bytes", "margin", "top_logprobs"} <= set(first) and greedy["answer"]["prompt_tokens"]
    assert len((exported / "corpus.jsonl").read_text().splitlines()) >= 15
    proxy.use(IDENTITY)
    code, results, summary = run_check(tmp_path / "report", proxy.url, "--reference-file", str(exported),
                                       "--target-weights", "same-graph")
    assert_zero_disagreements(code, results, summary)
    assert summary["oracle"]["source"] == str(exported)


def test_other_weights_judge_only_the_template_and_tokenizer(proxy: BreakingProxy, tiny_mock: str,
                                                             tmp_path: Path) -> None:
    proxy.use(IDENTITY)
    code, results, _ = run_check(tmp_path, proxy.url, "--reference-url", tiny_mock, "--target-weights", "other")
    found = verdicts(results)
    assert found.pop("usage.reference.prompt-tokens") == "PASS"
    assert set(found.values()) == {"SKIPPED"}
    skipped = next(c for c in results["clauses"] if c["id"] == "response.reference.greedy-tokens")
    assert "quantisation error" in skipped["checks"][0]["message"]
    assert code == 0


def test_a_missing_oracle_is_a_suite_side_error(tiny_mock: str, tmp_path: Path) -> None:
    code, results, _ = run_check(tmp_path, tiny_mock, "--profile", "reference", "--reference-file",
                                 str(tmp_path / "nowhere"))
    assert code == 2 and {c["verdict"] for c in results["clauses"]} == {"ERROR"}
    assert "cannot read" in results["clauses"][0]["checks"][0]["message"]


@pytest.mark.slow
@pytest.mark.long
def test_the_mock_against_the_real_model_oracle_finds_zero_disagreements(tmp_path: Path) -> None:
    """`chatconform check --reference`: the embedded mock (SmolLM2 int4) against the embedded oracle."""
    code, results, summary = run_check(tmp_path, "--reference", "--mock-load-delay", "0")
    assert_zero_disagreements(code, results, summary)
    assert summary["oracle"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert summary["clauses"]["params.reference.top-p-set"]["judged"] >= 24
