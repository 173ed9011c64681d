"""Constrained decoding with llguidance: response formats, tool calls, and per-token masks.

Response formats: `JsonSchema` (the seeds' `json` and OpenAI's `json_schema`), `JsonObject`
(OpenAI's `json_object`: any JSON object) and `Regex` (the seeds' `regex`, Rust `regex` syntax as
llguidance reads it: no look-around, no back-references; the whole output matches). Generated
JSON uses fixed separators, `", "` and `": "`, and no other whitespace: it reads like Python's
`json.dumps`, keeps a small model from wandering into whitespace, and keeps masks cheap.

Tool calls are written in the Hermes style (the SmolLM2 family's), one block per response:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

`required` allows one call of any listed tool, a named choice one call of that tool, `auto`
either such a call or text that does not begin with `<tool_call>` (free text, or the response
format's grammar when one is given), `none` no call. One call per response, not several: a
repeatable call rule lets a small model append copies of the same call until max_tokens, which
then ends with `length` and no usable call. `parse_tool_calls` still reads several blocks
(separated by one newline), so output from other sources parses.

Everything that can be wrong with a schema, regex or tool is found by `compile_constraint`,
before generation starts, and raised as a `ConstraintError` naming the parameter.
"""

from __future__ import annotations

import enum
import json
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import llguidance
import numpy as np
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from reference_model.errors import ReferenceModelError
from reference_model.tokenizer import Tokenizer

TOOL_CALL_OPEN = "<tool_call>\n"
TOOL_CALL_CLOSE = "\n</tool_call>"
TOOL_CALL_SEPARATOR = "\n"
TOOL_NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# llguidance JSON options: fixed separators, no free whitespace (see the module docstring).
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class ConstraintError(ReferenceModelError, ValueError):
    """A response format, regex, tool or tool choice cannot be compiled; names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class ToolCallParseError(ReferenceModelError, ValueError):
    """Generated text is not a complete tool call in the documented format."""


# --- typed inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class JsonSchema:
    """Output is JSON valid under `schema` (a JSON Schema object or boolean)."""

    schema: Mapping[str, Any] | bool
    param: str = "response_format.value"


@dataclass(frozen=True)
class JsonObject:
    """Output is any JSON object (OpenAI's json_object)."""

    param: str = "response_format"


@dataclass(frozen=True)
class Regex:
    """Output matches `pattern` in full (Rust regex syntax)."""

    pattern: str
    param: str = "response_format.value"


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
            raise ConstraintError("tool_choice", f"a function name is given exactly when the mode is named, "
                                                 f"got mode={self.mode.value!r} name={self.name!r}")


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: the function name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclass(frozen=True)
class CompiledGrammar:
    """A validated llguidance grammar, and the tools whose calls it can produce (empty: no calls)."""

    grammar: str
    tools: tuple[ToolSpec, ...] = ()
    description: str = ""


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


def _check_schema(schema: object, param: str) -> dict[str, Any] | bool:
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, Mapping):
        raise ConstraintError(param, f"a JSON Schema must be an object or a boolean, got {type(schema).__name__}")
    try:
        plain = json.loads(json.dumps(schema, allow_nan=False))  # a JSON-only copy
    except (TypeError, ValueError) as exc:
        raise ConstraintError(param, f"a JSON Schema must hold only JSON values: {exc}") from None
    try:
        jsonschema.validators.validator_for(plain).check_schema(plain)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise ConstraintError(param, f"not a valid JSON Schema at {where}: {exc.message}") from None
    return plain


def _with_json_options(schema: dict[str, Any] | bool) -> dict[str, Any]:
    # llguidance reads per-schema options from "x-guidance"; ours win over the caller's.
    base = {} if schema is True else dict(schema) if isinstance(schema, dict) else {"not": {}}
    base["x-guidance"] = {**base.get("x-guidance", {}), **JSON_OPTIONS}
    return base


def _validate(grammar: str, tokenizer: Tokenizer, param: str, what: str) -> str:
    error = llguidance.LLMatcher.validate_grammar(grammar, grammar_tokenizer(tokenizer))
    if error:
        raise ConstraintError(param, f"{what} cannot be compiled by llguidance: {error.strip()}")
    _probe(grammar, tokenizer, param, what)
    return grammar


def _probe(grammar: str, tokenizer: Tokenizer, param: str, what: str) -> None:
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
                              f"{_first_line(matcher.get_error())}")


def _first_line(error: str) -> str:
    """llguidance errors append a dump of its internal state; the first line is the message."""
    return error.strip().splitlines()[0] if error.strip() else "unknown error"


def _lark_literal(text: str) -> str:
    return json.dumps(text)


def _format_rule(fmt: ResponseFormat) -> tuple[str, str]:
    """A lark rule body for a format inside a larger grammar, and extra terminal definitions."""
    if isinstance(fmt, JsonObject):
        return "%json " + json.dumps(_with_json_options({"type": "object"})), ""
    if isinstance(fmt, JsonSchema):
        return "%json " + json.dumps(_with_json_options(_check_schema(fmt.schema, fmt.param))), ""
    body = llguidance.regex_to_lark(fmt.pattern, "")
    return "FORMAT_TEXT", f"FORMAT_TEXT: /{body}/ & ~/<tool_call>(?s:.*)/\n"


def compile_response_format(fmt: ResponseFormat, tokenizer: Tokenizer) -> CompiledGrammar:
    """Validate and compile a response format alone; raises ConstraintError before any generation."""
    if isinstance(fmt, Regex):
        if not isinstance(fmt.pattern, str) or not fmt.pattern:
            raise ConstraintError(fmt.param, f"a regex must be a non-empty string, got {fmt.pattern!r}")
        grammar = llguidance.LLMatcher.grammar_from_regex(fmt.pattern)
        return CompiledGrammar(_validate(grammar, tokenizer, fmt.param, "the regex"), description="regex")
    if isinstance(fmt, JsonObject):
        schema: dict[str, Any] | bool = {"type": "object"}
    elif isinstance(fmt, JsonSchema):
        schema = _check_schema(fmt.schema, fmt.param)
    else:
        raise ConstraintError("response_format", f"unknown response format {fmt!r}")
    grammar = llguidance.LLMatcher.grammar_from_json_schema(_with_json_options(schema))
    return CompiledGrammar(_validate(grammar, tokenizer, fmt.param, "the JSON Schema"), description="json")


def _call_prefix(name: str) -> str:
    return '{"name": ' + json.dumps(name) + ', "arguments": '


def _check_tools(tools: Sequence[ToolSpec]) -> tuple[ToolSpec, ...]:
    seen: set[str] = set()
    checked = []
    for n, tool in enumerate(tools):
        if not isinstance(tool.name, str) or not TOOL_NAME_PATTERN.fullmatch(tool.name):
            raise ConstraintError(f"tools[{n}].function.name", f"must match {TOOL_NAME_PATTERN.pattern}, "
                                                                f"got {tool.name!r}")
        if tool.name in seen:
            raise ConstraintError(f"tools[{n}].function.name", f"names must be unique, {tool.name!r} repeats")
        seen.add(tool.name)
        param = f"tools[{n}].function.parameters"
        schema = _check_schema(tool.parameters_schema, param)
        if schema is False:
            raise ConstraintError(param, "the schema false accepts no arguments at all")
        checked.append(ToolSpec(tool.name, schema if isinstance(schema, dict) else {"type": "object"}))
    return tuple(checked)


def compile_constraint(tokenizer: Tokenizer, response_format: ResponseFormat | None = None,
                       tools: Sequence[ToolSpec] = (), tool_choice: ToolChoice | None = None
                       ) -> CompiledGrammar | None:
    """The grammar for a request (None: unconstrained); raises ConstraintError before any generation."""
    choice = tool_choice if tool_choice is not None else ToolChoice()
    checked = _check_tools(tools)
    # Compiled alone first, so its errors name the response format precisely.
    alone = None if response_format is None else compile_response_format(response_format, tokenizer)
    if choice.mode is not ToolChoiceMode.NONE and not checked and choice.mode is not ToolChoiceMode.AUTO:
        raise ConstraintError("tool_choice", f"{choice.mode.value!r} needs at least one tool in tools")
    if choice.mode is ToolChoiceMode.NONE or not checked:
        return alone
    if choice.mode is ToolChoiceMode.NAMED:
        named = [t for t in checked if t.name == choice.name]
        if not named:
            raise ConstraintError("tool_choice.function.name", f"must name one of the tools "
                                  f"{[t.name for t in checked]}, got {choice.name!r}")
        checked = tuple(named)
    lines = []
    for n, tool in enumerate(checked):
        lines.append(f"call{n}: {_lark_literal(_call_prefix(tool.name))} args{n} \"}}\"")
        lines.append(f"args{n}: %json " + json.dumps(_with_json_options(dict(tool.parameters_schema))))
    lines.append("call: " + _lark_literal(TOOL_CALL_OPEN) + " ("
                 + " | ".join(f"call{n}" for n in range(len(checked))) + ") " + _lark_literal(TOOL_CALL_CLOSE))
    lines.append("calls: call")
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
    return CompiledGrammar(_validate(grammar, tokenizer, "tools", "the tool-call grammar"), tools=checked,
                           description=f"tools:{choice.mode.value}")


# --- parsing finished tool-call output ------------------------------------------------------------


def is_tool_call_text(text: str) -> bool:
    """Whether generated text is tool calls rather than a message (it begins with the call marker)."""
    return text.startswith(TOOL_CALL_OPEN)


def may_become_tool_call(text: str) -> bool:
    """Whether text so far is a proper start of the call marker (stream it only once this is False)."""
    return len(text) < len(TOOL_CALL_OPEN) and TOOL_CALL_OPEN.startswith(text)


def parse_tool_calls(text: str, tools: Sequence[ToolSpec]) -> tuple[ToolCall, ...]:
    """Split complete tool-call output into calls; raises ToolCallParseError on anything else."""
    by_prefix = {_call_prefix(t.name): t.name for t in tools}
    calls = []
    rest = text
    while True:
        if not rest.startswith(TOOL_CALL_OPEN):
            raise ToolCallParseError(f"tool call must start with {TOOL_CALL_OPEN!r}, got {rest[:40]!r}")
        end = rest.find(TOOL_CALL_CLOSE)
        if end < 0:
            raise ToolCallParseError(f"tool call is not closed by {TOOL_CALL_CLOSE!r}: {rest[:80]!r}")
        body = rest[len(TOOL_CALL_OPEN):end]
        name = next((n for p, n in by_prefix.items() if body.startswith(p)), None)
        if name is None or not body.endswith("}"):
            raise ToolCallParseError(f"tool call body must be {{\"name\": <a tool>, \"arguments\": {{...}}}}, "
                                     f"got {body[:80]!r}")
        arguments = body[len(_call_prefix(name)):-1]
        try:
            json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ToolCallParseError(f"arguments of {name!r} are not JSON: {exc}") from None
        calls.append(ToolCall(name, arguments))
        rest = rest[end + len(TOOL_CALL_CLOSE):]
        if not rest:
            return tuple(calls)
        if not rest.startswith(TOOL_CALL_SEPARATOR):
            raise ToolCallParseError(f"text after a tool call must be another call, got {rest[:40]!r}")
        rest = rest[len(TOOL_CALL_SEPARATOR):]


# --- the per-request matcher -----------------------------------------------------------------------

_MASK_POOL: ThreadPoolExecutor | None = None
_MASK_POOL_LOCK = threading.Lock()


def _mask_pool() -> ThreadPoolExecutor:
    global _MASK_POOL
    with _MASK_POOL_LOCK:
        if _MASK_POOL is None:
            _MASK_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llg-mask")
        return _MASK_POOL


class Constraint:
    """One generation's grammar state: which tokens are allowed next, advanced token by token."""

    def __init__(self, compiled: CompiledGrammar, tokenizer: Tokenizer) -> None:
        self.compiled = compiled
        self.vocab_size = tokenizer.vocab_size
        self._matcher = llguidance.LLMatcher(grammar_tokenizer(tokenizer), compiled.grammar, log_level=0)
        if self._matcher.is_error():
            raise ConstraintError("grammar", _first_line(self._matcher.get_error()))
        self._bitmask = allocate_token_bitmask(1, self.vocab_size)  # int32 [1, ceil(vocab/32)]
        self._allowed = np.zeros(self.vocab_size, dtype=bool)  # the last mask, unpacked
        self._pending: Future[None] | None = None

    def _fill(self) -> None:
        # llguidance releases the GIL here, so this overlaps with the engine's forward pass.
        fill_next_token_bitmask(self._matcher, self._bitmask)
        # Unpacked here too, so a prefetched mask costs the decode loop nothing (about 60 us otherwise).
        # Bit j of int32 word w is token 32*w + j (little-endian), as llguidance lays it out.
        bits = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")
        self._allowed = bits[:self.vocab_size].astype(bool)

    def prefetch(self) -> None:
        """Start computing the next mask in a worker thread (call right after `advance`)."""
        if self._pending is None:
            self._pending = _mask_pool().submit(self._fill)

    def _wait(self) -> bool:
        if self._pending is None:
            return False
        pending, self._pending = self._pending, None
        pending.result()
        return True

    def allowed_mask(self) -> np.ndarray:
        """Allowed next tokens, bool [vocab] (waits for a prefetched mask if one is running)."""
        if not self._wait():
            self._fill()
        if self._matcher.is_error():
            raise ConstraintError("grammar", _first_line(self._matcher.get_error()))
        return self._allowed.copy()

    def advance(self, token_id: int) -> None:
        """Consume a chosen token; a token the grammar forbids is a ConstraintError."""
        self._wait()
        if not self._matcher.consume_token(int(token_id)):
            raise ConstraintError("grammar", f"token {token_id} is not allowed here: "
                                  f"{_first_line(self._matcher.get_error())}")

    def is_accepting(self) -> bool:
        """Whether the output so far is complete under the grammar (ending now is allowed)."""
        return self._matcher.is_accepting()

    def is_stopped(self) -> bool:
        """Whether nothing but the end-of-turn token can follow."""
        return self._matcher.is_stopped()
