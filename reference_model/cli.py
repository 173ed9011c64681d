"""`chatconform model ...`: prepare and inspect the reference model (filled in by issue 3)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `model` subcommand group."""
    parser = subparsers.add_parser("model", help="prepare and inspect the reference model")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
