"""The server's small pieces on their own: config precedence, envelopes, request typing, prompts, images."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from mock_server.config import ConfigError, ServerConfig, load_config
from mock_server.errors import ModelLoading, Overloaded, ValidationFailed, envelope
from mock_server.images import describe_image
from mock_server.prompt import DEFAULT_TOOL_PROMPT, template_messages
from mock_server.request import BadRequest, parse_json, validate_body
from spec import schemas


def test_config_cli_then_environment_then_default() -> None:
    env = {"CHATCONFORM_MOCK_PORT": "9000", "CHATCONFORM_MOCK_API_KEY": "k-env", "CHATCONFORM_MOCK_MODEL": "tiny"}
    assert load_config({}, env={}) == ServerConfig()
    from_env = load_config({"port": None}, env=env)
    assert (from_env.port, from_env.api_key, from_env.model) == (9000, "k-env", "tiny")
    from_cli = load_config({"port": 7000, "api_key": "k-cli"}, env=env)
    assert (from_cli.port, from_cli.api_key, from_cli.model) == (7000, "k-cli", "tiny")
    assert from_cli.public()["api_key"] == "***"


@pytest.mark.parametrize("cli,env,names", [
    ({"port": 70000}, {}, "--port"), ({}, {"CHATCONFORM_MOCK_PORT": "eighty"}, "CHATCONFORM_MOCK_PORT"),
    ({"weights": "int8"}, {}, "--weights"), ({}, {"CHATCONFORM_MOCK_LOAD_DELAY": "-1"}, "CHATCONFORM_MOCK_LOAD_DELAY"),
    ({}, {"CHATCONFORM_MOCK_ALLOW_REMOTE_IMAGES": "maybe"}, "CHATCONFORM_MOCK_ALLOW_REMOTE_IMAGES"),
])
def test_config_errors_name_option_and_value(cli: dict, env: dict, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load_config(cli, env=env)


def test_envelopes_match_the_spec_in_both_styles() -> None:
    for error in (ValidationFailed("$.temperature: 3 is greater than 2", param="temperature"),
                  Overloaded("busy"), ModelLoading("loading", estimated_time=3.2)):
        hf, oa = envelope(error, "hf"), envelope(error, "openai")
        assert schemas.validate("error", hf) == [] and schemas.validate("error", oa) == []
        assert hf["error_type"] == error.error_type and oa["error"]["type"] == error.openai_type
    assert envelope(ValidationFailed("x", param="temperature"), "openai")["error"]["param"] == "temperature"
    assert envelope(ModelLoading("loading", estimated_time=3.2))["estimated_time"] == 3.2
    assert Overloaded("busy").headers["Retry-After"] == "1"


def test_parse_json_refuses_non_objects() -> None:
    assert parse_json(b'{"a": 1}') == {"a": 1}
    for raw in (b"", b"[]", b"{'a': 1}", b"\xc3"):
        with pytest.raises(BadRequest):
            parse_json(raw)


def test_typed_request_reads_both_dialects_and_nulls() -> None:
    req = validate_body({"messages": [{"role": "user", "content": "hi"}], "stop": "x", "seed": None,
                         "response_format": {"type": "json", "value": '{"type": "object"}'},
                         "tools": [{"type": "function", "function": {"name": "f", "arguments": {"type": "object"}}}],
                         "tool_choice": {"function": {"name": "f"}}, "logit_bias": {"7": -1.5}})
    assert req.stop == ("x",) and req.seed is None and req.temperature == 1.0
    assert req.response_format is not None and req.response_format.schema == {"type": "object"}
    assert req.tools[0].parameters == {"type": "object"}
    assert req.tool_choice is not None and (req.tool_choice.mode, req.tool_choice.name) == ("named", "f")
    assert req.logit_bias == ((7, -1.5),)


def test_prompt_renders_tools_calls_and_results() -> None:
    req = validate_body({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": "ann"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}],
        "tools": [{"type": "function", "function": {"name": "f", "description": "Adds."}}]})
    msgs = template_messages(req)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"].startswith("Be brief.\n\n" + DEFAULT_TOOL_PROMPT)
    assert '"name": "f", "description": "Adds."' in msgs[0]["content"]
    assert msgs[1]["content"] == "ann: a\nb"
    assert msgs[2]["content"] == '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    assert msgs[3]["content"].startswith('<tool_response>\n{"name": "f", "tool_call_id": "c1"}\n42')
    none = validate_body({"messages": [{"role": "user", "content": "q"}], "tool_prompt": "Tools:",
                          "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"})
    assert [m["role"] for m in template_messages(none)] == ["user"]
    told = validate_body({"messages": [{"role": "user", "content": "q"}], "tool_prompt": "Tools:",
                          "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert template_messages(told)[0]["content"].startswith("Tools:\n<tools>\n")


def _encoded(colour: tuple[int, int, int], kind: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (10, 4), colour).save(buf, format=kind)
    return buf.getvalue()


def test_image_description_is_deterministic() -> None:
    assert describe_image(_encoded((240, 10, 10), "PNG"), "p", max_pixels=100) == \
        "[image: PNG, 10x4 pixels, mostly red]"
    assert describe_image(_encoded((10, 10, 240), "JPEG"), "p", max_pixels=100) == \
        "[image: JPEG, 10x4 pixels, mostly blue]"
    with pytest.raises(ValidationFailed, match="max_image_pixels"):
        describe_image(_encoded((0, 0, 0), "PNG"), "p", max_pixels=39)
    with pytest.raises(ValidationFailed, match="decode"):
        describe_image(base64.b64encode(b"xx"), "p", max_pixels=100)


@pytest.mark.parametrize("cli,env,allowed", [({}, {}, "1"), ({"spin": False}, {}, "0"),
                                             ({}, {"CHATCONFORM_MOCK_SPIN": "false"}, "0")])
def test_spin_option_reaches_the_onnx_session(tmp_path, cli: dict, env: dict, allowed: str) -> None:
    from mock_server.backend import load_backend

    config = load_config({"model": "tiny", "max_batch": 1, **cli}, env=env)
    backend = load_backend(config, work_dir=tmp_path)
    try:
        session = backend.generator.engine._session  # the engine's ONNX Runtime session
        assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == allowed
    finally:
        backend.close()
