"""The rules of one chat completion answer, judged once: its body's schema, fields, choices and messages.

A judge here reads a 200 answer to a POST without stream true (ANSWER: a chat completion; a GET
such as the model list is none) and returns [] for anything else; the rules that hold for both a body and the chunks of a stream (created, model,
system_fingerprint, the unused message fields) read each chunk of a 200 stream too (STREAM). What
the request asked for (n, max_tokens, stop, tools) is read from the exchange's own request body.
The readers (`completion_body`, `answer_objects`, `token_limit` ...) are shared with the other
judge modules and with the clause checks.
"""

from __future__ import annotations

from typing import Any

from conformance.exchange import Exchange
from conformance.judges.envelope import is_json_content_type
from conformance.judges.registry import ANSWER, STREAM, Problem, judge
from conformance.judges.stream import answered_stream, asked_stream, choice_count, request_of
from spec import limits, schemas

COMPLETION_OBJECT = limits.const("ChatCompletion", "object")
FINISH_REASONS = limits.finish_reasons()  # the FinishReason enum of spec/openapi.yaml, legacy names aside
MESSAGE_ROLE = limits.const("ChatCompletionMessage", "role")
UNUSED_FIELDS = ("tool_call_id", "refusal")  # set by clients in requests, never by a generated message
SECONDS_LIMIT = 10_000_000_000  # a count of milliseconds since the epoch lies beyond this many seconds


# --- reading an answer ------------------------------------------------------------------------------


def answered_completion(ex: Exchange) -> bool:
    """The exchange is a 200 answer to a POST without stream true: a chat completion, whatever its body."""
    return ex.status == 200 and ex.method.upper() == "POST" and not asked_stream(ex)


def completion_body(ex: Exchange) -> dict[str, Any] | None:
    """The body of a 200 answer to a POST without stream true, when it is a JSON object (else None)."""
    if not answered_completion(ex):
        return None
    body = ex.json
    return body if isinstance(body, dict) else None


def answer_objects(ex: Exchange) -> list[tuple[str, dict[str, Any]]]:
    """(where, object) for the body of a 200 answer, or for each chunk of a 200 stream ([] for anything else)."""
    stream = answered_stream(ex)
    if stream is not None:
        return [(f"chunk {i}", chunk) for i, chunk in enumerate(stream.chunks)]
    body = completion_body(ex)
    return [("response", body)] if body is not None else []


def choice_list(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The choices of a body or chunk that are objects ([] when choices is not a list)."""
    found = body.get("choices")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def messages_of(body: dict[str, Any]) -> list[Any]:
    """message of each choice, in order (None for a choice that is not an object)."""
    found = body.get("choices") or []
    return [c.get("message") if isinstance(c, dict) else None for c in found] if isinstance(found, list) else []


def int_value(value: Any) -> int | None:
    """The value when it is an integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def token_limit(request: dict[str, Any]) -> int | None:
    """The generation limit the request set: max_tokens, else max_completion_tokens (None when neither is an integer)."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = int_value(request.get(key))
        if value is not None:
            return value
    return None


def stop_sequences(request: dict[str, Any]) -> list[str]:
    """The request's non-empty stop sequences (stop as a string or a list)."""
    stop = request.get("stop")
    found = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    return [s for s in found if isinstance(s, str) and s]


def declares_tools(request: dict[str, Any]) -> bool:
    """The request carries a non-empty tools list."""
    tools = request.get("tools")
    return isinstance(tools, list) and bool(tools)


def unix_seconds(value: Any) -> bool:
    """A non-negative integer count of seconds since the epoch (milliseconds are integers too, but far in the future)."""
    return int_value(value) is not None and 0 <= value < SECONDS_LIMIT


def _non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


# --- request.* rules about the answer ---------------------------------------------------------------


@judge("request.stream.default-false", on=[ANSWER])
def single_json_answer(ex: Exchange) -> list[Problem]:
    """A 200 answer to a request with stream false or absent is application/json, not an event stream."""
    if not answered_completion(ex):
        return []
    found = []
    if not is_json_content_type(ex):
        found.append(Problem("the answer is not application/json", expected="application/json",
                             actual=ex.header("content-type")))
    if ex.body_text.lstrip().startswith("data:"):
        found.append(Problem("the answer is an event stream", expected="one JSON chat completion",
                             actual=ex.body_text[:200]))
    return found


@judge("request.n.default-one", on=[ANSWER])
def one_choice_by_default(ex: Exchange) -> list[Problem]:
    """The answer to a request with n absent or 1 holds exactly one choice, with index 0."""
    n = request_of(ex).get("n")
    body = completion_body(ex)
    if body is None or not (n is None or (int_value(n) == 1)):
        return []
    choices = body.get("choices")
    indices = [c.get("index") if isinstance(c, dict) else c for c in choices] if isinstance(choices, list) else choices
    if indices == [0]:
        return []
    return [Problem(f"{'n absent' if n is None else 'n 1'}: expected exactly one choice with index 0", expected=[0],
                    actual=indices)]


# --- response.* ---------------------------------------------------------------------------------------


@judge("response.body.schema-valid", on=[ANSWER])
def body_schema_valid(ex: Exchange) -> list[Problem]:
    """A 200 non-streaming body validates against the ChatCompletion schema."""
    if not answered_completion(ex):
        return []
    name = schemas.schema_name("response")
    body = ex.json
    if not isinstance(body, dict):
        return [Problem("the 200 body is not a JSON object", expected=f"a valid {name}", actual=ex.body_text[:300])]
    violations = schemas.validate("response", body)
    if not violations:
        return []
    more = f" (and {len(violations) - 10} more)" if len(violations) > 10 else ""
    return [Problem(f"response does not match the spec schema {name}: "
                    + "; ".join(v.message for v in violations[:10]) + more,
                    expected=f"a valid {name}",
                    actual=[{"path": v.path, "rule": v.rule, "pointer": v.schema_pointer} for v in violations[:10]])]


@judge("response.content-type.json", on=[ANSWER])
def json_content_type(ex: Exchange) -> list[Problem]:
    """A 200 non-streaming answer has Content-Type application/json."""
    if not answered_completion(ex) or is_json_content_type(ex):
        return []
    return [Problem("Content-Type is not application/json", expected="application/json",
                    actual=ex.header("content-type"))]


@judge("response.id.present", on=[ANSWER])
def id_present(ex: Exchange) -> list[Problem]:
    """The response id is a non-empty string."""
    body = completion_body(ex)
    if body is None or _non_empty_string(body.get("id")):
        return []
    return [Problem("id is not a non-empty string", expected="non-empty string", actual=body.get("id"))]


@judge("response.object.value", on=[ANSWER])
def object_value(ex: Exchange) -> list[Problem]:
    """The response object field is the string chat.completion."""
    body = completion_body(ex)
    if body is None or body.get("object") == COMPLETION_OBJECT:
        return []
    return [Problem(f"object is not {COMPLETION_OBJECT}", expected=COMPLETION_OBJECT, actual=body.get("object"))]


@judge("response.created.unix-seconds", on=[ANSWER, STREAM])
def created_unix_seconds(ex: Exchange) -> list[Problem]:
    """The created field of a response or of each chunk is a non-negative integer count of seconds since the epoch."""
    return [Problem(f"{where}: created is not a count of seconds since the epoch",
                    expected="non-negative integer seconds", actual=obj.get("created"))
            for where, obj in answer_objects(ex) if not unix_seconds(obj.get("created"))]


@judge("response.model.present", on=[ANSWER, STREAM])
def model_present(ex: Exchange) -> list[Problem]:
    """The model field of a response or of each chunk is a non-empty string."""
    return [Problem(f"{where}: model is not a non-empty string", expected="non-empty string", actual=obj.get("model"))
            for where, obj in answer_objects(ex) if not _non_empty_string(obj.get("model"))]


@judge("response.system-fingerprint.present", on=[ANSWER, STREAM])
def system_fingerprint(ex: Exchange) -> list[Problem]:
    """A response and each chunk carry system_fingerprint as a string."""
    return [Problem(f"{where}: system_fingerprint is not a string", expected="string",
                    actual=obj.get("system_fingerprint", "(absent)"))
            for where, obj in answer_objects(ex) if not isinstance(obj.get("system_fingerprint"), str)]


@judge("response.choices.count", on=[ANSWER])
def choices_count(ex: Exchange) -> list[Problem]:
    """The choices list holds exactly n entries (one when n is absent)."""
    body = completion_body(ex)
    if body is None:
        return []
    n = choice_count(ex)
    choices = body.get("choices")
    count = len(choices) if isinstance(choices, list) else None
    return [] if count == n else [Problem(f"expected {n} choice(s)", expected=n, actual=count)]


@judge("response.choice.index", on=[ANSWER])
def choice_indices(ex: Exchange) -> list[Problem]:
    """The choices carry the distinct indices 0 to n-1, in order."""
    body = completion_body(ex)
    if body is None:
        return []
    choices = body.get("choices") or []
    if not isinstance(choices, list):
        return [Problem("choices is not a list", expected="a list of choices", actual=choices)]
    indices = [c.get("index") if isinstance(c, dict) else None for c in choices]
    if indices == list(range(len(choices))):
        return []
    return [Problem("choice indices are not 0..n-1 in order", expected=list(range(len(choices))), actual=indices)]


@judge("response.message.role", on=[ANSWER])
def message_role(ex: Exchange) -> list[Problem]:
    """Every choice's message has role assistant."""
    body = completion_body(ex)
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages_of(body)] if body is not None else []
    if all(role == MESSAGE_ROLE for role in roles):
        return []
    return [Problem(f"a message role is not {MESSAGE_ROLE}", expected=MESSAGE_ROLE, actual=roles)]


@judge("response.message.content", on=[ANSWER])
def message_content(ex: Exchange) -> list[Problem]:
    """A message without tool_calls has string content; a message with tool_calls has null, absent or string content."""
    body = completion_body(ex)
    found = []
    for i, message in enumerate(messages_of(body) if body is not None else []):
        if not isinstance(message, dict):
            found.append(Problem(f"choice {i} has no message object", expected="a message object", actual=message))
            continue
        content = message.get("content")
        if message.get("tool_calls"):
            ok, rule = content is None or isinstance(content, str), "null, absent or string content (with tool_calls)"
        else:
            ok, rule = isinstance(content, str), "string content (without tool_calls)"
        if not ok:
            found.append(Problem(f"choice {i} content breaks the rule: {rule}", expected=rule,
                                 actual=message.get("content", "(absent)")))
    return found


@judge("response.finish-reason.values", on=[ANSWER])
def finish_reason_values(ex: Exchange) -> list[Problem]:
    """Every final finish_reason is one of stop, length, tool_calls or content_filter."""
    body = completion_body(ex)
    reasons = [c.get("finish_reason") for c in choice_list(body)] if body is not None else []
    if all(reason in FINISH_REASONS for reason in reasons):
        return []
    return [Problem(f"finish_reason outside {FINISH_REASONS}", expected=list(FINISH_REASONS), actual=reasons)]


@judge("response.finish-reason.stop", on=[ANSWER])
def early_end_is_stop(ex: Exchange) -> list[Problem]:
    """With max_tokens set and neither stop sequences nor tools, an answer of fewer than max_tokens
    completion tokens (so every choice ended before the limit) reports finish_reason stop."""
    body = completion_body(ex)
    request = request_of(ex)
    limit = token_limit(request)
    if body is None or limit is None or stop_sequences(request) or declares_tools(request):
        return []
    usage = body.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, int) or tokens >= limit:
        return []
    choices = body.get("choices")
    reasons = [c.get("finish_reason") if isinstance(c, dict) else None for c in choices] \
        if isinstance(choices, list) else []
    return [Problem(f"choice {i} ended after {tokens} < max_tokens {limit} tokens without stop sequences, "
                    "but not with stop", expected="stop", actual=reason)
            for i, reason in enumerate(reasons) if reason != "stop"]


@judge("response.usage.present", on=[ANSWER])
def usage_present(ex: Exchange) -> list[Problem]:
    """A non-streaming answer carries a usage object."""
    body = completion_body(ex)
    if body is None or isinstance(body.get("usage"), dict):
        return []
    return [Problem("usage is not an object", expected="usage object", actual=body.get("usage", "(absent)"))]


@judge("response.message.unused-fields", on=[ANSWER, STREAM])
def unused_fields(ex: Exchange) -> list[Problem]:
    """A generated message or delta carries tool_call_id and refusal only as null or absent."""
    found = []
    for where, obj in answer_objects(ex):
        for choice in choice_list(obj):
            for key in ("message", "delta"):
                part = choice.get(key)
                if not isinstance(part, dict):
                    continue
                found += [Problem(f"{where}: {key}.{name} is set", expected="null or absent", actual=part[name])
                          for name in UNUSED_FIELDS if part.get(name) is not None]
    return found


__all__ = [
    "COMPLETION_OBJECT", "FINISH_REASONS", "answer_objects", "answered_completion", "choice_list", "completion_body",
    "declares_tools", "int_value", "messages_of", "stop_sequences", "token_limit", "unix_seconds",
]
