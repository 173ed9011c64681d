"""The `chatconform` command: one dispatcher, subcommands contributed by each package.

Each package registers its subcommands through the `chatconform.commands` entry-point group
(see pyproject.toml), so this module never imports `mock_server` or `reference_model`: the
layering of the packages holds for the CLI too. A registration function receives the argparse
sub-parsers object, adds one or more parsers and sets `func`, a callable `(args) -> int`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

ENTRY_POINT_GROUP = "chatconform.commands"


def package_version() -> str:
    """Return the installed chatconform version (or 'unknown' when run from a bare checkout)."""
    try:
        return version("chatconform")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="chatconform",
        description="Conformance suite and real-model mock provider for /v1/chat/completions.",
    )
    parser.add_argument("--version", action="version", version=f"chatconform {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = ep.load()
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # an unknown option belongs to the subcommand's usage, not the top-level one
        _innermost(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`chatconform check --list | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest sub-parser the parsed arguments went through (`check`, `model prepare`, `report matrix`)."""
    current = parser
    while True:
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, actions[0].dest, None) if actions and actions[0].dest else None
        if not actions or chosen not in actions[0].choices:
            return current
        current = actions[0].choices[chosen]


def register_check(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `chatconform check` (the conformance suite)."""
    from conformance.check_command import add_check_arguments, run_check

    parser = subparsers.add_parser(
        "check", help="run the conformance suite against a server (default: the embedded mock provider)",
        description="Run the conformance suite. Exit 0: every required clause passes (or is listed in --expect); "
                    "1: a required clause failed (or, under --repeat, gave different verdicts in different runs); "
                    "2: suite-side error (bad configuration, unreachable target); "
                    "3: no check was executed.")
    add_check_arguments(parser)
    parser.set_defaults(func=run_check)
    from conformance.reference.export import register_reference

    register_reference(subparsers)  # no entry point of its own: `reference export` travels with `check`


def register_report(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `chatconform report matrix` (compare several runs)."""
    parser = subparsers.add_parser(
        "report", help="render reports from results.json files",
        description="Render reports from the results.json files that `chatconform check` writes.")
    kinds = parser.add_subparsers(dest="report_kind", metavar="KIND", required=True)
    matrix = kinds.add_parser(
        "matrix", help="one page comparing several runs (rows clauses, columns targets)",
        description="Write one self-contained HTML page comparing several runs: a row per clause, a column per "
                    "results.json (a server, a release, a gateway), each cell the clause's verdict there.")
    matrix.add_argument("results", nargs="+", type=Path, help="results.json files")
    matrix.add_argument("-o", "--output", type=Path, default=Path("matrix.html"), help="output HTML file")
    matrix.set_defaults(func=_run_matrix)
    register_diff(subparsers)  # no entry point of its own: it travels with `report`


def register_diff(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `chatconform diff A B` (the verdicts of two runs side by side)."""
    from conformance.diff import RULE, add_diff_arguments, run_diff

    parser = subparsers.add_parser(
        "diff", help="compare the verdicts of two runs (results.json, report folder or live URL)",
        description="Compare the clause verdicts of run A (the reference: a previous release, an upstream) with "
                    "run B (the candidate: a new release, a gateway): a table of the clauses whose verdict "
                    "differs, with each side's first message, and counts of regressed, changed, improved, "
                    "only-in-A, only-in-B and unchanged clauses. " + RULE)
    add_diff_arguments(parser)
    parser.set_defaults(func=run_diff)


def register_lint(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `chatconform lint DIR` (the single-exchange rules judged over recorded exchanges)."""
    from conformance.lint import SCOPE_NOTE, add_lint_arguments, run_lint

    parser = subparsers.add_parser(
        "lint", help="judge recorded exchanges (cassettes) offline against the spec's single-exchange rules",
        description="Judge recorded exchanges (the cassettes of `chatconform serve --record`, or hand-written "
                    "ones) with the suite's clause judges, without a server: each problem is printed with its file, "
                    "clause ID and level. " + SCOPE_NOTE + " Exit 0: no MUST clause broken (SHOULD problems are "
                    "warnings); 1: a MUST clause is broken (or a SHOULD one, with --strict); 2: an unreadable "
                    "cassette or a usage error.")
    add_lint_arguments(parser)
    parser.set_defaults(func=run_lint)


def _run_matrix(args: argparse.Namespace) -> int:
    from conformance.report.matrix import write_matrix
    from conformance.results import ResultsError

    try:
        out = write_matrix(list(args.results), args.output)
    except ResultsError as exc:
        print(f"chatconform report matrix: {exc}", file=sys.stderr)
        return 2
    print(f"matrix of {len(args.results)} runs written to {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m conformance.cli`
    sys.exit(main())
