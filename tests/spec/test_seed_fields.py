"""Every field of the seeds' tables is present in spec/openapi.yaml, with a type the seed allows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spec.document import resolve_in, shared_document

DATA = json.loads((Path(__file__).parent / "data" / "seed_fields.json").read_text(encoding="utf-8"))
SECTION_SCHEMAS = {
    "request": "ChatCompletionRequest",
    "response": "ChatCompletion",
    "stream": "ChatCompletionChunk",
}
# Keywords whose subschemas all apply to (or may apply to) the same instance.
BRANCHING = ("oneOf", "anyOf", "allOf")
JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null", dict: "object", list: "array"}
SEED_TYPES = {
    "string": {"string"},
    "enum": {"string"},
    "number": {"number"},
    "integer": {"integer"},
    "boolean": {"boolean"},
    "object": {"object"},
    "object[]": {"array"},
    "string[]": {"array"},
}


def expand(schema: Any) -> list[dict[str, Any]]:
    """Return the schema and every subschema that applies to the same instance ($ref, branches, if/then)."""
    out: list[dict[str, Any]] = []
    todo = [schema]
    while todo:
        node = todo.pop()
        if not isinstance(node, dict) or any(node is seen for seen in out):
            continue
        out.append(node)
        if isinstance(node.get("$ref"), str):
            todo.append(resolve_in(shared_document(), node["$ref"]))
        for key in BRANCHING:
            todo.extend(node.get(key, []))
        for key in ("then", "else"):
            if key in node:
                todo.append(node[key])
        todo.extend(node.get("dependentSchemas", {}).values())
    return out


def step(schemas: list[Any], segment: str, where: str) -> list[Any]:
    """Follow one path segment (`name` or `name[]`) from a set of schemas."""
    name, into_items = (segment[:-2], True) if segment.endswith("[]") else (segment, False)
    found = [node["properties"][name] for s in schemas for node in expand(s) if name in node.get("properties", {})]
    assert found, f"seed field {where!r}: no property {name!r} in the spec's schema"
    if into_items:
        found = [node["items"] for s in found for node in expand(s) if "items" in node]
        assert found, f"seed field {where!r}: {name!r} is not an array in the spec's schema"
    return found


def allowed_types(schemas: list[Any]) -> set[str] | None:
    """The JSON types the schemas allow in some branch; None when some branch allows any type."""
    kinds: set[str] = set()
    for top in schemas:
        leaves = [n for n in expand(top) if not any(k in n for k in ("$ref", *BRANCHING))]
        for node in leaves:
            if "type" in node:
                kinds.update(node["type"] if isinstance(node["type"], list) else [node["type"]])
            elif "const" in node or "enum" in node:
                values = [node["const"]] if "const" in node else node["enum"]
                kinds.update(JSON_TYPES[type(v)] for v in values)
            else:
                return None
    if "number" in kinds:
        kinds.add("integer")
    return kinds


def header_schemas(name: str) -> list[Any]:
    """The schemas of the chat operation's header parameters named `name` (case-insensitive)."""
    operation = shared_document()["paths"]["/v1/chat/completions"]["post"]
    params = [resolve_in(shared_document(), p["$ref"]) if "$ref" in p else p for p in operation["parameters"]]
    return [p["schema"] for p in params if p["in"] == "header" and p["name"].lower() == name.lower()]


@pytest.mark.parametrize("field", DATA["fields"], ids=lambda f: f"{f['section']}:{f['path']}")
def test_seed_field_is_in_the_spec(field: dict[str, Any]) -> None:
    """The seed field resolves through the spec, and the spec admits the seed's type for it."""
    where = f"{field['section']}:{field['path']}"
    if field["section"] == "headers":
        schemas = header_schemas(field["path"])
        assert schemas, f"seed header {field['path']!r}: not a header parameter of POST /v1/chat/completions"
    else:
        schemas = [{"$ref": "#/components/schemas/" + SECTION_SCHEMAS[field["section"]]}]
        for segment in field["path"].split("."):
            schemas = step(schemas, segment, where)
    wanted = SEED_TYPES.get(field["type"])
    if wanted is None:  # the seed says "unknown": any type will do
        return
    kinds = allowed_types(schemas)
    assert kinds is None or wanted & kinds, f"seed field {where!r}: seed type {field['type']}, spec allows {sorted(kinds)}"


def test_seed_field_list_covers_every_section_and_seed() -> None:
    """The data file lists request, header, response and stream fields from both seed files."""
    sections = {f["section"] for f in DATA["fields"]}
    assert sections == {"request", "headers", "response", "stream"}
    assert {s for f in DATA["fields"] for s in f["seeds"]} == set(DATA["sources"])
    paths = [(f["section"], f["path"]) for f in DATA["fields"]]
    assert len(paths) == len(set(paths)), "duplicate seed field entries"


def test_a_dropped_field_is_reported() -> None:
    """The resolver fails, naming the field, for a path the spec does not have."""
    with pytest.raises(AssertionError, match="no property 'top_k'"):
        step([{"$ref": "#/components/schemas/ChatCompletionRequest"}], "top_k", "request:top_k")
    with pytest.raises(AssertionError, match="not an array"):
        step([{"$ref": "#/components/schemas/ChatCompletionRequest"}], "temperature[]", "request:temperature[]")
