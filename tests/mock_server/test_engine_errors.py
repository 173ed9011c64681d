"""The engine boundary: reference_model names its inputs by typed `Param`s; mock_server alone maps them to the
request's fields. Also the API's limits (the mock's, not the engine's) and the typo-proof fault names."""

from __future__ import annotations

import httpx
import pytest

from mock_server.engine_errors import FIELDS, FieldNames, api_error, field_of
from mock_server.faults import FAULT_NAMES, Fault, Faults, parse_faults
from mock_server.limits import API_LIMITS
from mock_server.plan import field_names
from mock_server.request import validate_body
from reference_model.errors import Param, RequestError
from spec import schemas
from tests.mock_server.conftest import chat_body


def test_every_engine_param_has_a_request_field() -> None:
    assert set(FIELDS) == set(Param)


@pytest.mark.parametrize(("param", "index", "field"), [
    (Param.PROMPT, None, "messages"), (Param.STOP, 2, "stop[2]"), (Param.LOGIT_BIAS, 9000, "logit_bias.9000"),
    (Param.TOOL_NAME, 1, "tools[1].function.name"), (Param.TOOL_PARAMETERS, 0, "tools[0].function.parameters"),
    (Param.TOOL_CHOICE_NAME, None, "tool_choice.function.name"), (Param.MAX_CALLS, None, "parallel_tool_calls"),
])
def test_fields_by_param_and_index(param: Param, index: int | None, field: str) -> None:
    assert field_of(RequestError(param, "x", index=index)) == field


def test_fields_that_depend_on_the_request() -> None:
    names = field_names(validate_body(chat_body(max_tokens=None, max_completion_tokens=4, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}})))
    assert names == FieldNames("max_completion_tokens", "response_format.json_schema.schema")
    error = api_error(RequestError(Param.MAX_TOKENS, "too many", rule="fits"), names)
    assert error.param == "max_completion_tokens" and error.message == "$.max_completion_tokens: too many [rule: fits]"
    hf = field_names(validate_body(chat_body(response_format={"type": "regex", "value": "a+"})))
    assert hf.response_format == "response_format.value" and hf.max_tokens == "max_tokens"


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"response_format": {"type": "regex", "value": "a(b"}}, "response_format.value", "unclosed group"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
     "response_format.json_schema.schema", "not a valid JSON Schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}]},
     "tools[0].function.parameters", "not a valid JSON Schema"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice.function.name", "must name one"),
    ({"logit_bias": {"999999": 1}}, "logit_bias.999999", "token ids in [0, "),
    ({"max_tokens": None, "max_completion_tokens": 10_000}, "max_completion_tokens", "context length"),
    ({"messages": [{"role": "user", "content": "word " * 400}]}, "messages", "no room"),
])
def test_engine_refusals_name_the_request_field(client: httpx.Client, fields: dict, field: str, words: str) -> None:
    r = client.post("/v1/chat/completions", json=chat_body(**fields))
    assert r.status_code == 422, r.text
    message = r.json()["error"]
    assert message.startswith(f"$.{field}: ") and words in message and "[rule: " in message


def test_api_limits_are_the_specs() -> None:
    request = schemas.schema("request")["properties"]
    stop_array = next(v for v in request["stop"]["oneOf"] if v.get("type") == "array")
    assert stop_array["maxItems"] == API_LIMITS.max_stop_sequences
    assert request["top_logprobs"]["maximum"] == API_LIMITS.max_top_logprobs


def test_fault_names_are_members() -> None:
    faults = parse_faults("no-id, slow=0.5", allowed=True)
    assert Fault.NO_ID in faults and Fault.SLOW in faults and Fault.NO_DONE not in faults
    assert faults.slow_s == 0.5 and FAULT_NAMES == tuple(f.value for f in Fault)
    with pytest.raises(TypeError, match="Fault member"):
        _ = "no-id" in Faults()  # a string, a typo among them, cannot be asked for
