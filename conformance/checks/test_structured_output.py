"""response_format: the seeds' json and regex dialect (hf) and OpenAI's text, json_object and json_schema.

The schemas and regexes have short bounded answers (enums, booleans, a fixed-width date), so a
server that honours the constraint ends with finish_reason stop within max_tokens on any model,
random weights included. A long unconstrained ramble that runs into max_tokens is therefore
evidence that the constraint was ignored.

The clauses of the dialect under test (SuiteConfig.dialect) count a refusal as a failure; those
of the other dialect are tried too and a clear refusal is reported as UNSUPPORTED.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from conformance.client import Exchange, Target
from conformance.config import SuiteConfig
from conformance.registry import clause
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


def _accepted(ex: Exchange, feature: str, in_dialect: bool) -> None:
    """Return on 200 + JSON; a refusal is Fail in the dialect under test, else Unsupported when clear."""
    if ex.status == 200 and isinstance(ex.json, dict):
        return
    if in_dialect and ex.status != 200:
        raise Fail(f"{feature} is part of the dialect under test but was refused with {ex.status}",
                   expected=200, actual=f"{ex.status} {ex.body_text[:300]}", exchanges=ex)
    if ex.status == 200:
        raise Fail(f"{feature}: 200 but the body is not a JSON object", actual=ex.body_text[:300], exchanges=ex)
    unsupported_or_fail(ex, feature)


def _choice(ex: Exchange) -> dict[str, Any]:
    choices = ex.json.get("choices")
    require(isinstance(choices, list) and bool(choices) and isinstance(choices[0], dict),
            "the response holds no choice", actual=ex.body_text[:300], exchanges=ex)
    return choices[0]


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


# --- hf dialect -----------------------------------------------------------------------------------


@clause("format.json.schema-valid")
def test_json_schema_valid(target: Target, suite_config: SuiteConfig) -> None:
    """With response_format type json and a JSON Schema object as value, content that ends with finish_reason stop parses as JSON valid against that schema."""
    ex = _request(target, JSON_PROMPT, {"type": "json", "value": ANSWER_SCHEMA})
    _accepted(ex, "response_format json", _hf(suite_config))
    _json_valid(ex, _finished(ex, "a json response_format"), ANSWER_SCHEMA, "response_format json")


@clause("format.json.value-string")
def test_json_value_string(target: Target, suite_config: SuiteConfig) -> None:
    """A json response_format whose value is a string holding a JSON Schema is treated like the parsed schema."""
    as_string = _request(target, JSON_PROMPT, {"type": "json", "value": json.dumps(ANSWER_SCHEMA)})
    _accepted(as_string, "response_format json with a string value", _hf(suite_config))
    content = _finished(as_string, "a json response_format given as a string")
    _json_valid(as_string, content, ANSWER_SCHEMA, "response_format json (string value)")
    as_object = _request(target, JSON_PROMPT, {"type": "json", "value": ANSWER_SCHEMA})
    if as_object.status == 200 and isinstance(as_object.json, dict):
        require(content == _content(as_object), "at temperature 0 the string schema gave other content than the object",
                expected=_content(as_object), actual=content, exchanges=(as_object, as_string))


@clause("format.regex.full-match")
def test_regex_full_match(target: Target, suite_config: SuiteConfig) -> None:
    """With response_format type regex, content that ends with finish_reason stop fully matches the regex."""
    for prompt, pattern in ((REGEX_PROMPT, DATE_REGEX), ("Is water wet?", YES_NO_REGEX)):
        ex = _request(target, prompt, {"type": "regex", "value": pattern})
        _accepted(ex, "response_format regex", _hf(suite_config))
        content = _finished(ex, f"regex {pattern}")
        require(re.fullmatch(pattern, content) is not None, f"the content does not fully match {pattern}",
                expected=pattern, actual=content, exchanges=ex)


# --- openai dialect -------------------------------------------------------------------------------


@clause("format.openai.text")
def test_openai_text(target: Target, suite_config: SuiteConfig) -> None:
    """A response_format of type text is accepted and behaves as no response_format."""
    ex = _request(target, "Say hello.", {"type": "text"}, max_tokens=16)
    _accepted(ex, "response_format text", not _hf(suite_config))
    plain = _request(target, "Say hello.", None, max_tokens=16)
    require(plain.status == 200, "a plain request must be answered 200", actual=plain.status, exchanges=plain)
    require(_content(ex) == _content(plain), "at temperature 0, type text must give the content of no response_format",
            expected=_content(plain), actual=_content(ex), exchanges=(plain, ex))


@clause("format.openai.json-object")
def test_openai_json_object(target: Target, suite_config: SuiteConfig) -> None:
    """A response_format of type json_object is refused with a 4xx error naming response_format, or yields content that parses as a JSON object when finish_reason is stop."""
    ex = _request(target, JSON_PROMPT, {"type": "json_object"})
    if ex.status != 200 and refused_clearly(ex) and "response_format" in ex.body_text:
        raise Unsupported(f"response_format json_object refused with {ex.status}", exchanges=ex)
    _accepted(ex, "response_format json_object", False)
    if _choice(ex).get("finish_reason") != "stop":
        # Any JSON object is allowed, so a long one may run into max_tokens; it must still begin as one.
        require(_content(ex).lstrip().startswith("{"), "json_object output does not even begin as a JSON object",
                expected="{...", actual=_content(ex)[:200], exchanges=ex)
        return
    value = _json_valid(ex, _content(ex), None, "response_format json_object")
    require(isinstance(value, dict), "json_object must yield a JSON object", actual=_content(ex), exchanges=ex)


@clause("format.openai.json-schema")
def test_openai_json_schema(target: Target, suite_config: SuiteConfig) -> None:
    """A response_format of type json_schema is refused with a 4xx error naming response_format, or yields content valid against json_schema.schema when finish_reason is stop."""
    rf = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}
    ex = _request(target, JSON_PROMPT, rf)
    if ex.status != 200 and refused_clearly(ex) and "response_format" in ex.body_text:
        raise Unsupported(f"response_format json_schema refused with {ex.status}", exchanges=ex)
    _accepted(ex, "response_format json_schema", False)
    _json_valid(ex, _finished(ex, "a json_schema response_format"), ANSWER_SCHEMA, "response_format json_schema")


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
    _json_valid(ex, text, ANSWER_SCHEMA, f"streamed response_format {rf['type']}")
    require(text == _content(plain), "at temperature 0 the streamed content differs from the non-streamed one",
            expected=_content(plain), actual=text, exchanges=(plain, ex))


def _comparable(plain: Exchange, rf: dict[str, Any], config: SuiteConfig) -> None:
    """Return when the non-streamed request with the format was answered 200; else say why nothing compares.

    The clause compares a stream with what the same request gives without stream. The openai dialect
    may refuse json_schema (format.openai.json-schema allows it): then there is nothing to compare.
    Any other failure is the non-streaming clause's to judge.
    """
    if plain.status == 200 and isinstance(plain.json, dict):
        return
    root = "format.json.schema-valid" if _hf(config) else "format.openai.json-schema"
    if not _hf(config) and refused_clearly(plain) and "response_format" in plain.body_text:
        raise NotApplicable(f"response_format {rf['type']} is refused without stream too ({plain.status}): there is "
                            "no constrained answer to compare a stream with", exchanges=plain)
    raise NotExercised(f"the request with response_format {rf['type']} and no stream was not answered 200 "
                       f"({plain.status}), so there is nothing to compare a stream with (judged by {root})",
                       root=root, actual=f"{plain.status} {plain.body_text[:200]}", exchanges=plain)
