"""The CI gate: known failures (--expect FILE) and the exit code of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spec.clauses import load_catalogue

EXIT_OK, EXIT_REGRESSION, EXIT_SUITE_ERROR, EXIT_NOTHING_RAN = 0, 1, 2, 3
# Verdicts that break a required clause; UNSUPPORTED (a clear refusal) and SKIPPED do not.
BREAKING = frozenset({"FAIL", "IGNORED", "ERROR"})


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
    reason: str = ""


def required(level: str, strict: bool) -> bool:
    """MUST clauses are required; SHOULD ones too under --strict."""
    return level == "MUST" or (strict and level == "SHOULD")


def gate(doc: dict[str, Any], expected: frozenset[str] = frozenset(), strict: bool = False) -> GateResult:
    """Decide the exit code of a run from its results document."""
    result = GateResult(EXIT_OK)
    ran = 0
    for clause in doc["clauses"]:
        verdict, cid = clause["verdict"], clause["id"]
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
    if result.errors:
        result.code, result.reason = EXIT_SUITE_ERROR, f"suite-side error in {len(result.errors)} clause(s)"
    elif ran == 0:
        result.code, result.reason = EXIT_NOTHING_RAN, "no check was executed"
    elif result.regressions:
        result.code, result.reason = EXIT_REGRESSION, f"{len(result.regressions)} required clause(s) failed"
    else:
        result.reason = "every required clause passes" + (" or is expected to fail" if result.expected else "")
    return result
