"""The pytest plugin, driven through pytester: selection, verdict mapping, results and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.check_command import PLUGIN_MODULE, _plugin_autoloaded
from conformance.embedded import free_port

pytest_plugins = ["pytester"]

OUTCOMES = '''
from conformance.registry import clause
from conformance.verdicts import Fail, Ignored, NotApplicable, Unsupported


@clause("request.messages.accepted")
def test_must_passes():
    """MUST, passes."""


@clause("response.id.present")
def test_must_fails():
    """MUST, fails."""
    raise Fail("id missing", expected="non-empty string", actual=None)


@clause("response.id.unique")
def test_should_fails():
    """SHOULD, fails: a WARN unless strict."""
    raise Fail("ids repeat", expected="different", actual="same")


@clause("request.n.multiple")
def test_may_unsupported():
    """MAY, refused clearly."""
    raise Unsupported("n 2 refused")


@clause("headers.x-use-cache.cached-identical")
def test_may_ignored():
    """MAY, accepted but without effect."""
    raise Ignored("cache ignored")


@clause("headers.authorization.required")
def test_not_applicable():
    """Cannot be observed."""
    raise NotApplicable("no key")


@clause("response.object.value")
def test_suite_bug():
    """A bug in the check itself is a suite-side ERROR."""
    raise KeyError("oops")
'''


def plugin_args() -> list[str]:
    return [] if _plugin_autoloaded() else ["-p", PLUGIN_MODULE]


@pytest.fixture
def checks_dir(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest("from conformance.checks.conftest import *  # noqa: F401,F403\n")
    pytester.makepyfile(test_outcomes=OUTCOMES)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    report = pytester.path / "report"
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "--base-url", "http://127.0.0.1:9",
                                "--chatconform-report-dir", str(report), *args)
    doc = json.loads((report / "results.json").read_text()) if (report / "results.json").exists() else {}
    return result, doc


def verdicts(doc: dict) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in doc["clauses"] if c["checks"][0]["nodeid"]}


def test_exceptions_map_to_verdicts_and_pytest_outcomes(checks_dir: pytest.Pytester) -> None:
    result, doc = run(checks_dir)
    assert verdicts(doc) == {
        "request.messages.accepted": "PASS", "response.id.present": "FAIL", "response.id.unique": "WARN",
        "request.n.multiple": "UNSUPPORTED", "headers.x-use-cache.cached-identical": "IGNORED",
        "headers.authorization.required": "SKIPPED", "response.object.value": "ERROR",
    }
    result.assert_outcomes(passed=2, failed=2, skipped=3)
    failed = next(c for c in doc["clauses"] if c["id"] == "response.id.present")["checks"][0]
    assert failed["message"] == "id missing" and failed["expected"] == "non-empty string"
    assert doc["summary"]["checks"] == 7 and doc["format_version"] == 2


def test_strict_turns_should_failures_into_failures(checks_dir: pytest.Pytester) -> None:
    result, doc = run(checks_dir, "--chatconform-strict")
    assert verdicts(doc)["response.id.unique"] == "FAIL"
    result.assert_outcomes(passed=1, failed=3, skipped=3)
    assert doc["config"]["strict"] is True


def test_clause_prefix_and_profile_deselect_other_checks(checks_dir: pytest.Pytester) -> None:
    result, doc = run(checks_dir, "--chatconform-clause", "response.id")
    result.assert_outcomes(failed=1, passed=1, deselected=5)
    assert [c["id"] for c in doc["clauses"]] == ["response.id.present", "response.id.unique"]
    result, doc = run(checks_dir, "--chatconform-profile", "headers")
    result.assert_outcomes(skipped=2, deselected=5)
    assert {c["group"] for c in doc["clauses"]} == {"headers"}
    missing = next(c for c in doc["clauses"] if c["id"] == "headers.loading.503")
    assert missing["verdict"] == "SKIPPED" and missing["checks"][0]["message"] == "no check yet"


def test_expected_failures_become_xfail(checks_dir: pytest.Pytester) -> None:
    expect = checks_dir.path / "expect.txt"
    expect.write_text("# known\nresponse.id.present  # id\n")
    result, doc = run(checks_dir, "--chatconform-expect", str(expect))
    result.assert_outcomes(passed=2, failed=1, skipped=3, xfailed=1)
    assert next(c for c in doc["clauses"] if c["id"] == "response.id.present")["expected_failure"] is True


def test_unknown_clause_id_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad='''
from conformance.registry import clause

@clause("no.such.clause")
def test_x():
    """x"""
''')
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "--base-url", "http://127.0.0.1:9")
    result.stdout.fnmatch_lines(["*no.such.clause*no such clause*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_unreachable_target_stops_the_run_with_exit_2(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from conformance.checks.conftest import *  # noqa: F401,F403\n")
    pytester.makepyfile(test_net='''
from conformance.registry import clause

@clause("request.messages.accepted")
def test_a(target):
    """needs the target"""

@clause("response.id.present")
def test_b(target):
    """needs the target"""
''')
    report = pytester.path / "r"
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "--base-url",
                                f"http://127.0.0.1:{free_port()}", "--chatconform-report-dir", str(report))
    assert result.ret == 2
    assert "target unreachable" in result.stdout.str() + result.stderr.str()
    doc = json.loads((report / "results.json").read_text())
    assert "cannot connect" in doc["unreachable"]


def test_missing_base_url_is_a_usage_error(checks_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATCONFORM_BASE_URL", raising=False)
    result = checks_dir.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "base_url: required" in result.stderr.str()


def test_plugin_is_inert_without_clause_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not Path(pytester.path / "reports").exists()


GOOD_NEIGHBOUR = '''
def pytest_addoption(parser):
    # options another project's conftest or plugin may own: chatconform must not claim them
    for name in ("--model", "--seed", "--delay", "--api-key", "--profile", "--clause", "--expect", "--report-dir"):
        parser.addoption(name)


def test_uses_pytest_base_url(base_url, request):
    assert base_url == "http://app.example:8000"
    assert request.config.getoption("--model") == "m1"
'''


def test_the_plugin_is_a_good_neighbour_of_pytest_base_url_and_other_plugins(pytester: pytest.Pytester) -> None:
    """Another project with pytest-base-url and options of the same plain names runs as if we were absent."""
    pytester.makeconftest(GOOD_NEIGHBOUR.split("\n\n\ndef test_")[0])
    pytester.makepyfile(test_app="def test_" + GOOD_NEIGHBOUR.split("\n\n\ndef test_")[1])
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "--base-url",
                                           "http://app.example:8000", "--model", "m1", "--seed", "3")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*1 passed*"])
    assert not (pytester.path / "reports").exists()  # inert: no report for a project without clause checks
