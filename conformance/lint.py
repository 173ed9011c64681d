"""`chatconform lint DIR`: the suite's single-exchange rules, judged offline over recorded exchanges.

Each cassette (conformance/cassette.py) becomes the suite's evidence, an Exchange or a parsed
StreamExchange, and is judged by the clause judges (conformance.judges) that read its kind of
answer: a 200 chat completion (ANSWER), a 200 answer to a stream request (STREAM), an error answer
(ERROR), a 200 GET /v1/models (MODELS), on the paths of spec/openapi.yaml (after any base path of
the upstream). Anything else (GET /health, a redirect, a path outside the API) is read but judged
by none. A rule that needs the live target or several exchanges (id.unique, the seeds,
parity between stream and non-stream, a stall) is not judged here: `chatconform check` judges it.

A broken MUST clause fails the lint; a broken SHOULD clause is a warning (a failure with
--strict); a broken MAY clause is a note and never fails, as in `chatconform check`. A judge that
raises on a cassette is a suite-side ERROR.

Exit codes: 0 no MUST clause broken (nor SHOULD with --strict); 1 one is; 2 an unreadable
cassette, no cassette at all, a judge ERROR, or a usage error.

    result document (--json): {"format": "chatconform.lint/1", "strict": bool, "exit_code": int,
      "summary": {...}, "cassettes": [{"file", "method", "path", "status", "kind", "judged": [id],
      "problems": [{"clause", "level", "verdict", "message", "expected", "actual"}]}],
      "unreadable": [{"file", "error"}]}
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from conformance import cassette as cassettes
from conformance import judges
from conformance.exchange import Exchange
from conformance.judges.models import is_models_listing
from conformance.judges.stream import asked_stream
from spec.clauses import Clause, Level, load_catalogue
from spec.document import shared_document

FORMAT = "chatconform.lint/1"
EXIT_CLEAN = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2
CHAT_PATH = "/v1/chat/completions"  # also the tail of /models/{model_id}/v1/chat/completions
# A kind of answer, in words (for the listing and the per-cassette lines).
KIND_WORDS = {judges.ANSWER: "chat completion", judges.STREAM: "stream", judges.ERROR: "error answer",
              judges.MODELS: "GET /v1/models"}
SCOPE_NOTE = ("lint judges the rules that one recorded exchange shows (the shape of an answer, a stream, an "
              "error envelope, the model list); rules that need the live target or several exchanges (unique ids, "
              "seeds, stream and non-stream parity, stalls, refusals of invalid requests) are judged by "
              "`chatconform check` only. `--list` prints the clauses lint judges.")


class LintError(Exception):
    """A usage error of lint: no cassette to read, an unwritable result file."""


@dataclass(frozen=True)
class Finding:
    """One problem a judge found in one cassette, with its clause's level and the verdict it gives."""

    clause: str
    level: str
    verdict: str  # FAIL, WARN (SHOULD without --strict), NOTE (MAY) or ERROR (the judge raised)
    problem: judges.Problem

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object of the result document."""
        return {"clause": self.clause, "level": self.level, "verdict": self.verdict,
                "message": self.problem.message, "expected": self.problem.expected, "actual": self.problem.actual}


@dataclass
class Linted:
    """What lint made of one cassette: its kind of answer, the clauses judged on it, and the findings."""

    file: Path
    method: str
    path: str
    status: int
    kind: str | None
    judged: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The cassette's entry in the result document."""
        return {"file": str(self.file), "method": self.method, "path": self.path, "status": self.status,
                "kind": self.kind, "judged": self.judged, "problems": [f.to_json() for f in self.findings]}


@dataclass
class LintRun:
    """Every cassette linted, the files that could not be read, and the verdict."""

    strict: bool
    linted: list[Linted] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def findings(self, verdict: str) -> list[Finding]:
        """Every finding with this verdict, in cassette order."""
        return [f for item in self.linted for f in item.findings if f.verdict == verdict]

    @property
    def exit_code(self) -> int:
        """2 for an unreadable cassette (or none at all) or a judge error, else 1 when a clause that gates is
        broken, else 0."""
        if self.unreadable or not self.linted or self.findings("ERROR"):
            return EXIT_USAGE
        return EXIT_BROKEN if self.findings("FAIL") else EXIT_CLEAN

    def summary(self) -> dict[str, Any]:
        """Counts: cassettes, judgements, findings per verdict, broken clauses."""
        fails = self.findings("FAIL")
        return {
            "cassettes": len(self.linted), "unreadable": len(self.unreadable),
            "judged": sum(1 for item in self.linted if item.judged),
            "judgements": sum(len(item.judged) for item in self.linted),
            "fail": len(fails), "warn": len(self.findings("WARN")), "note": len(self.findings("NOTE")),
            "error": len(self.findings("ERROR")),
            "broken_clauses": sorted({f.clause for item in self.linted for f in item.findings}),
            "failing_cassettes": sum(1 for item in self.linted if any(f.verdict == "FAIL" for f in item.findings)),
        }

    def to_json(self) -> dict[str, Any]:
        """The machine-readable result (--json)."""
        return {"format": FORMAT, "strict": self.strict, "exit_code": self.exit_code, "summary": self.summary(),
                "cassettes": [item.to_json() for item in self.linted],
                "unreadable": [{"file": str(path), "error": error} for path, error in self.unreadable]}


def lint_clauses() -> list[Clause]:
    """The active clauses whose judges lint runs, in catalogue order."""
    return [c for c in load_catalogue().active() if judges.SCOPES.get(c.id)]


def api_path(path: str) -> bool:
    """The path is one of the operations of spec/openapi.yaml (after any base path: /v1/models, /x/v1/models)."""
    patterns = [re.escape(p).replace(re.escape("{model_id}"), "[^/]+") for p in shared_document()["paths"]]
    return any(re.search(pattern + "/?$", path) for pattern in patterns)


def kind_of(ex: Exchange, path: str) -> str | None:
    """The kind of recorded answer (judges.KINDS), or None when no judge reads it."""
    if not api_path(path):
        return None
    if ex.status >= 400:
        return judges.ERROR
    if ex.status != 200:
        return None
    if is_models_listing(ex):
        return judges.MODELS
    if ex.method.upper() == "POST" and path.rstrip("/").endswith(CHAT_PATH):
        return judges.STREAM if asked_stream(ex) else judges.ANSWER
    return None


def verdict_of(level: str, strict: bool) -> str:
    """FAIL for a broken MUST clause (and SHOULD with strict), WARN for SHOULD, NOTE for MAY."""
    if level == Level.MUST or (level == Level.SHOULD and strict):
        return "FAIL"
    return "WARN" if level == Level.SHOULD else "NOTE"


def lint_cassette(recorded: cassettes.Cassette, strict: bool = False, clauses: list[Clause] | None = None) -> Linted:
    """Judge one cassette with every judge (of `clauses`, default lint_clauses()) that reads its kind of answer."""
    ex = recorded.to_exchange()
    kind = kind_of(ex, recorded.path)
    item = Linted(recorded.source or Path(recorded.name), recorded.method, recorded.path, recorded.status, kind)
    if kind is None:
        return item
    for clause in lint_clauses() if clauses is None else clauses:
        if kind not in judges.SCOPES.get(clause.id, ()):
            continue
        item.judged.append(clause.id)
        level = str(clause.level)
        try:
            found = judges.problems(clause.id, ex)
        except Exception as exc:  # a judge that breaks on a hand-edited cassette: the suite's fault, reported
            item.findings.append(Finding(clause.id, level, "ERROR", judges.Problem(f"the judge raised {exc!r}")))
            continue
        item.findings += [Finding(clause.id, level, verdict_of(level, strict), problem) for problem in found]
    return item


def cassette_files(paths: list[Path]) -> list[Path]:
    """The cassette files named: each folder's *.json files (recursively, in name order), and each file itself."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += cassettes.files(path)
        elif path.exists():
            found.append(path)
        else:
            raise LintError(f"{path}: no such file or folder")
    if not found:
        raise LintError(f"no cassette files (*{cassettes.SUFFIX}) in {', '.join(map(str, paths))}")
    return found


def lint(paths: list[Path], strict: bool = False) -> LintRun:
    """Lint every cassette under the paths; an unreadable one is kept in `unreadable`, the rest are judged."""
    run = LintRun(strict)
    clauses = lint_clauses()
    for file in cassette_files(paths):
        try:
            recorded = cassettes.load(file)
        except cassettes.CassetteError as exc:
            run.unreadable.append((file, str(exc)))
            continue
        run.linted.append(lint_cassette(recorded, strict, clauses))
    return run


def describe(item: Linted) -> str:
    """One cassette in words: its file, request line, status and kind."""
    kind = KIND_WORDS.get(item.kind or "", "not judged")
    return f"{item.file} ({item.method} {item.path} -> {item.status}, {kind})"


def grouped(findings: list[Finding]) -> list[tuple[Finding, int]]:
    """The first finding of each clause, in order, and how many more that clause has (one per stream chunk, say)."""
    firsts: dict[str, Finding] = {}
    counts: dict[str, int] = {}
    for finding in findings:
        firsts.setdefault(finding.clause, finding)
        counts[finding.clause] = counts.get(finding.clause, 0) + 1
    return [(first, counts[clause] - 1) for clause, first in firsts.items()]


def print_run(run: LintRun, out: TextIO, verbose: bool = False) -> None:
    """Per cassette, one line per broken clause (file, verdict, clause, level, its first problem and how many more
    it has; --json keeps them all); then the summary line."""
    for item in run.linted:
        if verbose:
            print(f"{describe(item)}: {len(item.judged)} clauses judged, {len(item.findings)} problems", file=out)
        for first, more in grouped(item.findings):
            extra = f" (and {more} more like it)" if more else ""
            print(f"{item.file}: {first.verdict} {first.clause} ({first.level}): {first.problem.describe()}{extra}",
                  file=out)
    counts = run.summary()
    verdict = {EXIT_CLEAN: "clean", EXIT_BROKEN: "FAILED", EXIT_USAGE: "ERROR"}[run.exit_code]
    print(f"lint {verdict}: {counts['cassettes']} cassettes ({counts['judged']} judged, {counts['judgements']} "
          f"clause judgements), {counts['fail']} failures in {counts['failing_cassettes']} cassettes, "
          f"{counts['warn']} warnings, {counts['note']} notes, {counts['error']} judge errors, "
          f"{counts['unreadable']} unreadable"
          + (" (--strict: SHOULD clauses fail)" if run.strict else ""), file=out)


def print_list(out: TextIO) -> None:
    """The clauses lint judges: ID, level and the kinds of answer its judge reads, tab-separated."""
    for clause in lint_clauses():
        kinds = ",".join(kind for kind in judges.KINDS if kind in judges.SCOPES[clause.id])
        print(f"{clause.id}\t{clause.level}\t{kinds}", file=out)


def write_json(run: LintRun, path: Path) -> None:
    """Write the result document (values that are not JSON written as their repr)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run.to_json(), indent=2, ensure_ascii=False, default=repr) + "\n",
                        encoding="utf-8")
    except OSError as exc:
        raise LintError(f"cannot write {path}: {exc}") from None


def add_lint_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `chatconform lint`."""
    parser.add_argument("paths", nargs="*", type=Path, metavar="DIR",
                        help="cassette folders (every *.json below them) or cassette files")
    parser.add_argument("--json", type=Path, metavar="FILE", dest="json_file",
                        help="also write the result as JSON to FILE")
    parser.add_argument("--strict", action="store_true", help="broken SHOULD clauses fail too (exit 1)")
    parser.add_argument("--list", action="store_true", help="print the clauses lint judges (ID, level, kinds) and exit")
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per cassette, clean ones included")


def run_lint(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run `chatconform lint` with parsed arguments; return the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    if args.list:
        print_list(out)
        return EXIT_CLEAN
    if not args.paths:
        print("chatconform lint: give a cassette folder (or file), or --list", file=err)
        return EXIT_USAGE
    try:
        run = lint(list(args.paths), strict=args.strict)
        if args.json_file is not None:
            write_json(run, args.json_file)
    except LintError as exc:
        print(f"chatconform lint: {exc}", file=err)
        return EXIT_USAGE
    for _, error in run.unreadable:
        print(f"chatconform lint: {error}", file=err)  # the error names the file and the field
    print_run(run, out, verbose=args.verbose)
    return run.exit_code


__all__ = ["EXIT_BROKEN", "EXIT_CLEAN", "EXIT_USAGE", "FORMAT", "SCOPE_NOTE", "Finding", "LintError", "LintRun",
           "Linted", "add_lint_arguments", "cassette_files", "kind_of", "lint", "lint_cassette", "lint_clauses",
           "run_lint"]
