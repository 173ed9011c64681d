"""Reports rendered from results: results.json format, JUnit XML, the HTML page and the matrix."""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from conformance.report.html import render_html
from conformance.report.junit import render_junit
from conformance.report.matrix import render_matrix
from conformance.report.writer import write_reports
from conformance.results import (
    CheckResult,
    ResultsError,
    clause_results,
    load_results,
    results_document,
)
from conformance.verdicts import Verdict
from spec.clauses import load_catalogue
from tests.conformance.cli_runner import main

IDS = ("request.messages.accepted", "response.id.present", "response.id.unique", "request.n.multiple",
       "headers.loading.503")
EVIDENCE = {"request": {"method": "POST", "url": "http://t/v1/chat/completions", "headers": {}, "body": "{}"},
            "status": 500, "headers": {"content-type": "text/html"}, "body": "<b>boom</b>",
            "curl": "curl -sS -X POST http://t/v1/chat/completions"}
STREAM_EVIDENCE = dict(EVIDENCE, status=200, body="data: {\"x\": 1}\n\n", sse_lines=["data: {\"x\": 1}", ""])


def make_doc(strict: bool = False, verdicts: dict[str, Verdict] | None = None, url: str = "http://t") -> dict:
    catalogue = load_catalogue()
    chosen = tuple(catalogue.get(i) for i in IDS)
    verdicts = verdicts or {IDS[0]: Verdict.PASS, IDS[1]: Verdict.FAIL, IDS[2]: Verdict.WARN,
                            IDS[3]: Verdict.UNSUPPORTED}
    checks = {cid: [CheckResult(f"checks/t.py::test_{i}", v, message=f"{v} because", expected=1, actual=2,
                                duration_s=0.25, evidence=[EVIDENCE, STREAM_EVIDENCE] if v is Verdict.FAIL else [])]
              for i, (cid, v) in enumerate(verdicts.items())}
    # a clause with two checks: its verdict is the worst of them
    checks[IDS[0]].append(CheckResult("checks/t.py::test_again", Verdict.SKIPPED, message="n/a"))
    clauses = clause_results(chosen, checks)
    return results_document(suite_version="9.9", target={"base_url": url, "models": ["m"], "model": "m",
                                                         "system_fingerprint": "fp"},
                            config={"base_url": url, "api_key": "***", "strict": strict}, seed=1234,
                            started="2026-01-01T00:00:00Z", finished="2026-01-01T00:00:10Z", duration_s=10.0,
                            clauses=clauses)


def test_results_document_follows_the_contract() -> None:
    doc = make_doc()
    assert list(doc)[:5] == ["format", "format_version", "suite_version", "spec_version", "catalogue_version"]
    assert doc["format"] == "chatconform-results" and doc["format_version"] == 2
    assert doc["summary"] == {"PASS": 1, "FAIL": 1, "WARN": 1, "UNSUPPORTED": 1, "IGNORED": 0, "SKIPPED": 1,
                              "ERROR": 0, "NOT_EXERCISED": 0, "FLAKY": 0, "checks": 5}
    by_id = {c["id"]: c for c in doc["clauses"]}
    assert by_id[IDS[0]]["verdict"] == "PASS"  # PASS beats SKIPPED
    assert by_id[IDS[4]]["checks"] == [{"nodeid": "", "verdict": "SKIPPED", "message": "no check yet",
                                        "expected": None, "actual": None, "duration_s": 0.0, "evidence": []}]
    assert set(by_id[IDS[1]]) == {"id", "level", "group", "requirement", "verdict", "checks"}
    assert set(by_id[IDS[1]]["checks"][0]) == {"nodeid", "verdict", "message", "expected", "actual", "duration_s",
                                               "evidence"}


def test_load_results_rejects_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(dict(make_doc(), format_version=3)))
    with pytest.raises(ResultsError, match="format_version must be one of"):
        load_results(path)
    path.write_text("[]")
    with pytest.raises(ResultsError, match="not a chatconform results file"):
        load_results(path)


def junit_cases(doc: dict) -> dict[str, ET.Element]:
    root = ET.fromstring(render_junit(doc))
    return {case.get("name"): case for case in root.iter("testcase")}


def test_junit_has_one_testcase_per_check_classed_by_group() -> None:
    cases = junit_cases(make_doc())
    assert len(cases) == 6
    fail = cases["response.id.present test_1"]
    assert fail.get("classname") == "core" and fail.find("failure") is not None
    assert "curl -sS" in fail.find("failure").text
    assert cases["response.id.unique test_2"].find("failure") is None  # WARN passes when not strict
    assert cases["request.n.multiple test_3"].find("skipped").get("message") == "UNSUPPORTED: UNSUPPORTED because"
    assert cases["headers.loading.503 (no check)"].find("skipped") is not None


def test_junit_counts_warn_as_failure_under_strict() -> None:
    cases = junit_cases(make_doc(strict=True))
    assert cases["response.id.unique test_2"].find("failure") is not None
    root = ET.fromstring(render_junit(make_doc(strict=True)))
    assert root.find("testsuite").get("failures") == "2"


def test_html_is_self_contained_and_shows_evidence() -> None:
    page = render_html(make_doc())
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page)  # nothing fetched from the network
    assert "<script>" in page and "<style>" in page
    assert "&lt;b&gt;boom&lt;/b&gt;" in page  # the raw body, escaped
    assert "data: {&quot;x&quot;: 1}" in page  # raw SSE lines
    assert "curl -sS -X POST" in page
    assert 'data-verdict="FAIL"' in page and 'id="f-group"' in page
    assert "0.25 s" in page  # latency per clause


def test_write_reports_writes_three_files(tmp_path: Path) -> None:
    folder = write_reports(make_doc(), tmp_path / "a" / "b")
    assert sorted(p.name for p in folder.iterdir()) == ["index.html", "junit.xml", "results.json"]
    assert load_results(folder / "results.json")["summary"]["FAIL"] == 1


def test_matrix_compares_targets(tmp_path: Path) -> None:
    first = make_doc(url="http://one")
    second = make_doc(url="http://two", verdicts={IDS[0]: Verdict.FAIL, IDS[1]: Verdict.PASS})
    page = render_matrix([first, second])
    assert "http://one" in page and "http://two" in page
    row = re.search(r'<tr class=clause data-differs="(\d)"><td><code>request.messages.accepted</code>', page)
    assert row and row.group(1) == "1"
    paths = []
    for name, doc in (("1.json", first), ("2.json", second)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(doc))
    out = tmp_path / "m.html"
    assert main(["report", "matrix", *map(str, paths), "-o", str(out)]) == 0
    assert "chatconform matrix: 2 runs" in out.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["report", "matrix", str(bad), "-o", str(out)]) == 2
