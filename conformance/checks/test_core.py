"""Core checks: the request body and the response body (clause order of spec/clauses.yaml; messages: test_messages.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from conformance.client import Exchange, StreamExchange, Target
from conformance.expectations import (
    completion,
    first_content,
    names_field,
)
from conformance.judges import enforce
from conformance.judges.response import COMPLETION_OBJECT, messages_of, unix_seconds
from conformance.registry import clause
from conformance.samples import (
    Deferred,
    Sample,
    SampleSet,
    first_choice_content,
    need_answer,
    require_accepted,
    require_repeatable,
)
from conformance.verdicts import NotApplicable, Unsupported, need, not_exercised, require
from spec import limits, schemas

REASONING_EFFORTS = limits.reasoning_efforts()


def _nullable_request_fields() -> list[str]:
    """Optional ChatCompletionRequest properties whose schema admits null."""
    request = schemas.schema("ChatCompletionRequest")
    required = set(request.get("required", ()))
    out = []
    for name, prop in request["properties"].items():
        branches = prop.get("oneOf") or prop.get("anyOf") or [prop]
        types = []
        for branch in branches:
            kind = branch.get("type")
            types += kind if isinstance(kind, list) else [kind]
        if name not in required and "null" in types:
            out.append(name)
    return out


@clause("request.messages.accepted")
def test_messages_accepted(target: Target, responses: SampleSet) -> None:
    """A request whose messages hold one user message with string content is answered 200 with a chat completion."""
    require_accepted(responses.rooted("request.messages.accepted"))
    ex = target.chat(target.body(max_tokens=8))
    body = completion(ex, "one user message")
    require(body.get("object") == COMPLETION_OBJECT and isinstance(body.get("choices"), list),
            "the 200 body is not a chat completion", expected="object chat.completion with choices",
            actual=body.get("object"), exchanges=ex)


@clause("request.body.null-optional")
def test_null_optional_fields(target: Target) -> None:
    """Every optional request field that the spec marks nullable accepts an explicit null, which means the same as leaving the field out."""
    fixed = {"max_tokens": 8, "temperature": 0, "seed": 11}
    nulls = {name: None for name in _nullable_request_fields() if name not in fixed and name != "model"}
    require(bool(nulls), "the spec marks no optional request field nullable", actual=nulls)
    plain_body = target.body(**fixed)
    null_body = dict(plain_body, **nulls)  # dict(): keep the explicit None values
    with_nulls = target.chat(null_body, headers={"x-use-cache": "false"})
    require(with_nulls.status == 200, f"explicit nulls for {sorted(nulls)} were not accepted",
            expected=200, actual=f"{with_nulls.status} {with_nulls.body_text[:300]}", exchanges=with_nulls)
    without = target.chat(plain_body, headers={"x-use-cache": "false"})
    need_answer(without, "the same request without the nulls", "request.messages.accepted")
    a, b = first_content(with_nulls, "explicit nulls"), first_content(without, "fields left out")
    if a != b:
        require_repeatable(target, plain_body, without, first_choice_content)
    require(a == b, "at temperature 0, explicit nulls changed the answer compared with leaving the fields out",
            expected=b, actual=a, exchanges=(with_nulls, without))


@clause("request.body.unknown-fields")
def test_unknown_fields(target: Target) -> None:
    """A request carrying an unknown top-level field (e.g. user) is answered 200 as if the field were absent, or refused with a 4xx error naming the field."""
    for field, value in (("user", "conformance-suite"), ("x_chatconform_unknown", 1)):
        ex = target.chat(target.body(max_tokens=4, **{field: value}))
        if ex.status == 200:
            completion(ex, f"unknown field {field}")
            continue
        require(400 <= ex.status < 500 and names_field(ex.json, field),
                f"unknown field {field!r}: expected 200 or a 4xx naming it, got {ex.status}",
                expected=f"200, or 4xx naming {field}", actual=f"{ex.status} {ex.body_text[:300]}", exchanges=ex)


@clause("request.model.served-accepted")
def test_served_model_accepted(target: Target) -> None:
    """A request whose model names the served model (an id listed by GET /v1/models) is answered 200."""
    if not target.models:
        models = target.get("/v1/models")
        need(False, "a model listed by GET /v1/models", root="routes.models.lists-served",
             actual=f"{models.status} {models.body_text[:200]}", exchanges=models)
    for model in target.models[:3]:
        completion(target.chat(target.body(max_tokens=4, model=model)), f"model {model!r}")


@clause("request.model.optional")
def test_model_optional(target: Target) -> None:
    """A request without model is answered 200 by the served model."""
    body = target.body(max_tokens=4)
    body.pop("model", None)
    completion(target.chat(body), "request without model")


@clause("request.stream.default-false")
def test_stream_default_false(target: Target) -> None:
    """A request with stream false or absent is answered with a single application/json chat completion, not an event stream."""
    for label, body in (("stream absent", target.body(max_tokens=4)),
                        ("stream false", target.body(max_tokens=4, stream=False))):
        ex = target.chat(body)
        completion(ex, label)
        enforce("request.stream.default-false", ex, label)


@clause("request.n.default-one")
def test_n_default_one(target: Target) -> None:
    """A request with n absent or 1 yields exactly one choice with index 0."""
    for label, body in (("n absent", target.body(max_tokens=4)), ("n 1", target.body(max_tokens=4, n=1))):
        ex = target.chat(body)
        completion(ex, label)
        enforce("request.n.default-one", ex, label)


def _n2_indices(ex: Exchange) -> Any:
    """The choice indices of an answer to n 2 (in order), or of a stream (sorted, each once)."""
    if isinstance(ex, StreamExchange):
        return sorted({c.get("index") for chunk in ex.chunks for c in chunk.get("choices") or []
                       if isinstance(c, dict)}, key=repr)
    choices = completion(ex, "n 2").get("choices")
    return [c.get("index") if isinstance(c, dict) else c for c in choices] if isinstance(choices, list) else choices


@clause("request.n.multiple")
def test_n_multiple(target: Target, responses: SampleSet, streams: SampleSet) -> None:
    """A request with n 2 yields two choices with indices 0 and 1, or is refused with a 4xx error naming n."""
    ex = target.chat(target.body(max_tokens=4, n=2))
    refusals = []
    for what, answer in [("n 2", ex)] + [(f"the {s.label} {kind}", s.exchange) for kind, samples in
                                         (("response", responses), ("stream", streams))
                                         for s in samples.rooted("request.n.multiple")]:
        if 400 <= answer.status < 500:
            require(names_field(answer.json, "n"), f"{what}: refused, but the error does not name n",
                    expected="4xx naming n", actual=answer.body_text[:300], exchanges=answer)
            refusals.append(answer)
            continue
        require(answer.status == 200, f"{what}: expected 200 or a 4xx naming n, got {answer.status}",
                expected=200, actual=f"{answer.status} {answer.body_text[:200]}", exchanges=answer)
        indices = _n2_indices(answer)
        require(indices == [0, 1], f"{what}: expected two choices with indices 0 and 1",
                expected=[0, 1], actual=indices, exchanges=answer)
    if refusals:
        raise Unsupported("n 2 refused with a 4xx naming n", exchanges=refusals)


@clause("request.reasoning-effort.accepted")
def test_reasoning_effort_accepted(target: Target) -> None:
    """A request with reasoning_effort set to one of none, minimal, low, medium, high or xhigh is answered 200, also by a model that does not reason."""
    for effort in REASONING_EFFORTS:
        completion(target.chat(target.body(max_tokens=1, reasoning_effort=effort)), f"reasoning_effort {effort}")


# -- the response body -----------------------------------------------------------------------

def _each_response(responses: SampleSet) -> Iterator[tuple[Sample, dict[str, Any]]]:
    """(sample, body) of each accepted response; then NotExercised for a lost one (SampleSet.judged)."""
    return ((s, s.exchange.json_object) for s in responses.judged())  # accepted: each body is a JSON object


def _judge_responses(responses: SampleSet, clause_id: str) -> None:
    """The clause's judge on every accepted response; then NotExercised for a lost one."""
    for sample in responses.judged():
        enforce(clause_id, sample.exchange, sample.label)


def _judge_answers(responses: SampleSet, streams: SampleSet, clause_id: str) -> None:
    """The clause's judge on every accepted response and stream (a rule of bodies and chunks alike); then
    NotExercised for a lost sample."""
    for kind, samples in (("response", responses), ("stream", streams)):
        for sample in samples.accepted:
            enforce(clause_id, sample.exchange, f"{kind} {sample.label}")
    responses.need_all()
    streams.need_all()


@clause("response.body.schema-valid")
def test_response_schema_valid(responses: SampleSet) -> None:
    """Every non-streaming 200 response body validates against the ChatCompletion schema."""
    _judge_responses(responses, "response.body.schema-valid")


@clause("response.content-type.json")
def test_response_content_type(responses: SampleSet) -> None:
    """A non-streaming 200 response has Content-Type application/json."""
    _judge_responses(responses, "response.content-type.json")


@clause("response.id.present")
def test_response_id_present(responses: SampleSet) -> None:
    """The response id is a non-empty string."""
    _judge_responses(responses, "response.id.present")


@clause("response.id.unique")
def test_response_id_unique(target: Target) -> None:
    """Two identical requests sent with x-use-cache false get responses with different ids."""
    body = target.body(max_tokens=4, temperature=0)
    first, second = target.many([lambda: target.chat(body, headers={"x-use-cache": "false"})] * 2)
    for ex in (first, second):
        need_answer(ex, "a plain request", "request.messages.accepted")
    a, b = first.json_object.get("id"), second.json_object.get("id")
    need(all(isinstance(i, str) and i.strip() for i in (a, b)), "an id in both answers", root="response.id.present",
         actual=[a, b], exchanges=(first, second))
    require(a != b, "two requests got the same id", expected="different ids", actual=[a, b], exchanges=(first, second))


@clause("response.object.value")
def test_response_object(responses: SampleSet) -> None:
    """The response object field is the string chat.completion."""
    _judge_responses(responses, "response.object.value")


@clause("response.created.unix-seconds")
def test_created_unix_seconds(responses: SampleSet, streams: SampleSet) -> None:
    """The created field of a response or chunk is a non-negative integer count of seconds since the Unix epoch."""
    _judge_answers(responses, streams, "response.created.unix-seconds")


@clause("response.created.plausible")
def test_created_plausible(target: Target) -> None:
    """The created field lies within one day of the client's clock at the time of the request."""
    now = time.time()
    ex = target.chat(target.body(max_tokens=2), headers={"x-use-cache": "false"})
    need_answer(ex, "a plain request", "request.messages.accepted")
    created = ex.json_object.get("created", "(absent)")
    need(unix_seconds(created), "a created count of seconds since the epoch", root="response.created.unix-seconds",
         actual=created, exchanges=ex)
    require(abs(created - now) <= 86400,
            "created is more than one day away from the client's clock",
            expected=f"within 86400 s of {int(now)}", actual=created, exchanges=ex)


@clause("response.model.present")
def test_model_present(responses: SampleSet, streams: SampleSet) -> None:
    """The model field of a response or chunk is a non-empty string."""
    _judge_answers(responses, streams, "response.model.present")


@clause("response.model.served")
def test_model_served(target: Target, responses: SampleSet) -> None:
    """The response model equals the requested model or an id listed by GET /v1/models."""
    later = Deferred()
    for sample, body in _each_response(responses):
        allowed = set(target.models) | ({sample.body["model"]} if "model" in sample.body else set())
        need(bool(allowed), "a requested model or one listed by GET /v1/models", root="routes.models.lists-served",
             actual=sample.body.get("model", "(no model requested)"), exchanges=sample.exchange)
        with later:
            need(isinstance(body.get("model"), str) and body["model"].strip() != "", f"a model in the {sample.label} "
                 "response", root="response.model.present", actual=body.get("model", "(absent)"), exchanges=sample.exchange)
            require(body["model"] in allowed, f"{sample.label}: the response names a model that was neither requested nor listed",
                    expected=sorted(allowed), actual=body.get("model"), exchanges=sample.exchange)
    later.settle()


@clause("response.system-fingerprint.present")
def test_system_fingerprint(responses: SampleSet, streams: SampleSet) -> None:
    """Responses and chunks carry system_fingerprint as a string."""
    _judge_answers(responses, streams, "response.system-fingerprint.present")


@clause("response.choices.count")
def test_choices_count(responses: SampleSet) -> None:
    """The choices list holds exactly n entries (one when n is absent)."""
    _judge_responses(responses, "response.choices.count")


@clause("response.choice.index")
def test_choice_index(responses: SampleSet) -> None:
    """The choices carry the distinct indices 0 to n-1, in order."""
    _judge_responses(responses, "response.choice.index")


@clause("response.message.role")
def test_message_role(responses: SampleSet) -> None:
    """Every choice's message has role assistant."""
    later = Deferred()
    for sample, body in _each_response(responses):
        with later:
            need(bool(messages_of(body)), f"a choice in the {sample.label} response", root="response.choices.count",
                 actual=body.get("choices", "(absent)"), exchanges=sample.exchange)
            enforce("response.message.role", sample.exchange, sample.label)
    later.settle()


@clause("response.message.content")
def test_message_content(responses: SampleSet) -> None:
    """A message without tool_calls has string content; a message with tool_calls has null, absent or string content."""
    _judge_responses(responses, "response.message.content")


@clause("response.finish-reason.values")
def test_finish_reason_values(responses: SampleSet) -> None:
    """Every final finish_reason is one of stop, length, tool_calls or content_filter."""
    _judge_responses(responses, "response.finish-reason.values")


@clause("response.finish-reason.stop")
def test_finish_reason_stop(target: Target) -> None:
    """A choice that ends with fewer than max_tokens tokens, in a request without stop sequences or tools, reports finish_reason stop."""
    limit = 48
    seen_early = 0
    for prompt in ("Reply with just the word yes.", "Say hi.", "Answer with one word: what colour is the sky?"):
        ex = target.chat(target.body(max_tokens=limit, temperature=0, messages=[{"role": "user", "content": prompt}]))
        need_answer(ex, "a short question", "request.messages.accepted")
        body = ex.json_object
        usage = body.get("usage")
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if not isinstance(tokens, int):
            raise not_exercised("usage.completion_tokens (to tell an early end from a cut-off)",
                                root="response.usage.present", actual=usage, exchanges=ex)
        if tokens < limit:
            seen_early += 1
            require(bool(body.get("choices")), f"the answer ended after {tokens} < max_tokens {limit} tokens "
                    "without a choice to report finish_reason stop", expected="stop", actual=body.get("choices"),
                    exchanges=ex)
            enforce("response.finish-reason.stop", ex, prompt)
    if not seen_early:
        raise NotApplicable(f"no answer ended before max_tokens {limit}; the rule could not be observed")


@clause("response.usage.present")
def test_usage_present(responses: SampleSet) -> None:
    """Every non-streaming response carries a usage object."""
    _judge_responses(responses, "response.usage.present")


@clause("response.message.unused-fields")
def test_unused_fields(responses: SampleSet, streams: SampleSet) -> None:
    """A generated message or delta carries tool_call_id and refusal only as null or absent."""
    _judge_answers(responses, streams, "response.message.unused-fields")
