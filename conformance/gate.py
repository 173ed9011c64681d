"""The CI gate: known failures (--expect FILE) and the exit code of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spec.clauses import load_catalogue

EXIT_OK, EXIT_REGRESSION, EXIT_SUITE_ERROR, EXIT_NOTHING_RAN = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as a shell reports it
# Verdicts that break a required clause; UNSUPPORTED (a clear refusal) and SKIPPED do not.
BREAKING = frozenset({"FAIL", "IGNORED", "ERROR", "FLAKY"})


class ExpectFileError(ValueError):
    """The --expect file cannot be read or names an unknown clause."""


def read_expect(path: Path) -> frozenset[str]:
    """Clause IDs known to fail: one per line, `#` starts a comment, blank lines ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ExpectFileError(f"expect: cannot read {path}: {exc.strerror or exc}") from exc
    known = set(load_catalogue().ids)
    ids = set()
    for number, line in enumerate(text.splitlines(), start=1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        if item not in known:
            raise ExpectFileError(f"expect: {path}:{number}: unknown clause id {item!r}")
        ids.add(item)
    return frozenset(ids)


@dataclass
class GateResult:
    """The gate's decision and the clauses behind it."""

    code: int
    regressions: list[str] = field(default_factory=list)   # required clauses that broke, not expected
    expected: list[str] = field(default_factory=list)      # required clauses that broke, as expected
    fixed: list[str] = field(default_factory=list)         # expected to fail, now passing
    errors: list[str] = field(default_factory=list)        # clauses with a suite-side ERROR
    # required clauses NOT_EXERCISED: behind a broken root (the root keeps the gate red), or orphaned
    not_exercised: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)       # ... whose root did not fail: these break the gate
    reason: str = ""


def required(level: str, strict: bool) -> bool:
    """MUST clauses are required; SHOULD ones too under --strict."""
    return level == "MUST" or (strict and level == "SHOULD")


def gate(doc: dict[str, Any], expected: frozenset[str] = frozenset(), strict: bool = False) -> GateResult:
    """Decide the exit code of a run from its results document."""
    result = GateResult(EXIT_OK)
    ran = 0
    verdicts = {c["id"]: c["verdict"] for c in doc["clauses"]}
    levels = {c["id"]: c["level"] for c in doc["clauses"]}
    for clause in doc["clauses"]:
        verdict, cid = clause["verdict"], clause["id"]
        if verdict == "NOT_EXERCISED" and required(clause["level"], strict):
            result.not_exercised.append(cid)
            root = clause.get("root") or ""
            root_verdict = verdicts.get(root)
            # The root holds the gate red when it breaks a required clause. A MAY root that was not a
            # working feature (failed, refused, absent) excuses its dependents: they concern an optional
            # feature the server does not offer. Anything else leaves the clause orphaned: nothing
            # else holds the gate red for it.
            broken = root_verdict in BREAKING or (strict and root_verdict == "WARN")
            root_gates = broken and required(levels.get(root, "MAY"), strict)
            optional_absent = levels.get(root) == "MAY" and root_verdict != "PASS"
            if not (root_gates or optional_absent) and cid not in expected:
                result.orphaned.append(cid)  # nothing else holds the gate red for it
        ran += sum(1 for c in clause["checks"] if c.get("nodeid") and c["verdict"] != "SKIPPED")
        if verdict == "ERROR":
            result.errors.append(cid)
        broken = verdict in BREAKING or (strict and verdict == "WARN")
        if cid in expected:
            if verdict == "PASS":
                result.fixed.append(cid)
            elif broken:
                result.expected.append(cid)
            continue
        if broken and verdict != "ERROR" and required(clause["level"], strict):
            result.regressions.append(cid)
    if doc.get("interrupted"):
        result.code, result.reason = EXIT_INTERRUPTED, "the run was interrupted: its verdicts are partial"
    elif doc.get("unreachable"):
        result.code, result.reason = EXIT_SUITE_ERROR, f"target unreachable: {doc['unreachable']}"
    elif result.errors:
        result.code, result.reason = EXIT_SUITE_ERROR, f"suite-side error in {len(result.errors)} clause(s)"
    elif ran == 0:
        result.code, result.reason = EXIT_NOTHING_RAN, "no check was executed"
    elif result.regressions or result.orphaned:
        parts = []
        if result.regressions:
            parts.append(f"{len(result.regressions)} required clause(s) failed")
        if result.orphaned:
            parts.append(f"{len(result.orphaned)} required clause(s) not exercised with no failing root")
        result.code, result.reason = EXIT_REGRESSION, "; ".join(parts)
    else:
        result.reason = "every required clause passes" + (" or is expected to fail" if result.expected else "")
    if result.not_exercised:
        result.reason += f" ({len(result.not_exercised)} required clause(s) not exercised)"
    return result


def gate_of(doc: dict[str, Any]) -> GateResult:
    """The gate of a results document on its own: the expected failures and --strict it records."""
    expected = frozenset(c["id"] for c in doc["clauses"] if c.get("expected_failure"))
    return gate(doc, expected, bool(doc.get("config", {}).get("strict")))
