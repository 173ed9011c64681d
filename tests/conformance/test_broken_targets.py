"""A run against a broken target ends, bounded, with the transport clause failing and nothing judged on thin air.

Each broken server is a raw server (tests/conformance/rawserver.py): one that accepts connections and
never answers, one whose body never ends, one that sends a 1 GiB body (produced lazily, so that this
test allocates none of it), one that answers garbage, one that closes every answer midway, and one
that answers properly at first and then dies. `chatconform check <url>` runs against each in this
process with small budgets and must finish (a generous pytest-timeout; no timing assert) with exit
1, transport.answer.every-request FAIL, "unresponsive" in results.json, no ERROR, and no fuzz or
error-envelope clause passing on no evidence. The 1 GiB run goes in a child process, whose own peak
memory is then measured. The plugin's handling of what a lost request leaves behind (a fixture that
fails on the missing answer, a SHOULD fixture failure) is tested through pytester.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.check_command import PLUGIN_MODULE, _plugin_autoloaded
from tests.conformance.cli_runner import main
from tests.conformance.rawserver import RawServer, Script, json_answer, sse_head

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--timeout", "1", "--fuzz-budget", "3", "--fuzz-shrink", "0", "--burst", "0", "--quiet"]
GIB = 1 << 30
PEAK_RSS_LIMIT_KB = 1_500_000  # 1.5 GB: the 1 GiB body must never be held in memory
MODELS = json.dumps({"object": "list", "data": [{"id": "m1", "object": "model", "owned_by": "x"}]})
COMPLETION = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m1", "system_fingerprint": "fp",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
# Clause groups that judge statuses or envelopes: on a target that never answered they must not PASS.
NEEDS_ANSWERS = ("fuzz.", "errors.")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("CHATCONFORM_")]:
        monkeypatch.delenv(name)


# --- the broken servers ------------------------------------------------------------------------------------

def never_ends(request: bytes) -> Iterator[bytes | float]:
    """A 200 whose body trickles forever: a byte now and then, never the whole declared length."""
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
    while True:
        yield b" "
        yield 0.05


def huge(request: bytes) -> Iterator[bytes]:
    """A 200 with a 1 GiB body, produced 1 MiB at a time."""
    yield f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {GIB}\r\n\r\n".encode()
    piece = b" " * (1 << 20)
    for _ in range(GIB >> 20):
        yield piece


def closes_midway(request: bytes) -> list[bytes]:
    """Every answer stops halfway (the connection closes): a JSON body, or a stream before [DONE]."""
    if b'"stream": true' in request:
        return [sse_head(), b'data: {"id": "c", "object": "chat.completion.chunk", "choi']
    return [f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(COMPLETION)}\r\n\r\n"
            .encode() + COMPLETION.encode()[: len(COMPLETION) // 2]]


def dies_after(answers: int) -> Callable[[bytes], list[bytes | float]]:
    """Proper answers to the first `answers` requests, then garbage to every request."""
    seen: list[bytes] = []

    def script(request: bytes) -> list[bytes | float]:
        seen.append(request)
        if len(seen) > answers:
            return [b"\x00\x01 gone\r\n\r\n"]
        body = MODELS if request.startswith(b"GET ") else COMPLETION
        return [json_answer(200, body)]
    return script


BROKEN: dict[str, Script] = {
    "silent": [600.0],
    "never-ends": never_ends,
    "garbage": [b"\x00\x01 this is not HTTP at all\r\n\r\n"],
    "closes-midway": closes_midway,
}


# --- running the suite against them ----------------------------------------------------------------------

def run_check(url: str, report: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """`chatconform check URL` in this process; its exit code and results.json."""
    code = main(["check", url, "--report-dir", str(report), *SMALL, *extra])
    return code, json.loads((report / "results.json").read_text())


def assert_stopped_as_unresponsive(code: int, doc: dict[str, Any]) -> None:
    """Exit 1 through the transport clause; no suite ERROR; nothing that needs answers passes without them."""
    verdicts = {c["id"]: c["verdict"] for c in doc["clauses"]}
    assert code == 1, doc["summary"]
    assert verdicts["transport.answer.every-request"] == "FAIL"
    assert doc["unresponsive"].startswith("target unresponsive: ")
    assert "ERROR" not in verdicts.values(), [c for c, v in verdicts.items() if v == "ERROR"]
    passed = [c for c, v in verdicts.items() if v == "PASS" and c.startswith(NEEDS_ANSWERS)]
    assert not passed, passed
    for clause in doc["clauses"]:
        for check in clause["checks"]:
            if check.get("root") == "transport.answer.every-request":
                assert check["evidence"], check  # a lost request is never silently dropped
            judged_no_answer = check["verdict"] in ("FAIL", "WARN") and any(e["status"] == 0 for e in check["evidence"])
            assert not judged_no_answer or clause["id"].startswith("transport."), (clause["id"], check["message"])


@pytest.mark.timeout(900)
# never-ends streams until the suite's overall deadline (18 s on a quiet 2-core machine): make test-long and CI
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.long) if n == "never-ends" else n for n in BROKEN])
def test_run_against_a_broken_target_stops_with_the_transport_clause_failing(name: str, tmp_path: Path) -> None:
    with RawServer(BROKEN[name]) as server:
        code, doc = run_check(server.base_url, tmp_path / "report")
    assert_stopped_as_unresponsive(code, doc)
    assert doc["summary"]["PASS"] == 0 and doc["summary"]["ERROR"] == 0


@pytest.mark.timeout(900)
def test_a_target_that_dies_midway_leaves_its_checks_not_exercised(tmp_path: Path) -> None:
    clauses = ["response", "stream", "errors.json", "transport"]
    with RawServer(dies_after(5)) as server:
        code, doc = run_check(server.base_url, tmp_path / "report", *[a for c in clauses for a in ("--clause", c)])
    assert_stopped_as_unresponsive(code, doc)
    roots = {c["root"] for c in doc["clauses"] if c["verdict"] == "NOT_EXERCISED"}
    assert "transport.answer.every-request" in roots


CHILD = """
import json, resource, sys
from tests.conformance.cli_runner import main
code = main(["check", sys.argv[1], "--report-dir", sys.argv[2], *sys.argv[3:]])
print(json.dumps({"code": code, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


@pytest.mark.timeout(900)
def test_a_one_gib_body_is_cut_and_memory_stays_bounded(tmp_path: Path) -> None:
    report = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATCONFORM_")}
    with RawServer(huge) as server:
        child = subprocess.run([sys.executable, "-c", CHILD, server.base_url, str(report), *SMALL],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=850, check=False)
    assert child.returncode in (0, 1), child.stderr[-3000:]
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    doc = json.loads((report / "results.json").read_text())
    assert_stopped_as_unresponsive(outcome["code"], doc)
    assert outcome["peak_rss_kb"] < PEAK_RSS_LIMIT_KB, outcome
    transport = next(c for c in doc["clauses"] if c["id"] == "transport.answer.every-request")
    assert "--max-response-bytes" in json.dumps(transport["checks"][0]["actual"])


# --- what a lost request leaves behind, through the plugin -----------------------------------------------

LEFTOVERS = '''
import pytest
from conformance.registry import clause
from conformance.verdicts import Fail


@pytest.fixture(scope="session")
def first_choice(target):
    """A fixture that did not foresee a lost request: it fails on what it lacks."""
    try:
        ex = target.chat(target.body())
    except Exception:
        ex = None
    return ex.json["choices"][0]


@pytest.fixture(scope="session")
def refused():
    raise Fail("the fixture's request was refused")


@clause("response.choices.count")
def test_one(first_choice):
    """uses the fixture"""


@clause("response.choice.index")
def test_two(first_choice):
    """uses the cached fixture error"""


@clause("response.id.unique")
def test_should(refused):
    """a SHOULD clause whose fixture fails: WARN, and its body is not run"""
    raise KeyError("the body ran without its fixture")


@clause("transport.answer.every-request")
def test_transport_first_in_file(target):
    """collected first among the transport ones, run after every other check"""


@clause("response.object.value")
def test_last_in_file():
    """collected last"""
'''


def answers_the_session_start_only(request: bytes) -> list[bytes | float]:
    """The model list and the loading probes (x-wait-for-model) are answered; any other request gets garbage."""
    if request.startswith(b"GET "):
        return [json_answer(200, MODELS)]
    if b"x-wait-for-model" in request.lower():
        return [json_answer(200, COMPLETION)]
    return [b"\x00 garbage\r\n\r\n"]


def test_a_fixture_failing_on_a_lost_answer_is_not_exercised_never_an_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from conformance.checks.conftest import *  # noqa: F401,F403\n")
    pytester.makepyfile(test_leftovers=LEFTOVERS)
    report = pytester.path / "report"
    args = [] if _plugin_autoloaded() else ["-p", PLUGIN_MODULE]
    with RawServer(answers_the_session_start_only) as server:
        result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", "-v", "--base-url", server.base_url,
                                               "--chatconform-timeout", "2", "--chatconform-report-dir", str(report))
    doc = json.loads((report / "results.json").read_text())
    checks = {c["id"]: c["checks"] for c in doc["clauses"] if c["checks"][0]["nodeid"]}
    for cid in ("response.choices.count", "response.choice.index"):
        [check] = checks[cid]
        assert (check["verdict"], check["root"]) == ("NOT_EXERCISED", "transport.answer.every-request"), check
        assert "AttributeError" in check["message"] and check["evidence"]
    assert [c["verdict"] for c in checks["response.id.unique"]] == ["WARN"]  # no KeyError from its body
    ran = [line.split(" ")[0] for line in result.outlines if "::test_" in line and " " in line]
    assert ran[-1].endswith("test_transport_first_in_file"), ran
    assert "ERROR" not in {c["verdict"] for cs in checks.values() for c in cs}


@pytest.mark.timeout(900)
def test_max_response_bytes_sets_the_size_limit(tmp_path: Path) -> None:
    with RawServer(huge) as server:
        code, doc = run_check(server.base_url, tmp_path / "report", "--max-response-bytes", "1048576",
                              "--clause", "transport")
    assert (code, doc["config"]["max_response_bytes"]) == (1, 1048576)
    transport = next(c for c in doc["clauses"] if c["id"] == "transport.answer.every-request")
    assert "larger than 1048576 bytes" in json.dumps(transport["checks"][0]["actual"])
