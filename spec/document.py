"""The OpenAPI document as package data: loaded once, addressed by JSON pointers."""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml

from spec.errors import SpecError

DOCUMENT_FILE = "openapi.yaml"
# The base URI under which the document is registered for `$ref` resolution; a `$ref` such as
# `#/components/schemas/Usage` inside it resolves against this URI.
DOCUMENT_URI = "urn:chatconform:spec:openapi.yaml"


class PointerError(SpecError, LookupError):
    """A JSON pointer that does not resolve inside the document."""


@functools.cache
def shared_document() -> dict[str, Any]:
    """Return the parsed document, shared by every caller: never mutate it (use `openapi()`)."""
    text = resources.files("spec").joinpath(DOCUMENT_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or "openapi" not in document:
        raise SpecError(f"spec/{DOCUMENT_FILE}: not an OpenAPI document (no top-level 'openapi' key)")
    return document


def openapi() -> dict[str, Any]:
    """Return a private deep copy of the parsed OpenAPI document (callers may mutate it)."""
    return copy.deepcopy(shared_document())


def spec_version() -> str:
    """Return the specification's version, `info.version` (cited by clauses and reports)."""
    return str(shared_document()["info"]["version"])


def escape_token(token: str | int) -> str:
    """Escape one reference token for a JSON pointer (RFC 6901: `~` -> `~0`, `/` -> `~1`)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer_tokens(pointer: str) -> list[str]:
    """Split a JSON pointer (`/a/b` or `#/a/b`) into unescaped reference tokens."""
    pointer = pointer.removeprefix("#")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PointerError(f"JSON pointer {pointer!r}: must be empty or start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def resolve_in(root: Any, pointer: str) -> Any:
    """Return the node of `root` that a JSON pointer names, or raise PointerError naming the step."""
    node = root
    walked = ""
    for token in pointer_tokens(pointer):
        walked += "/" + escape_token(token)
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise PointerError(f"JSON pointer {pointer!r}: nothing at {walked!r}")
    return node


def resolve(pointer: str) -> Any:
    """Return a deep copy of the node of the document at a JSON pointer such as `#/components/schemas/Usage`."""
    return copy.deepcopy(resolve_in(shared_document(), pointer))


def schema_names() -> list[str]:
    """Return the names of all component schemas, sorted."""
    return sorted(shared_document()["components"]["schemas"])


def schema_pointer(name: str) -> str:
    """Return the JSON pointer (with a leading `#`) of a component schema."""
    return "#/components/schemas/" + escape_token(name)
