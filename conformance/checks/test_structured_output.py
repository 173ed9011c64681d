"""response_format: the seeds' json and regex dialect (hf) and OpenAI's text, json_object and json_schema.

The schemas and regexes have short bounded answers (enums, booleans, a fixed-width date), so a
server that honours the constraint ends with finish_reason stop within max_tokens on any model,
random weights included. A long unconstrained ramble that runs into max_tokens is therefore
evidence that the constraint was ignored.

Each verdict follows its clause's sentence. The hf clauses (json, regex) judge only the content a
generation produced: a clear 4xx refusal produced none, so it is UNSUPPORTED (the feature is not
offered), whatever the dialect under test; a 5xx or a refusal without an error envelope is no clear
refusal and fails. json_object and json_schema may be refused with a 4xx naming response_format, as
their clauses say; text must be accepted. The stream clause compares with the non-streamed answer,
so a format refused without stream leaves nothing to compare.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from conformance.client import Exchange, Target
from conformance.config import SuiteConfig
from conformance.judges import enforce
from conformance.registry import clause
from conformance.samples import need_answer
from conformance.verdicts import (
    Fail,
    NotApplicable,
    NotExercised,
    Unsupported,
    refused_clearly,
    require,
    unsupported_or_fail,
)

FRESH = {"x-use-cache": "false"}
MAX_TOKENS = 48
JSON_PROMPT = "Is the sky blue? Answer in JSON."
REGEX_PROMPT = "What is today's date?"
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}
DATE_REGEX = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
YES_NO_REGEX = "(yes|no)"


def _request(target: Target, prompt: str, response_format: dict[str, Any] | None, **params: Any) -> Exchange:
    params.setdefault("max_tokens", MAX_TOKENS)
    body = target.body(messages=[{"role": "user", "content": prompt}], temperature=0,
                       response_format=response_format, **params)
    return target.chat(body, headers=FRESH)


def _answered(ex: Exchange) -> bool:
    return ex.status == 200 and isinstance(ex.json, dict)


def _content_or_refusal(ex: Exchange, feature: str) -> None:
    """For a clause that judges produced content: return on 200 + JSON; a clear refusal is UNSUPPORTED
    (no content was produced, and the clause constrains nothing else); anything else fails."""
    if _answered(ex):
        return
    if ex.status == 200:
        raise Fail(f"{feature}: 200 but the body is not a JSON object", actual=ex.body_text[:300], exchanges=ex)
    if refused_clearly(ex):
        named = "naming" if "response_format" in ex.body_text else "not naming"
        raise Unsupported(f"{feature} refused with {ex.status} ({named} response_format): no content was produced, "
                          "and the clause judges only content", exchanges=ex)
    unsupported_or_fail(ex, feature)


def _required(ex: Exchange, feature: str) -> None:
    """For a clause whose feature must be accepted (or refused only as it says): 200 + JSON, else Fail."""
    if ex.status == 200 and not isinstance(ex.json, dict):
        raise Fail(f"{feature}: 200 but the body is not a JSON object", actual=ex.body_text[:300], exchanges=ex)
    if ex.status != 200:
        unsupported_or_fail(ex, feature)


def _choice(ex: Exchange) -> dict[str, Any]:
    choices = ex.json_object.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict):
        raise Fail("the response holds no choice", actual=ex.body_text[:300], exchanges=ex)
    return first


def _content(ex: Exchange) -> str:
    content = (_choice(ex).get("message") or {}).get("content")
    return content if isinstance(content, str) else ""


def _finished(ex: Exchange, what: str) -> str:
    """The content of a choice that ended with stop; Fail when a short bounded answer ran into max_tokens."""
    finish = _choice(ex).get("finish_reason")
    require(finish == "stop", f"{what} has a short bounded form, yet the generation did not end with stop "
            f"within {MAX_TOKENS} tokens (the constraint looks ignored)",
            expected="finish_reason stop", actual=f"{finish!r}: {_content(ex)[:200]!r}", exchanges=ex)
    return _content(ex)


def _json_valid(ex: Exchange, content: str, schema: dict[str, Any] | None, what: str) -> Any:
    """Parse content as JSON and validate it against schema (when given); Fail naming the problem."""
    try:
        value = json.loads(content)
    except ValueError as exc:
        raise Fail(f"{what}: the content is not JSON: {exc}", actual=content, exchanges=ex) from None
    if schema is not None:
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=str)
        require(not errors, f"{what}: the content is not valid against the schema", expected=schema,
                actual=[e.message for e in errors] + [content], exchanges=ex)
    return value


def _hf(config: SuiteConfig) -> bool:
    return config.dialect == "hf"


def _refused_by_name(ex: Exchange) -> bool:
    """A clear refusal naming response_format: what the json_object and json_schema clauses permit."""
    return ex.status != 200 and refused_clearly(ex) and "response_format" in ex.body_text


# --- hf dialect -----------------------------------------------------------------------------------


@clause("format.json.schema-valid")
def test_json_schema_valid(target: Target) -> None:
    """With response_format type json and a JSON Schema object as value, content that ends with finish_reason stop parses as JSON valid against that schema."""
    ex = _request(target, JSON_PROMPT, {"type": "json", "value": ANSWER_SCHEMA})
    _content_or_refusal(ex, "response_format json")
    _finished(ex, "a json response_format")
    enforce("format.json.schema-valid", ex, "response_format json")


@clause("format.json.value-string")
def test_json_value_string(target: Target) -> None:
    """A json response_format whose value is a string holding a JSON Schema is treated like the parsed schema."""
    as_string, as_object = target.many([
        lambda: _request(target, JSON_PROMPT, {"type": "json", "value": json.dumps(ANSWER_SCHEMA)}),
        lambda: _request(target, JSON_PROMPT, {"type": "json", "value": ANSWER_SCHEMA})])
    if not _answered(as_string):
        _string_refused(as_string, as_object)
    content = _finished(as_string, "a json response_format given as a string")
    _json_valid(as_string, content, ANSWER_SCHEMA, "response_format json (string value)")
    if _answered(as_object):
        require(content == _content(as_object), "at temperature 0 the string schema gave other content than the object",
                expected=_content(as_object), actual=content, exchanges=(as_object, as_string))


def _string_refused(as_string: Exchange, as_object: Exchange) -> None:
    """The verdict when the string form was not answered: alike only if the parsed schema was refused too."""
    if _answered(as_object):
        raise Fail("the json response_format was accepted with the schema as an object but not as a string",
                   expected=200, actual=f"{as_string.status} {as_string.body_text[:300]}",
                   exchanges=(as_object, as_string))
    if refused_clearly(as_object) and refused_clearly(as_string):
        raise Unsupported(f"response_format json is refused in both forms ({as_object.status}, {as_string.status}): "
                          "treated alike, and no content to compare", exchanges=(as_object, as_string))
    if not refused_clearly(as_object):  # the parsed form failed without a clear refusal: its own clause fails
        raise NotExercised(f"the json response_format with an object schema got {as_object.status}, so there is "
                           "nothing to compare the string form with (judged by format.json.schema-valid)",
                           root="format.json.schema-valid", actual=f"{as_object.status} {as_object.body_text[:200]}",
                           exchanges=(as_object, as_string))
    unsupported_or_fail(as_string, "response_format json with a string value")


@clause("format.regex.full-match")
def test_regex_full_match(target: Target) -> None:
    """With response_format type regex, content that ends with finish_reason stop fully matches the regex."""
    for prompt, pattern in ((REGEX_PROMPT, DATE_REGEX), ("Is water wet?", YES_NO_REGEX)):
        ex = _request(target, prompt, {"type": "regex", "value": pattern})
        _content_or_refusal(ex, "response_format regex")
        _finished(ex, f"regex {pattern}")
        enforce("format.regex.full-match", ex, f"regex {pattern}")


# --- openai dialect -------------------------------------------------------------------------------


@clause("format.openai.text")
def test_openai_text(target: Target) -> None:
    """A response_format of type text is accepted and behaves as no response_format."""
    ex = _request(target, "Say hello.", {"type": "text"}, max_tokens=16)
    _required(ex, "response_format text")
    plain = _request(target, "Say hello.", None, max_tokens=16)
    need_answer(plain, "the same request without response_format", "request.messages.accepted")
    require(_content(ex) == _content(plain), "at temperature 0, type text must give the content of no response_format",
            expected=_content(plain), actual=_content(ex), exchanges=(plain, ex))


@clause("format.openai.json-object")
def test_openai_json_object(target: Target) -> None:
    """A response_format of type json_object is refused with a 4xx error naming response_format, or yields content that parses as a JSON object when finish_reason is stop."""
    ex = _request(target, JSON_PROMPT, {"type": "json_object"})
    if _refused_by_name(ex):
        raise Unsupported(f"response_format json_object refused with {ex.status}", exchanges=ex)
    _required(ex, "response_format json_object")
    _choice(ex)
    # Any JSON object is allowed, so a long one may run into max_tokens: the judge asks it to begin as one.
    enforce("format.openai.json-object", ex, "response_format json_object")


@clause("format.openai.json-schema")
def test_openai_json_schema(target: Target) -> None:
    """A response_format of type json_schema is refused with a 4xx error naming response_format, or yields content valid against json_schema.schema when finish_reason is stop."""
    rf = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}
    ex = _request(target, JSON_PROMPT, rf)
    if _refused_by_name(ex):
        raise Unsupported(f"response_format json_schema refused with {ex.status}", exchanges=ex)
    _required(ex, "response_format json_schema")
    _finished(ex, "a json_schema response_format")
    enforce("format.openai.json-schema", ex, "response_format json_schema")


# --- streams --------------------------------------------------------------------------------------


def _dialect_format(config: SuiteConfig) -> dict[str, Any]:
    if _hf(config):
        return {"type": "json", "value": ANSWER_SCHEMA}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}


@clause("format.stream.constrained")
def test_stream_constrained(target: Target, suite_config: SuiteConfig) -> None:
    """With stream true, the concatenated delta contents satisfy the response_format exactly as a non-streaming content would."""
    rf = _dialect_format(suite_config)
    plain = _request(target, JSON_PROMPT, rf)
    _comparable(plain, rf, suite_config)
    body = target.body(messages=[{"role": "user", "content": JSON_PROMPT}], max_tokens=MAX_TOKENS, temperature=0,
                       response_format=rf, stream=True)
    ex = target.chat_stream(body, headers=FRESH)
    if ex.status != 200:  # accepted without stream, so a streamed refusal breaks the clause
        unsupported_or_fail(ex, f"response_format {rf['type']} in a stream")
    text, finish = "", None
    for chunk in ex.chunks:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text += delta["content"]
            finish = choice.get("finish_reason") or finish
    require(finish == "stop", "a constrained stream with a short bounded form did not end with stop",
            expected="stop", actual=f"{finish!r}: {text[:200]!r}", exchanges=ex)
    enforce("format.stream.constrained", ex, f"streamed response_format {rf['type']}")
    require(text == _content(plain), "at temperature 0 the streamed content differs from the non-streamed one",
            expected=_content(plain), actual=text, exchanges=(plain, ex))


def _comparable(plain: Exchange, rf: dict[str, Any], config: SuiteConfig) -> None:
    """Return when the non-streamed request with the format was answered 200; else say why nothing compares.

    The clause compares a stream with what the same request gives without stream. A format refused
    without stream as its own clause permits (a clear refusal of json; of json_schema, one naming
    response_format) is not offered: there is nothing to compare. Any other failure is the
    non-streaming clause's to judge.
    """
    if _answered(plain):
        return
    root = "format.json.schema-valid" if _hf(config) else "format.openai.json-schema"
    if refused_clearly(plain) and (_hf(config) or _refused_by_name(plain)):
        raise NotApplicable(f"response_format {rf['type']} is refused without stream too ({plain.status}): there is "
                            "no constrained answer to compare a stream with", exchanges=plain)
    raise NotExercised(f"the request with response_format {rf['type']} and no stream was not answered 200 "
                       f"({plain.status}), so there is nothing to compare a stream with (judged by {root})",
                       root=root, actual=f"{plain.status} {plain.body_text[:200]}", exchanges=plain)
