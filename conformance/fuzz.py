"""Fuzzing /v1/chat/completions with schemathesis, generated from spec/openapi.yaml.

Two phases, each first schemathesis' coverage cases (deterministic: boundary and example values,
one property at a time) and then a Hypothesis run seeded with SuiteConfig.seed and `fuzz_budget`
random examples:

* positive: schema-valid requests; each must get 2xx with a spec-valid body (a stream: a valid SSE
  stream, checked by the `chatconform_sse_stream` schemathesis check registered below) or a 4xx
  status documented for the operation with an error envelope. The stream and the envelope are
  judged by the judges of their clauses (conformance.judges), as the clause checks judge them;
* negative: schema-invalid requests; each must get a 4xx.

In both, every status must be one the operation documents. A case is judged by what is actually
sent: after clamping (max_tokens <= 8, n <= 2, so generation stays cheap) the body is validated
against the spec again, and a body that turned out valid is held to the positive rules.

A failing random case makes Hypothesis shrink it, within a budget: a passing random run judges
`fuzz_budget` cases, and once a case has failed the run may send at most `fuzz_shrink` requests
beyond those (Hypothesis explores on after a failure, then shrinks). When they are spent, the next
case stops the Hypothesis run (`_BudgetSpent`), so a failure costs at most `fuzz_shrink` extra
requests. A case whose bytes were already sent is judged from memory, not sent again. Per clause
the shortest failing request actually sent is kept as the finding, with its exchange and a curl
line, so a finding is always a request that really failed.
The requests go through the suite's own `Target` (pacing, auth, evidence); schemathesis generates
the cases and runs the registered stream check on the answers. Each body names the model under
test and uses response_format variants of the dialect under test only (conformance.fuzz_inputs),
so the positive phase reaches generation on a server that needs `model`; each phase counts its
2xx answers (`generated`). A request that got no HTTP answer (status 0) is counted apart
(`no_answer`) and never judged as a status: transport.answer.every-request judges it.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup

from conformance import judges
from conformance.client import Exchange, Target
from conformance.config import DEFAULT_FUZZ_SHRINK, SuiteConfig
from conformance.fuzz_inputs import clamp, dialect_openapi, encode, with_model
from conformance.judges.stream import as_stream
from conformance.no_answer import answered, unanswered
from spec import schemas

if TYPE_CHECKING:
    # schemathesis' own alias, for type checkers only: a Case of an OpenAPI operation (Case is generic in it)
    from schemathesis.specs.openapi.schemas import OpenApiCase

PATH = "/v1/chat/completions"
COVERAGE_FACTOR = 2  # coverage cases per phase: at most this many times fuzz_budget
VALID = "fuzz.valid.accepted"
INVALID = "fuzz.invalid.refused"
DOCUMENTED = "fuzz.status.documented"
# The stream rules a generated 2xx stream is held to (fuzz.valid.accepted): framing, JSON events, the chunk
# schema, one id, one finish_reason per choice, the terminator. The stream checks judge every rule on their streams.
STREAM_RULES = (
    "stream.framing.data-lines", "stream.event.json", "stream.chunk.schema-valid", "stream.chunk.id-consistent",
    "stream.finish-reason.exactly-once", "stream.terminator.done", "stream.terminator.nothing-after",
)
# Header parameters are fixed, so the generated variation (and the negative mutations) is the body's.
FIXED_HEADERS = {"x-use-cache": "false", "x-wait-for-model": "false"}


@dataclass(frozen=True)
class FuzzFinding:
    """One broken clause: the minimal reproducing exchange, what was wrong, and a curl line."""

    clause_id: str
    phase: str
    message: str
    exchange: Exchange

    @property
    def curl(self) -> str:
        return self.exchange.curl()


@dataclass
class PhaseResult:
    """What one phase sent and got: example count, statuses seen, findings (one per clause)."""

    phase: str
    examples: int = 0
    streams_checked: int = 0  # 200 streams validated by the chatconform_sse_stream check
    statuses: Counter[int] = field(default_factory=Counter)
    findings: dict[str, FuzzFinding] = field(default_factory=dict)
    error: str | None = None  # a suite-side error (generation failed), not a target failure
    random_cases: int = 0  # cases Hypothesis asked to judge (sent or from memory)
    replayed: int = 0  # random cases judged from memory (the same bytes were sent before)
    after_failure: int | None = None  # requests sent after the first random failure (None: no failure)
    shrink_requests: int = 0  # requests beyond the fuzz_budget random cases (within fuzz_shrink)
    budget_spent: bool = False  # the Hypothesis run was stopped because the shrink budget was spent
    no_answer: int = 0  # requests that got no HTTP answer: not a status, never judged here
    samples: dict[int, Exchange] = field(default_factory=dict)  # the first exchange per status (0: no answer)

    @property
    def generated(self) -> int:
        """How many requests were answered 2xx: the cases that reached generation."""
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (statuses and findings with their curl lines)."""
        return {
            "phase": self.phase, "examples": self.examples, "streams_checked": self.streams_checked,
            "error": self.error, "random_cases": self.random_cases, "replayed": self.replayed,
            "after_failure": self.after_failure, "shrink_requests": self.shrink_requests,
            "budget_spent": self.budget_spent, "generated": self.generated, "no_answer": self.no_answer,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "findings": {cid: {"message": f.message, "curl": f.curl} for cid, f in self.findings.items()},
        }


@dataclass
class FuzzReport:
    """Both phases of one fuzz run."""

    positive: PhaseResult
    negative: PhaseResult

    def findings(self, clause_id: str) -> list[FuzzFinding]:
        """The findings for one clause across both phases."""
        return [p.findings[clause_id] for p in (self.positive, self.negative) if clause_id in p.findings]

    @property
    def examples(self) -> int:
        return self.positive.examples + self.negative.examples

    def describe(self) -> str:
        """One line for the report: requests per phase, random cases among them, statuses seen."""
        parts = []
        for p in (self.positive, self.negative):
            statuses = ", ".join(f"{code}: {n}" for code, n in sorted(p.statuses.items()))
            lost = f", {p.no_answer} without an answer" if p.no_answer else ""
            parts.append(f"{p.phase}: {p.examples} requests ({p.random_cases - p.replayed} random, "
                         f"{p.generated} answered 2xx, {p.streams_checked} streams checked{lost}; "
                         f"statuses {statuses or 'none'})")
        return "; ".join(parts)


class _Broken(AssertionError):
    """A case broke a clause; Hypothesis shrinks each subclass separately."""

    clause_id = ""


class _ValidNotAccepted(_Broken):
    clause_id = VALID


class _InvalidNotRefused(_Broken):
    clause_id = INVALID


class _Undocumented(_Broken):
    clause_id = DOCUMENTED


class _BudgetSpent(BaseException):
    """The shrink budget is spent: stops the Hypothesis run at once.

    A BaseException (like KeyboardInterrupt) is not a test failure to Hypothesis: it ends the run
    instead of being shrunk, so no further case is generated, sent or shrunk.
    """


# --- the stream state machine as a schemathesis check ---------------------------------------------


def stream_problems(raw: bytes, request_body: str | None = None) -> list[str]:
    """What is wrong with an SSE body of a chat completion stream (empty when it is conforming).

    Judged by the stream clauses' own judges (STREAM_RULES, conformance.judges); `request_body`
    (the JSON the request sent) tells them what was asked for, such as n.
    """
    ex = Exchange(method="POST", url=PATH, request_headers={}, request_body=request_body or '{"stream": true}',
                  status=200, headers={"content-type": "text/event-stream"},
                  body_text=raw.decode("utf-8", errors="replace"), elapsed_s=0.0)
    return [f"{cid}: {problem.describe()}" for cid, problem in judges.problems_of(STREAM_RULES, as_stream(ex))]


@schemathesis.check
def chatconform_sse_stream(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                           case: OpenApiCase) -> bool | None:
    """A 200 answer to a request with stream true is a conforming SSE chat completion stream."""
    if not (isinstance(case.body, dict) and case.body.get("stream") is True) or response.status_code != 200:
        return None
    problems = stream_problems(response.content, json.dumps(case.body))
    if problems:
        raise AssertionError("invalid chat completion stream: " + "; ".join(problems[:8]))
    return True


# --- running the phases ----------------------------------------------------------------------------


def documented_statuses() -> frozenset[int]:
    """The statuses spec/openapi.yaml lists for POST /v1/chat/completions."""
    responses = schemas.openapi()["paths"][PATH]["post"]["responses"]
    return frozenset(int(code) for code in responses if code.isdigit())


def _envelope(ex: Exchange) -> bool:
    """An error envelope, as errors.envelope.shape judges it (its fields are their own clauses' to judge)."""
    return not judges.problems("errors.envelope.shape", ex)


def _as_httpx(ex: Exchange) -> httpx.Response:
    """The exchange as an httpx response, for schemathesis' check runner."""
    request = httpx.Request(ex.method, ex.url, headers=ex.request_headers,
                            content=(ex.request_body or "").encode("utf-8", errors="replace"))
    response = httpx.Response(ex.status, headers=ex.headers, content=ex.body_text.encode("utf-8"), request=request)
    response.elapsed = timedelta(seconds=ex.elapsed_s)
    return response


def judge(case: OpenApiCase, ex: Exchange, body_valid: bool, documented: frozenset[int]) -> _Broken | None:
    """The first clause the answer breaks (as the exception to raise), or None."""
    if ex.status not in documented:
        return _Undocumented(f"status {ex.status} is not documented for POST {PATH} ({sorted(documented)})")
    if not body_valid:
        if 400 <= ex.status < 500:
            return None
        return _InvalidNotRefused(f"a schema-invalid request got {ex.status}, expected a 4xx")
    if 200 <= ex.status < 300:
        if isinstance(case.body, dict) and case.body.get("stream") is True:
            try:
                case.validate_response(_as_httpx(ex), checks=[chatconform_sse_stream])
            except (AssertionError, FailureGroup) as exc:  # the check failed (schemathesis names it)
                return _ValidNotAccepted(f"2xx stream fails chatconform_sse_stream: {str(exc)[:600]}")
            return None
        if not isinstance(ex.json, dict):
            return _ValidNotAccepted(f"2xx without a JSON body: {ex.body_text[:200]!r}")
        violations = schemas.validate("response", ex.json)
        if violations:
            return _ValidNotAccepted("2xx body breaks the ChatCompletion schema: "
                                     + "; ".join(v.message for v in violations[:5]))
        return None
    if 400 <= ex.status < 500:
        if _envelope(ex):
            return None
        return _ValidNotAccepted(f"a schema-valid request got {ex.status} without an error envelope")
    return _ValidNotAccepted(f"a schema-valid request got {ex.status}, expected 2xx or a documented 4xx")


def _coverage_cases(schema: Any, mode: GenerationMode, limit: int) -> list[OpenApiCase]:
    """Up to `limit` of schemathesis' coverage cases for POST /v1/chat/completions (deterministic).

    The coverage phase varies one property at a time (boundary, example and, in negative mode,
    wrong-type values). Under the limit, cases are taken round-robin over the sets of top-level
    fields they hold, so that every property is tried before any is tried twice.
    """
    operation = schema[PATH]["POST"]
    cases = schema.iter_coverage_cases(operation, generation_modes=[mode],
                                       generation_config=schema.config.generation_for(operation=operation))
    groups: dict[Any, list[OpenApiCase]] = {}
    for case in cases:
        if case.method.upper() != "POST":  # the coverage phase also tries other methods; not these clauses'
            continue
        key = tuple(sorted(case.body)) if isinstance(case.body, dict) else type(case.body).__name__
        groups.setdefault(key, []).append(case)
    chosen: list[OpenApiCase] = []
    queues = list(groups.values())
    while queues and len(chosen) < limit:
        chosen += [queue.pop(0) for queue in queues][: limit - len(chosen)]
        queues = [queue for queue in queues if queue]
    return chosen


class _Phase:
    """Sends cases, judges the answers and keeps the smallest failing request per clause."""

    def __init__(self, target: Target, name: str, explore: int, shrink_budget: int = DEFAULT_FUZZ_SHRINK) -> None:
        self.target = target
        self.model = target.model  # every body names the model under test (fuzz_inputs.with_model)
        self.result = PhaseResult(name)
        self.documented = documented_statuses()
        self.explore = explore  # the random cases of a passing run (fuzz_budget)
        self.shrink_budget = shrink_budget  # requests allowed beyond them, once a case failed
        self._judged: dict[bytes, _Broken | None] = {}  # the bytes sent -> the clause they broke, if any

    def random_case(self, case: OpenApiCase) -> _Broken | None:
        """Judge one of Hypothesis' cases: from memory, else sent; raise _BudgetSpent when the budget is spent."""
        result = self.result
        result.random_cases += 1
        beyond = result.random_cases > self.explore  # past what a passing run would judge: shrinking
        if result.after_failure is not None and beyond and result.shrink_requests >= self.shrink_budget:
            raise _BudgetSpent  # ends the Hypothesis run; the findings hold the smallest failures sent
        key = _prepare(case, self.model)
        if key in self._judged:
            result.replayed += 1
            known = self._judged[key]
            broken = None if known is None else type(known)(str(known))
        else:
            if result.after_failure is not None:
                result.after_failure += 1
                result.shrink_requests += beyond
            broken = self.send(case, key)
        if broken is not None and result.after_failure is None:
            result.after_failure = 0
        return broken

    def send(self, case: OpenApiCase, key: bytes | None = None) -> _Broken | None:
        """Send one case (clamped) and return the clause it broke, if any (recorded as a finding).

        key: the case's bytes when `_prepare` already made them.
        """
        key = _prepare(case, self.model) if key is None else key
        body = case.body
        ex = answered(lambda: self.target.chat(raw=key, headers=dict(FIXED_HEADERS)))
        result = self.result
        result.examples += 1
        result.samples.setdefault(ex.status, ex)
        if unanswered(ex):  # no HTTP answer: transport.answer.every-request's to judge, not a status
            result.no_answer += 1
            self._judged[key] = None
            return None
        result.statuses[ex.status] += 1
        valid = isinstance(body, dict) and not schemas.validate("request", body)
        streamed = isinstance(body, dict) and body.get("stream") is True
        broken = judge(case, ex, valid, self.documented)
        if valid and ex.status == 200 and streamed:
            result.streams_checked += 1
        if broken is not None:
            kept = result.findings.get(broken.clause_id)
            # Across cases keep the shortest request (on a tie the later one: what Hypothesis shrank to).
            if kept is None or len(ex.request_body or "") <= len(kept.exchange.request_body or ""):
                result.findings[broken.clause_id] = FuzzFinding(broken.clause_id, result.phase, str(broken), ex)
        self._judged[key] = broken
        return broken


def _prepare(case: OpenApiCase, model: str | None) -> bytes:
    """Clamp the case's body and name the model, in place (what is sent is what is validated); its bytes."""
    case.body = with_model(clamp(case.body), model)
    return encode(case.body)


@contextmanager
def _private_hypothesis_home() -> Iterator[None]:
    """Hypothesis' storage (example database, caches) in a temporary directory while a phase runs.

    Hypothesis writes caches under ./.hypothesis even with database=None; a conformance run must
    leave nothing in the directory it was started from. The previous home is restored afterwards.
    """
    previous = storage_directory(intent_to_write=False).home_directory
    with tempfile.TemporaryDirectory(prefix="chatconform-hypothesis-") as home:
        set_hypothesis_home_dir(home)
        try:
            yield
        finally:
            set_hypothesis_home_dir(previous)


def run_phase(target: Target, config: SuiteConfig, mode: GenerationMode) -> PhaseResult:
    """Run one phase: coverage cases (up to 2 x fuzz_budget), then `fuzz_budget` seeded random examples.

    Once a case has failed, at most `fuzz_shrink` requests beyond those are sent (see the module docstring).
    Hypothesis keeps no example database and writes its caches to a temporary directory only.
    """
    with _private_hypothesis_home():
        return _run_phase(target, config, mode)


def _run_phase(target: Target, config: SuiteConfig, mode: GenerationMode) -> PhaseResult:
    phase = _Phase(target, "positive" if mode == GenerationMode.POSITIVE else "negative", config.fuzz_budget,
                   config.fuzz_shrink)
    schema = schemathesis.openapi.from_dict(dialect_openapi(config.dialect), config=schemathesis.Config())
    strategy = schema[PATH]["POST"].as_strategy(generation_mode=mode, headers=dict(FIXED_HEADERS))

    @seed(config.seed)
    @settings(max_examples=config.fuzz_budget, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
              report_multiple_bugs=True, print_blob=False)
    @given(case=strategy)
    def one(case: OpenApiCase) -> None:
        broken = phase.random_case(case)
        if broken is not None:
            raise broken  # Hypothesis shrinks it, within the budget

    try:
        for case in _coverage_cases(schema, mode, COVERAGE_FACTOR * config.fuzz_budget):
            phase.send(case)
        one()
    except _BudgetSpent:
        phase.result.budget_spent = True
    except _Broken:
        pass
    except BaseExceptionGroup as group:  # several distinct bugs: each was shrunk and recorded
        phase.result.error = suite_error(group)
    except Exception as exc:  # a generation or transport problem on the suite's side
        phase.result.error = f"{type(exc).__name__}: {exc}"
    return phase.result


def suite_error(group: BaseExceptionGroup[BaseException]) -> str | None:
    """What in a group of failures is the suite's own error, beside the target's findings (None: nothing).

    split, not subgroup: subgroup's predicate also sees the group itself (not a _Broken), and would
    keep the whole group, findings included, as a suite-side error.
    """
    _, rest = group.split(_Broken)
    if rest is None:
        return None
    return "; ".join(f"{type(exc).__name__}: {exc}" for exc in rest.exceptions)


def run_fuzz(target: Target, config: SuiteConfig) -> FuzzReport:
    """Run the positive then the negative phase against the target."""
    return FuzzReport(run_phase(target, config, GenerationMode.POSITIVE),
                      run_phase(target, config, GenerationMode.NEGATIVE))


__all__ = [
    "FuzzFinding", "FuzzReport", "PhaseResult", "chatconform_sse_stream", "clamp", "documented_statuses",
    "judge", "run_fuzz", "run_phase", "stream_problems",
]
