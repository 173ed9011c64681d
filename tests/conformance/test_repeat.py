"""`chatconform check --repeat N`: merging the runs (pure) and one repeated run against the tiny mock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.gate import gate
from conformance.repeat import flaky_note, merge_runs, merged_verdict
from conformance.report.writer import write_reports
from conformance.results import CheckResult, clause_results, load_results, results_document
from conformance.verdicts import Verdict
from spec.clauses import load_catalogue
from tests.conformance.cli_runner import main

MUST, SHOULD = "response.id.present", "response.id.unique"
ROOT, DEPENDENT = "tools.choice.required", "message.assistant.tool-calls-content"  # both MUST
P, F, S, E, N = Verdict.PASS, Verdict.FAIL, Verdict.SKIPPED, Verdict.ERROR, Verdict.NOT_EXERCISED


def run_doc(run: int, verdicts: dict[str, Verdict]) -> dict:
    """One run's results document: one check per clause, its message naming the run."""
    catalogue = load_catalogue()
    checks = {cid: [CheckResult(f"checks/t.py::test_{cid}", v, message=f"{v} in run {run}",
                                root=ROOT if v is N else None)]
              for cid, v in verdicts.items()}
    clauses = clause_results(tuple(catalogue.get(cid) for cid in verdicts), checks)
    return results_document(suite_version="9.9", target={"base_url": "http://t", "model": "m"},
                            config={"base_url": "http://t", "strict": False}, seed=1234,
                            started=f"2026-01-01T00:0{run}:00Z", finished=f"2026-01-01T00:0{run}:30Z",
                            duration_s=30.0, clauses=clauses)


def by_id(doc: dict) -> dict[str, dict]:
    return {c["id"]: c for c in doc["clauses"]}


@pytest.mark.parametrize(("runs", "verdict"), [
    ([P, P, P], P),
    ([P, F], Verdict.FLAKY),
    ([P, S], P),            # the run that observed nothing does not disagree
    ([S, S], S),
    ([S, F, F], F),
    ([P, E], E),            # a suite-side error is not the target's flake
    ([N, P], Verdict.FLAKY),
])
def test_merged_verdict(runs: list[Verdict], verdict: Verdict) -> None:
    assert merged_verdict([str(v) for v in runs]) == verdict


def test_agreeing_runs_keep_their_verdict_and_the_first_runs_checks() -> None:
    merged = merge_runs([run_doc(1, {MUST: P, SHOULD: S}), run_doc(2, {MUST: P, SHOULD: P})])
    clauses = by_id(merged)
    assert (clauses[MUST]["verdict"], clauses[MUST]["runs"], clauses[MUST]["evidence_run"]) == ("PASS", ["PASS"] * 2, 1)
    assert clauses[MUST]["checks"][0]["message"] == "PASS in run 1"
    # SKIPPED in run 1, PASS in run 2: PASS, with run 2's checks
    assert (clauses[SHOULD]["verdict"], clauses[SHOULD]["runs"], clauses[SHOULD]["evidence_run"]) == (
        "PASS", ["SKIPPED", "PASS"], 2)
    assert merged["repeat"] == {"runs": 2, "folders": ["run-1", "run-2"], "flaky": []}
    assert gate(merged).code == 0


def test_differing_runs_make_a_flaky_clause_with_the_worst_runs_evidence() -> None:
    docs = [run_doc(1, {MUST: P, SHOULD: P}), run_doc(2, {MUST: F, SHOULD: P}), run_doc(3, {MUST: P, SHOULD: P})]
    merged = merge_runs(docs)
    flaky = by_id(merged)[MUST]
    assert (flaky["verdict"], flaky["runs"], flaky["evidence_run"]) == ("FLAKY", ["PASS", "FAIL", "PASS"], 2)
    assert [(c["verdict"], c["message"]) for c in flaky["checks"]] == [("FAIL", "FAIL in run 2")]
    assert merged["summary"]["FLAKY"] == 1 and merged["summary"]["PASS"] == 1 and merged["summary"]["checks"] == 2
    assert merged["repeat"]["flaky"] == [MUST] and merged["config"]["repeat"] == 3
    assert (merged["started"], merged["finished"], merged["duration_s"]) == (
        "2026-01-01T00:01:00Z", "2026-01-01T00:03:30Z", 90.0)
    result = gate(merged)
    assert result.code == 1 and result.regressions == [MUST]  # a flaky MUST fails the gate
    assert "1 clause(s) flaky: response.id.present" in flaky_note(merged)


def test_not_exercised_clause_names_its_roots_merged_verdict() -> None:
    merged = merge_runs([run_doc(1, {ROOT: P, DEPENDENT: N}), run_doc(2, {ROOT: F, DEPENDENT: N})])
    dependent = by_id(merged)[DEPENDENT]
    assert (dependent["verdict"], dependent["root"], dependent["root_verdict"]) == ("NOT_EXERCISED", ROOT, "FLAKY")
    assert dependent["because"] == f"not exercised because {ROOT} failed (FLAKY)"
    # a clause NOT_EXERCISED in one run only is FLAKY and loses the not-exercised fields
    flaky = by_id(merge_runs([run_doc(1, {ROOT: P, DEPENDENT: N}), run_doc(2, {ROOT: P, DEPENDENT: P})]))[DEPENDENT]
    assert (flaky["verdict"], flaky["evidence_run"]) == ("FLAKY", 1)
    assert not {"root", "root_verdict", "because"} & set(flaky)


def test_the_merged_document_is_a_readable_report(tmp_path: Path) -> None:
    merged = merge_runs([run_doc(1, {MUST: P, SHOULD: F}), run_doc(2, {MUST: F, SHOULD: F})])
    folder = write_reports(merged, tmp_path / "merged")
    assert load_results(folder / "results.json")["clauses"] == merged["clauses"]
    assert "verdict per run: PASS, FAIL" in (folder / "index.html").read_text()
    assert 'type="FAIL"' in (folder / "junit.xml").read_text()  # the flaky clause's evidence fails in JUnit too


@pytest.mark.parametrize("times", ["0", "6"])
def test_repeat_out_of_range_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], times: str) -> None:
    assert main(["check", "http://127.0.0.1:9", "--repeat", times, "--report-dir", str(tmp_path)]) == 2
    assert "repeat: must be an integer from 1 to 5" in capsys.readouterr().err.replace("\n", " ")


def test_two_runs_against_the_tiny_mock_give_identical_verdicts(tiny_mock: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("CHATCONFORM_BASE_URL", "CHATCONFORM_API_KEY", "CHATCONFORM_MODEL", "CHATCONFORM_CLAUSE",
                 "CHATCONFORM_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    report = tmp_path / "report"
    code = main(["check", tiny_mock, "--repeat", "2", "--clause", "response.id", "--report-dir", str(report),
                 "--quiet"])
    merged = load_results(report / "results.json")
    runs = [load_results(report / f"run-{k}" / "results.json") for k in (1, 2)]
    assert code == 0 and json.loads((report / "gate.json").read_text())["code"] == 0
    assert [c["id"] for c in merged["clauses"]] == ["response.id.present", "response.id.unique"]
    for clause in merged["clauses"]:
        assert clause["runs"] == [clause["verdict"]] * 2 == ["PASS", "PASS"], clause
    assert [{c["id"]: c["verdict"] for c in run["clauses"]} for run in runs] == [
        {c["id"]: c["verdict"] for c in merged["clauses"]}] * 2
    assert merged["summary"]["FLAKY"] == 0 and merged["repeat"]["flaky"] == []
    assert (report / "index.html").exists() and (report / "run-2" / "index.html").exists()
    assert "repeat: 2 runs, every clause gave the same verdict" in capsys.readouterr().out.replace("\n", " ")
