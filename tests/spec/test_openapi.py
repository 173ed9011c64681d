"""spec/openapi.yaml is a valid, readable OpenAPI 3.1 document, and spec/schemas.py loads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from spec import schemas
from spec.document import DOCUMENT_URI, PointerError, resolve_in, shared_document

DOC = shared_document()

# The component names other modules and the clause catalogue rely on (a fixed contract).
CONTRACT_SCHEMAS = ["ChatCompletionRequest", "Message", "SystemMessage", "UserMessage", "AssistantMessage", "ToolMessage", "ContentPart", "TextContentPart", "ImageUrlContentPart", "ImageUrl", "Tool", "FunctionDefinition", "ToolChoice", "NamedToolChoice", "ResponseFormat", "ResponseFormatJson", "ResponseFormatRegex", "ResponseFormatText", "ResponseFormatJsonObject", "ResponseFormatJsonSchema", "JsonSchemaFormat", "StreamOptions", "LogitBias", "ChatCompletion", "ChatCompletionChoice", "ChatCompletionMessage", "ToolCall", "FunctionCall", "ChoiceLogprobs", "TokenLogprob", "TopLogprob", "Usage", "ChatCompletionChunk", "ChatCompletionChunkChoice", "ChunkDelta", "ToolCallDelta", "FunctionCallDelta", "ErrorHf", "ErrorOpenAI", "ErrorOpenAIBody", "ErrorLoading", "ErrorBody", "ModelList", "Model", "Health"]
CONTRACT_PARAMETERS = ["AuthorizationHeader", "XUseCacheHeader", "XWaitForModelHeader", "ModelIdPath"]
CONTRACT_RESPONSES = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "NotFound": 404,
    "PayloadTooLarge": 413,
    "UnsupportedMediaType": 415,
    "UnprocessableEntity": 422,
    "GenerationError": 424,
    "TooManyRequests": 429,
    "ModelLoading": 503,
    "InternalError": 500,
}
ORIGINS = {"seed", "openai", "tgi", "hf-js", "chatconform"}


def walk(node: Any, pointer: str = "#") -> Iterator[tuple[str, Any]]:
    """Yield (JSON pointer, node) for every node of a JSON-like tree, depth first."""
    yield pointer, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{pointer}/{index}")


def schema_nodes() -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield every schema object under components/schemas that declares properties, with its pointer."""
    for pointer, node in walk(DOC["components"]["schemas"], "#/components/schemas"):
        if isinstance(node, dict) and isinstance(node.get("properties"), dict) and "/examples/" not in pointer:
            yield pointer, node


def subschema_validator(pointer: str) -> Draft202012Validator:
    """A validator for any schema inside the document, addressed by pointer."""
    registry = Registry().with_resource(DOCUMENT_URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": DOCUMENT_URI + pointer}, registry=registry)


# ------------------------------------------------------------------------------ the document


def test_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts the document as OpenAPI 3.1."""
    errors = [e.message for e in OpenAPIV31SpecValidator(DOC).iter_errors()]
    assert errors == []
    assert DOC["openapi"] == "3.1.0"


def test_spec_version_is_info_version() -> None:
    """spec_version() is info.version, 1.0.0."""
    assert schemas.spec_version() == DOC["info"]["version"] == "1.0.0"


def test_every_ref_resolves() -> None:
    """Every `$ref` (including those inside extensions) points at an existing node."""
    refs = [(p, n["$ref"]) for p, n in walk(DOC) if isinstance(n, dict) and isinstance(n.get("$ref"), str)]
    assert len(refs) > 50
    for where, ref in refs:
        assert ref.startswith("#/"), f"{where}: only local refs are allowed, found {ref!r}"
        resolve_in(DOC, ref)  # raises PointerError naming the missing step


def test_broken_pointer_is_reported() -> None:
    """A pointer to nothing raises PointerError naming the step that failed."""
    with pytest.raises(PointerError, match="components/schemas/Nope"):
        resolve_in(DOC, "#/components/schemas/Nope/properties")


def test_component_schemas_are_valid_2020_12_schemas() -> None:
    """Each component schema passes the JSON Schema 2020-12 meta-schema."""
    for name, component in DOC["components"]["schemas"].items():
        Draft202012Validator.check_schema(component)  # raises SchemaError naming the keyword
        assert component.get("title") == name


def test_contract_names_exist() -> None:
    """The schema, parameter and response names that others point at are all defined."""
    components = DOC["components"]
    assert sorted(set(CONTRACT_SCHEMAS) - set(components["schemas"])) == []
    assert sorted(set(CONTRACT_PARAMETERS) - set(components["parameters"])) == []
    assert sorted(set(CONTRACT_RESPONSES) - set(components["responses"])) == []


def test_operations_and_status_codes() -> None:
    """The four routes exist; the chat operations document every status code of the seeds' API."""
    paths = DOC["paths"]
    assert set(paths) == {"/v1/chat/completions", "/models/{model_id}/v1/chat/completions", "/v1/models", "/health"}
    for route in ("/v1/chat/completions", "/models/{model_id}/v1/chat/completions"):
        responses = paths[route]["post"]["responses"]
        for name, status in CONTRACT_RESPONSES.items():
            assert responses[str(status)] == {"$ref": f"#/components/responses/{name}"}, (route, status)
        names = {resolve_in(DOC, p["$ref"])["name"] for p in paths[route]["post"]["parameters"]}
        assert {"authorization", "x-use-cache", "x-wait-for-model"} <= names
    assert paths["/health"]["get"]["responses"]["503"] == {"$ref": "#/components/responses/ModelLoading"}
    loading = DOC["components"]["responses"]["ModelLoading"]["content"]["application/json"]["schema"]
    assert loading == {"$ref": "#/components/schemas/ErrorLoading"}
    assert "Retry-After" in DOC["components"]["responses"]["TooManyRequests"]["headers"]


def test_streaming_response_is_described() -> None:
    """The 200 answer offers JSON and an SSE stream whose events are chunks ended by [DONE]."""
    content = DOC["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
    sse = content["text/event-stream"]
    assert sse["schema"]["type"] == "string"
    assert sse["x-sse-event-schema"] == {"$ref": "#/components/schemas/ChatCompletionChunk"}
    assert sse["x-sse-terminator"] == "[DONE]"


def test_every_property_is_described_and_tagged() -> None:
    """Each property has a description (or a described $ref target) and an x-origin from the known set."""
    problems = []
    for pointer, node in schema_nodes():
        for name, prop in node["properties"].items():
            if "$ref" in prop:
                target = resolve_in(DOC, prop["$ref"])
                ok = "description" in target and target.get("x-origin") in ORIGINS
            else:
                ok = "description" in prop and prop.get("x-origin") in ORIGINS
            if not ok and not pointer.endswith(("/then", "/if")):
                problems.append(f"{pointer}/properties/{name}")
    for name, component in DOC["components"]["schemas"].items():
        if "description" not in component or component.get("x-origin") not in ORIGINS:
            problems.append(f"#/components/schemas/{name}")
    assert problems == []


NOTED_DEPARTURES = [
    "ChatCompletionRequest/properties/top_p",
    "ChatCompletionRequest/properties/max_tokens",
    "ChatCompletionRequest/properties/seed",
    "ChatCompletionRequest/properties/stop",
    "ChatCompletionRequest/properties/top_logprobs",
    "ChatCompletionRequest/properties/temperature",
    "ChatCompletionRequest/properties/messages",
    "Message",
    "FunctionDefinition",
    "FunctionCall",
    "FinishReason",
    "ChunkDelta",
    "NamedToolChoice/properties/type",
]


@pytest.mark.parametrize("where", NOTED_DEPARTURES)
def test_departures_from_the_seeds_carry_a_note(where: str) -> None:
    """Each tightening or departure from the seeds says so in x-chatconform-note."""
    node = resolve_in(DOC, "#/components/schemas/" + where)
    assert node.get("x-chatconform-note", "").strip()


def test_response_format_variants_are_tagged_by_dialect() -> None:
    """Each response_format variant says its dialect: hf for json/regex, openai for the others."""
    dialects = {}
    for branch in DOC["components"]["schemas"]["ResponseFormat"]["oneOf"]:
        variant = resolve_in(DOC, branch["$ref"])
        dialects[variant["properties"]["type"]["const"]] = variant["x-dialect"]
    assert dialects == {"json": "hf", "regex": "hf", "text": "openai", "json_object": "openai", "json_schema": "openai"}


def test_enum_and_const_values_are_json_strings_where_typed_string() -> None:
    """No YAML 1.1 surprise (yes/no/on/off turning into booleans) in enums and consts."""
    for pointer, node in walk(DOC):
        if isinstance(node, dict) and "enum" in node and node.get("type") in ("string", ["string", "null"]):
            bad = [v for v in node["enum"] if v is not None and not isinstance(v, str)]
            assert bad == [], pointer


# ------------------------------------------------------------------------------ examples


def example_cases() -> Iterator[tuple[str, str, Any]]:
    """Yield (id, schema pointer, example value) for every example in the document."""
    for pointer, node in walk(DOC):
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("examples"), list) and ("type" in node or "oneOf" in node or "properties" in node):
            for i, value in enumerate(node["examples"]):  # a schema's JSON Schema `examples`
                yield f"{pointer}/examples/{i}", pointer, value
        if "schema" in node and isinstance(node.get("examples"), dict):  # a media type's named examples
            for name, example in node["examples"].items():
                yield f"{pointer}/examples/{name}", f"{pointer}/schema", example["value"]
        if "schema" in node and "example" in node and "x-sse-event-schema" not in node:
            yield f"{pointer}/example", f"{pointer}/schema", node["example"]


EXAMPLES = list(example_cases())


def test_examples_are_plentiful() -> None:
    """Operations and schemas carry examples (the request examples include the seeds' snippets)."""
    assert len(EXAMPLES) >= 40
    request_examples = DOC["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert {"huggingface_hub_streaming", "llama_text", "vlm_image"} <= set(request_examples)


@pytest.mark.parametrize(("pointer", "value"), [(s, v) for _, s, v in EXAMPLES], ids=[i for i, _, _ in EXAMPLES])
def test_example_validates(pointer: str, value: Any) -> None:
    """Every example in the document is valid under its schema."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in subschema_validator(pointer).iter_errors(value)]
    assert errors == []


def test_sse_example_is_chunks_then_done() -> None:
    """The text/event-stream example is `data: <chunk>` events ended by `data: [DONE]`."""
    sse = DOC["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    events = [block for block in sse["example"].split("\n\n") if block.strip()]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    for chunk in chunks:
        assert schemas.validate("chunk", chunk) == []
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 38


def test_a_wrong_example_would_fail() -> None:
    """The example check is able to fail: a bad value under a real pointer is reported."""
    errors = list(subschema_validator("#/components/schemas/Usage").iter_errors({"prompt_tokens": -1}))
    assert errors


# ------------------------------------------------------------------------------ schemathesis


def test_schemathesis_loads_the_document_and_generates_valid_requests() -> None:
    """schemathesis enumerates the four operations, and its generated chat bodies pass our validator."""
    import schemathesis

    loaded = schemathesis.openapi.from_dict(schemas.openapi())
    labels = sorted(result.ok().label for result in loaded.get_all_operations())
    assert labels == [
        "GET /health",
        "GET /v1/models",
        "POST /models/{model_id}/v1/chat/completions",
        "POST /v1/chat/completions",
    ]
    drawn: list[Any] = []

    @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(loaded["/v1/chat/completions"]["POST"].as_strategy())
    def generated_body_is_valid(case: Any) -> None:
        drawn.append(case.body)
        assert schemas.validate("request", case.body) == []

    generated_body_is_valid()
    assert drawn


# ------------------------------------------------------------------------------ the loader


def test_document_is_package_data() -> None:
    """The document is read from the installed package, not from the source tree's neighbours."""
    assert resources.files("spec").joinpath("openapi.yaml").is_file()
    assert schemas.openapi() == DOC


def test_openapi_returns_a_private_copy() -> None:
    """Mutating the returned document does not change what validators see."""
    mine = schemas.openapi()
    mine["components"]["schemas"]["ChatCompletionRequest"]["properties"]["temperature"]["maximum"] = 99
    assert schemas.validate("request", {"messages": [{"role": "user", "content": "x"}], "temperature": 3})


def test_validators_are_compiled_once_per_schema() -> None:
    """validator() hands back the same compiled object for a kind and its component name."""
    assert schemas.validator("request") is schemas.validator("ChatCompletionRequest")
    assert schemas.validator("error") is schemas.validator("ErrorBody")
    assert isinstance(schemas.validator("Usage"), Draft202012Validator)


def test_unknown_schema_names_the_name() -> None:
    """An unknown kind or name raises UnknownSchemaError (a SpecError) naming it."""
    with pytest.raises(schemas.UnknownSchemaError, match="'ChatRequest'"):
        schemas.validator("ChatRequest")
    with pytest.raises(schemas.SpecError):
        schemas.validate("nonsense", {})


MESSAGE = [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize(
    ("body", "path", "rule", "message"),
    [
        ({"messages": MESSAGE, "temperature": 3}, "$.temperature", "maximum", "$.temperature: 3 is greater than the maximum of 2"),
        ({"messages": MESSAGE, "top_p": 0}, "$.top_p", "exclusiveMinimum", "$.top_p: 0 is less than or equal to the minimum of 0"),
        ({"messages": MESSAGE, "top_logprobs": 2}, "$.top_logprobs", "dependentSchemas", "$.top_logprobs: top_logprobs is only valid together with logprobs set to true"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "$.messages[0].role", "enum", None),
        ({"messages": [{"role": "tool", "content": "x"}]}, "$.messages[0].tool_call_id", "required", "$.messages[0].tool_call_id: required property is missing"),
        ({"messages": MESSAGE, "stop": 5}, "$.stop", "oneOf", "$.stop: 5 is not of type array or string or null"),
        ({"messages": MESSAGE, "tool_choice": {"type": "fn", "function": {"name": "f"}}}, "$.tool_choice.type", "const", None),
        ({"messages": MESSAGE, "logit_bias": {"x": 1}}, "$.logit_bias", "pattern", None),
    ],
)
def test_violation_is_the_most_specific(body: Any, path: str, rule: str, message: str | None) -> None:
    """The first violation names the JSON path and keyword of the real problem, not the oneOf around it."""
    first = schemas.validate("request", body)[0]
    assert (first.path, first.rule) == (path, rule)
    assert first.message.startswith(path + ": ")
    if message is not None:
        assert first.message == message
    assert resolve_in(DOC, first.schema_pointer) is not None


def test_violation_carries_value_and_pointer() -> None:
    """A violation carries the offending value and the JSON pointer of the failing keyword."""
    (violation,) = schemas.validate("request", {"messages": MESSAGE, "presence_penalty": -2.5})
    assert violation.value == -2.5
    assert violation.schema_pointer == "#/components/schemas/ChatCompletionRequest/properties/presence_penalty/minimum"
    assert resolve_in(DOC, violation.schema_pointer) == -2
    assert violation.param == "presence_penalty"
    (nested,) = schemas.validate("request", {"messages": [{"role": "user", "content": 1}]})
    assert nested.param == "messages[0].content"
    assert schemas.validate("request", [])[0].param is None


def test_violations_are_sorted_deterministically() -> None:
    """Several problems come back in document order, the same every time."""
    body = {"messages": [{"role": "user"}], "temperature": -1, "max_tokens": 0}
    first = schemas.validate("request", body)
    assert [v.path for v in first] == ["$.max_tokens", "$.messages[0].content", "$.temperature"]
    assert schemas.validate("request", body) == first


def test_check_raises_with_violations() -> None:
    """check() raises SchemaValidationError carrying every violation; passes silently when valid."""
    schemas.check("request", {"messages": MESSAGE})
    with pytest.raises(schemas.SchemaValidationError) as caught:
        schemas.check("request", {"messages": MESSAGE, "temperature": 3, "seed": -1})
    assert caught.value.schema == "ChatCompletionRequest"
    assert [v.path for v in caught.value.violations] == ["$.seed", "$.temperature"]
    assert "1 more violation" in str(caught.value)
    assert isinstance(caught.value, schemas.SpecError)


KEYS = "role content messages type value tool_calls function name arguments index temperature top_logprobs logprobs stop"
KEYS += " error error_type estimated_time choices delta usage id created model message finish_reason tool_choice tools"
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 10)
    | st.floats(-3, 3, allow_nan=False)
    | st.sampled_from(["user", "tool", "assistant", "system", "function", "json", "regex", "auto", "x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS.split()), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(schemas.KINDS)), JSON_VALUES)
def test_validate_agrees_with_jsonschema_on_arbitrary_json(kind: str, body: Any) -> None:
    """validate() never crashes, finds violations exactly when jsonschema does, and starts each message with its path."""
    violations = schemas.validate(kind, body)
    assert (violations == []) == schemas.validator(kind).is_valid(body)
    for violation in violations:
        assert violation.path.startswith("$") and violation.message.startswith(violation.path + ": ")
