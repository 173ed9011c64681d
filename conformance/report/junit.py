"""JUnit XML from results.json: one testcase per check, classname = clause group."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree as ET


def render_junit(doc: dict[str, Any]) -> str:
    """Render the results as JUnit XML (FAIL/ERROR as failures; WARN too under strict)."""
    strict = bool(doc.get("config", {}).get("strict"))
    cases: list[ET.Element] = []
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for clause in doc["clauses"]:
        for check in clause["checks"]:
            name = f"{clause['id']} {_check_name(check['nodeid'])}".strip()
            case = ET.Element("testcase", classname=clause["group"], name=name,
                              time=f"{float(check.get('duration_s') or 0):.3f}")
            counts["tests"] += 1
            verdict, message = check["verdict"], check.get("message") or ""
            text = _details(clause, check)
            if verdict == "ERROR":
                ET.SubElement(case, "error", message=f"ERROR: {message}", type="ERROR").text = text
                counts["errors"] += 1
            elif verdict in ("FAIL", "FLAKY") or (verdict == "WARN" and strict) or (
                    verdict == "IGNORED" and clause["level"] == "MUST"):
                ET.SubElement(case, "failure", message=f"{verdict}: {message}", type=verdict).text = text
                counts["failures"] += 1
            elif verdict == "NOT_EXERCISED":
                because = clause.get("because") or message
                ET.SubElement(case, "skipped", message=f"NOT_EXERCISED: {because}; root clause: {check.get('root')}")
                counts["skipped"] += 1
            elif verdict in ("SKIPPED", "UNSUPPORTED", "IGNORED"):
                ET.SubElement(case, "skipped", message=f"{verdict}: {message}")
                counts["skipped"] += 1
            elif verdict == "WARN":
                ET.SubElement(case, "system-out").text = f"WARN: {message}"
            cases.append(case)
    suite = ET.Element("testsuite", name="chatconform", tests=str(counts["tests"]),
                       failures=str(counts["failures"]), errors=str(counts["errors"]),
                       skipped=str(counts["skipped"]), time=f"{float(doc.get('duration_s') or 0):.3f}",
                       timestamp=str(doc.get("started", "")))
    props = ET.SubElement(suite, "properties")
    for key in ("suite_version", "spec_version", "catalogue_version", "seed"):
        ET.SubElement(props, "property", name=key, value=str(doc.get(key)))
    ET.SubElement(props, "property", name="base_url", value=str(doc.get("target", {}).get("base_url")))
    suite.extend(cases)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _check_name(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1] if nodeid else "(no check)"


def _details(clause: dict[str, Any], check: dict[str, Any]) -> str:
    lines = [f"{clause['level']} {clause['id']}: {clause['requirement']}", f"message: {check.get('message')}"]
    if check.get("expected") is not None or check.get("actual") is not None:
        lines.append(f"expected: {json.dumps(check.get('expected'))}")
        lines.append(f"actual: {json.dumps(check.get('actual'))}")
    for ev in check.get("evidence") or []:
        lines.append(f"status {ev.get('status')}: {ev.get('curl', '')}")
    return "\n".join(lines)
