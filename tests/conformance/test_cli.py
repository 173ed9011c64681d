"""The `chatconform` dispatcher: version, help, and subcommands discovered by entry point."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from conformance import cli


def test_version_matches_distribution_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"chatconform {cli.package_version()}"
    assert cli.package_version() != "unknown"


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: chatconform" in capsys.readouterr().err


def test_registered_subcommands_are_discovered() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "model" in sub.choices  # registered by reference_model through the entry point


def test_console_script_runs_in_a_fresh_process() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout.startswith("chatconform ")


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "usage"), [
    (["check", "--bogus-flag"], "usage: chatconform check"),
    (["model", "prepare", "--bogus-flag"], "usage: chatconform model prepare"),
    (["report", "matrix", "a.json", "--bogus-flag"], "usage: chatconform report matrix"),
    (["--bogus-flag"], "usage: chatconform [-h]"),
])
def test_an_unknown_option_prints_the_usage_of_its_subcommand(argv: list[str], usage: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith(usage) and "unrecognized arguments: --bogus-flag" in err


def test_every_subcommand_describes_itself() -> None:
    def walk(parser: object, path: str) -> list[tuple[str, object]]:
        found = [(path, parser)]
        for action in getattr(parser, "_actions", []):
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found += walk(child, f"{path} {name}")
        return found

    missing = [path for path, parser in walk(cli.build_parser(), "chatconform")[1:]
               if not getattr(parser, "description", None)]
    assert missing == []
