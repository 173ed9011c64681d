"""The `chatconform` command: one dispatcher, subcommands contributed by each package.

Each package registers its subcommands through the `chatconform.commands` entry-point group
(see pyproject.toml), so this module never imports `mock_server` or `reference_model`: the
layering of DESIGN.md holds for the CLI too. A registration function receives the argparse
sub-parsers object, adds one or more parsers and sets `func`, a callable `(args) -> int`.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Callable, Sequence

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
        register: Callable[[argparse._SubParsersAction], None] = ep.load()
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - `python -m conformance.cli`
    sys.exit(main())
