"""The model's chat template (ChatML, from the GGUF), rendered and tokenized without prompt injection.

The template is jinja2 source stored in the GGUF (`tokenizer.chat_template`). It is rendered in an
immutable sandbox with the same environment transformers uses (trim_blocks, lstrip_blocks, the
loopcontrols extension, `raise_exception`, `strftime_now`, a `tojson` filter that keeps non-ASCII),
so prompts are byte-identical to what `apply_chat_template` produces.

Tokenizing the rendered prompt naively with control-token parsing would let a user who types
`<|im_end|>` in a message close their own turn. `ChatTemplate.encode` instead parses control tokens
only where the template wrote them; text that came from message content is always plain text.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from reference_model.errors import TemplateError, WeightsError
from reference_model.tokenizer import Tokenizer


@dataclass(frozen=True)
class PromptPiece:
    """A run of rendered prompt text: written by the template, or copied from message `index`'s content."""

    text: str
    content_index: int | None  # None: template text (control tokens parsed); else message index


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template rejected the messages: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # transformers' filter: jinja's builtin tojson escapes HTML and forces ASCII, which changes prompts.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols],
                                        undefined=jinja2.Undefined, autoescape=False, keep_trailing_newline=False)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _validate_messages(messages: object) -> list[dict[str, str]]:
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        raise TemplateError(f"messages must be a list of {{role, content}} dicts, got {type(messages).__name__}")
    if not messages:
        raise TemplateError("messages must contain at least one message, got an empty list")
    checked: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TemplateError(f"messages[{i}] must be a dict, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise TemplateError(f"messages[{i}].role must be a non-empty string, got {role!r}")
        if not isinstance(content, str):
            raise TemplateError(f"messages[{i}].content must be a string at this layer "
                                f"(flatten parts first), got {type(content).__name__}")
        checked.append({"role": role, "content": content})
    return checked


class ChatTemplate:
    """A jinja2 chat template plus the special-token strings it may use."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "",
                 control_tokens: Sequence[str] = ()) -> None:
        if not isinstance(source, str) or not source.strip():
            raise TemplateError("chat template source must be a non-empty string")
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"chat template does not compile: line {exc.lineno}: {exc.message}") from exc
        # Longest first so that a token which is a prefix of another never wins the alternation.
        ordered = sorted({t for t in control_tokens if t}, key=len, reverse=True)
        self._control_re = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def from_gguf(cls, path: str | Path) -> ChatTemplate:
        """Read `tokenizer.chat_template` and the control-token strings from a GGUF."""
        from reference_model.gguf_file import open_gguf
        from reference_model.tokenizer import TOKEN_TYPE_CONTROL

        try:
            reader = open_gguf(path)
        except WeightsError as exc:
            raise TemplateError(f"chat template: {exc}") from exc
        field = reader.fields.get("tokenizer.chat_template")
        if field is None:
            raise TemplateError(f"GGUF {path} has no tokenizer.chat_template")
        tokens = reader.fields["tokenizer.ggml.tokens"]
        types = reader.fields["tokenizer.ggml.token_type"].contents()

        def token_text(key: str) -> str:
            id_field = reader.fields.get(key)
            if id_field is None:
                return ""
            return bytes(tokens.parts[tokens.data[int(id_field.contents())]]).decode("utf-8")

        control = [bytes(tokens.parts[tokens.data[i]]).decode("utf-8")
                   for i, t in enumerate(types) if t == TOKEN_TYPE_CONTROL]
        return cls(str(field.contents()), bos_token=token_text("tokenizer.ggml.bos_token_id"),
                   eos_token=token_text("tokenizer.ggml.eos_token_id"), control_tokens=control)

    @classmethod
    def load(cls) -> ChatTemplate:
        """The reference model's chat template (weights prepared on first use), read once per process."""
        from reference_model.weights import ensure_gguf

        with _LOAD_LOCK:
            return _load_cached(ensure_gguf())

    def _render_checked(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         bos_token=self.bos_token, eos_token=self.eos_token)
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template failed to render: {exc}") from exc

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages` ({role, content: str} dicts)."""
        return self._render_checked(_validate_messages(messages), add_generation_prompt)

    def pieces(self, messages: Sequence[Mapping[str, str]], *,
               add_generation_prompt: bool = True) -> list[PromptPiece]:
        """Split the rendered prompt into template-written text and message-content text, in order."""
        checked = _validate_messages(messages)
        rendered = self._render_checked(checked, add_generation_prompt)
        # Render again with each content replaced by a sentinel nobody can type (random, checked
        # absent), then split there: what lies between sentinels is the template's own text.
        nonce = secrets.token_hex(8)
        while any(nonce in m["content"] for m in checked) or nonce in self.source:
            nonce = secrets.token_hex(8)
        marker = re.compile(f"\ue000{nonce}:(\\d+)\ue001")
        stand_in = [{"role": m["role"], "content": f"\ue000{nonce}:{i}\ue001"} for i, m in enumerate(checked)]
        skeleton = self._render_checked(stand_in, add_generation_prompt)
        pieces: list[PromptPiece] = []
        pos = 0
        for match in marker.finditer(skeleton):
            if match.start() > pos:
                pieces.append(PromptPiece(skeleton[pos:match.start()], None))
            index = int(match.group(1))
            if checked[index]["content"]:
                pieces.append(PromptPiece(checked[index]["content"], index))
            pos = match.end()
        if pos < len(skeleton):
            pieces.append(PromptPiece(skeleton[pos:], None))
        # The split is only trustworthy if content went through the template verbatim (no trim,
        # no branching on its value); otherwise refuse rather than risk parsing user text.
        if "".join(p.text for p in pieces) != rendered:
            raise TemplateError("chat template transforms or inspects message content, so the prompt cannot "
                                "be split into template and user text for safe tokenization")
        return pieces

    def encode(self, messages: Sequence[Mapping[str, str]], tokenizer: Tokenizer, *,
               add_generation_prompt: bool = True) -> list[int]:
        """Prompt token ids: control tokens the template wrote become control ids; message content never does.

        Equals `tokenizer.encode(self.render(...), special=True)` whenever no content contains
        control-token text, because both split the text at the same control tokens and encode the
        runs between them identically.
        """
        ids: list[int] = []
        special = tokenizer.special_tokens
        current: list[str] = []  # text since the last control token, encoded as plain text
        for piece in self.pieces(messages, add_generation_prompt=add_generation_prompt):
            if piece.content_index is not None or self._control_re is None:
                current.append(piece.text)
                continue
            pos = 0
            for match in self._control_re.finditer(piece.text):
                current.append(piece.text[pos:match.start()])
                ids.extend(tokenizer.encode("".join(current), special=False))
                if match.group(0) not in special:
                    raise TemplateError(f"chat template writes {match.group(0)!r}, which is not a control "
                                        "token of the given tokenizer")
                ids.append(special[match.group(0)])
                current = []
                pos = match.end()
            current.append(piece.text[pos:])
        ids.extend(tokenizer.encode("".join(current), special=False))
        return ids


_LOAD_LOCK = threading.Lock()


@cache
def _load_cached(path: Path) -> ChatTemplate:
    return ChatTemplate.from_gguf(path)
