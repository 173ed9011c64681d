"""The `chatconform` dispatcher: version, help, and subcommands discovered by entry point."""

from __future__ import annotations

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
