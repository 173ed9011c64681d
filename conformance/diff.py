"""`chatconform diff A B`: the verdicts of two runs side by side, what changed and why.

For a provider comparing two releases, or a gateway against its upstream: A is the reference, B the
candidate. Each side is a results.json file, a report folder holding one, or a live base URL (the
suite is run against it first, into the default report folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from conformance.gate import required
from conformance.progress import STYLES
from conformance.results import ResultsError, load_results
from conformance.verdicts import SEVERITY, Verdict

EXIT_SAME_OR_BETTER, EXIT_WORSE, EXIT_UNREADABLE = 0, 1, 2
DIFF_FORMAT = "chatconform-diff"
DIFF_FORMAT_VERSION = 1
# Kinds of change of one clause, in the order the table lists them.
REGRESSED, CHANGED, IMPROVED, ONLY_IN_A, ONLY_IN_B, UNCHANGED = (
    "regressed", "changed", "improved", "only_in_a", "only_in_b", "unchanged")
KINDS = (REGRESSED, CHANGED, IMPROVED, ONLY_IN_A, ONLY_IN_B, UNCHANGED)
# What the clause verdict can not judge: a move to one of them is never an improvement.
UNOBSERVED = frozenset({str(Verdict.SKIPPED), str(Verdict.NOT_EXERCISED)})
# Config keys whose difference can explain a verdict change; named on the console when they differ.
COMPARED_CONFIG = ("model", "dialect", "profile", "clause_prefixes", "strict", "seed", "fuzz_budget", "burst",
                   "concurrency", "repeat")
MESSAGE_WIDTH = 160

RULE = (
    "A clause got worse (regressed) when its verdict in B is more severe than in A, in the order "
    "ERROR, FAIL, FLAKY, IGNORED, WARN, NOT_EXERCISED, UNSUPPORTED, PASS; SKIPPED (nothing observable) "
    "ranks with PASS. So SKIPPED -> FAIL and PASS -> NOT_EXERCISED regressed. A move to SKIPPED is never a "
    "regression, and a move to SKIPPED or NOT_EXERCISED is never an improvement (B judged nothing): both "
    "are listed as changed, like PASS <-> SKIPPED. Exit 0: no required clause (MUST; SHOULD too with "
    "--strict, at its level in B) regressed; 1: one did; 2: a side could not be read (or its live run "
    "failed). Clauses in only one side never change the exit code."
)


def _rank(verdict: str) -> int:
    """Position in SEVERITY (0 is the worst), SKIPPED counted as PASS."""
    v = Verdict(verdict)
    return SEVERITY.index(Verdict.PASS if v is Verdict.SKIPPED else v)


def classify(a: str, b: str) -> str:
    """The kind of change from verdict `a` to verdict `b` (the rule of RULE)."""
    if a == b:
        return UNCHANGED
    if b == Verdict.SKIPPED:
        return CHANGED
    if _rank(b) < _rank(a):
        return REGRESSED
    if _rank(b) > _rank(a) and b not in UNOBSERVED:
        return IMPROVED
    return CHANGED


def clause_reason(clause: dict[str, Any]) -> str:
    """Why a clause has its verdict, in one piece of text: the first message behind that verdict."""
    verdict = clause["verdict"]
    if verdict == Verdict.NOT_EXERCISED and clause.get("because"):
        return str(clause["because"])
    checks = clause.get("checks") or []
    message = next((c.get("message") for c in checks if c.get("verdict") == verdict and c.get("message")), None)
    message = message or next((c.get("message") for c in checks if c.get("message")), "") or ""
    if verdict == Verdict.FLAKY:
        runs = ", ".join(clause.get("runs") or [])
        run = clause.get("evidence_run")
        return f"verdicts per run: {runs}" + (f"; run {run}: {message}" if run and message else "")
    return str(message)


def _side(doc: dict[str, Any], source: str) -> dict[str, Any]:
    target = doc.get("target") or {}
    return {"source": source, "base_url": target.get("base_url"), "model": target.get("model"),
            "started": doc.get("started"), "suite_version": doc.get("suite_version"),
            "catalogue_version": doc.get("catalogue_version"), "format_version": doc.get("format_version")}


def _entry(clause: dict[str, Any] | None) -> dict[str, Any] | None:
    if clause is None:
        return None
    return {"verdict": clause["verdict"], "message": clause_reason(clause)}


def diff_documents(doc_a: dict[str, Any], doc_b: dict[str, Any], *, strict: bool = False,
                   source_a: str = "A", source_b: str = "B") -> dict[str, Any]:
    """The machine-readable diff of two results documents (what `--json` writes).

    `clauses` lists every clause whose verdict differs or that is in one side only, regressions
    first; `counts` counts every kind, unchanged included; `worse_required` names the required
    clauses that regressed, and `exit_code` follows from it.
    """
    in_a = {c["id"]: c for c in doc_a["clauses"]}
    in_b = {c["id"]: c for c in doc_b["clauses"]}
    order = list(in_a) + [cid for cid in in_b if cid not in in_a]
    counts = dict.fromkeys(KINDS, 0)
    rows, worse = [], []
    for cid in order:
        a, b = in_a.get(cid), in_b.get(cid)
        kind = ONLY_IN_B if a is None else ONLY_IN_A if b is None else classify(a["verdict"], b["verdict"])
        counts[kind] += 1
        if kind == UNCHANGED:
            continue
        level = (b or a or {}).get("level", "")
        if kind == REGRESSED and required(level, strict):
            worse.append(cid)
        rows.append({"id": cid, "level": level, "change": kind, "required": required(level, strict),
                     "a": _entry(a), "b": _entry(b)})
    rows.sort(key=lambda r: KINDS.index(r["change"]))  # stable: catalogue order within a kind
    return {
        "format": DIFF_FORMAT, "format_version": DIFF_FORMAT_VERSION, "strict": strict,
        "a": _side(doc_a, source_a), "b": _side(doc_b, source_b),
        "config_differences": config_differences(doc_a, doc_b),
        "counts": counts, "worse_required": worse, "clauses": rows,
        "exit_code": EXIT_WORSE if worse else EXIT_SAME_OR_BETTER,
    }


def config_differences(doc_a: dict[str, Any], doc_b: dict[str, Any]) -> dict[str, list[Any]]:
    """Run settings that differ between the sides ({key: [A, B]}): they may explain a changed verdict."""
    config_a, config_b = doc_a.get("config") or {}, doc_b.get("config") or {}
    return {key: [config_a.get(key), config_b.get(key)] for key in COMPARED_CONFIG
            if config_a.get(key) != config_b.get(key)}


def diff_table(diff: dict[str, Any]) -> Table | None:
    """The rich table of clauses whose verdict differs (None when there are none)."""
    if not diff["clauses"]:
        return None
    table = Table(title="clauses whose verdict differs (A -> B)", title_justify="left")
    for name in ("change", "level", "clause", "A -> B"):
        table.add_column(name, no_wrap=True)  # whole IDs and verdicts, to copy or grep
    for name in ("A says", "B says"):
        table.add_column(name, overflow="fold")
    for row in diff["clauses"]:
        a, b = row["a"], row["b"]
        change = f"[bold red]{row['change']}[/]" if row["change"] == REGRESSED and row["required"] else row["change"]
        table.add_row(change, row["level"], row["id"], f"{_badge(a)} -> {_badge(b)}", _first_line(a), _first_line(b))
    return table


def _badge(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "(absent)"
    return f"[{STYLES.get(entry['verdict'], '')}]{entry['verdict']}[/]"


def _first_line(entry: dict[str, Any] | None) -> str:
    if entry is None or not entry["message"]:
        return ""
    return str(entry["message"]).splitlines()[0][:MESSAGE_WIDTH]  # a str (clause_reason), read back from JSON


def print_diff(diff: dict[str, Any], console: Console) -> None:
    """The sides, the differing clauses, the counts and the exit line, on the console."""
    for name in ("a", "b"):
        side = diff[name]
        console.print(f"{name.upper()}: {side['source']}: {side['base_url']} {side['model'] or ''} started "
                      f"{side['started']} (suite {side['suite_version']}, catalogue {side['catalogue_version']})",
                      markup=False)
    for key, (value_a, value_b) in diff["config_differences"].items():
        console.print(f"config differs: {key}: {value_a!r} -> {value_b!r}", markup=False)
    table = diff_table(diff)
    if table is not None:
        console.print(table)
    counts = diff["counts"]
    console.print(", ".join(f"{counts[kind]} {kind.replace('_', '-')}" for kind in KINDS))
    if diff["worse_required"]:
        console.print(f"[bold red]required clauses worse in B[/]: {', '.join(diff['worse_required'])}")
    console.print(f"diff: exit {diff['exit_code']}: "
                  + ("a required clause got worse" if diff["worse_required"] else "no required clause got worse"))


def add_diff_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `chatconform diff`."""
    for name, role in (("a", "the reference (e.g. the previous release, or the upstream)"),
                       ("b", "the candidate (e.g. the new release, or the gateway)")):
        parser.add_argument(name, metavar=name.upper(),
                            help=f"{role}: a results.json file, a report folder holding one, or a live base URL "
                                 "(http:// or https://) to run the suite against first")
    parser.add_argument("--strict", action="store_true", help="SHOULD clauses count as required, like MUST")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the diff as JSON to FILE")
    parser.add_argument("--clause", action="append", default=[], metavar="PREFIX",
                        help="live URL sides only: run only clauses whose ID starts with PREFIX (repeatable)")
    parser.add_argument("--profile", help="live URL sides only: the named set of clause groups to run")


def load_side(source: str, args: argparse.Namespace) -> dict[str, Any]:
    """The results document of one side: read from a file or folder, or produced by a live run."""
    if source.startswith(("http://", "https://")):
        return load_results(_run_live(source, args))
    path = Path(source)
    return load_results(path / "results.json" if path.is_dir() else path)


def _run_live(base_url: str, args: argparse.Namespace) -> Path:
    """Run `chatconform check` against base_url into its default report folder; that folder's results.json."""
    from conformance.check_command import add_check_arguments, run_check
    from conformance.gate import EXIT_SUITE_ERROR
    from conformance.plugin import default_report_dir

    report_dir = first = default_report_dir(base_url)
    for n in range(2, 100):  # the same URL on both sides within one second: keep both reports
        if not report_dir.exists():
            break
        report_dir = first.with_name(f"{first.name}-{n}")
    argv = [base_url, "--quiet", "--report-dir", str(report_dir)] + [f"--clause={p}" for p in args.clause]
    if args.profile:
        argv += ["--profile", args.profile]
    parser = argparse.ArgumentParser(prog="chatconform check")
    add_check_arguments(parser)
    code = run_check(parser.parse_args(argv))
    if code == EXIT_SUITE_ERROR or code >= 128:
        raise ResultsError(f"{base_url}: the check run ended with exit code {code}; no results to compare")
    return report_dir / "results.json"


def run_diff(args: argparse.Namespace) -> int:
    """The `diff` subcommand: 0 when no required clause got worse from A to B, 1 when one did, 2 on bad input."""
    console = Console()
    try:
        doc_a, doc_b = load_side(args.a, args), load_side(args.b, args)
    except ResultsError as exc:
        print(f"chatconform diff: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        diff = diff_documents(doc_a, doc_b, strict=args.strict, source_a=args.a, source_b=args.b)
    except (KeyError, TypeError, ValueError) as exc:  # the right format, but damaged clause records
        print(f"chatconform diff: a clause record is damaged ({type(exc).__name__}: {exc})", file=sys.stderr)
        return EXIT_UNREADABLE
    print_diff(diff, console)
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(diff, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"chatconform diff: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_UNREADABLE
    return int(diff["exit_code"])
