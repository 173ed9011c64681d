"""Constrained decoding: walks through llguidance masks end in valid output; bad grammars fail early."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_model.constraints import Constraint
from reference_model.errors import Param
from reference_model.grammar import (
    CompiledGrammar,
    ConstraintError,
    JsonObject,
    JsonSchema,
    Regex,
    ToolChoice,
    ToolChoiceMode,
    ToolPolicy,
    ToolSpec,
    compile_constraint,
    compile_response_format,
    grammar_tokenizer,
)
from reference_model.tokenizer import Tokenizer
from reference_model.tool_calls import (
    TOOL_CALL_OPEN,
    ToolCallParseError,
    ToolCallStream,
    is_tool_call_text,
    may_become_tool_call,
    parse_tool_calls,
)

MAX_STEPS = 400


@pytest.fixture(scope="module")
def closing(tokenizer: Tokenizer) -> np.ndarray:
    """bool [vocab]: tokens holding a quote or a closing bracket (they end strings, arrays, objects)."""
    grammar_tokenizer(tokenizer)
    return np.array([any(c in tokenizer.token_bytes(i) for c in (b'"', b"}", b"]"))
                     for i in range(tokenizer.vocab_size)])


def walk(constraint: Constraint, tokenizer: Tokenizer, closing: np.ndarray, seed: int, prefix: str = "") -> str:
    """A seeded random walk through the masks; closers are favoured so strings and objects end.

    Starts with the tokens of `prefix` (each checked against the mask). Ends (like a model
    choosing end-of-turn) with probability 1/2 whenever the grammar accepts, and always when
    nothing but end-of-turn is allowed; fails if MAX_STEPS pass first.
    """
    rng = np.random.default_rng(seed)
    ids: list[int] = tokenizer.encode(prefix)
    for token in ids:
        assert constraint.allowed_mask()[token]
        constraint.advance(token)
    for _ in range(MAX_STEPS):
        allowed = constraint.allowed_mask()
        eos = tokenizer.eos_id
        if allowed[eos] and (constraint.is_stopped() or rng.random() < 0.5):
            assert constraint.is_accepting()
            constraint.advance(eos)
            return tokenizer.decode(ids)
        allowed[eos] = False
        closers = np.flatnonzero(allowed & closing)
        pool = closers if len(closers) and rng.random() < 0.5 else np.flatnonzero(allowed)
        assert len(pool), "the mask allows nothing but the grammar is not accepting"
        token = int(rng.choice(pool))
        constraint.advance(token)
        constraint.prefetch()  # overlap the next mask, as the decode loop does
        ids.append(token)
    raise AssertionError(f"walk did not finish in {MAX_STEPS} steps: {tokenizer.decode(ids)!r}")


# --- schemas ----------------------------------------------------------------------------------------

LEAF = st.sampled_from([
    {"type": "string"},
    {"type": "integer"},
    {"type": "boolean"},
    {"enum": ["red", "green", "blue"]},
    {"type": "string", "maxLength": 5},
    {"type": "integer", "minimum": 0, "maximum": 99},
])
VALUE = st.one_of(LEAF, LEAF.map(lambda item: {"type": "array", "items": item, "maxItems": 3}))


def objects(value: st.SearchStrategy) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(["name", "age", "tags", "city", "ok", "n"]), value,
                           min_size=1, max_size=4).flatmap(
        lambda props: st.sampled_from([True, False]).map(lambda closed: {
            "type": "object", "properties": props, "required": sorted(props),
            **({"additionalProperties": False} if closed else {})}))


SCHEMAS = objects(st.one_of(VALUE, objects(LEAF)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=SCHEMAS, seed=st.integers(0, 2**32 - 1))
def test_json_schema_walks_end_valid(tokenizer: Tokenizer, closing: np.ndarray, schema: dict, seed: int) -> None:
    """Every walk through a schema's masks that ends is JSON valid under the schema."""
    constraint = Constraint(compile_response_format(JsonSchema(schema), tokenizer), tokenizer)
    jsonschema.validate(json.loads(walk(constraint, tokenizer, closing, seed)), schema)


def test_json_object_walks_end_in_objects(tokenizer: Tokenizer, closing: np.ndarray) -> None:
    compiled = compile_response_format(JsonObject(), tokenizer)
    for seed in range(5):
        assert isinstance(json.loads(walk(Constraint(compiled, tokenizer), tokenizer, closing, seed)), dict)


@pytest.mark.parametrize("pattern", [
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    r"(yes|no)",
    r"[a-z]{1,8}@[a-z]{2,5}\.(com|org)",
    r"Answer: (A|B|C)\.( [A-Za-z ]{0,20})?",
    r"-?[0-9]+(\.[0-9]+)?",
])
def test_regex_walks_match_in_full(tokenizer: Tokenizer, closing: np.ndarray, pattern: str) -> None:
    compiled = compile_response_format(Regex(pattern), tokenizer)
    for seed in range(4):
        out = walk(Constraint(compiled, tokenizer), tokenizer, closing, seed)
        assert re.fullmatch(pattern, out), (pattern, out)


def test_separators_are_fixed(tokenizer: Tokenizer) -> None:
    """Generated JSON uses ', ' and ': ' and no other whitespace between tokens."""
    constraint = Constraint(compile_response_format(JsonObject(), tokenizer), tokenizer)
    for token in tokenizer.encode('{"a": 1, "b": [true, null]}'):
        assert constraint.allowed_mask()[token]
        constraint.advance(token)
    assert constraint.is_accepting()
    constraint = Constraint(compile_response_format(JsonObject(), tokenizer), tokenizer)
    with pytest.raises(ConstraintError, match="not allowed"):
        for token in tokenizer.encode('{"a":1}'):
            constraint.advance(token)


# --- errors before generation -------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "param", "message"), [
    (JsonSchema({"type": "foo"}), "response_format", "not a valid JSON Schema"),
    (JsonSchema({"type": "object", "properties": {"a": {"$ref": "#/nope"}}}), "response_format",
     "cannot be compiled by llguidance"),
    (JsonSchema({"type": "string", "minLength": 5, "maxLength": 2}), "response_format", "minLength"),
    (JsonSchema(False), "response_format", "cannot be compiled"),
    (JsonSchema(["not", "a", "schema"]), "response_format", "must be an object or a boolean"),  # type: ignore[arg-type]
    (JsonSchema({"type": "number", "maximum": float("nan")}), "response_format", "only JSON values"),
    (Regex("a(b"), "response_format", "unclosed group"),
    (Regex("(?=a)b"), "response_format", "look-around"),
    (Regex(""), "response_format", "non-empty"),
    # validates, then blows up the lexer on its first byte: found by the first-step probe
    (Regex("a{1000000}"), "response_format", "too complex for the grammar engine"),
])
def test_bad_formats_refused_before_generation(tokenizer: Tokenizer, fmt, param: str, message: str) -> None:
    with pytest.raises(ConstraintError) as info:
        compile_response_format(fmt, tokenizer)
    assert info.value.param is Param(param) and info.value.index is None
    assert str(info.value) == f"{param}: {info.value.detail}"
    assert message in info.value.detail


# --- tools ------------------------------------------------------------------------------------------------

WEATHER = ToolSpec("get_weather", {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                                     "unit": {"enum": ["c", "f"]}},
                                   "required": ["city", "unit"], "additionalProperties": False})
ADD = ToolSpec("add", {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"], "additionalProperties": False})
TOOLS = {t.name: t for t in (WEATHER, ADD)}


def _check_calls(text: str, compiled: CompiledGrammar) -> list[str]:
    calls = parse_tool_calls(text, compiled.tool_names)
    assert calls
    for call in calls:
        jsonschema.validate(json.loads(call.arguments), dict(TOOLS[call.name].parameters_schema))
    return [c.name for c in calls]


def test_required_tool_calls_parse_to_known_tools(tokenizer: Tokenizer, closing: np.ndarray) -> None:
    compiled = compile_constraint(tokenizer, tools=[WEATHER, ADD], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED))
    assert compiled is not None
    names = set()
    for seed in range(8):
        out = walk(Constraint(compiled, tokenizer), tokenizer, closing, seed)
        assert is_tool_call_text(out)
        names.update(_check_calls(out, compiled))
    assert names == {"get_weather", "add"}


@pytest.mark.parametrize("mode", [ToolChoiceMode.REQUIRED, ToolChoiceMode.AUTO])
def test_one_call_per_response_then_only_end_of_turn(tokenizer: Tokenizer, mode: ToolChoiceMode) -> None:
    """After one complete call the grammar ends: a second block (which a small model would repeat
    until max_tokens) is not allowed, only end-of-turn."""
    compiled = compile_constraint(tokenizer, tools=[WEATHER, ADD], tool_choice=ToolChoice(mode))
    assert compiled is not None
    constraint = Constraint(compiled, tokenizer)
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    for token in tokenizer.encode(call):
        assert constraint.allowed_mask()[token], tokenizer.decode([token])
        constraint.advance(token)
    allowed = constraint.allowed_mask()
    assert constraint.is_accepting()
    assert np.flatnonzero(allowed).tolist() == [tokenizer.eos_id]
    assert not allowed[tokenizer.encode("\n")[0]]


@pytest.mark.parametrize("mode", [ToolChoiceMode.REQUIRED, ToolChoiceMode.AUTO])
def test_parallel_calls_up_to_max_calls_then_only_end_of_turn(tokenizer: Tokenizer, mode: ToolChoiceMode) -> None:
    """With max_calls 3, after each of the first two calls another may follow or the turn may end; after the
    third, only end-of-turn (the bound stops a small model that would repeat a call until max_tokens)."""
    compiled = compile_constraint(tokenizer, tools=[WEATHER, ADD], tool_choice=ToolChoice(mode), max_calls=3)
    assert compiled is not None
    assert compiled.policy == ToolPolicy(("get_weather", "add"), calls_only=mode is ToolChoiceMode.REQUIRED, max_calls=3)
    constraint = Constraint(compiled, tokenizer)
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    newline = tokenizer.encode("\n")[0]
    for n in range(3):
        for token in tokenizer.encode(("\n" if n else "") + call):
            assert constraint.allowed_mask()[token], tokenizer.decode([token])
            constraint.advance(token)
        allowed = constraint.allowed_mask()
        assert constraint.is_accepting() and allowed[tokenizer.eos_id]
        assert allowed[newline] == (n < 2)
    assert constraint.is_stopped()
    with pytest.raises(ConstraintError, match="max_calls"):
        compile_constraint(tokenizer, tools=[ADD], max_calls=0)


def test_named_tool_choice_calls_exactly_that_tool(tokenizer: Tokenizer, closing: np.ndarray) -> None:
    compiled = compile_constraint(tokenizer, tools=[WEATHER, ADD],
                                  tool_choice=ToolChoice(ToolChoiceMode.NAMED, "add"))
    assert compiled is not None
    for seed in range(5):
        out = walk(Constraint(compiled, tokenizer), tokenizer, closing, seed)
        assert _check_calls(out, compiled) == ["add"]


def test_auto_allows_text_or_calls(tokenizer: Tokenizer, closing: np.ndarray) -> None:
    """`auto` accepts plain text (including the marker later on) and calls, both from the first token."""
    compiled = compile_constraint(tokenizer, tools=[WEATHER, ADD])
    assert compiled is not None
    for seed in range(6):
        out = walk(Constraint(compiled, tokenizer), tokenizer, closing, seed)
        assert not is_tool_call_text(out)  # a uniform walk over the vocabulary starts as text
    for seed in range(6):
        out = walk(Constraint(compiled, tokenizer), tokenizer, closing, seed, prefix=TOOL_CALL_OPEN)
        _check_calls(out, compiled)
    text = Constraint(compiled, tokenizer)
    for token in tokenizer.encode(f"Sure. {TOOL_CALL_OPEN} is just text here"):
        text.advance(token)
    assert text.is_accepting()
    broken = Constraint(compiled, tokenizer)
    with pytest.raises(ConstraintError):
        for token in tokenizer.encode(TOOL_CALL_OPEN + "hello"):
            broken.advance(token)


ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
                 "additionalProperties": False}


def _valid_answer(fmt, out: str) -> None:
    if isinstance(fmt, JsonSchema):
        jsonschema.validate(json.loads(out), ANSWER_SCHEMA)
    else:
        assert re.fullmatch(fmt.pattern, out), out


@pytest.mark.parametrize("fmt", [JsonSchema(ANSWER_SCHEMA), Regex(r"(yes|no|maybe [0-9]{1,3})")])
def test_auto_with_a_response_format_constrains_the_text(tokenizer: Tokenizer, closing: np.ndarray, fmt) -> None:
    """With tools on auto and a response format, the text branch follows the format."""
    compiled = compile_constraint(tokenizer, fmt, tools=[ADD])
    assert compiled is not None
    for seed in range(4):
        out = walk(Constraint(compiled, tokenizer), tokenizer, closing, seed)
        _valid_answer(fmt, out)
        out = walk(Constraint(compiled, tokenizer), tokenizer, closing, seed, prefix=TOOL_CALL_OPEN)
        assert _check_calls(out, compiled) == ["add"] * len(parse_tool_calls(out, compiled.tool_names))


def test_none_never_calls(tokenizer: Tokenizer, closing: np.ndarray) -> None:
    """`none` gives no grammar for calls: unconstrained, or the response format alone (no tools)."""
    none = ToolChoice(ToolChoiceMode.NONE)
    assert compile_constraint(tokenizer, tools=[WEATHER], tool_choice=none) is None
    compiled = compile_constraint(tokenizer, JsonObject(), tools=[WEATHER], tool_choice=none)
    assert compiled is not None and compiled.tools == ()
    for seed in range(4):
        out = walk(Constraint(compiled, tokenizer), tokenizer, closing, seed)
        assert not is_tool_call_text(out) and isinstance(json.loads(out), dict)
    assert compile_constraint(tokenizer) is None


@pytest.mark.parametrize(("tools", "choice", "param", "message"), [
    ([ToolSpec("bad name", {})], None, "tool_name[0]", "must match"),
    ([WEATHER, WEATHER], None, "tool_name[1]", "unique"),
    ([WEATHER], ToolChoice(ToolChoiceMode.NAMED, "add"), "tool_choice_name", "must name one of"),
    ([], ToolChoice(ToolChoiceMode.REQUIRED), "tool_choice", "needs at least one tool"),
    ([ToolSpec("f", {"type": "nope"})], None, "tool_parameters[0]", "not a valid JSON Schema"),
    ([ToolSpec("f", False)], None, "tool_parameters[0]", "accepts no arguments"),  # type: ignore[arg-type]
    ([ToolSpec("f", {"type": "object", "properties": {"a": {"$ref": "#/missing"}}})], None, "tools",
     "cannot be compiled"),
])
def test_bad_tools_refused_before_generation(tokenizer: Tokenizer, tools, choice, param, message) -> None:
    with pytest.raises(ConstraintError) as info:
        compile_constraint(tokenizer, tools=tools, tool_choice=choice)
    assert info.value.where == param and message in str(info.value)


def test_tool_choice_named_needs_a_name() -> None:
    with pytest.raises(ConstraintError, match="tool_choice"):
        ToolChoice(ToolChoiceMode.NAMED)


def test_parse_tool_calls() -> None:
    text = (TOOL_CALL_OPEN + '{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n'
            + TOOL_CALL_OPEN + '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>')
    calls = parse_tool_calls(text, [WEATHER.name, ADD.name])
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Paris", "unit": "c"})]
    for bad in ["hello", TOOL_CALL_OPEN + '{"name": "mul", "arguments": {}}\n</tool_call>',
                TOOL_CALL_OPEN + '{"name": "add", "arguments": {"a": 1', text + " trailing"]:
        with pytest.raises(ToolCallParseError):
            parse_tool_calls(bad, [WEATHER.name, ADD.name])
    assert may_become_tool_call("<tool") and not may_become_tool_call("<tool_call>\n")
    assert not may_become_tool_call("Hi")


CALLS_TEXT = (TOOL_CALL_OPEN + '{"name": "add", "arguments": {"a": {"b": 1}}}\n</tool_call>\n'
              + TOOL_CALL_OPEN + '{"name": "get_weather", "arguments": {"city": "}\\n</", "unit": "c"}}\n</tool_call>')


@settings(max_examples=80, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(CALLS_TEXT)), max_size=12))
def test_call_stream_fragments_rebuild_the_calls(cuts: list[int]) -> None:
    """Whatever the pieces, each call's name comes once, first, and its fragments concatenate to its arguments."""
    stream = ToolCallStream(["add", "get_weather"])
    bounds = [0, *sorted(cuts), len(CALLS_TEXT)]
    fragments = [f for a, b in itertools.pairwise(bounds) for f in stream.push(CALLS_TEXT[a:b])]
    fragments += stream.flush()
    rebuilt: dict[int, list[str]] = {}
    for fragment in fragments:
        if fragment.index not in rebuilt:
            assert fragment.name is not None
            rebuilt[fragment.index] = [fragment.name, ""]
        else:
            assert fragment.name is None
        rebuilt[fragment.index][1] += fragment.arguments
    expected = [[c.name, c.arguments] for c in parse_tool_calls(CALLS_TEXT, ["add", "get_weather"])]
    assert [rebuilt[i] for i in sorted(rebuilt)] == expected
    assert stream.complete == 2 and stream.between_calls


def test_call_stream_reports_a_cut_call() -> None:
    stream = ToolCallStream(["add"])
    fragments = stream.push(TOOL_CALL_OPEN + '{"name": "add", "arguments": {"a": 1}')
    assert [(f.index, f.name, f.arguments) for f in fragments] == [(0, "add", ""), (0, None, '{"a": 1')]
    assert [(f.index, f.arguments) for f in stream.flush()] == [(0, "}")]  # held: it might have closed the call
    assert stream.calls[0].arguments == '{"a": 1}' and stream.complete == 0 and not stream.between_calls


def test_prefetched_mask_equals_synchronous_mask(tokenizer: Tokenizer) -> None:
    compiled = compile_response_format(JsonObject(), tokenizer)
    a, b = Constraint(compiled, tokenizer), Constraint(compiled, tokenizer)
    for token in tokenizer.encode('{"key": [1, 2'):
        a.prefetch()
        assert np.array_equal(a.allowed_mask(), b.allowed_mask())
        a.advance(token)
        b.advance(token)


# --- one end-to-end smoke run on the tiny random model ------------------------------------------------


def test_tiny_model_constrained_generation(tmp_path: Path, tokenizer: Tokenizer) -> None:
    """Engine logits -> sampler with mask -> constraint: greedy output of a random model is valid JSON."""
    from reference_model.engine import Engine
    from reference_model.sampling import Sampler, SamplingParams
    from reference_model.tiny import build_tiny

    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9},
                                                "ok": {"type": "boolean"}},
              "required": ["n", "ok"], "additionalProperties": False}
    engine = Engine(build_tiny(tmp_path, "fp32"), device="cpu", threads=1, max_batch=1, max_context=128)
    constraint = Constraint(compile_response_format(JsonSchema(schema), tokenizer), tokenizer)
    sampler = Sampler(SamplingParams(temperature=0.0, logprobs=True, top_logprobs=2), tokenizer.vocab_size)
    prompt = tokenizer.encode("<|im_start|>user\nJSON please<|im_end|>\n<|im_start|>assistant\n", special=True)
    seq = engine.start(prompt, 60)
    logits = engine.prefill(seq)
    ids: list[int] = []
    for _ in range(60):
        choice = sampler.sample(logits, constraint.allowed_mask())
        constraint.advance(choice.token_id)
        if choice.token_id == tokenizer.eos_id:
            break
        ids.append(choice.token_id)
        constraint.prefetch()
        logits = engine.step({seq: choice.token_id})[seq]
    engine.release(seq)
    assert constraint.is_accepting()
    jsonschema.validate(json.loads(tokenizer.decode(ids)), schema)


def test_response_format_errors_named_even_with_tools(tokenizer: Tokenizer) -> None:
    with pytest.raises(ConstraintError) as info:
        compile_constraint(tokenizer, Regex("a(b"), tools=[ADD])
    assert info.value.param is Param.RESPONSE_FORMAT
