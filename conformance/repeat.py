"""`chatconform check --repeat N`: run the suite N times against one target and merge the runs.

Two runs against the same server must give the same verdicts; a clause whose verdict differs is
FLAKY, and the gate (on the merged document) fails for a flaky required clause. Merge rules, per
clause, over the verdicts of the runs in order:

- an ERROR in any run (a suite-side problem, not the target's) keeps the clause ERROR;
- SKIPPED runs are left out: SKIPPED says nothing was observable in that run (the embedded mock is
  loading only at the start of the first run; a burst gets a 429 in one run and not in another),
  which is no disagreement about the target;
- the remaining verdicts all equal: that verdict (all SKIPPED: SKIPPED);
- otherwise FLAKY.

Every merged clause lists `runs` (its verdict in each run) and keeps the checks of one run as
evidence, named by `evidence_run` (1-based): for FLAKY the worst run, otherwise the first run that
gave the merged verdict. Each run's own report stays in `run-<k>/` of the report folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from conformance.gate import EXIT_SUITE_ERROR
from conformance.report.writer import write_reports
from conformance.results import not_exercised_reason
from conformance.verdicts import SEVERITY, Verdict

MAX_REPEAT = 5
NOT_EXERCISED_KEYS = ("root", "root_verdict", "because")


def run_folder(report_dir: Path, run: int) -> Path:
    """The folder of run `run` (1-based) inside the merged report folder."""
    return Path(report_dir) / f"run-{run}"


def merged_verdict(verdicts: list[str]) -> str:
    """The verdict of a clause from its verdicts in each run (the rules of this module's docstring)."""
    if Verdict.ERROR in verdicts:
        return str(Verdict.ERROR)
    observed = {v for v in verdicts if v != Verdict.SKIPPED}
    if len(observed) > 1:
        return str(Verdict.FLAKY)
    return observed.pop() if observed else str(Verdict.SKIPPED)


def evidence_run(verdicts: list[str], merged: str) -> int:
    """The index (0-based) of the run whose checks a merged clause keeps."""
    if merged == Verdict.FLAKY:
        # the worst run: its checks say what went wrong; the first of equally bad runs
        return min(range(len(verdicts)), key=lambda i: (SEVERITY.index(Verdict(verdicts[i])), i))
    return verdicts.index(merged)


def merge_clause(records: list[dict[str, Any] | None]) -> dict[str, Any]:
    """One clause record from its records in each run (None: the clause was not in that run, read as SKIPPED)."""
    verdicts = [str(r["verdict"]) if r is not None else str(Verdict.SKIPPED) for r in records]
    verdict = merged_verdict(verdicts)
    pick = evidence_run(verdicts, verdict)
    source = records[pick] or next(r for r in records if r is not None)
    merged = dict(source, verdict=verdict, runs=verdicts, evidence_run=pick + 1)
    if verdict != Verdict.NOT_EXERCISED:
        for key in NOT_EXERCISED_KEYS:
            merged.pop(key, None)
    if any(r is not None and r.get("expected_failure") for r in records):
        merged["expected_failure"] = True
    return merged


def _relink_roots(clauses: list[dict[str, Any]]) -> None:
    """A NOT_EXERCISED clause names its root's merged verdict (the one the gate reads), not one run's."""
    verdicts = {c["id"]: c["verdict"] for c in clauses}
    for clause in clauses:
        if clause["verdict"] != Verdict.NOT_EXERCISED:
            continue
        root = clause.get("root")
        root_verdict = verdicts.get(root) if root else None
        clause["root_verdict"] = root_verdict
        clause["because"] = not_exercised_reason(root, None if root_verdict is None else Verdict(root_verdict))


def _summary(clauses: list[dict[str, Any]]) -> dict[str, int]:
    counts = {str(v): 0 for v in Verdict}
    for clause in clauses:
        counts[clause["verdict"]] += 1
    counts["checks"] = sum(1 for c in clauses for check in c["checks"] if check.get("nodeid"))
    return counts


def merge_runs(docs: list[dict[str, Any]], folders: list[str] | None = None) -> dict[str, Any]:
    """The merged results document of several runs of the same selection against the same target.

    The document is the first run's (target, config, seed ...) with the merged clauses, a summary
    recounted from them, the runs' total duration, `config.repeat` and a `repeat` record: the number
    of runs, each run's folder and the flaky clause IDs.
    """
    if not docs:
        raise ValueError("merge_runs needs at least one run")
    order: list[str] = []
    for doc in docs:
        order += [c["id"] for c in doc["clauses"] if c["id"] not in order]
    by_run = [{c["id"]: c for c in doc["clauses"]} for doc in docs]
    clauses = [merge_clause([run.get(cid) for run in by_run]) for cid in order]
    _relink_roots(clauses)
    flaky = [c["id"] for c in clauses if c["verdict"] == Verdict.FLAKY]
    merged = dict(docs[0])
    merged.update(
        config=dict(docs[0].get("config") or {}, repeat=len(docs)),
        finished=docs[-1].get("finished"),
        duration_s=round(sum(float(d.get("duration_s") or 0) for d in docs), 3),
        summary=_summary(clauses),
        clauses=clauses,
        repeat={"runs": len(docs), "folders": folders or [f"run-{k}" for k in range(1, len(docs) + 1)],
                "flaky": flaky},
    )
    return merged


def flaky_note(merged: dict[str, Any]) -> str:
    """One console line: how many runs, how many clauses were flaky, and which."""
    runs, flaky = merged["repeat"]["runs"], merged["repeat"]["flaky"]
    if not flaky:
        return f"repeat: {runs} runs, every clause gave the same verdict in each (SKIPPED runs aside)"
    return f"[bold yellow]repeat[/]: {runs} runs, {len(flaky)} clause(s) flaky: {', '.join(flaky)}"


def run_repeated(options: dict[str, Any], times: int, expected: frozenset[str], strict: bool, console: Console,
                 *, quiet: bool) -> int:
    """Run the suite `times` times into run-<k>/ of options["report_dir"], merge, write and gate the merged report.

    A run that is a suite-side error (no results, unreachable target, interrupted) ends the whole
    command with that run's exit code: a merge needs every run.
    """
    from conformance.check_command import conclude, read_run, run_once

    report_dir = Path(options["report_dir"])
    docs = []
    for run in range(1, times + 1):
        folder = run_folder(report_dir, run)
        console.print(f"run {run} of {times} ...")
        stop, code = run_once(dict(options, report_dir=folder), console, quiet)
        if stop is not None:
            return stop
        doc = read_run(folder, code, console)
        if doc is None:
            return EXIT_SUITE_ERROR
        docs.append(doc)
    merged = merge_runs(docs, [run_folder(report_dir, k).name for k in range(1, times + 1)])
    write_reports(merged, report_dir)
    return conclude(merged, report_dir, expected, strict, notes=(flaky_note(merged),))
