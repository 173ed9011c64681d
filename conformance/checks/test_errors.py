"""Error checks: invalid bodies get a 4xx with an envelope that names the problem, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest

from conformance.client import Exchange, Target
from conformance.config import SuiteConfig
from conformance.expectations import envelope_shape, names_field, refused_4xx
from conformance.invalid_requests import invalid_cases
from conformance.judges import enforce
from conformance.no_answer import answered, raise_unanswered, unanswered
from conformance.registry import clause
from conformance.verdicts import Fail, NotApplicable, need, require

TOO_LARGE_BYTES = 64 * 1024 * 1024  # the clause's figure: 64 MiB of valid JSON


@dataclass
class ErrorExchange:
    """An invalid request sent once, with the field its error should name (None for whole-body problems)."""

    label: str
    clause_id: str
    field: str | None
    exchange: Exchange
    field_rule: bool  # valid JSON breaking a field rule (errors.status.validation applies)


@pytest.fixture(scope="session")
def invalid_exchanges(target: Target, suite_config: SuiteConfig) -> list[ErrorExchange]:
    """Every invalid field value of the corpus, sent once per session."""
    base = target.body(max_tokens=4)
    cases = invalid_cases(suite_config.dialect)
    answers = target.many(partial(answered, partial(target.chat, case.body(base))) for case in cases)
    return [ErrorExchange(case.label, case.clause_id, case.field, ex, True)
            for case, ex in zip(cases, answers, strict=True)]


@pytest.fixture(scope="session")
def body_exchanges(target: Target) -> list[ErrorExchange]:
    """Whole-body problems: malformed JSON, non-object bodies, a wrong Content-Type."""
    valid = json.dumps(target.body(max_tokens=4)).encode()
    plan: list[tuple[str, str, bytes, str]] = [
        ("errors.json.malformed", "truncated JSON", valid[: len(valid) // 2], "application/json"),
        ("errors.json.malformed", "not JSON at all", b"messages=hello", "application/json"),
        ("errors.json.malformed", "trailing comma", b'{"messages": [{"role": "user", "content": "Hi."}],}',
         "application/json"),
        ("errors.body.not-object", "JSON array", b"[]", "application/json"),
        ("errors.body.not-object", "JSON string", b'"hello"', "application/json"),
        ("errors.body.not-object", "JSON null", b"null", "application/json"),
        ("errors.content-type.unsupported", "text/plain", valid, "text/plain"),
        ("errors.content-type.unsupported", "form-urlencoded", valid, "application/x-www-form-urlencoded"),
    ]
    answers = target.many(partial(answered, partial(target.chat, raw=raw, content_type=ctype))
                          for _, _, raw, ctype in plan)
    return [ErrorExchange(label, cid, None, ex, False) for (cid, label, _, _), ex in zip(plan, answers, strict=True)]


def _all(invalid: list[ErrorExchange], bodies: list[ErrorExchange]) -> list[ErrorExchange]:
    return invalid + bodies


def _cases_of(clause_id: str, invalid: list[ErrorExchange]) -> list[ErrorExchange]:
    found = [e for e in invalid if e.clause_id == clause_id]
    assert found, f"the invalid-request corpus has no case for {clause_id}"
    return found


def _judge_answered(items: list[ErrorExchange], judge: Callable[[ErrorExchange], None]) -> None:
    """judge(item) for each request that got an HTTP answer; then NotExercised if any got none.

    A request without an answer (status 0) is transport.answer.every-request's to judge, never a status.
    """
    for item in items:
        if not unanswered(item.exchange):
            judge(item)
    raise_unanswered([e.exchange for e in items], "requests")


def _each_refused(clause_id: str, invalid: list[ErrorExchange]) -> None:
    _judge_answered(_cases_of(clause_id, invalid), lambda item: refused_4xx(item.exchange, item.label))


# -- never 5xx, envelopes -----------------------------------------------------------------------

@clause("errors.client-input.never-5xx")
def test_never_5xx(invalid_exchanges: list[ErrorExchange], body_exchanges: list[ErrorExchange]) -> None:
    """No request that the spec calls invalid is answered with a 5xx status."""
    items = _all(invalid_exchanges, body_exchanges)
    bad = [e for e in items if e.exchange.status >= 500]
    require(not bad, f"{len(bad)} invalid request(s) got a 5xx", expected="4xx",
            actual=[(e.label, e.exchange.status) for e in bad], exchanges=[e.exchange for e in bad][:3])
    raise_unanswered([e.exchange for e in items], "invalid requests")


def _errors(items: list[ErrorExchange]) -> list[ErrorExchange]:
    return [e for e in items if e.exchange.status >= 400]


@clause("errors.envelope.shape")
def test_envelope_shape(invalid_exchanges: list[ErrorExchange], body_exchanges: list[ErrorExchange]) -> None:
    """Every 4xx and 5xx response body is a JSON error envelope of the HF shape or the OpenAI shape."""
    for item in _errors(_all(invalid_exchanges, body_exchanges)):
        enforce("errors.envelope.shape", item.exchange, item.label)


def _envelope_fields(clause_id: str, shape: str, invalid: list[ErrorExchange], bodies: list[ErrorExchange]) -> None:
    """The clause's judge on every error of this shape; SKIPPED when the target uses the other shape only.

    When no request got an error at all, no envelope was there to judge: the invalid requests that
    were answered without one are their errors.* clauses' failures.
    """
    items = _all(invalid, bodies)
    errors = _errors(items)
    if not errors:
        answered_items = [e for e in items if not unanswered(e.exchange)]
        if not answered_items:  # nothing came back at all: transport.answer.every-request's to judge
            raise_unanswered([e.exchange for e in items], "invalid requests")
        need(False, "an error response to any invalid request", root=answered_items[0].clause_id,
             actual=[(e.label, e.exchange.status) for e in answered_items[:5]],
             exchanges=[e.exchange for e in answered_items[:3]])
    matching = [e for e in errors if envelope_shape(e.exchange.json) == shape]
    if not matching:
        raise NotApplicable(f"no {shape}-shaped error envelope was returned (the target uses the other shape)",
                            exchanges=errors[0].exchange)
    for item in matching:
        enforce(clause_id, item.exchange, item.label)


@clause("errors.envelope.hf-fields")
def test_envelope_hf_fields(invalid_exchanges: list[ErrorExchange], body_exchanges: list[ErrorExchange]) -> None:
    """An HF-shaped error envelope has a non-empty error message string and an error_type string."""
    _envelope_fields("errors.envelope.hf-fields", "hf", invalid_exchanges, body_exchanges)


@clause("errors.envelope.openai-fields")
def test_envelope_openai_fields(invalid_exchanges: list[ErrorExchange], body_exchanges: list[ErrorExchange]) -> None:
    """An OpenAI-shaped error envelope has error.message and error.type as strings, and error.param and error.code as strings or null."""
    _envelope_fields("errors.envelope.openai-fields", "openai", invalid_exchanges, body_exchanges)


@clause("errors.envelope.names-problem")
def test_envelope_names_problem(invalid_exchanges: list[ErrorExchange]) -> None:
    """The error for an invalid field names that field in its message or in error.param."""
    silent = [(e.label, e.field, e.exchange.body_text[:200]) for e in _errors(invalid_exchanges)
              if e.field and not names_field(e.exchange.json, e.field)]
    require(not silent, f"{len(silent)} error(s) do not name the invalid field", expected="the field named",
            actual=silent[:10], exchanges=[e.exchange for e in _errors(invalid_exchanges)
                                           if e.field and not names_field(e.exchange.json, e.field)][:3])


@clause("errors.envelope.content-type")
def test_envelope_content_type(invalid_exchanges: list[ErrorExchange], body_exchanges: list[ErrorExchange]) -> None:
    """Every error response has Content-Type application/json."""
    for item in _errors(_all(invalid_exchanges, body_exchanges)):
        enforce("errors.envelope.content-type", item.exchange, item.label)


@clause("errors.status.validation")
def test_status_validation(invalid_exchanges: list[ErrorExchange]) -> None:
    """A body that is valid JSON but breaks a field rule is refused with 400 or 422."""
    for item in _errors(invalid_exchanges):
        if item.exchange.status < 500:
            require(item.exchange.status in (400, 422), f"{item.label}: refused with {item.exchange.status}",
                    expected="400 or 422", actual=item.exchange.status, exchanges=item.exchange)


# -- whole-body problems --------------------------------------------------------------------

def _body_cases(clause_id: str, bodies: list[ErrorExchange]) -> list[ErrorExchange]:
    return [e for e in bodies if e.clause_id == clause_id]


@clause("errors.json.malformed")
def test_json_malformed(body_exchanges: list[ErrorExchange]) -> None:
    """A body that is not valid JSON is refused with 400."""
    _judge_answered(_body_cases("errors.json.malformed", body_exchanges), lambda item: require(
        item.exchange.status == 400, f"{item.label}: expected 400", expected=400,
        actual=f"{item.exchange.status} {item.exchange.body_text[:200]}", exchanges=item.exchange))


@clause("errors.body.not-object")
def test_body_not_object(body_exchanges: list[ErrorExchange]) -> None:
    """A JSON body that is not an object (an array, a string, null) is refused with a 4xx error."""
    _judge_answered(_body_cases("errors.body.not-object", body_exchanges),
                    lambda item: refused_4xx(item.exchange, item.label))


@clause("errors.content-type.unsupported")
def test_content_type_unsupported(body_exchanges: list[ErrorExchange]) -> None:
    """A body sent with a Content-Type other than application/json is refused with 415."""
    _judge_answered(_body_cases("errors.content-type.unsupported", body_exchanges), lambda item: require(
        item.exchange.status == 415, f"Content-Type {item.label}: expected 415", expected=415,
        actual=f"{item.exchange.status} {item.exchange.body_text[:200]}", exchanges=item.exchange))


@clause("errors.body.too-large")
def test_body_too_large(target: Target) -> None:
    """A body larger than the server's limit (the suite sends 64 MiB of valid JSON) is refused with 413."""
    head = json.dumps(target.body(max_tokens=1))[:-1]  # the object without its closing brace
    pad = TOO_LARGE_BYTES - len(head) - len(', "x_padding": ""}')
    raw = (head + ', "x_padding": "' + "a" * pad + '"}').encode()
    ex = answered(lambda: target.chat(raw=raw))
    if ex.status == 0 and "transport error" in ex.body_text:
        raise Fail("the server dropped the connection instead of answering 413", expected=413,
                   actual=ex.body_text[:300], exchanges=ex)
    require(ex.status == 413, "a 64 MiB body was not refused with 413", expected=413,
            actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


# -- one clause per invalid field -------------------------------------------------------------

@clause("errors.messages.missing")
def test_messages_missing(invalid_exchanges: list[ErrorExchange]) -> None:
    """A request without messages is refused with a 4xx error."""
    _each_refused("errors.messages.missing", invalid_exchanges)


@clause("errors.messages.empty")
def test_messages_empty(invalid_exchanges: list[ErrorExchange]) -> None:
    """A request whose messages list is empty is refused with a 4xx error."""
    _each_refused("errors.messages.empty", invalid_exchanges)


@clause("errors.message.role-invalid")
def test_role_invalid(invalid_exchanges: list[ErrorExchange]) -> None:
    """A message whose role is missing or not one of system, developer, user, assistant or tool is refused with a 4xx error."""
    _each_refused("errors.message.role-invalid", invalid_exchanges)


@clause("errors.message.content-invalid")
def test_content_invalid(invalid_exchanges: list[ErrorExchange]) -> None:
    """A user message whose content is missing or neither a string nor a list of parts is refused with a 4xx error."""
    _each_refused("errors.message.content-invalid", invalid_exchanges)


@clause("errors.content-part.type-unknown")
def test_content_part_invalid(invalid_exchanges: list[ErrorExchange]) -> None:
    """A content part whose type is not text or image_url, or that lacks the field its type requires, is refused with a 4xx error."""
    _each_refused("errors.content-part.type-unknown", invalid_exchanges)


@clause("errors.field.wrong-type")
def test_field_wrong_type(invalid_exchanges: list[ErrorExchange]) -> None:
    """A request field of the wrong JSON type (a string temperature, a string max_tokens, a string stream) is refused with a 4xx error.

    Besides strings it sends a number for stop, a boolean penalty and temperature, a fractional
    max_tokens and n, and an integer logprobs: lenient servers coerce or drop such values in
    silence and answer 200 with the defaults. Every accepted one is listed.
    """
    items = _cases_of("errors.field.wrong-type", invalid_exchanges)
    accepted = [e for e in items if not unanswered(e.exchange) and not 400 <= e.exchange.status < 500]
    require(not accepted, f"{len(accepted)} field(s) of the wrong JSON type were not refused with a 4xx: "
            + ", ".join(f"{e.label} ({e.exchange.status})" for e in accepted), expected="4xx",
            actual=[(e.label, e.exchange.status) for e in accepted], exchanges=[e.exchange for e in accepted][:4])
    raise_unanswered([e.exchange for e in items], "requests")


@clause("errors.max-tokens.negative")
def test_max_tokens_negative(invalid_exchanges: list[ErrorExchange]) -> None:
    """A negative max_tokens is refused with a 4xx error."""
    _each_refused("errors.max-tokens.negative", invalid_exchanges)


@clause("errors.max-tokens.beyond-context")
def test_max_tokens_beyond_context(invalid_exchanges: list[ErrorExchange]) -> None:
    """A max_tokens larger than the model's context window is refused with a 4xx error."""
    _each_refused("errors.max-tokens.beyond-context", invalid_exchanges)


@clause("errors.temperature.range")
def test_temperature_range(invalid_exchanges: list[ErrorExchange]) -> None:
    """A temperature below 0 or above 2 is refused with a 4xx error."""
    _each_refused("errors.temperature.range", invalid_exchanges)


@clause("errors.top-p.range")
def test_top_p_range(invalid_exchanges: list[ErrorExchange]) -> None:
    """A top_p below 0 or above 1 is refused with a 4xx error."""
    _each_refused("errors.top-p.range", invalid_exchanges)


@clause("errors.frequency-penalty.range")
def test_frequency_penalty_range(invalid_exchanges: list[ErrorExchange]) -> None:
    """A frequency_penalty below -2.0 or above 2.0 is refused with a 4xx error."""
    _each_refused("errors.frequency-penalty.range", invalid_exchanges)


@clause("errors.presence-penalty.range")
def test_presence_penalty_range(invalid_exchanges: list[ErrorExchange]) -> None:
    """A presence_penalty below -2.0 or above 2.0 is refused with a 4xx error."""
    _each_refused("errors.presence-penalty.range", invalid_exchanges)


@clause("errors.top-logprobs.range")
def test_top_logprobs_range(invalid_exchanges: list[ErrorExchange]) -> None:
    """A top_logprobs below 0 or above 5 is refused with a 4xx error."""
    _each_refused("errors.top-logprobs.range", invalid_exchanges)


@clause("errors.top-logprobs.without-logprobs")
def test_top_logprobs_without_logprobs(invalid_exchanges: list[ErrorExchange]) -> None:
    """A non-null top_logprobs, 0 included, sent without logprobs true is refused with a 4xx error."""
    _each_refused("errors.top-logprobs.without-logprobs", invalid_exchanges)


@clause("errors.stop.too-many")
def test_stop_too_many(invalid_exchanges: list[ErrorExchange]) -> None:
    """A stop list of more than 4 sequences is refused with a 4xx error."""
    _each_refused("errors.stop.too-many", invalid_exchanges)


@clause("errors.n.invalid")
def test_n_invalid(invalid_exchanges: list[ErrorExchange]) -> None:
    """An n below 1 is refused with a 4xx error."""
    _each_refused("errors.n.invalid", invalid_exchanges)


@clause("errors.seed.negative")
def test_seed_negative(invalid_exchanges: list[ErrorExchange]) -> None:
    """A negative seed is refused with a 4xx error."""
    _each_refused("errors.seed.negative", invalid_exchanges)


@clause("errors.logit-bias.range")
def test_logit_bias_range(invalid_exchanges: list[ErrorExchange]) -> None:
    """A logit_bias value outside [-100, 100] is refused with a 4xx error."""
    _each_refused("errors.logit-bias.range", invalid_exchanges)


@clause("errors.tool-choice.unknown-function")
def test_tool_choice_unknown_function(invalid_exchanges: list[ErrorExchange]) -> None:
    """A tool_choice naming a function that is not in tools is refused with a 4xx error."""
    _each_refused("errors.tool-choice.unknown-function", invalid_exchanges)


@clause("errors.tool-choice.invalid")
def test_tool_choice_invalid(invalid_exchanges: list[ErrorExchange]) -> None:
    """A tool_choice string other than auto, none or required is refused with a 4xx error."""
    _each_refused("errors.tool-choice.invalid", invalid_exchanges)


@clause("errors.tool-choice.without-tools")
def test_tool_choice_without_tools(invalid_exchanges: list[ErrorExchange]) -> None:
    """A tool_choice of required or naming a function, sent without tools, is refused with a 4xx error."""
    _each_refused("errors.tool-choice.without-tools", invalid_exchanges)


@clause("errors.tools.invalid-definition")
def test_tools_invalid_definition(invalid_exchanges: list[ErrorExchange]) -> None:
    """A tool without function.name, or of a type other than function, is refused with a 4xx error."""
    _each_refused("errors.tools.invalid-definition", invalid_exchanges)


@clause("errors.format.invalid-schema")
def test_format_invalid_schema(invalid_exchanges: list[ErrorExchange]) -> None:
    """A json response_format value or a json_schema.schema that is not a valid JSON Schema is refused with a 4xx error."""
    _each_refused("errors.format.invalid-schema", invalid_exchanges)


@clause("errors.format.invalid-regex")
def test_format_invalid_regex(invalid_exchanges: list[ErrorExchange]) -> None:
    """A regex response_format whose value does not compile is refused with a 4xx error."""
    _each_refused("errors.format.invalid-regex", invalid_exchanges)


@clause("errors.format.type-unknown")
def test_format_type_unknown(invalid_exchanges: list[ErrorExchange]) -> None:
    """A response_format whose type is not one the server documents is refused with a 4xx error."""
    _each_refused("errors.format.type-unknown", invalid_exchanges)


@clause("errors.stream-options.type")
def test_stream_options_type(invalid_exchanges: list[ErrorExchange]) -> None:
    """A stream_options whose include_usage is not a boolean is refused with a 4xx error."""
    _each_refused("errors.stream-options.type", invalid_exchanges)


@clause("errors.model.unknown-route")
def test_unknown_model_route(target: Target) -> None:
    """A request to /models/{model_id}/v1/chat/completions naming a model the server does not serve is refused with 404."""
    ex = target.request("POST", "/models/chatconform-no-such-model/v1/chat/completions",
                        content=json.dumps(target.body(max_tokens=4)).encode(), content_type="application/json")
    require(ex.status == 404, "an unknown model on the model route was not refused with 404", expected=404,
            actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


