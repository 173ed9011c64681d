"""`chatconform check` end to end against the tiny mock: exit codes 0/1/2/3, --list, --expect, the embedded mock."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conformance import check_command
from conformance.embedded import EmbeddedMock, embedded_max_queue, free_port
from spec.clauses import load_catalogue
from tests.conformance.breakers import KEYED_TOKEN
from tests.conformance.cli_runner import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHATCONFORM_BASE_URL", "CHATCONFORM_API_KEY", "CHATCONFORM_MODEL", "CHATCONFORM_CLAUSE",
                 "CHATCONFORM_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def check(tmp_path: Path, *args: str) -> tuple[int, dict, dict]:
    report = tmp_path / "report"
    code = main(["check", *args, "--report-dir", str(report), "--quiet"])
    doc = json.loads((report / "results.json").read_text()) if (report / "results.json").exists() else {}
    gate = json.loads((report / "gate.json").read_text()) if (report / "gate.json").exists() else {}
    return code, doc, gate


def test_passing_run_exits_0_and_writes_the_reports(tiny_mock: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, gate = check(tmp_path, tiny_mock, "--clause", "response.id", "--clause", "routes.models")
    assert code == 0 and gate["code"] == 0
    assert [c["id"] for c in doc["clauses"]] == ["response.id.present", "response.id.unique",
                                                 "routes.models.lists-served", "routes.models.entry"]
    assert {c["verdict"] for c in doc["clauses"]} == {"PASS"}
    assert doc["target"]["models"] == ["chatconform/tiny-random"]
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["gate.json", "index.html", "junit.xml",
                                                                       "results.json"]
    out = capsys.readouterr().out
    assert "gate: exit 0" in out and "index.html" in out


def test_failing_required_clause_exits_1_and_expect_turns_it_into_0(keyed_mock: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, gate = check(tmp_path, keyed_mock, "--api-key", "wrong-key", "--clause", "request.messages.accepted")
    assert code == 1 and gate["regressions"] == ["request.messages.accepted"]
    evidence = doc["clauses"][0]["checks"][0]["evidence"][0]
    assert evidence["status"] == 401 and evidence["request"]["headers"]["Authorization"] == "***"
    assert "wrong-key" not in (tmp_path / "report" / "results.json").read_text()
    assert "request.messages.accepted" in capsys.readouterr().out  # named in the summary table
    expect = tmp_path / "expect.txt"
    expect.write_text("# known failures\nrequest.messages.accepted   # wrong key on purpose\n")
    code, _, gate = check(tmp_path, keyed_mock, "--api-key", "wrong-key", "--clause", "request.messages.accepted",
                          "--expect", str(expect))
    assert code == 0 and gate["expected"] == ["request.messages.accepted"] and gate["regressions"] == []


def test_expected_failure_that_passes_is_reported_fixed(keyed_mock: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    expect = tmp_path / "expect.txt"
    expect.write_text("headers.authorization.required\n")
    code, doc, gate = check(tmp_path, keyed_mock, "--api-key", KEYED_TOKEN, "--clause", "headers.authorization",
                            "--expect", str(expect))
    assert code == 0 and gate["fixed"] == ["headers.authorization.required"]
    assert "fixed" in capsys.readouterr().out
    verdicts = {c["id"]: c["verdict"] for c in doc["clauses"]}
    assert verdicts["headers.authorization.invalid"] == "PASS"
    assert verdicts["headers.authorization.ignored-when-open"] == "SKIPPED"


def test_unreachable_target_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = check(tmp_path, f"http://127.0.0.1:{free_port()}", "--clause", "response.id")
    assert code == 2
    assert "target unreachable" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--timeout", "-1"], "timeout: must be a number > 0"),
    (["--clause", "no.such"], "clause: prefix 'no.such' selects no active clause"),
    (["--seed", "1", "ftp://x"], "base_url: must start with http:// or https://"),
])
def test_bad_configuration_exits_2_naming_the_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        args: list[str], message: str) -> None:
    argv = args if any(a.startswith("ftp") for a in args) else ["http://127.0.0.1:9", *args]
    code, _, _ = check(tmp_path, *argv)
    assert code == 2
    assert message in capsys.readouterr().err.replace("\n", " ")


def test_expect_file_with_unknown_clause_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = tmp_path / "e.txt"
    expect.write_text("response.id.present\nbogus.clause.id\n")
    code, _, _ = check(tmp_path, "http://127.0.0.1:9", "--expect", str(expect))
    assert code == 2
    assert "e.txt:2: unknown clause id 'bogus.clause.id'" in capsys.readouterr().err.replace("\n", "")


def test_run_without_executed_checks_exits_3(tiny_mock: str, tmp_path: Path) -> None:
    # without --api-key the authorization.required clause is not applicable: nothing is executed
    code, doc, gate = check(tmp_path, tiny_mock, "--clause", "headers.authorization.required")
    assert code == 3 and gate["reason"] == "no check was executed"
    assert doc["clauses"][0]["verdict"] == "SKIPPED"


def test_list_prints_the_selected_clauses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list", "--profile", "streaming", "--clause", "stream.usage"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = [c for c in load_catalogue().by_group("streaming") if c.id.startswith("stream.usage.")]
    assert [line.split("\t")[0] for line in lines] == [c.id for c in expected]
    assert lines[0].split("\t")[1:3] == [str(expected[0].level), "streaming"]


def test_embedded_mock_runs_with_a_token_and_is_stopped(tmp_path: Path) -> None:
    code, doc, _ = check(tmp_path, "--mock-model", "tiny", "--clause", "headers.authorization",
                         "--clause", "headers.loading")
    verdicts = {c["id"]: c["verdict"] for c in doc["clauses"]}
    assert code == 0
    assert verdicts["headers.authorization.required"] == "PASS"  # the embedded mock requires a fresh token
    assert verdicts["headers.loading.503"] == "PASS"  # its load delay makes the loading state observable
    assert doc["config"]["api_key"] == "***"
    with pytest.raises(httpx.ConnectError):
        httpx.get(doc["target"]["base_url"] + "/health", timeout=2)


def test_embedded_mock_is_stopped_on_interrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[EmbeddedMock] = []
    original = EmbeddedMock.start

    def record(self: EmbeddedMock, on_step: Callable[[str], None] | None = None) -> str:
        started.append(self)
        return original(self, on_step)

    def interrupt(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(EmbeddedMock, "start", record)
    monkeypatch.setattr(check_command.pytest, "main", interrupt)
    code, _, _ = check(tmp_path, "--mock-model", "tiny", "--mock-load-delay", "0")
    assert code == check_command.EXIT_INTERRUPTED
    assert started and started[0].process is not None and started[0].process.poll() is not None


def test_embedded_mock_queue_is_shallow_enough_for_the_burst() -> None:
    assert [embedded_max_queue(c) for c in (1, 4, 5, 8)] == [0, 0, 2, 8]  # capacity max(8, 2 x concurrency)
    command = EmbeddedMock(model="tiny", max_queue=embedded_max_queue(1)).command()
    assert command[command.index("--max-batch") + 1] == "8" and command[command.index("--max-queue") + 1] == "0"


def test_burst_provokes_429_from_the_embedded_mock(tmp_path: Path) -> None:
    code, doc, _ = check(tmp_path, "--mock-model", "tiny", "--mock-load-delay", "0", "--clause", "headers.retry-after")
    clause = doc["clauses"][0]
    assert (code, clause["id"], clause["verdict"]) == (0, "headers.retry-after.429", "PASS"), clause


def test_a_target_that_never_429s_leaves_the_clause_skipped(tiny_mock: str, tmp_path: Path) -> None:
    # the open tiny mock queues 40 requests: a burst of 16 never overflows it
    code, doc, _ = check(tmp_path, tiny_mock, "--clause", "headers.retry-after")
    check_result = doc["clauses"][0]["checks"][0]
    assert (code, doc["clauses"][0]["verdict"]) == (3, "SKIPPED")
    assert "not even to 3 bursts of 16 concurrent requests" in check_result["message"]


def test_concurrency_4_gives_the_verdicts_of_concurrency_1(tiny_mock: str, tmp_path: Path) -> None:
    clauses = ["params.seed", "params.temperature", "params.max-tokens.respected", "params.penalties.negative-accepted",
               "errors.client-input.never-5xx", "response.id.unique", "stream.content.parity", "usage.stream.parity",
               "routes.model-path.equivalent", "tools.definition.arguments-alias", "tools.stream.parity",
               "logprobs.value", "headers.x-use-cache.false-fresh", "message.user.parts-equivalent"]
    args = [arg for clause in clauses for arg in ("--clause", clause)]
    code, doc, _ = check(tmp_path / "one", tiny_mock, *args)
    code4, doc4, _ = check(tmp_path / "four", tiny_mock, "--concurrency", "4", *args)
    verdicts = {c["id"]: c["verdict"] for c in doc["clauses"]}
    assert doc4["config"]["concurrency"] == 4 and code4 == code == 0
    assert {c["id"]: c["verdict"] for c in doc4["clauses"]} == verdicts and set(verdicts.values()) == {"PASS"}


def test_fuzz_pass_reports_how_many_requests_it_sent(tiny_mock: str, tmp_path: Path) -> None:
    code, doc, _ = check(tmp_path, tiny_mock, "--clause", "fuzz.valid", "--fuzz-budget", "5")
    assert code == 0
    [clause] = doc["clauses"]
    message = clause["checks"][0]["message"]
    assert clause["verdict"] == "PASS" and re.search(r"positive: [1-9]\d* requests \(\d+ random", message), message
    assert re.search(r"negative: [1-9]\d* requests", message), message
