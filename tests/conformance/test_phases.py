"""The embedded mock's second phase: what the keyed main run cannot show is judged against an open mock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.phases import MAIN_FOLDER, OPEN_FOLDER, merge_phases, other_error_style, skipped_checks
from tests.conformance.cli_runner import main


def _doc(verdicts: dict[str, str]) -> dict[str, object]:
    clauses = [{"id": cid, "level": "MUST", "group": "g", "requirement": "r", "verdict": v,
                "checks": [{"nodeid": f"t::{cid}", "verdict": v, "message": "", "evidence": []}]}
               for cid, v in verdicts.items()]
    return {"format": "chatconform-results", "format_version": 2, "target": {"base_url": "http://x"},
            "config": {"strict": False}, "clauses": clauses, "duration_s": 1.0}


def test_the_second_phase_fills_in_only_what_the_first_skipped() -> None:
    first = _doc({"a.b.c": "PASS", "headers.authorization.ignored-when-open": "SKIPPED",
                  "errors.envelope.openai-fields": "SKIPPED"})
    assert skipped_checks(first) == ["headers.authorization.ignored-when-open", "errors.envelope.openai-fields"]
    second = _doc({"headers.authorization.ignored-when-open": "PASS", "errors.envelope.openai-fields": "FAIL"})
    merged = merge_phases(first, second, skipped_checks(first))
    verdicts = {c["id"]: (c["verdict"], c.get("phase")) for c in merged["clauses"]}
    assert verdicts == {"a.b.c": ("PASS", None), "headers.authorization.ignored-when-open": ("PASS", "open"),
                        "errors.envelope.openai-fields": ("FAIL", "open")}
    assert merged["summary"]["FAIL"] == 1 and "repeat" not in merged
    assert merged["phases"]["folders"] == [MAIN_FOLDER, OPEN_FOLDER]
    assert (other_error_style("hf"), other_error_style("openai")) == ("openai", "hf")


@pytest.mark.timeout(900)
@pytest.mark.long  # the whole embedded-mock run twice over (18 s quiet): make test-long and CI
def test_make_check_exercises_the_open_and_envelope_clauses_too(tmp_path: Path) -> None:
    report = tmp_path / "report"
    code = main(["check", "--mock-model", "tiny", "--mock-load-delay", "0", "--quiet", "--report-dir", str(report),
                 "--clause", "errors.envelope", "--clause", "headers.authorization"])
    assert code == 0
    doc = json.loads((report / "results.json").read_text(encoding="utf-8"))
    verdicts = {c["id"]: c["verdict"] for c in doc["clauses"]}
    assert verdicts["headers.authorization.ignored-when-open"] == "PASS"
    assert verdicts["errors.envelope.openai-fields"] == "PASS"
    assert "SKIPPED" not in verdicts.values()
    assert (report / MAIN_FOLDER / "results.json").is_file() and (report / OPEN_FOLDER / "results.json").is_file()
