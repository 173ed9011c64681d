"""Generated requests, valid and invalid against the schema, and the statuses they get.

One seeded fuzz run (conformance.fuzz, schemathesis + Hypothesis) is shared by the clause checks;
each finding carries the minimal reproducing request, the answer and a curl line. A passing check
says, per phase, how many requests were sent and how many were answered 2xx; a positive phase that
reached no generation at all (no 2xx) has not exercised fuzz.valid.accepted, whatever its statuses.
Requests that got no HTTP answer are counted apart and judged by transport.answer.every-request.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conformance.client import Target
from conformance.config import SuiteConfig
from conformance.fuzz import FuzzReport, PhaseResult, run_fuzz
from conformance.no_answer import TRANSPORT_ROOT
from conformance.registry import clause
from conformance.verdicts import NOTE_PROPERTY, Fail, NotExercised, require


@pytest.fixture(scope="module")
def fuzz_report(target: Target, suite_config: SuiteConfig) -> FuzzReport:
    """Both fuzz phases, run once for this module."""
    return run_fuzz(target, suite_config)


def _verdict(report: FuzzReport, clause_id: str, record_property: Callable[[str, object], None]) -> None:
    """Fail with the minimal reproducing exchange(s) when the run broke the clause; else note the counts."""
    for phase in (report.positive, report.negative):
        if phase.error is not None:
            raise RuntimeError(f"the {phase.phase} fuzz phase could not run (suite-side): {phase.error}")
        require(phase.examples > 0, f"the {phase.phase} fuzz phase sent no request")
    findings = report.findings(clause_id)
    if findings:
        message = "; ".join(f"{f.phase}: {f.message} | reproduce: {f.curl}" for f in findings)
        raise Fail(f"{message[:3400]} | sent: {report.describe()}"[:4000], expected=clause_id,
                   actual=[f.message for f in findings], exchanges=[f.exchange for f in findings])
    judged = {"fuzz.valid.accepted": (report.positive,), "fuzz.invalid.refused": (report.negative,)}
    phases = judged.get(clause_id, (report.positive, report.negative))
    if not any(sum(p.statuses.values()) for p in phases):  # every request went unanswered: nothing judged
        lost = [ex for p in phases for status, ex in p.samples.items() if status == 0]
        raise NotExercised(f"no request of the {' and '.join(p.phase for p in phases)} fuzz phase got an HTTP "
                           f"answer (judged by {TRANSPORT_ROOT})", root=TRANSPORT_ROOT, actual=report.describe(),
                           exchanges=lost)
    if clause_id == "fuzz.valid.accepted":
        _generated(report.positive)
    record_property(NOTE_PROPERTY, report.describe())


def _generated(positive: PhaseResult) -> None:
    """NotExercised when no schema-valid request was answered 2xx: nothing reached generation.

    A server that refuses every generated body (say, for a model it does not serve) gives only
    documented 4xx answers; they break no rule, but they exercise the refusal path alone.
    """
    if positive.generated > 0:
        return
    samples = list(positive.samples.values())[:4]
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(positive.statuses.items())) or "none"
    raise NotExercised(f"none of the {positive.examples} schema-valid fuzz requests was answered 2xx "
                       f"(statuses {statuses}): no generated request reached generation "
                       "(judged by request.messages.accepted)", root="request.messages.accepted",
                       actual=statuses, exchanges=samples)


@clause("fuzz.valid.accepted")
def test_valid_accepted(fuzz_report: FuzzReport, record_property: Callable[[str, object], None]) -> None:
    """A generated schema-valid request is answered 2xx with a schema-valid body or with a 4xx status documented for the operation and an error envelope."""
    _verdict(fuzz_report, "fuzz.valid.accepted", record_property)


@clause("fuzz.invalid.refused")
def test_invalid_refused(fuzz_report: FuzzReport, record_property: Callable[[str, object], None]) -> None:
    """A generated schema-invalid request is refused with a 4xx error."""
    _verdict(fuzz_report, "fuzz.invalid.refused", record_property)


@clause("fuzz.status.documented")
def test_status_documented(fuzz_report: FuzzReport, record_property: Callable[[str, object], None]) -> None:
    """Every status code the server returns to a generated request is one the spec documents for the operation."""
    _verdict(fuzz_report, "fuzz.status.documented", record_property)


@clause("fuzz.server.survives")
def test_server_survives(target: Target, fuzz_report: FuzzReport) -> None:
    """After a fuzz run, a plain valid request is still answered 200."""
    ex = target.chat(target.body(max_tokens=4), headers={"x-use-cache": "false"})
    require(ex.status == 200, f"after {fuzz_report.examples} fuzz requests a plain request is not answered 200",
            expected=200, actual=f"{ex.status} {ex.body_text[:300]}", exchanges=ex)
    health = target.get("/health")
    if health.status not in (200, 404):  # a server without /health (404) is judged by the chat request alone
        raise Fail(f"after the fuzz run GET /health answers {health.status}", expected=200, actual=health.status,
                   exchanges=health)
