"""response_format in one answer, judged once: the content a constrained generation produced.

The format is read from the exchange's own request body: the seeds' `{"type": "json", "value":
schema}` and `{"type": "regex", "value": pattern}`, OpenAI's `{"type": "json_object"}` and
`{"type": "json_schema", "json_schema": {"schema": ...}}`. The rules judge content that ended with
finish_reason stop (a generation cut by max_tokens may stop mid-value); json_object also judges that
a cut-off content begins as an object. A schema or regex that is itself invalid is no constraint to
judge against (errors.format.invalid-* judge its refusal).
"""

from __future__ import annotations

import json
import re
from typing import Any

from conformance.exchange import Exchange
from conformance.judges.registry import ANSWER, STREAM, Problem, judge
from conformance.judges.response import choice_list, completion_body
from conformance.judges.stream import answered_stream, request_of, stream_texts
from conformance.judges.tools import message_of, schema_errors

STOP = "stop"


def response_format(ex: Exchange) -> dict[str, Any]:
    """The request's response_format ({} when there is none or it is not an object)."""
    found = request_of(ex).get("response_format")
    return found if isinstance(found, dict) else {}


def format_schema(rf: dict[str, Any]) -> Any:
    """The JSON Schema a json or json_schema format constrains to (None for the other types)."""
    if rf.get("type") == "json" and isinstance(rf.get("value"), dict):
        return rf["value"]
    spec = rf.get("json_schema")
    if rf.get("type") == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        return spec["schema"]
    return None


def json_problems(content: str, schema: Any, what: str) -> list[Problem]:
    """What is wrong with content that must be JSON (valid against schema when one is given)."""
    try:
        value = json.loads(content)
    except ValueError as exc:
        return [Problem(f"{what}: the content is not JSON: {exc}", expected="JSON", actual=content)]
    errors = schema_errors(schema, value) if schema is not None else []
    if errors:
        return [Problem(f"{what}: the content is not valid against the schema", expected=schema,
                        actual=[*errors, content])]
    return []


def content_problems(rf: dict[str, Any], content: str, stopped: bool) -> list[Problem]:
    """What content breaks of the response_format it was generated under (`stopped`: it ended with stop)."""
    kind = rf.get("type")
    schema = format_schema(rf)
    if kind in ("json", "json_schema") and schema is not None and stopped:
        return json_problems(content, schema, f"response_format {kind}")
    if kind == "regex" and isinstance(rf.get("value"), str) and stopped:
        try:
            pattern = re.compile(rf["value"])
        except re.error:
            return []
        if pattern.fullmatch(content) is None:
            return [Problem(f"the content does not fully match {rf['value']}", expected=rf["value"], actual=content)]
        return []
    if kind == "json_object":
        if not stopped:
            if content.lstrip().startswith("{"):
                return []
            return [Problem("json_object output does not even begin as a JSON object", expected="{...",
                            actual=content[:200])]
        found = json_problems(content, None, "response_format json_object")
        if not found and not isinstance(json.loads(content), dict):
            found.append(Problem("json_object must yield a JSON object", expected="a JSON object", actual=content))
        return found
    return []


def _answer(ex: Exchange, kinds: tuple[str, ...]) -> list[Problem]:
    rf = response_format(ex)
    body = completion_body(ex)
    if body is None or rf.get("type") not in kinds:
        return []
    found = []
    for choice in choice_list(body):
        content = message_of(choice).get("content")
        found += content_problems(rf, content if isinstance(content, str) else "",
                                  choice.get("finish_reason") == STOP)
    return found


@judge("format.json.schema-valid", on=[ANSWER])
def json_schema_valid(ex: Exchange) -> list[Problem]:
    """With response_format json and a JSON Schema object as value, content that ends with stop is JSON valid against it."""
    return _answer(ex, ("json",))


@judge("format.regex.full-match", on=[ANSWER])
def regex_full_match(ex: Exchange) -> list[Problem]:
    """With response_format regex, content that ends with finish_reason stop fully matches the regex."""
    return _answer(ex, ("regex",))


@judge("format.openai.json-object", on=[ANSWER])
def json_object(ex: Exchange) -> list[Problem]:
    """With response_format json_object, content that ends with stop parses as a JSON object (a cut-off one begins as one)."""
    return _answer(ex, ("json_object",))


@judge("format.openai.json-schema", on=[ANSWER])
def json_schema(ex: Exchange) -> list[Problem]:
    """With response_format json_schema, content that ends with stop is valid against json_schema.schema."""
    return _answer(ex, ("json_schema",))


@judge("format.stream.constrained", on=[STREAM])
def stream_constrained(ex: Exchange) -> list[Problem]:
    """In a stream with a response_format, each choice's concatenated delta contents that end with stop satisfy it."""
    stream = answered_stream(ex)
    rf = response_format(ex)
    if stream is None or rf.get("type") not in ("json", "regex", "json_object", "json_schema"):
        return []
    texts, reasons = stream_texts(stream)
    found = []
    for index, reason in reasons.items():
        found += [Problem(f"choice {index}: streamed {p.message}", expected=p.expected, actual=p.actual)
                  for p in content_problems(rf, texts.get(index, ""), reason == STOP)]
    return found


__all__ = ["content_problems", "format_schema", "json_problems", "response_format"]
