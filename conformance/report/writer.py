"""Write a run's report folder: results.json, junit.xml and index.html."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance.gate import gate_of
from conformance.report.html import render_html
from conformance.report.junit import render_junit


def write_reports(doc: dict[str, Any], folder: Path) -> Path:
    """Write the three report files into `folder` (created); return the folder.

    The gate's decision (exit code, reason, the clauses behind it) is added to the document first, so
    every report says what a CI run of `chatconform check` would conclude from it.
    """
    result = gate_of(doc)
    doc["gate"] = {"code": result.code, "reason": result.reason, "regressions": result.regressions,
                   "orphaned": result.orphaned, "not_exercised": result.not_exercised, "expected": result.expected,
                   "fixed": result.fixed, "errors": result.errors}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "junit.xml").write_text(render_junit(doc), encoding="utf-8")
    (folder / "index.html").write_text(render_html(doc), encoding="utf-8")
    return folder
