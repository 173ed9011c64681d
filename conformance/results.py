"""Typed run results and their results.json form (format_version 2; version 1 files are still read).

Version 2 added the verdicts NOT_EXERCISED (with `root`, `root_verdict` and `because` on the clause)
and FLAKY (with `runs`, the clause's verdict in each run of `--repeat`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.gate import BREAKING
from conformance.verdicts import Verdict, worst
from spec.clauses import Clause, load_catalogue

FORMAT = "chatconform-results"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
NO_CHECK_MESSAGE = "no check yet"
INTERRUPTED_MESSAGE = "not run: the run was interrupted before this clause"


class ResultsError(ValueError):
    """A results.json file is not one this version can read."""


@dataclass
class CheckResult:
    """One check's verdict with its evidence."""

    nodeid: str
    verdict: Verdict
    message: str = ""
    expected: Any = None
    actual: Any = None
    duration_s: float = 0.0
    evidence: list[dict[str, Any]] = field(default_factory=list)
    root: str | None = None  # NOT_EXERCISED: the clause whose failure explains the missing observation

    def to_json(self) -> dict[str, Any]:
        """The check as a results.json record."""
        record = {
            "nodeid": self.nodeid, "verdict": str(self.verdict), "message": self.message,
            "expected": _jsonable(self.expected), "actual": _jsonable(self.actual),
            "duration_s": round(self.duration_s, 4), "evidence": self.evidence,
        }
        if self.root is not None:
            record["root"] = self.root
        return record


@dataclass
class ClauseResult:
    """A clause and the verdicts of its checks."""

    id: str
    level: str
    group: str
    requirement: str
    checks: list[CheckResult] = field(default_factory=list)
    expected_failure: bool = False
    root_verdict: Verdict | None = None  # the verdict of `root` in the same run, when it ran
    runs: list[str] | None = None  # --repeat: this clause's verdict in each run, in order

    @property
    def verdict(self) -> Verdict:
        """Worst of the checks' verdicts; SKIPPED when it has none."""
        return worst(c.verdict for c in self.checks)

    @property
    def root(self) -> str | None:
        """For a NOT_EXERCISED clause: the root clause of its first not-exercised check."""
        if self.verdict is not Verdict.NOT_EXERCISED:
            return None
        return next((c.root for c in self.checks if c.verdict is Verdict.NOT_EXERCISED and c.root), None)

    def to_json(self) -> dict[str, Any]:
        """The clause as a results.json record."""
        record: dict[str, Any] = {
            "id": self.id, "level": self.level, "group": self.group, "requirement": self.requirement,
            "verdict": str(self.verdict), "checks": [c.to_json() for c in self.checks],
        }
        if self.verdict is Verdict.NOT_EXERCISED:
            record["root"] = self.root
            record["root_verdict"] = None if self.root_verdict is None else str(self.root_verdict)
            record["because"] = not_exercised_reason(self.root, self.root_verdict)
        if self.runs is not None:
            record["runs"] = list(self.runs)
        if self.expected_failure:
            record["expected_failure"] = True
        return record


def not_exercised_reason(root: str | None, root_verdict: Verdict | None) -> str:
    """One line: why a clause was not exercised, naming its root clause and that clause's verdict."""
    if root is None:
        return "not exercised: what the check must observe never happened"
    if root_verdict is None:
        return f"not exercised because {root} did not run"
    if root_verdict in BREAKING:
        return f"not exercised because {root} failed ({root_verdict})"
    return f"not exercised: its observation comes from {root} ({root_verdict})"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def clause_results(selected: tuple[Clause, ...], checks: dict[str, list[CheckResult]],
                   expected: frozenset[str] = frozenset(), missing: str = NO_CHECK_MESSAGE) -> list[ClauseResult]:
    """Group check results under the selected clauses; a clause without checks gets a SKIPPED `missing`."""
    out = []
    for clause in selected:
        found = list(checks.get(clause.id, []))
        if not found:
            found = [CheckResult(nodeid="", verdict=Verdict.SKIPPED, message=missing)]
        out.append(ClauseResult(clause.id, str(clause.level), clause.group, clause.requirement, found,
                                expected_failure=clause.id in expected))
    verdicts = {c.id: c.verdict for c in out if c.checks and c.checks[0].nodeid}
    for result in out:
        if result.root is not None:
            result.root_verdict = verdicts.get(result.root)
    return out


def summary(clauses: list[ClauseResult]) -> dict[str, int]:
    """Counts of clause verdicts per verdict, plus `checks`: the number of checks."""
    counts = {str(v): 0 for v in Verdict}
    for clause in clauses:
        counts[str(clause.verdict)] += 1
    counts["checks"] = sum(1 for c in clauses for check in c.checks if check.nodeid)
    return counts


def results_document(*, suite_version: str, target: dict[str, Any], config: dict[str, Any], seed: int,
                     started: str, finished: str, duration_s: float, clauses: list[ClauseResult],
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results.json document (format_version 2)."""
    catalogue = load_catalogue()
    doc: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "suite_version": suite_version,
        "spec_version": catalogue.spec_version, "catalogue_version": catalogue.version,
        "target": target, "config": config, "seed": seed,
        "started": started, "finished": finished, "duration_s": round(duration_s, 3),
        "summary": summary(clauses), "clauses": [c.to_json() for c in clauses],
    }
    if extra:
        doc.update(extra)
    return doc


def load_results(path: Path) -> dict[str, Any]:
    """Read a results.json, checking its format and version."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: cannot read results: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ResultsError(f"{path}: not a chatconform results file (format must be {FORMAT!r})")
    if doc.get("format_version") not in READABLE_VERSIONS:
        raise ResultsError(
            f"{path}: format_version must be one of {READABLE_VERSIONS}, got {doc.get('format_version')!r}"
        )
    return doc
