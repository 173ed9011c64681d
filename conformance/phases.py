"""The embedded mock's second phase: the clauses its main run cannot observe.

The main run talks to a mock that requires a token and speaks one error envelope (HF's, or
OpenAI's under `--dialect openai`). A few clauses need the opposite: an open server
(`headers.authorization.ignored-when-open`) or the other envelope (`errors.envelope.openai-fields`).
They come out SKIPPED from the main run; this phase starts a second embedded mock, open and with
the other envelope, runs just those clauses against it, and merges them into the report, so that
`make check` exercises every clause it can. Each phase keeps its own report in a subfolder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from conformance.embedded import EmbeddedMock, EmbeddedStartError
from conformance.repeat import merge_runs
from conformance.report.writer import write_reports
from conformance.results import ResultsError, load_results

MAIN_FOLDER, OPEN_FOLDER = "main-phase", "open-phase"
REPORT_FILES = ("results.json", "junit.xml", "index.html")
RunOnce = Callable[[dict[str, Any], Console, bool], tuple[int | None, int]]


def skipped_checks(doc: dict[str, Any]) -> list[str]:
    """The clauses whose checks ran and came out SKIPPED: what the main phase could not observe."""
    return [c["id"] for c in doc["clauses"] if c["verdict"] == "SKIPPED" and any(k.get("nodeid") for k in c["checks"])]


def other_error_style(dialect: str) -> str:
    """The error envelope the main phase's mock did not speak."""
    return "hf" if dialect == "openai" else "openai"


def run_open_phase(options: dict[str, Any], main: EmbeddedMock, dialect: str, console: Console, quiet: bool,
                   run_once: RunOnce) -> tuple[int | None, int]:
    """Run the main phase's SKIPPED clauses against an open mock with the other envelope; merge the reports.

    Returns what run_once returns for the second run, or (None, 0) when there was nothing to add.
    """
    report_dir = Path(options["report_dir"])
    try:
        first = load_results(report_dir / "results.json")
    except ResultsError:
        return None, 0  # the main run wrote nothing: its own reading reports that
    wanted = skipped_checks(first)
    if not wanted:
        return None, 0
    (report_dir / MAIN_FOLDER).mkdir(exist_ok=True)
    for name in REPORT_FILES:
        shutil.copy2(report_dir / name, report_dir / MAIN_FOLDER / name)
    second = EmbeddedMock(model=main.model, api_key=None, load_delay=main.load_delay, max_queue=main.max_queue,
                          extra_args=["--error-style", other_error_style(dialect)])
    console.print(f"second phase: {len(wanted)} clause(s) the keyed mock could not show, against an open mock "
                  f"with the {other_error_style(dialect)} error envelope ...", markup=False)
    try:
        phase = dict(options, base_url=second.start(), api_key=None, clause_prefixes=tuple(wanted),
                     report_dir=report_dir / OPEN_FOLDER,
                     target_label=f"{options.get('target_label') or 'the embedded mock'}, open, "
                                  f"{other_error_style(dialect)} errors")
        stop, code = run_once(phase, console, quiet)
    except EmbeddedStartError as exc:
        console.print(f"second phase skipped: {exc}", markup=False)
        return None, 0
    finally:
        second.stop()
    if stop is not None:
        return stop, code
    try:
        merged = merge_phases(first, load_results(report_dir / OPEN_FOLDER / "results.json"), wanted)
    except ResultsError:
        return None, code
    write_reports(merged, report_dir)
    return None, code


def merge_phases(first: dict[str, Any], second: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    """The main phase's document with the second phase's verdicts for the clauses it could not observe."""
    merged = merge_runs([first, second], folders=[MAIN_FOLDER, OPEN_FOLDER])
    merged["config"] = dict(first.get("config") or {})
    merged.pop("repeat", None)
    from_second = {c["id"] for c in second["clauses"] if c["verdict"] != "SKIPPED"}
    for clause in merged["clauses"]:
        clause.pop("runs", None)
        clause.pop("evidence_run", None)
        if clause["id"] in from_second:
            clause["phase"] = "open"
    merged["phases"] = {"folders": [MAIN_FOLDER, OPEN_FOLDER], "second": wanted,
                        "judged_in_second": sorted(from_second)}
    return merged
