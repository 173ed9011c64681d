"""`chatconform diff A B`: the change rule, the exit codes, the console table and the --json document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.diff import (
    CHANGED,
    IMPROVED,
    REGRESSED,
    UNCHANGED,
    classify,
    clause_reason,
    diff_documents,
)
from conformance.report.writer import write_reports
from conformance.results import CheckResult, clause_results, results_document
from conformance.verdicts import Verdict
from spec.clauses import load_catalogue
from tests.conformance.cli_runner import main

MUST, SHOULD, MAY = "response.id.present", "response.id.unique", "request.n.multiple"
ROOT, DEPENDENT = "tools.choice.required", "message.assistant.tool-calls-content"  # both MUST


def make_doc(verdicts: dict[str, Verdict], url: str = "http://a", seed: int = 1234) -> dict:
    """A results document with one check per clause, its message naming the verdict and the target."""
    catalogue = load_catalogue()
    checks = {}
    for cid, verdict in verdicts.items():
        root = ROOT if verdict is Verdict.NOT_EXERCISED else None
        checks[cid] = [CheckResult(f"checks/t.py::test_{cid}", verdict, message=f"{verdict} at {url}\nsecond line",
                                   root=root)]
    clauses = clause_results(tuple(catalogue.get(cid) for cid in verdicts), checks)
    return results_document(suite_version="9.9", target={"base_url": url, "model": "m"},
                            config={"base_url": url, "seed": seed, "strict": False}, seed=seed,
                            started="2026-01-01T00:00:00Z", finished="2026-01-01T00:00:10Z", duration_s=10.0,
                            clauses=clauses)


def write(tmp_path: Path, name: str, doc: dict) -> Path:
    return write_reports(doc, tmp_path / name)


@pytest.mark.parametrize(("a", "b", "kind"), [
    ("PASS", "PASS", UNCHANGED),
    ("PASS", "FAIL", REGRESSED),
    ("WARN", "FAIL", REGRESSED),
    ("PASS", "FLAKY", REGRESSED),
    ("PASS", "UNSUPPORTED", REGRESSED),
    ("FAIL", "PASS", IMPROVED),
    ("FLAKY", "WARN", IMPROVED),
    ("NOT_EXERCISED", "PASS", IMPROVED),
    ("PASS", "NOT_EXERCISED", REGRESSED),   # a clause that can no longer be judged got worse
    ("NOT_EXERCISED", "FAIL", REGRESSED),
    ("FAIL", "NOT_EXERCISED", CHANGED),     # judged nothing: not an improvement
    ("SKIPPED", "FAIL", REGRESSED),         # SKIPPED ranks with PASS
    ("SKIPPED", "PASS", CHANGED),
    ("PASS", "SKIPPED", CHANGED),
    ("FAIL", "SKIPPED", CHANGED),           # no longer observed: neither better nor worse
    ("ERROR", "PASS", IMPROVED),
])
def test_the_change_rule(a: str, b: str, kind: str) -> None:
    assert classify(a, b) == kind


def test_diff_counts_and_lists_what_changed_with_the_first_messages() -> None:
    doc_a = make_doc({MUST: Verdict.PASS, SHOULD: Verdict.FAIL, MAY: Verdict.PASS, ROOT: Verdict.PASS})
    doc_b = make_doc({MUST: Verdict.FAIL, SHOULD: Verdict.PASS, MAY: Verdict.PASS, DEPENDENT: Verdict.NOT_EXERCISED},
                     url="http://b", seed=7)
    diff = diff_documents(doc_a, doc_b)
    assert diff["counts"] == {"regressed": 1, "changed": 0, "improved": 1, "only_in_a": 1, "only_in_b": 1,
                              "unchanged": 1}
    assert [(r["id"], r["change"]) for r in diff["clauses"]] == [
        (MUST, "regressed"), (SHOULD, "improved"), (ROOT, "only_in_a"), (DEPENDENT, "only_in_b")]
    first = diff["clauses"][0]
    assert first["a"] == {"verdict": "PASS", "message": "PASS at http://a\nsecond line"}
    assert first["b"]["verdict"] == "FAIL" and first["required"] is True
    assert diff["clauses"][2]["b"] is None and diff["clauses"][3]["a"] is None
    assert diff["clauses"][3]["b"]["message"] == f"not exercised because {ROOT} did not run"  # its `because`
    assert diff["worse_required"] == [MUST] and diff["exit_code"] == 1
    assert diff["config_differences"] == {"seed": [1234, 7]}
    assert (diff["a"]["base_url"], diff["b"]["base_url"]) == ("http://a", "http://b")


def test_a_worse_should_fails_only_under_strict() -> None:
    doc_a = make_doc({MUST: Verdict.PASS, SHOULD: Verdict.PASS, MAY: Verdict.PASS})
    doc_b = make_doc({MUST: Verdict.PASS, SHOULD: Verdict.WARN, MAY: Verdict.FAIL})  # a MAY never counts
    assert diff_documents(doc_a, doc_b)["exit_code"] == 0
    strict = diff_documents(doc_a, doc_b, strict=True)
    assert strict["exit_code"] == 1 and strict["worse_required"] == [SHOULD]


def test_flaky_reason_names_the_runs_and_the_evidence_run() -> None:
    clause = {"verdict": "FLAKY", "runs": ["PASS", "FAIL"], "evidence_run": 2,
              "checks": [{"verdict": "FAIL", "message": "id missing"}]}
    assert clause_reason(clause) == "verdicts per run: PASS, FAIL; run 2: id missing"


def test_cli_exit_codes_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the messages on one line each
    folder_a = write(tmp_path, "a", make_doc({MUST: Verdict.PASS, SHOULD: Verdict.PASS}))
    folder_b = write(tmp_path, "b", make_doc({MUST: Verdict.FAIL, SHOULD: Verdict.PASS}, url="http://b"))
    out_json = tmp_path / "out" / "diff.json"
    # a report folder on one side, a results.json file on the other
    assert main(["diff", str(folder_a), str(folder_b / "results.json"), "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert MUST in out and "PASS -> FAIL" in out and "FAIL at http://b" in out
    assert "1 regressed" in out and "1 unchanged" in out and "diff: exit 1" in out
    written = json.loads(out_json.read_text())
    assert written["format"] == "chatconform-diff" and written["worse_required"] == [MUST]
    assert main(["diff", str(folder_b), str(folder_a)]) == 0  # the way back is an improvement
    assert "1 improved" in capsys.readouterr().out
    assert main(["diff", str(folder_a), str(folder_a)]) == 0
    assert "2 unchanged" in capsys.readouterr().out


def test_format_version_1_is_read(tmp_path: Path) -> None:
    doc = make_doc({MUST: Verdict.PASS})
    old = dict(doc, format_version=1)
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(make_doc({MUST: Verdict.IGNORED})))
    assert main(["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 1


@pytest.mark.parametrize("content", [None, "not json", json.dumps({"format": "other"}),
                                     json.dumps({"format": "chatconform-results", "format_version": 99}),
                                     json.dumps({"format": "chatconform-results", "format_version": 2})])
def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None) -> None:
    good = write(tmp_path, "good", make_doc({MUST: Verdict.PASS}))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert main(["diff", str(good), str(bad)]) == 2
    assert "chatconform diff:" in capsys.readouterr().err


def test_live_urls_are_checked_first(tiny_mock: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the live runs write reports/<target>/<time>/ here
    for name in ("CHATCONFORM_BASE_URL", "CHATCONFORM_API_KEY", "CHATCONFORM_CLAUSE", "CHATCONFORM_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    saved = write(tmp_path, "saved", make_doc({MUST: Verdict.FAIL, SHOULD: Verdict.PASS}))
    assert main(["diff", str(saved), tiny_mock, "--clause", "response.id"]) == 0  # FAIL -> PASS
    assert "1 improved" in capsys.readouterr().out
    assert main(["diff", tiny_mock, tiny_mock, "--clause", "response.id"]) == 0  # two runs, the same verdicts
    assert "2 unchanged" in capsys.readouterr().out
    assert len(list((tmp_path / "reports").glob("*/*/results.json"))) == 3  # every live run kept its report
