"""The chatconform dispatcher with this package's commands, independent of installed entry points."""

from __future__ import annotations

import argparse

from conformance.cli import register_check, register_report


def main(argv: list[str]) -> int:
    """Parse argv for the `check` and `report` commands and run the chosen one; its exit code."""
    parser = argparse.ArgumentParser(prog="chatconform")
    sub = parser.add_subparsers(dest="command")
    register_check(sub)
    register_report(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))
