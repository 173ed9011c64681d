"""Every check can fail: the suite, run against a proxy that breaks one clause, flags that clause.

Three layers. The catalogue is linted (names unique, clause IDs real, at least 40 breakers). The
proxy is tested on its own: it forwards faithfully, and each kind of rewrite visibly changes the
traffic. Then, per breaker, `chatconform check <proxy> --clause <id>... --strict` (in-process) must
give every clause the breaker declares verdict FAIL (or IGNORED: accepted, effect absent) and exit 1
(0 when all its clauses are MAY, which never gate). The unbroken mock, seen through the identity
proxy, must pass every MUST and SHOULD clause; a breaker whose clause already fails there proves
nothing and is reported as such.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest

from spec.clauses import load_catalogue
from tests.conformance.breakers import (
    BREAKERS,
    BREAKERS_BY_NAME,
    IDENTITY,
    KEYED_TOKEN,
    Breaker,
    BreakingProxy,
)
from tests.conformance.breakers_reference import ORACLE_URL

# Clauses the tiny model cannot show passing: with random weights, penalties change words unpredictably.
TINY_UNOBSERVABLE = frozenset({"params.frequency-penalty.reduces-repetition",
                               "params.presence-penalty.reduces-repetition"})
BAD_VERDICTS = ("FAIL", "WARN", "ERROR", "IGNORED")
FLAGGED = ("FAIL", "IGNORED")  # IGNORED: accepted with 200, effect absent (a failure of the clause too)
CATALOGUE = load_catalogue()
UPSTREAMS = {"open": "proxy", "keyed": "keyed_proxy", "loading": "loading_proxy"}  # Breaker.upstream -> fixture
BASELINE_ARGS = ("--fuzz-budget", "10")

USER = [{"role": "user", "content": "Write a long story about a cat."}]


def chat(proxy: BreakingProxy, **fields: Any) -> httpx.Response:
    """POST a chat request (max_tokens 8 unless given) through the proxy."""
    return httpx.post(proxy.url + "/v1/chat/completions", json={"messages": USER, "max_tokens": 8, **fields},
                      timeout=60)


def events(response: httpx.Response) -> list[str]:
    """The data payloads of an SSE answer."""
    return [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]


# --- the catalogue ----------------------------------------------------------------------------------------

def test_catalogue_has_forty_distinct_breakers_naming_real_clauses() -> None:
    """At least 40 breakers, unique names, each naming one or more active clause IDs of spec/clauses.yaml."""
    active = {c.id for c in CATALOGUE.active()}
    assert len(BREAKERS) >= 40
    assert len(BREAKERS_BY_NAME) == len(BREAKERS), "breaker names repeat"
    for breaker in BREAKERS:
        assert breaker.clauses, f"{breaker.name}: declares no clause"
        unknown = set(breaker.clauses) - active
        assert not unknown, f"{breaker.name}: clause IDs not active in the catalogue: {sorted(unknown)}"
        assert breaker.request or breaker.reply, f"{breaker.name}: changes nothing"
        assert breaker.upstream in UPSTREAMS, f"{breaker.name}: unknown upstream {breaker.upstream!r}"


# --- the proxy itself ---------------------------------------------------------------------------------------

def test_identity_proxy_forwards_answers_unchanged(proxy: BreakingProxy, tiny_mock: str) -> None:
    """Without a breaker, routes, statuses, content types and seeded content equal the mock's own."""
    proxy.use(IDENTITY)
    assert httpx.get(proxy.url + "/v1/models").json() == httpx.get(tiny_mock + "/v1/models").json()
    body = {"messages": USER, "max_tokens": 8, "seed": 3, "temperature": 1.0}
    direct = httpx.post(tiny_mock + "/v1/chat/completions", json=body, timeout=60)
    via = httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=60)
    assert via.status_code == direct.status_code == 200
    assert via.headers["content-type"] == direct.headers["content-type"]
    assert via.json()["choices"] == direct.json()["choices"]
    bad = chat(proxy, max_tokens=-1)
    assert bad.status_code == 422 and "max_tokens" in bad.json()["error"]
    stream = chat(proxy, stream=True)
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert events(stream)[-1] == "[DONE]" and stream.text.endswith("data: [DONE]\n\n")


def test_answer_rewrites_change_only_the_broken_field(proxy: BreakingProxy) -> None:
    """usage-total-off-by-one adds one to total_tokens and leaves the rest of usage alone."""
    usage = chat(proxy.use(BREAKERS_BY_NAME["usage-total-off-by-one"])).json()["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] + 1
    assert "id" not in chat(proxy.use(BREAKERS_BY_NAME["no-id"])).json()
    choice = chat(proxy.use(BREAKERS_BY_NAME["length-as-stop"])).json()["choices"][0]
    assert choice["finish_reason"] == "stop"  # the tiny model runs to max_tokens: really a cut-off


def test_request_rewrites_reach_the_server(proxy: BreakingProxy) -> None:
    """max-tokens-ignored makes the server generate more than asked; seed-ignored breaks reproducibility."""
    usage = chat(proxy.use(BREAKERS_BY_NAME["max-tokens-ignored"]), max_tokens=4).json()["usage"]
    assert usage["completion_tokens"] > 4
    proxy.use(BREAKERS_BY_NAME["seed-ignored"])
    contents = {chat(proxy, seed=5, temperature=1.0).json()["choices"][0]["message"]["content"] for _ in range(3)}
    assert len(contents) > 1


def test_stream_rewrites(proxy: BreakingProxy) -> None:
    """no-done drops [DONE]; after-done adds an event after it; stream-garbage-line adds a non-SSE line."""
    assert "[DONE]" not in events(chat(proxy.use(BREAKERS_BY_NAME["no-done"]), stream=True))
    assert events(chat(proxy.use(BREAKERS_BY_NAME["after-done"]), stream=True))[-2:] == ["[DONE]", '{"late": true}']
    text = chat(proxy.use(BREAKERS_BY_NAME["stream-garbage-line"]), stream=True).text
    assert "\nthis line is not an SSE field\n" in text
    chunks = [json.loads(e) for e in events(chat(proxy.use(BREAKERS_BY_NAME["chunk-id-varies"]), stream=True))[:-1]]
    assert len({c["id"] for c in chunks}) == len(chunks)


def test_stall_holds_the_connection_silent(proxy: BreakingProxy) -> None:
    """stall sends two events, then nothing: a client with a read timeout gives up."""
    proxy.use(BREAKERS_BY_NAME["stall"])
    received: list[str] = []
    with pytest.raises(httpx.ReadTimeout), httpx.stream(
            "POST", proxy.url + "/v1/chat/completions", timeout=httpx.Timeout(30, read=2),
            json={"messages": USER, "max_tokens": 8, "stream": True}) as response:
        received.extend(line for line in response.iter_lines() if line.startswith("data: "))
    assert len(received) == 2


def test_error_rewrites(proxy: BreakingProxy) -> None:
    """bad-input-500 turns a 422 into 500; bad-input-200 into a 200 completion; vague-error hides the field."""
    assert chat(proxy.use(BREAKERS_BY_NAME["bad-input-500"]), temperature=5).status_code == 500
    canned = chat(proxy.use(BREAKERS_BY_NAME["bad-input-200"]), messages=[])
    assert canned.status_code == 200 and canned.json()["object"] == "chat.completion"
    vague = chat(proxy.use(BREAKERS_BY_NAME["vague-error"]), temperature=5)
    assert vague.status_code == 422 and vague.json()["error"] == "invalid request"
    assert chat(proxy.use(BREAKERS_BY_NAME["temperature-clamped"]), temperature=5).status_code == 200


def test_tool_stream_rewrites(proxy: BreakingProxy) -> None:
    """tool-delta-no-index removes index from every streamed tool-call delta."""
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 5}}, "required": ["city"],
        "additionalProperties": False}}}  # short arguments: the tiny model finishes the call quickly
    proxy.use(BREAKERS_BY_NAME["tool-delta-no-index"])
    response = chat(proxy, stream=True, tools=[tool], tool_choice="required", max_tokens=60)
    deltas = [tc for e in events(response)[:-1] for ch in json.loads(e)["choices"]
              for tc in (ch.get("delta") or {}).get("tool_calls") or []]
    assert deltas and all("index" not in tc for tc in deltas)


def test_auth_breaker_opens_a_keyed_server(keyed_proxy: BreakingProxy, keyed_mock: str) -> None:
    """The keyed mock refuses a request without a token; through auth-not-enforced it is answered 200."""
    body = {"messages": USER, "max_tokens": 4}
    assert httpx.post(keyed_mock + "/v1/chat/completions", json=body, timeout=60).status_code == 401
    keyed_proxy.use(BREAKERS_BY_NAME["auth-not-enforced"])
    assert httpx.post(keyed_proxy.url + "/v1/chat/completions", json=body, timeout=60).status_code == 200
    ok = httpx.post(keyed_mock + "/v1/chat/completions", json=body, timeout=60,
                    headers={"authorization": f"Bearer {KEYED_TOKEN}"})
    assert ok.status_code == 200


# --- running the suite -------------------------------------------------------------------------------------

@dataclass
class SuiteRun:
    """One run of the conformance suite: its exit code and its results.json document."""

    argv: list[str]
    exit_code: int
    document: dict[str, Any] | None

    def clause(self, clause_id: str) -> dict[str, Any] | None:
        """The results entry of one clause, or None when the run did not report it."""
        for entry in (self.document or {}).get("clauses", []):
            if entry["id"] == clause_id:
                return entry
        return None

    def describe(self, clause_id: str) -> str:
        """Verdict and check messages of a clause, for failure messages."""
        entry = self.clause(clause_id)
        if entry is None:
            return f"{clause_id}: not in results.json (exit code {self.exit_code})"
        messages = "; ".join(f"{c['verdict']}: {c['message']}" for c in entry["checks"])[:600]
        return f"{clause_id}: {entry['verdict']} ({messages})"


def _has_check_command() -> bool:
    return any(ep.name == "check" for ep in entry_points(group="chatconform.commands"))


def run_suite(base_url: str, report_dir: Path, clauses: Sequence[str] = (), extra: Sequence[str] = ()) -> SuiteRun:
    """Run `chatconform check BASE_URL --strict --clause ... --report-dir DIR --quiet` in this process."""
    argv = ["check", base_url, "--strict", "--report-dir", str(report_dir), "--quiet", *extra]
    for clause_id in clauses:
        argv += ["--clause", clause_id]
    if _has_check_command():
        from conformance.cli import main

        code = main(argv)
    else:  # the entry point is not registered yet (pyproject.toml): the same command without the dispatcher
        from conformance.check_command import add_check_arguments, run_check

        parser = argparse.ArgumentParser(prog="chatconform check")
        add_check_arguments(parser)
        code = run_check(parser.parse_args(argv[1:]))
    found = sorted(report_dir.rglob("results.json"))
    document = json.loads(found[-1].read_text()) if found else None
    return SuiteRun(argv, code, document)


def assert_flags(run: SuiteRun, breaker: Breaker, baseline: SuiteRun | None) -> None:
    """Every clause the breaker declares is flagged, and the gate exits 1; else say which check is too weak."""
    if baseline is not None:
        unclean = [baseline.describe(c) for c in breaker.clauses
                   if (baseline.clause(c) or {}).get("verdict") in BAD_VERDICTS]
        assert not unclean, f"breaker {breaker.name} proves nothing: the unbroken mock already fails {unclean}"
    missing = [c for c in breaker.clauses if (run.clause(c) or {}).get("verdict") not in FLAGGED]
    assert not missing, (f"breaker {breaker.name} ({breaker.description}) was not flagged: "
                         + " | ".join(run.describe(c) for c in missing) + f" | argv: {run.argv}")
    # a MAY clause's FAIL is reported but never gates (its feature is optional): exit 0 is right for it alone
    levels = {CATALOGUE.get(c).level.value for c in breaker.clauses}
    expected_code = 1 if levels & {"MUST", "SHOULD"} else 0
    assert run.exit_code == expected_code, (
        f"breaker {breaker.name}: exit code {run.exit_code}, expected {expected_code} (argv {run.argv})")


def check_baseline(run: SuiteRun, exempt: frozenset[str] = frozenset()) -> None:
    """No MUST or SHOULD clause fails on the unbroken mock; UNSUPPORTED only for MAY clauses."""
    assert run.document is not None, f"no results.json (exit code {run.exit_code})"
    bad = [run.describe(c["id"]) for c in run.document["clauses"] if c["id"] not in exempt and (
        c["verdict"] in BAD_VERDICTS or (c["verdict"] == "UNSUPPORTED" and c["level"] != "MAY"))]
    assert not bad, "the unbroken mock fails:\n" + "\n".join(bad)


@pytest.fixture(scope="module")
def tiny_baseline(proxy: BreakingProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteRun]:
    """The whole default profile against the tiny mock through the identity proxy."""
    proxy.use(IDENTITY)
    yield run_suite(proxy.url, tmp_path_factory.mktemp("baseline"), extra=BASELINE_ARGS)


def test_unbroken_tiny_mock_passes_every_clause(tiny_baseline: SuiteRun) -> None:
    """Through the identity proxy, the tiny mock passes every MUST and SHOULD clause the suite checks."""
    check_baseline(tiny_baseline, exempt=TINY_UNOBSERVABLE)
    assert tiny_baseline.document["summary"]["checks"] > 0


def _quick(breakers: Sequence[Breaker]) -> frozenset[str]:
    """The first breaker of each clause group (request, stream, tools, errors...) and one reference breaker."""
    firsts: dict[str, str] = {}
    for b in breakers:
        firsts.setdefault(b.clauses[0].split(".")[0], b.name)
    return frozenset(firsts.values()) | {"ref-logprobs-scaled"}


TINY_BREAKERS = [b for b in BREAKERS if b.model == "tiny"]
QUICK = _quick(TINY_BREAKERS)  # `make test` runs these; `make test-long` (and CI) the rest (marker `long`)


@pytest.mark.parametrize("breaker", [b if b.name in QUICK else pytest.param(b, marks=pytest.mark.long, id=b.name)
                                     for b in TINY_BREAKERS], ids=lambda b: b.name)
def test_suite_flags_breaker(breaker: Breaker, request: pytest.FixtureRequest, tiny_baseline: SuiteRun,
                             tmp_path: Path) -> None:
    """Against the proxy with this breaker, the suite fails exactly the breaker's clauses (and exits 1)."""
    proxy: BreakingProxy = request.getfixturevalue(UPSTREAMS[breaker.upstream])
    args = breaker.suite_args
    if ORACLE_URL in args:  # a reference breaker: the unbroken mock behind the proxy is the oracle
        args = tuple(request.getfixturevalue("tiny_mock") if a == ORACLE_URL else a for a in args)
    proxy.use(breaker)
    try:
        run = run_suite(proxy.url, tmp_path, breaker.clauses, args)
    finally:
        proxy.use(IDENTITY)
    assert_flags(run, breaker, tiny_baseline if breaker.upstream == "open" else None)


def test_burst_0_sends_no_burst(proxy: BreakingProxy, tmp_path: Path) -> None:
    """A server that throttles only bursts: with --burst 0 the 429 clause is SKIPPED, never FAIL."""
    proxy.use(BREAKERS_BY_NAME["burst-429-no-retry-after"])
    try:
        run = run_suite(proxy.url, tmp_path, ("headers.retry-after.429",), ("--burst", "0"))
    finally:
        proxy.use(IDENTITY)
    assert run.clause("headers.retry-after.429")["verdict"] == "SKIPPED", run.describe("headers.retry-after.429")
    assert run.exit_code == 3  # nothing was executed


@pytest.fixture()
def loading_proxy(loading_mock: str) -> Iterator[BreakingProxy]:
    """A breaking proxy in front of a fresh mock that is still loading."""
    with BreakingProxy(loading_mock) as running:
        yield running


@pytest.fixture(scope="module")
def real_proxy(real_mock: str) -> Iterator[BreakingProxy]:
    """A breaking proxy in front of the real-model mock."""
    with BreakingProxy(real_mock) as running:
        yield running


@pytest.mark.slow
@pytest.mark.long
def test_unbroken_real_mock_passes_every_clause(real_proxy: BreakingProxy, tmp_path: Path) -> None:
    """The real-model mock passes every MUST and SHOULD clause, penalties included."""
    real_proxy.use(IDENTITY)
    check_baseline(run_suite(real_proxy.url, tmp_path, extra=BASELINE_ARGS))


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("breaker", [b for b in BREAKERS if b.model == "real"], ids=lambda b: b.name)
def test_suite_flags_breaker_on_real_model(breaker: Breaker, real_proxy: BreakingProxy, tmp_path: Path) -> None:
    """Breakers only the real model can show: the suite flags their clauses."""
    real_proxy.use(breaker)
    try:
        run = run_suite(real_proxy.url, tmp_path, breaker.clauses, breaker.suite_args)
    finally:
        real_proxy.use(IDENTITY)
    assert_flags(run, breaker, None)
