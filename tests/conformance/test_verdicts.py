"""How what a check raises becomes a verdict, per clause level and --strict."""

from __future__ import annotations

import pytest

from conformance.client import Exchange
from conformance.plugin import verdict_for
from conformance.verdicts import Fail, Ignored, NotExercised, Unsupported, Verdict, unsupported_or_fail
from spec.clauses import Level


def refusal(status: int = 422) -> Exchange:
    """A clear refusal: a 4xx whose body is an error envelope."""
    return Exchange(method="POST", url="http://127.0.0.1:1/v1/chat/completions", request_headers={},
                    request_body="{}", status=status, headers={"content-type": "application/json"},
                    body_text='{"error": "tools are not supported", "error_type": "validation"}',
                    elapsed_s=0.01)


def raised(fn) -> BaseException:
    with pytest.raises(BaseException) as info:
        fn()
    return info.value


@pytest.mark.parametrize(("level", "strict", "verdict"), [
    (Level.MUST, False, Verdict.FAIL),
    (Level.SHOULD, False, Verdict.UNSUPPORTED),
    (Level.SHOULD, True, Verdict.FAIL),
    (Level.MAY, True, Verdict.UNSUPPORTED),
])
def test_refusing_a_required_feature_fails_a_required_clause(level: Level, strict: bool, verdict: Verdict) -> None:
    outcome = raised(lambda: unsupported_or_fail(refusal(), "tools"))
    assert isinstance(outcome, Unsupported) and not outcome.permitted
    assert verdict_for(outcome, level, strict) is verdict


@pytest.mark.parametrize("level", list(Level))
def test_a_refusal_the_clause_permits_stays_unsupported(level: Level) -> None:
    outcome = Unsupported("logit_bias refused with 422", exchanges=refusal())
    assert outcome.permitted
    assert verdict_for(outcome, level, strict=True) is Verdict.UNSUPPORTED


def test_an_unclear_refusal_is_a_failure_at_every_level() -> None:
    outcome = raised(lambda: unsupported_or_fail(refusal(status=500), "tools"))
    assert isinstance(outcome, Fail)
    assert verdict_for(outcome, Level.MUST, strict=False) is Verdict.FAIL


def test_should_failures_warn_unless_strict_and_ignored_is_kept() -> None:
    assert verdict_for(Fail("x"), Level.SHOULD, strict=False) is Verdict.WARN
    assert verdict_for(Fail("x"), Level.SHOULD, strict=True) is Verdict.FAIL
    assert verdict_for(Ignored("x"), Level.MUST, strict=False) is Verdict.IGNORED
    assert verdict_for(RuntimeError("suite bug"), Level.MUST, strict=False) is Verdict.ERROR


def test_client_checks_parse_only_answered_variants_and_keep_the_rest_as_not_exercised() -> None:
    """A non-2xx answer to a variant leaves the client nothing to parse: it is kept as NOT_EXERCISED
    rooted in the clause that judges that variant, except a clear refusal its root permits
    (json_object may be refused); a 200 answer is always the client's to parse."""
    from conformance.checks.test_clients import OPENAI_FORMAT_ROOT, _unanswered
    from conformance.samples import Deferred

    ok = Exchange(method="POST", url="http://127.0.0.1:1/v1/chat/completions", request_headers={},
                  request_body="{}", status=200, headers={}, body_text="not json", elapsed_s=0.01)
    later = Deferred()
    assert not _unanswered([ok], "format", OPENAI_FORMAT_ROOT, later) and later.kept is None
    assert _unanswered([refusal(422)], "format", OPENAI_FORMAT_ROOT, later) and later.kept is None
    assert _unanswered([refusal(500)], "tools", "tools.choice.required", later)
    assert later.kept is not None and later.kept.root == "tools.choice.required"
    with pytest.raises(NotExercised):
        later.settle()