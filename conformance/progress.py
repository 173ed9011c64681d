"""The run's console output: a rich progress display while checks run and a summary table after."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conformance.gate import GateResult

STYLES = {"PASS": "green", "FAIL": "bold red", "FLAKY": "bold yellow", "WARN": "yellow", "UNSUPPORTED": "blue",
          "IGNORED": "magenta", "NOT_EXERCISED": "cyan", "SKIPPED": "dim", "ERROR": "bold white on red"}
# Verdicts the table of clauses that did not pass lists, worst first.
NOT_PASSING = ("ERROR", "FAIL", "FLAKY", "IGNORED", "WARN", "NOT_EXERCISED")


LINE_INTERVAL_S = 10.0  # plain progress: a line at least this often while checks run


class ProgressPlugin:
    """A pytest plugin object: shows progress, and prints collection errors (the terminal reporter is off).

    Three modes: `rich` (a live bar, on a terminal), `lines` (one plain line when a module of checks
    is done and at least every LINE_INTERVAL_S seconds, with counts: what a CI log shows) and `off`.
    """

    def __init__(self, console: Console, show: bool = True, mode: str | None = None) -> None:
        self.console = console
        self.mode = mode or ("rich" if show else "off")
        self.show = self.mode == "rich"
        self.counts: Counter[str] = Counter()
        self.progress: Progress | None = None
        self.task: Any = None
        self.collect_errors: list[str] = []
        self.interrupted = False
        self.total = 0
        self.done = 0
        self.started = time.monotonic()
        self.last_line = self.started
        self.module: str | None = None

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Print collection errors: they are suite-side problems."""
        if report.failed:
            self.collect_errors.append(report.nodeid)
            self.console.print(f"[bold red]collection error in {report.nodeid}:[/]\n{report.longreprtext}")

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Remember a Ctrl-C (not a pytest.exit, which reaches this hook too): the CLI returns 130."""
        if excinfo.type is KeyboardInterrupt:
            self.interrupted = True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Start the progress bar once the number of checks is known."""
        self.total = len(session.items)
        self.started = self.last_line = time.monotonic()
        if self.mode == "lines":
            self.console.print(f"chatconform: {self.total} checks to run", markup=False, highlight=False)
        if not self.show:
            return
        self.progress = Progress(TextColumn("[bold]checks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("", total=len(session.items))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Advance once per check, counting verdicts."""
        verdict = next((v for k, v in report.user_properties if k == "chatconform_verdict"), None)
        if isinstance(verdict, str):  # the plugin records str(Verdict); user_properties are typed object
            self.counts[verdict] += 1
        if report.when != "teardown":
            return
        self.done += 1
        if self.mode == "lines":
            self._line(report.nodeid)
        if self.progress is not None:
            tally = " ".join(f"[{STYLES[v]}]{v} {n}[/]" for v, n in sorted(self.counts.items()))
            self.progress.update(self.task, advance=1, description=f"{tally}  {report.nodeid.rsplit('::', 1)[-1]}")

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        """Plain mode: when a check of another module starts, a line for the module just finished."""
        module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
        if self.mode == "lines" and self.module is not None and module != self.module:
            self._print(f"{self.module} done")
        self.module = module

    def _line(self, nodeid: str) -> None:
        """Plain mode: a line every LINE_INTERVAL_S seconds, and one when the last check is done."""
        if time.monotonic() - self.last_line >= LINE_INTERVAL_S or self.done == self.total:
            self._print(nodeid.split("::", 1)[0].rsplit("/", 1)[-1])

    def _print(self, where: str) -> None:
        now = time.monotonic()
        elapsed = int(now - self.started)
        tally = " ".join(f"{v} {n}" for v, n in sorted(self.counts.items()))
        self.console.print(f"[{self.done:>3}/{self.total} {elapsed // 60}m{elapsed % 60:02d}s] {where}: {tally}",
                           markup=False, highlight=False)
        self.last_line = now

    def pytest_sessionfinish(self) -> None:
        """Stop the progress display."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def summary_table(doc: dict[str, Any], gate: GateResult) -> Table:
    """Counts per verdict (clauses), then the failing clauses with one-line reasons."""
    table = Table(title="verdicts per clause", title_justify="left")
    table.add_column("verdict")
    table.add_column("clauses", justify="right")
    for verdict, style in STYLES.items():
        count = doc["summary"].get(verdict, 0)
        if count:
            table.add_row(f"[{style}]{verdict}[/]", str(count))
    return table


def failing_table(doc: dict[str, Any], gate: GateResult) -> Table | None:
    """The clauses that did not pass (ERROR, FAIL, FLAKY, IGNORED, WARN, NOT_EXERCISED), each with its first reason."""
    rows = []
    for clause in sorted(doc["clauses"], key=lambda c: NOT_PASSING.index(c["verdict"]) if c["verdict"] in NOT_PASSING
                         else len(NOT_PASSING)):
        if clause["verdict"] in NOT_PASSING:
            reason = next((c.get("message") or "" for c in clause["checks"] if c["verdict"] == clause["verdict"]), "")
            if clause["verdict"] == "NOT_EXERCISED":
                reason = clause.get("because") or reason
            elif clause["verdict"] == "FLAKY":
                reason = "verdicts per run: " + ", ".join(clause.get("runs") or [])
            note = " (expected)" if clause["id"] in gate.expected else ""
            rows.append((clause["verdict"], clause["level"], clause["id"] + note, reason.splitlines()[0][:160] if reason else ""))
    if not rows:
        return None
    table = Table(title="clauses that did not pass")
    for name in ("verdict", "level", "clause", "reason"):
        table.add_column(name, overflow="fold")
    for verdict, level, cid, reason in rows:
        table.add_row(f"[{STYLES[verdict]}]{verdict}[/]", level, cid, reason)
    return table
