"""The request edge: JSON bytes -> spec validation -> typed, frozen `ChatRequest`.

Order: parse JSON (400 when malformed or not an object), validate against the spec's
`ChatCompletionRequest` (422 naming parameter, rule and value), refuse unknown top-level fields
(422; the spec lets servers refuse them and this mock does), then build the dataclasses below.
Explicit `null` for an optional field means the same as leaving it out. OpenAI's newer fields are
honoured: `max_completion_tokens` is `max_tokens` under its new name (both at once: 422, by the
spec's schema), `parallel_tool_calls` bounds the calls of one answer, `user` is kept (the request
log has it) and changes nothing in the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mock_server.errors import BadRequest, ValidationFailed
from mock_server.limits import API_LIMITS
from spec import schemas
from spec.violations import SchemaViolation, short


@dataclass(frozen=True)
class TextPart:
    """A text content part."""

    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image content part (a URL: http(s) or data:)."""

    url: str
    detail: str | None
    index: int  # position in the message's content list, for error messages


ContentPart = TextPart | ImagePart


@dataclass(frozen=True)
class ToolCallIn:
    """A tool call in an assistant message of the history."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Message:
    """One message of the conversation; `parts` holds the content (a string is one text part)."""

    role: str  # system | developer | user | assistant | tool
    parts: tuple[ContentPart, ...]
    name: str | None = None
    tool_calls: tuple[ToolCallIn, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class FunctionTool:
    """A declared function: name, description, JSON Schema of its arguments, strictness."""

    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool | None


@dataclass(frozen=True)
class ToolChoiceIn:
    """tool_choice: `auto`, `none`, `required`, or `named` with `name`."""

    mode: str
    name: str | None = None


@dataclass(frozen=True)
class ResponseFormatIn:
    """response_format in either dialect: kind json | regex | text | json_object | json_schema."""

    kind: str
    schema: Any = None  # json / json_schema: the JSON Schema (object or boolean); None: any JSON
    pattern: str | None = None  # regex
    param: str = "response_format"  # where the schema or pattern sits, for errors


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat completion request."""

    messages: tuple[Message, ...]
    model: str | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0
    max_tokens: int | None = None  # max_tokens, or max_completion_tokens (the spec refuses both at once)
    max_tokens_param: str = "max_tokens"  # which of the two the client sent, for error messages
    n: int = 1
    logit_bias: tuple[tuple[int, float], ...] = ()
    reasoning_effort: str | None = None
    response_format: ResponseFormatIn | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoiceIn | None = None
    tool_prompt: str | None = None
    parallel_tool_calls: bool = True  # OpenAI's default: several calls in one answer
    user: str | None = None  # the end-user's id: recorded, no effect


def known_fields() -> frozenset[str]:
    """The request's top-level properties as the spec declares them."""
    return frozenset(schemas.schema("request")["properties"])


def parse_json(raw: bytes) -> dict[str, Any]:
    """Decode the body; 400 naming where parsing failed, or that the JSON is not an object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"malformed JSON body: not UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    except RecursionError:
        raise BadRequest("malformed JSON body: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}: {short(body)}")
    if SURROGATE_ESCAPE.search(raw):
        _refuse_lone_surrogates(body)
    return body


# A \uD800-\uDFFF escape: JSON text can spell a UTF-16 surrogate this way (UTF-8 bytes cannot). A
# pair becomes one character; a lone one would become a Python str that is not Unicode text, which
# nothing downstream can encode (the cache key, the tokenizer, the grammar).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
MAX_TOKEN_ID_DIGITS = 9  # logit_bias keys: no vocabulary has a billion tokens


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value (object keys included) with its path; iterative, so depth is no limit."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield f"{where} (a key)", key
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))


def _refuse_lone_surrogates(body: dict[str, Any]) -> None:
    for where, text in _strings(body, "$"):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            param = where[2:].removesuffix(" (a key)")[:80]
            raise BadRequest(f"{where[:80]}: the string holds a lone UTF-16 surrogate "
                             f"\\u{ord(text[exc.start]):04x} at character {exc.start} "
                             f"(in {text[max(0, exc.start - 10):exc.start + 10]!a}),"
                             f" which is not Unicode text [rule: unicode scalar values]", param=param,
                             code="invalid_unicode") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def violation_error(violations: list[SchemaViolation]) -> ValidationFailed:
    """422 for the first violation: its message, rule and parameter (and how many more there are)."""
    first = violations[0]
    more = len(violations) - 1
    suffix = f" (and {more} more problem{'s' if more != 1 else ''})" if more else ""
    return ValidationFailed(f"{first.message} [rule: {first.rule}]{suffix}", param=first.param)


def validate_body(body: dict[str, Any]) -> ChatRequest:
    """Check a JSON object against the spec and the mock's rules; return the typed request."""
    _check_message_count(body.get("messages"))
    try:
        violations = schemas.validate("request", body)
    except RecursionError:
        raise ValidationFailed("the request is nested too deeply to validate [rule: depth]") from None
    if violations:
        raise violation_error(violations)
    _check_token_ids(body.get("logit_bias"))
    unknown = sorted(set(body) - known_fields())
    if unknown:
        name = unknown[0]
        raise ValidationFailed(f"$.{name}: unknown request field {name!r} = {short(body[name])} is not supported "
                               f"by this server [rule: additionalProperties]", param=name)
    return build_request(body)


def _check_message_count(messages: Any) -> None:
    limit = API_LIMITS.max_messages
    if isinstance(messages, list) and len(messages) > limit:
        raise ValidationFailed(f"$.messages: {len(messages)} messages is more than the maximum of {limit} on this "
                               f"server [rule: maxItems {limit}]", param="messages")


def _check_token_ids(bias: Any) -> None:
    # The schema's pattern admits any number of digits; Python refuses to read more than 4300.
    for key in bias if isinstance(bias, dict) else ():
        if len(key) > MAX_TOKEN_ID_DIGITS:
            raise ValidationFailed(f"$.logit_bias: the token id {key[:20]!r}... ({len(key)} digits) is not a token "
                                   f"id of this model [rule: at most {MAX_TOKEN_ID_DIGITS} digits]",
                                   param="logit_bias")


def _opt(body: dict[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def build_request(body: dict[str, Any]) -> ChatRequest:
    """Typed request from a schema-valid body (nulls become defaults)."""
    messages = tuple(_message(m, i) for i, m in enumerate(body["messages"]))
    stop = body.get("stop")
    stream_options = body.get("stream_options") or {}
    bias = body.get("logit_bias") or {}
    tokens_param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return ChatRequest(
        messages=messages,
        model=body.get("model"),
        frequency_penalty=float(_opt(body, "frequency_penalty", 0.0)),
        presence_penalty=float(_opt(body, "presence_penalty", 0.0)),
        logprobs=bool(_opt(body, "logprobs", False)),
        top_logprobs=int(_opt(body, "top_logprobs", 0)),
        max_tokens=body.get(tokens_param),
        max_tokens_param=tokens_param,
        n=int(_opt(body, "n", 1)),
        logit_bias=tuple(sorted((int(k), float(v)) for k, v in bias.items())),
        reasoning_effort=body.get("reasoning_effort"),
        response_format=_response_format(body.get("response_format")),
        seed=body.get("seed"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        stream=bool(_opt(body, "stream", False)),
        include_usage=bool(stream_options.get("include_usage", False)),
        temperature=float(_opt(body, "temperature", 1.0)),
        top_p=float(_opt(body, "top_p", 1.0)),
        tools=tuple(_tool(t) for t in body.get("tools") or ()),
        tool_choice=_tool_choice(body.get("tool_choice")),
        tool_prompt=body.get("tool_prompt"),
        parallel_tool_calls=bool(_opt(body, "parallel_tool_calls", True)),
        user=body.get("user"),
    )


def _parts(content: Any) -> tuple[ContentPart, ...]:
    if content is None:
        return ()
    if isinstance(content, str):
        return (TextPart(content),)
    parts: list[ContentPart] = []
    for index, part in enumerate(content):
        if part["type"] == "text":
            parts.append(TextPart(part["text"]))
        else:
            parts.append(ImagePart(part["image_url"]["url"], part["image_url"].get("detail"), index))
    return tuple(parts)


def _message(raw: dict[str, Any], index: int) -> Message:
    calls = tuple(ToolCallIn(c["id"], c["function"]["name"], c["function"]["arguments"])
                  for c in raw.get("tool_calls") or ())
    return Message(role=raw["role"], parts=_parts(raw.get("content")), name=raw.get("name"),
                   tool_calls=calls, tool_call_id=raw.get("tool_call_id"))


def _tool(raw: dict[str, Any]) -> FunctionTool:
    fn = raw["function"]
    schema = fn.get("parameters", fn.get("arguments"))
    return FunctionTool(name=fn["name"], description=fn.get("description"), parameters=schema,
                        strict=fn.get("strict"))


def _tool_choice(raw: Any) -> ToolChoiceIn | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return ToolChoiceIn(raw)
    return ToolChoiceIn("named", raw["function"]["name"])


def _response_format(raw: Any) -> ResponseFormatIn | None:
    if raw is None:
        return None
    kind = raw["type"]
    if kind == "json":
        value = raw["value"]
        if isinstance(value, str):
            # The seeds call the value "a string that represents a JSON Schema": read its JSON text.
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationFailed(f"$.response_format.value: the string is not JSON Schema text "
                                       f"({exc.msg} at column {exc.colno}) [rule: json-schema]",
                                       param="response_format.value") from None
        return ResponseFormatIn("json", schema=value, param="response_format.value")
    if kind == "regex":
        return ResponseFormatIn("regex", pattern=raw["value"], param="response_format.value")
    if kind == "json_schema":
        return ResponseFormatIn("json_schema", schema=raw["json_schema"].get("schema"),
                                param="response_format.json_schema.schema")
    if kind == "json_object" and raw.get("value") is not None:
        # TGI's form, which huggingface_hub sends to hf-inference: a JSON Schema in `value`.
        return ResponseFormatIn("json", schema=raw["value"], param="response_format.value")
    return ResponseFormatIn(kind)
