"""Compiling what a request asks of its output into one llguidance grammar: response formats and tool calls.

Response formats: `JsonSchema` (the seeds' `json` and OpenAI's `json_schema`), `JsonObject`
(OpenAI's `json_object`: any JSON object) and `Regex` (the seeds' `regex`, Rust `regex` syntax as
llguidance reads it: no look-around, no back-references; the whole output matches). Generated
JSON uses fixed separators, `", "` and `": "`, and no other whitespace: it reads like Python's
`json.dumps`, keeps a small model from wandering into whitespace, and keeps masks cheap.

Tool calls are written in the format of `tool_calls.py` (Hermes style, one block per call).
`required` allows calls of any listed tool, a named choice calls of that tool only, `auto` either
such calls or text that does not begin with `<tool_call>` (free text, or the response format's
grammar when one is given), `none` no call. An output holds at most `max_calls` calls (1 when
parallel calls are off): the bound also ends the repetition a small model may fall into, which
would otherwise run on until max_tokens and end with `length` and no usable call. The compiled
grammar carries its `ToolPolicy` (which functions, whether only calls, how many), so the
generator never has to guess what the grammar allows.

Everything that can be wrong with a schema, regex or tool is found by `compile_constraint`,
before generation starts, and raised as a `ConstraintError` naming the input (`Param`, and the
tool's index).
"""

from __future__ import annotations

import enum
import json
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import llguidance
import numpy as np
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from reference_model.errors import Param, RequestError
from reference_model.tokenizer import Tokenizer
from reference_model.tool_calls import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, TOOL_CALL_SEPARATOR, call_prefix

TOOL_NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Objects and arrays inside one JSON Schema: deeper ones are refused before any recursive walk
# (jsonschema's meta-validation, llguidance) can exhaust Python's stack.
MAX_SCHEMA_DEPTH = 64
# llguidance JSON options: fixed separators, no free whitespace (see the module docstring).
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class ConstraintError(RequestError):
    """A response format, regex, tool or tool choice cannot be compiled, or a grammar failed; names the input."""

    def __init__(self, param: Param, detail: str, *, index: int | None = None, rule: str = "compiles") -> None:
        super().__init__(param, detail, index=index, rule=rule)


# --- typed inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class JsonSchema:
    """Output is JSON valid under `schema` (a JSON Schema object or boolean)."""

    schema: Mapping[str, Any] | bool


@dataclass(frozen=True)
class JsonObject:
    """Output is any JSON object (OpenAI's json_object)."""


@dataclass(frozen=True)
class Regex:
    """Output matches `pattern` in full (Rust regex syntax)."""

    pattern: str


ResponseFormat = JsonSchema | JsonObject | Regex


@dataclass(frozen=True, eq=False)
class ToolSpec:
    """A callable function: its name and the JSON Schema of its arguments object."""

    name: str
    parameters_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})


class ToolChoiceMode(str, enum.Enum):
    """How tools may be used: the API's tool_choice values."""

    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    NAMED = "named"


@dataclass(frozen=True)
class ToolChoice:
    """A tool choice: a mode, and the function name when the mode is NAMED."""

    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.mode is ToolChoiceMode.NAMED) != (self.name is not None):
            raise ConstraintError(Param.TOOL_CHOICE, f"a function name is given exactly when the mode is named, "
                                                     f"got mode={self.mode.value!r} name={self.name!r}")


@dataclass(frozen=True)
class ToolPolicy:
    """What a grammar lets the output do with tools: call which functions, only calls or not, how many."""

    names: tuple[str, ...] = ()
    calls_only: bool = False  # tool_choice required or named: the output can be nothing but calls
    max_calls: int = 0

    def __post_init__(self) -> None:
        if self.names and self.max_calls < 1:
            raise ConstraintError(Param.MAX_CALLS, f"must be >= 1 when calls are allowed, got {self.max_calls!r}")
        if not self.names and (self.calls_only or self.max_calls):
            raise ConstraintError(Param.TOOLS, "a policy without functions allows no calls")


NO_TOOLS = ToolPolicy()


@dataclass(frozen=True)
class CompiledGrammar:
    """A validated llguidance grammar, the tools whose calls it can produce, and its tool policy."""

    grammar: str
    tools: tuple[ToolSpec, ...] = ()
    policy: ToolPolicy = NO_TOOLS

    @property
    def tool_names(self) -> tuple[str, ...]:
        """The names of the functions the output may call."""
        return self.policy.names


# --- the grammar tokenizer, built once per process and tokenizer ----------------------------------

_LLTOKENIZERS: weakref.WeakKeyDictionary[Tokenizer, llguidance.LLTokenizer] = weakref.WeakKeyDictionary()
_LLTOKENIZER_LOCK = threading.Lock()


def grammar_tokenizer(tokenizer: Tokenizer) -> llguidance.LLTokenizer:
    """llguidance's view of the vocabulary (about 0.3-0.5 s to build; cached per tokenizer)."""
    with _LLTOKENIZER_LOCK:
        found = _LLTOKENIZERS.get(tokenizer)
        if found is None:
            found = llguidance.LLTokenizer(tokenizer.to_json(), n_vocab=tokenizer.vocab_size,
                                           eos_token=tokenizer.eos_id)
            _LLTOKENIZERS[tokenizer] = found
        return found


# --- compiling ----------------------------------------------------------------------------------


def json_depth(value: object) -> int:
    """How many objects and arrays are nested in a JSON value (a scalar: 0); iterative, so any depth is safe."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_schema(schema: object, param: Param, index: int | None = None) -> dict[str, Any] | bool:
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, Mapping):
        raise ConstraintError(param, f"a JSON Schema must be an object or a boolean, got {type(schema).__name__}",
                              index=index)
    depth = json_depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        raise ConstraintError(param, f"the JSON Schema nests {depth} objects and arrays, more than the maximum of "
                              f"{MAX_SCHEMA_DEPTH}", index=index, rule=f"max depth {MAX_SCHEMA_DEPTH}")
    try:
        plain = json.loads(json.dumps(schema, allow_nan=False))  # a JSON-only copy
    except (TypeError, ValueError) as exc:
        raise ConstraintError(param, f"a JSON Schema must hold only JSON values: {exc}", index=index) from None
    try:
        jsonschema.validators.validator_for(plain).check_schema(plain)
    except RecursionError:
        raise ConstraintError(param, "the JSON Schema is too deeply nested to check", index=index,
                              rule=f"max depth {MAX_SCHEMA_DEPTH}") from None
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise ConstraintError(param, f"not a valid JSON Schema at {where}: {exc.message}", index=index) from None
    return plain if isinstance(plain, bool) else dict(plain)


def _with_json_options(schema: dict[str, Any] | bool) -> dict[str, Any]:
    # llguidance reads per-schema options from "x-guidance"; ours win over the caller's.
    base = {} if schema is True else dict(schema) if isinstance(schema, dict) else {"not": {}}
    base["x-guidance"] = {**base.get("x-guidance", {}), **JSON_OPTIONS}
    return base


def _validate(grammar: str, tokenizer: Tokenizer, param: Param, what: str) -> str:
    error = llguidance.LLMatcher.validate_grammar(grammar, grammar_tokenizer(tokenizer))
    if error:
        raise ConstraintError(param, f"{what} cannot be compiled by llguidance: {error.strip()}")
    _probe(grammar, tokenizer, param, what)
    return grammar


def _probe(grammar: str, tokenizer: Tokenizer, param: Param, what: str) -> None:
    """Take the first step of the grammar (mask, then one allowed token) before any generation.

    Some grammars validate but blow up llguidance's lexer on the first byte (`a{1000000}` builds
    too many derivatives): found here, they are the caller's 4xx, not a failure mid-generation.
    """
    matcher = llguidance.LLMatcher(grammar_tokenizer(tokenizer), grammar, log_level=0)
    bitmask = allocate_token_bitmask(1, tokenizer.vocab_size)
    if not matcher.is_error():
        fill_next_token_bitmask(matcher, bitmask)
        words = bitmask[0].view(np.uint32)
        nonzero = np.flatnonzero(words)
        if len(nonzero):
            word = int(nonzero[0])
            bit = (int(words[word]) & -int(words[word])).bit_length() - 1
            matcher.consume_token(32 * word + bit)
    if matcher.is_error():
        raise ConstraintError(param, f"{what} is too complex for the grammar engine: "
                              f"{first_line(matcher.get_error())}")


def first_line(error: str) -> str:
    """llguidance errors append a dump of its internal state; the first line is the message."""
    return error.strip().splitlines()[0] if error.strip() else "unknown error"


def _lark_literal(text: str) -> str:
    return json.dumps(text)


def _format_rule(fmt: ResponseFormat) -> tuple[str, str]:
    """A lark rule body for a format inside a larger grammar, and extra terminal definitions."""
    if isinstance(fmt, JsonObject):
        return "%json " + json.dumps(_with_json_options({"type": "object"})), ""
    if isinstance(fmt, JsonSchema):
        return "%json " + json.dumps(_with_json_options(_check_schema(fmt.schema, Param.RESPONSE_FORMAT))), ""
    body = llguidance.regex_to_lark(fmt.pattern, "")
    return "FORMAT_TEXT", f"FORMAT_TEXT: /{body}/ & ~/<tool_call>(?s:.*)/\n"


def compile_response_format(fmt: ResponseFormat, tokenizer: Tokenizer) -> CompiledGrammar:
    """Validate and compile a response format alone; raises ConstraintError before any generation."""
    if isinstance(fmt, Regex):
        if not isinstance(fmt.pattern, str) or not fmt.pattern:
            raise ConstraintError(Param.RESPONSE_FORMAT, f"a regex must be a non-empty string, got {fmt.pattern!r}")
        grammar = llguidance.LLMatcher.grammar_from_regex(fmt.pattern)
        return CompiledGrammar(_validate(grammar, tokenizer, Param.RESPONSE_FORMAT, "the regex"))
    if isinstance(fmt, JsonObject):
        schema: dict[str, Any] | bool = {"type": "object"}
    elif isinstance(fmt, JsonSchema):
        schema = _check_schema(fmt.schema, Param.RESPONSE_FORMAT)
    else:
        raise ConstraintError(Param.RESPONSE_FORMAT, f"unknown response format {fmt!r}")
    grammar = llguidance.LLMatcher.grammar_from_json_schema(_with_json_options(schema))
    return CompiledGrammar(_validate(grammar, tokenizer, Param.RESPONSE_FORMAT, "the JSON Schema"))


def _check_tools(tools: Sequence[ToolSpec]) -> tuple[ToolSpec, ...]:
    seen: set[str] = set()
    checked = []
    for n, tool in enumerate(tools):
        if not isinstance(tool.name, str) or not TOOL_NAME_PATTERN.fullmatch(tool.name):
            raise ConstraintError(Param.TOOL_NAME, f"must match {TOOL_NAME_PATTERN.pattern}, got {tool.name!r}",
                                  index=n)
        if tool.name in seen:
            raise ConstraintError(Param.TOOL_NAME, f"names must be unique, {tool.name!r} repeats", index=n)
        seen.add(tool.name)
        schema = _check_schema(tool.parameters_schema, Param.TOOL_PARAMETERS, n)
        if schema is False:
            raise ConstraintError(Param.TOOL_PARAMETERS, "the schema false accepts no arguments at all", index=n)
        checked.append(ToolSpec(tool.name, schema if isinstance(schema, dict) else {"type": "object"}))
    return tuple(checked)


def compile_constraint(tokenizer: Tokenizer, response_format: ResponseFormat | None = None,
                       tools: Sequence[ToolSpec] = (), tool_choice: ToolChoice | None = None,
                       max_calls: int = 1) -> CompiledGrammar | None:
    """The grammar for a request (None: unconstrained); raises ConstraintError before any generation.

    max_calls: the most calls one output may hold (1: parallel calls off).
    """
    if not isinstance(max_calls, int) or max_calls < 1:
        raise ConstraintError(Param.MAX_CALLS, f"must be an integer >= 1, got {max_calls!r}")
    choice = tool_choice if tool_choice is not None else ToolChoice()
    checked = _check_tools(tools)
    # Compiled alone first, so its errors name the response format precisely.
    alone = None if response_format is None else compile_response_format(response_format, tokenizer)
    if choice.mode is not ToolChoiceMode.NONE and not checked and choice.mode is not ToolChoiceMode.AUTO:
        raise ConstraintError(Param.TOOL_CHOICE, f"{choice.mode.value!r} needs at least one tool in tools")
    if choice.mode is ToolChoiceMode.NONE or not checked:
        return alone
    if choice.mode is ToolChoiceMode.NAMED:
        named = [t for t in checked if t.name == choice.name]
        if not named:
            raise ConstraintError(Param.TOOL_CHOICE_NAME, f"must name one of the tools "
                                  f"{[t.name for t in checked]}, got {choice.name!r}")
        checked = tuple(named)
    lines = []
    for n, tool in enumerate(checked):
        lines.append(f"call{n}: {_lark_literal(call_prefix(tool.name))} args{n} \"}}\"")
        lines.append(f"args{n}: %json " + json.dumps(_with_json_options(dict(tool.parameters_schema))))
    lines.append("call: " + _lark_literal(TOOL_CALL_OPEN) + " ("
                 + " | ".join(f"call{n}" for n in range(len(checked))) + ") " + _lark_literal(TOOL_CALL_CLOSE))
    lines.append("calls: call" + (f" ({_lark_literal(TOOL_CALL_SEPARATOR)} call){{0,{max_calls - 1}}}"
                                  if max_calls > 1 else ""))
    if choice.mode is ToolChoiceMode.AUTO:
        if response_format is None:
            lines += ["text: FREE_TEXT", "FREE_TEXT: /(?s:.*)/ & ~/<tool_call>(?s:.*)/"]
        else:
            rule, terminals = _format_rule(response_format)
            lines += [f"text: {rule}", terminals]
        lines.insert(0, "start: text | calls")
    else:
        lines.insert(0, "start: calls")
    grammar = llguidance.LLMatcher.grammar_from_lark("\n".join(lines) + "\n")
    policy = ToolPolicy(tuple(t.name for t in checked), calls_only=choice.mode is not ToolChoiceMode.AUTO,
                        max_calls=max_calls)
    return CompiledGrammar(_validate(grammar, tokenizer, Param.TOOLS, "the tool-call grammar"), tools=checked,
                           policy=policy)
