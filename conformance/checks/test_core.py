"""Core checks: the request body, messages, the response body and usage (clause order of spec/clauses.yaml)."""

from __future__ import annotations

import time
from typing import Any

from conformance.client import Target
from conformance.expectations import (
    completion,
    first_content,
    is_json_content_type,
    names_field,
)
from conformance.registry import clause
from conformance.samples import Sample, bodies_and_chunks
from conformance.verdicts import Fail, NotApplicable, Unsupported, require
from spec import schemas

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


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
def test_messages_accepted(target: Target, validate: Any) -> None:
    """A request whose messages hold one user message with string content is answered 200 with a chat completion."""
    ex = target.chat(target.body(max_tokens=8))
    body = completion(ex, "one user message")
    require(body.get("object") == "chat.completion" and isinstance(body.get("choices"), list),
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
    a, b = first_content(with_nulls, "explicit nulls"), first_content(without, "fields left out")
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
        raise NotApplicable("GET /v1/models lists no model")
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
        require(is_json_content_type(ex), f"{label}: the answer is not application/json",
                expected="application/json", actual=ex.header("content-type"), exchanges=ex)
        require(not ex.body_text.lstrip().startswith("data:"), f"{label}: the answer is an event stream",
                actual=ex.body_text[:200], exchanges=ex)


@clause("request.n.default-one")
def test_n_default_one(target: Target) -> None:
    """A request with n absent or 1 yields exactly one choice with index 0."""
    for label, body in (("n absent", target.body(max_tokens=4)), ("n 1", target.body(max_tokens=4, n=1))):
        ex = target.chat(body)
        choices = completion(ex, label).get("choices")
        indices = [c.get("index") for c in choices] if isinstance(choices, list) else choices
        require(indices == [0], f"{label}: expected exactly one choice with index 0",
                expected=[0], actual=indices, exchanges=ex)


@clause("request.n.multiple")
def test_n_multiple(target: Target) -> None:
    """A request with n 2 yields two choices with indices 0 and 1, or is refused with a 4xx error naming n."""
    ex = target.chat(target.body(max_tokens=4, n=2))
    if 400 <= ex.status < 500:
        if names_field(ex.json, "n"):
            raise Unsupported("n 2 refused with a 4xx naming n", exchanges=ex)
        raise Fail("n 2 refused, but the error does not name n", expected="4xx naming n",
                   actual=ex.body_text[:300], exchanges=ex)
    choices = completion(ex, "n 2").get("choices")
    indices = [c.get("index") for c in choices] if isinstance(choices, list) else choices
    require(indices == [0, 1], "n 2: expected two choices with indices 0 and 1",
            expected=[0, 1], actual=indices, exchanges=ex)


@clause("request.reasoning-effort.accepted")
def test_reasoning_effort_accepted(target: Target) -> None:
    """A request with reasoning_effort set to one of none, minimal, low, medium, high or xhigh is answered 200, also by a model that does not reason."""
    for effort in REASONING_EFFORTS:
        completion(target.chat(target.body(max_tokens=1, reasoning_effort=effort)), f"reasoning_effort {effort}")


@clause("message.system.accepted")
def test_system_accepted(target: Target) -> None:
    """A system message before the user message is accepted and the request is answered 200."""
    messages = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Say hello."}]
    completion(target.chat(target.body(max_tokens=4, messages=messages)), "system + user")


@clause("message.developer.accepted")
def test_developer_accepted(target: Target) -> None:
    """A message with role developer is accepted and treated as a system message."""
    def ask(role: str) -> Any:
        messages = [{"role": role, "content": "Answer every question with the word banana."},
                    {"role": "user", "content": "What is your favourite fruit?"}]
        ex = target.chat(target.body(max_tokens=12, temperature=0, seed=3, messages=messages),
                         headers={"x-use-cache": "false"})
        return ex, first_content(ex, f"{role} message")
    dev, dev_text = ask("developer")
    sys_, sys_text = ask("system")
    require(dev_text == sys_text, "at temperature 0, a developer message gives a different answer than the same system message",
            expected=sys_text, actual=dev_text, exchanges=(dev, sys_))


@clause("message.user.parts-text")
def test_user_text_parts(target: Target) -> None:
    """A user message whose content is a list of text parts is accepted and answered 200."""
    parts = [{"type": "text", "text": "Say"}, {"type": "text", "text": "hello."}]
    completion(target.chat(target.body(max_tokens=4, messages=[{"role": "user", "content": parts}])), "text parts")


@clause("message.user.parts-equivalent")
def test_user_parts_equivalent(target: Target) -> None:
    """At temperature 0, a user content of one text part yields the same content as the same text given as a string."""
    text = "Name three animals."
    as_part, as_string = target.many(
        lambda content=content: target.chat(target.body(max_tokens=12, temperature=0, seed=5, messages=[
            {"role": "user", "content": content}]), headers={"x-use-cache": "false"})
        for content in ([{"type": "text", "text": text}], text))
    a, b = first_content(as_part, "one text part"), first_content(as_string, "string content")
    require(a == b, "one text part and the same string give different answers at temperature 0",
            expected=b, actual=a, exchanges=(as_part, as_string))


@clause("message.assistant.multi-turn")
def test_multi_turn(target: Target) -> None:
    """A conversation of user, assistant and user messages is accepted and answered 200."""
    messages = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "Say goodbye."}]
    completion(target.chat(target.body(max_tokens=4, messages=messages)), "user/assistant/user")


@clause("message.name.accepted")
def test_name_accepted(target: Target) -> None:
    """A message carrying a name field is accepted and answered 200."""
    messages = [{"role": "user", "content": "Say hello.", "name": "alice"}]
    completion(target.chat(target.body(max_tokens=4, messages=messages)), "message with name")


# -- the response body -----------------------------------------------------------------------

def _each_response(responses: list[Sample]) -> list[tuple[Sample, dict[str, Any]]]:
    return [(s, s.exchange.json) for s in responses]


@clause("response.body.schema-valid")
def test_response_schema_valid(responses: list[Sample], validate: Any) -> None:
    """Every non-streaming 200 response body validates against the ChatCompletion schema."""
    for sample, body in _each_response(responses):
        validate("response", body, sample.exchange)


@clause("response.content-type.json")
def test_response_content_type(responses: list[Sample]) -> None:
    """A non-streaming 200 response has Content-Type application/json."""
    for sample in responses:
        require(is_json_content_type(sample.exchange), f"{sample.label}: Content-Type is not application/json",
                expected="application/json", actual=sample.exchange.header("content-type"), exchanges=sample.exchange)


@clause("response.id.present")
def test_response_id_present(responses: list[Sample]) -> None:
    """The response id is a non-empty string."""
    for sample, body in _each_response(responses):
        value = body.get("id")
        require(isinstance(value, str) and value.strip() != "", f"{sample.label}: id is not a non-empty string",
                expected="non-empty string", actual=value, exchanges=sample.exchange)


@clause("response.id.unique")
def test_response_id_unique(target: Target) -> None:
    """Two identical requests sent with x-use-cache false get responses with different ids."""
    body = target.body(max_tokens=4, temperature=0)
    first, second = target.many([lambda: target.chat(body, headers={"x-use-cache": "false"})] * 2)
    a, b = completion(first).get("id"), completion(second).get("id")
    require(a != b, "two requests got the same id", expected="different ids", actual=[a, b], exchanges=(first, second))


@clause("response.object.value")
def test_response_object(responses: list[Sample]) -> None:
    """The response object field is the string chat.completion."""
    for sample, body in _each_response(responses):
        require(body.get("object") == "chat.completion", f"{sample.label}: object is not chat.completion",
                expected="chat.completion", actual=body.get("object"), exchanges=sample.exchange)


@clause("response.created.unix-seconds")
def test_created_unix_seconds(responses: list[Sample], streams: list[Sample]) -> None:
    """The created field of a response or chunk is a non-negative integer count of seconds since the Unix epoch."""
    for label, body, ex in bodies_and_chunks(responses, streams):
        value = body.get("created")
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        # Milliseconds since the epoch are integers too, but not seconds: they lie far in the future.
        require(ok and value < 10_000_000_000, f"{label}: created is not a count of seconds since the epoch",
                expected="non-negative integer seconds", actual=value, exchanges=ex)


@clause("response.created.plausible")
def test_created_plausible(target: Target) -> None:
    """The created field lies within one day of the client's clock at the time of the request."""
    now = time.time()
    ex = target.chat(target.body(max_tokens=2), headers={"x-use-cache": "false"})
    created = completion(ex).get("created")
    require(isinstance(created, int | float) and abs(created - now) <= 86400,
            "created is more than one day away from the client's clock",
            expected=f"within 86400 s of {int(now)}", actual=created, exchanges=ex)


@clause("response.model.present")
def test_model_present(responses: list[Sample], streams: list[Sample]) -> None:
    """The model field of a response or chunk is a non-empty string."""
    for label, body, ex in bodies_and_chunks(responses, streams):
        value = body.get("model")
        require(isinstance(value, str) and value.strip() != "", f"{label}: model is not a non-empty string",
                expected="non-empty string", actual=value, exchanges=ex)


@clause("response.model.served")
def test_model_served(target: Target, responses: list[Sample]) -> None:
    """The response model equals the requested model or an id listed by GET /v1/models."""
    for sample, body in _each_response(responses):
        allowed = set(target.models) | ({sample.body["model"]} if "model" in sample.body else set())
        if not allowed:
            raise NotApplicable("no model requested and GET /v1/models lists none")
        require(body.get("model") in allowed, f"{sample.label}: the response names a model that was neither requested nor listed",
                expected=sorted(allowed), actual=body.get("model"), exchanges=sample.exchange)


@clause("response.system-fingerprint.present")
def test_system_fingerprint(responses: list[Sample], streams: list[Sample]) -> None:
    """Responses and chunks carry system_fingerprint as a string."""
    for label, body, ex in bodies_and_chunks(responses, streams):
        require(isinstance(body.get("system_fingerprint"), str), f"{label}: system_fingerprint is not a string",
                expected="string", actual=body.get("system_fingerprint", "(absent)"), exchanges=ex)


@clause("response.choices.count")
def test_choices_count(responses: list[Sample]) -> None:
    """The choices list holds exactly n entries (one when n is absent)."""
    for sample, body in _each_response(responses):
        n = sample.body.get("n") or 1
        choices = body.get("choices")
        count = len(choices) if isinstance(choices, list) else None
        require(count == n, f"{sample.label}: expected {n} choice(s)", expected=n, actual=count, exchanges=sample.exchange)


@clause("response.choice.index")
def test_choice_index(responses: list[Sample]) -> None:
    """The choices carry the distinct indices 0 to n-1, in order."""
    for sample, body in _each_response(responses):
        choices = body.get("choices") or []
        indices = [c.get("index") if isinstance(c, dict) else None for c in choices]
        require(indices == list(range(len(choices))), f"{sample.label}: choice indices are not 0..n-1 in order",
                expected=list(range(len(choices))), actual=indices, exchanges=sample.exchange)


def _messages(body: dict[str, Any]) -> list[Any]:
    return [c.get("message") if isinstance(c, dict) else None for c in body.get("choices") or []]


@clause("response.message.role")
def test_message_role(responses: list[Sample]) -> None:
    """Every choice's message has role assistant."""
    for sample, body in _each_response(responses):
        roles = [m.get("role") if isinstance(m, dict) else None for m in _messages(body)]
        require(bool(roles) and all(r == "assistant" for r in roles), f"{sample.label}: a message role is not assistant",
                expected="assistant", actual=roles, exchanges=sample.exchange)


@clause("response.message.content")
def test_message_content(responses: list[Sample]) -> None:
    """A message without tool_calls has string content; a message with tool_calls has null, absent or string content."""
    for sample, body in _each_response(responses):
        for i, message in enumerate(_messages(body)):
            if not isinstance(message, dict):
                raise Fail(f"{sample.label}: choice {i} has no message object", actual=message, exchanges=sample.exchange)
            if message.get("tool_calls"):
                ok = message.get("content") is None or isinstance(message.get("content"), str)
                rule = "null, absent or string content (with tool_calls)"
            else:
                ok = isinstance(message.get("content"), str)
                rule = "string content (without tool_calls)"
            require(ok, f"{sample.label}: choice {i} content breaks the rule: {rule}",
                    expected=rule, actual=message.get("content", "(absent)"), exchanges=sample.exchange)


@clause("response.finish-reason.values")
def test_finish_reason_values(responses: list[Sample]) -> None:
    """Every final finish_reason is one of stop, length, tool_calls or content_filter."""
    for sample, body in _each_response(responses):
        reasons = [c.get("finish_reason") for c in body.get("choices") or [] if isinstance(c, dict)]
        bad = [r for r in reasons if r not in FINISH_REASONS]
        require(not bad, f"{sample.label}: finish_reason outside {FINISH_REASONS}", expected=list(FINISH_REASONS),
                actual=reasons, exchanges=sample.exchange)


@clause("response.finish-reason.stop")
def test_finish_reason_stop(target: Target) -> None:
    """A choice that ends with fewer than max_tokens tokens, in a request without stop sequences or tools, reports finish_reason stop."""
    limit = 48
    seen_early = 0
    for prompt in ("Reply with just the word yes.", "Say hi.", "Answer with one word: what colour is the sky?"):
        ex = target.chat(target.body(max_tokens=limit, temperature=0, messages=[{"role": "user", "content": prompt}]))
        body = completion(ex, "short answer")
        usage = body.get("usage") or {}
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        choice = (body.get("choices") or [{}])[0]
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        if isinstance(tokens, int) and tokens < limit:
            seen_early += 1
            require(reason == "stop", f"the answer ended after {tokens} < max_tokens {limit} tokens without stop sequences",
                    expected="stop", actual=reason, exchanges=ex)
    if not seen_early:
        raise NotApplicable(f"no answer ended before max_tokens {limit}; the rule could not be observed")


@clause("response.usage.present")
def test_usage_present(responses: list[Sample]) -> None:
    """Every non-streaming response carries a usage object."""
    for sample, body in _each_response(responses):
        require(isinstance(body.get("usage"), dict), f"{sample.label}: usage is not an object",
                expected="usage object", actual=body.get("usage", "(absent)"), exchanges=sample.exchange)


@clause("response.message.unused-fields")
def test_unused_fields(responses: list[Sample], streams: list[Sample]) -> None:
    """A generated message or delta carries tool_call_id and refusal only as null or absent."""
    for label, body, ex in bodies_and_chunks(responses, streams):
        for choice in body.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            for key in ("message", "delta"):
                part = choice.get(key)
                if not isinstance(part, dict):
                    continue
                for field in ("tool_call_id", "refusal"):
                    require(part.get(field) is None, f"{label}: {key}.{field} is set",
                            expected="null or absent", actual=part.get(field), exchanges=ex)
