"""What the fuzzer sends: the spec restricted to the dialect under test, and each case made ready to send.

Generated bodies are held to the suite's own settings before they go out: the model under test
(a server that needs `model` would otherwise answer every case "model missing", and the positive
phase would never reach generation), generation kept cheap (max_tokens, n), and response_format
variants of the dialect under test only (spec/openapi.yaml tags each variant with `x-dialect`).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from schemathesis.core import NOT_SET

from spec import schemas

MAX_TOKENS = 8
MAX_N = 2
_REF_PREFIX = "#/components/schemas/"


def dialect_openapi(dialect: str) -> dict[str, Any]:
    """spec/openapi.yaml without the `x-dialect` variants of the other dialect.

    Every oneOf whose branches are tagged keeps the branches of `dialect` (and untagged ones), and
    its discriminator mapping and `type` enum are cut to match, so the generator never builds a
    response_format the server under test need not know.
    """
    document = copy.deepcopy(schemas.openapi())
    components = document.get("components", {}).get("schemas", {})
    for schema in components.values():
        if isinstance(schema, dict) and isinstance(schema.get("oneOf"), list):
            _keep_dialect(schema, components, dialect)
    return document


def _dialect_of(ref: Any, components: dict[str, Any]) -> str | None:
    if not (isinstance(ref, dict) and isinstance(ref.get("$ref"), str) and ref["$ref"].startswith(_REF_PREFIX)):
        return None
    target = components.get(ref["$ref"][len(_REF_PREFIX):])
    return target.get("x-dialect") if isinstance(target, dict) else None


def _keep_dialect(schema: dict[str, Any], components: dict[str, Any], dialect: str) -> None:
    branches = schema["oneOf"]
    tags = [_dialect_of(branch, components) for branch in branches]
    if not any(tags):
        return
    schema["oneOf"] = [b for b, tag in zip(branches, tags, strict=True) if tag in (None, dialect)]
    kept = {b["$ref"] for b in schema["oneOf"] if isinstance(b, dict) and "$ref" in b}
    mapping = (schema.get("discriminator") or {}).get("mapping")
    if isinstance(mapping, dict):
        schema["discriminator"]["mapping"] = {k: v for k, v in mapping.items() if v in kept}
        enum = ((schema.get("properties") or {}).get("type") or {}).get("enum")
        if isinstance(enum, list):
            schema["properties"]["type"]["enum"] = [v for v in enum if v in schema["discriminator"]["mapping"]]


def clamp(body: Any) -> Any:
    """Keep generation cheap without repairing invalid values: cap valid max_tokens (or max_completion_tokens)
    and n, add max_tokens when neither is given."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    # max_completion_tokens is max_tokens by another name, and the two together are invalid: cap the
    # one the case carries rather than adding the other
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    tokens = body.get(key, None)
    if key not in body or tokens is None or _is_number(tokens) and tokens > MAX_TOKENS:
        body[key] = MAX_TOKENS
    n = body.get("n")
    if _is_number(n) and n > MAX_N:
        body["n"] = MAX_N
    return body


def with_model(body: Any, model: str | None) -> Any:
    """The body naming the model under test, unless its `model` is itself the (wrongly typed) fuzzed value.

    A missing, null or string model becomes `model`: a random model name only provokes "no such
    model", which tells nothing about the rest of the body.
    """
    if model is None or not isinstance(body, dict):
        return body
    current = body.get("model")
    if current is None or isinstance(current, str):
        body = {**body, "model": model}
    return body


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def encode(body: Any) -> bytes:
    """The bytes to send: raw bytes as generated, nothing for a missing body, else JSON."""
    if body is NOT_SET:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", errors="surrogatepass")
    return json.dumps(body).encode("utf-8", errors="surrogatepass")


__all__ = ["MAX_N", "MAX_TOKENS", "clamp", "dialect_openapi", "encode", "with_model"]
