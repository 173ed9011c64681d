"""Compiled validators for the OpenAPI document's schemas (JSON Schema 2020-12).

Usage::

    from spec import schemas
    schemas.validate("request", body)      # -> list[SchemaViolation], most specific first
    schemas.check("chunk", chunk)          # raises SchemaValidationError
    schemas.validator("Usage")             # a jsonschema validator for any component schema

Kinds: `request` (ChatCompletionRequest), `response` (ChatCompletion), `chunk`
(ChatCompletionChunk), `error` (ErrorBody); any component schema name works as well.
"""

from __future__ import annotations

import functools
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from spec.document import (
    DOCUMENT_URI,
    openapi,
    resolve,
    schema_names,
    schema_pointer,
    shared_document,
    spec_version,
)
from spec.errors import SchemaValidationError, SpecError, UnknownSchemaError
from spec.violations import SchemaViolation, select

__all__ = [
    "KINDS",
    "SchemaValidationError",
    "SchemaViolation",
    "SpecError",
    "UnknownSchemaError",
    "check",
    "openapi",
    "resolve",
    "schema",
    "schema_name",
    "schema_names",
    "spec_version",
    "validate",
    "validator",
]

# Convenience kinds -> component schema names.
KINDS: dict[str, str] = {
    "request": "ChatCompletionRequest",
    "response": "ChatCompletion",
    "chunk": "ChatCompletionChunk",
    "error": "ErrorBody",
}


def schema_name(kind_or_name: str) -> str:
    """Map a kind (`request`, `response`, `chunk`, `error`) or a component name to the component name."""
    name = KINDS.get(kind_or_name, kind_or_name)
    if name not in shared_document()["components"]["schemas"]:
        known = ", ".join(sorted(KINDS)) + "; or one of " + ", ".join(schema_names())
        raise UnknownSchemaError(f"schema {kind_or_name!r}: not a kind or component schema (known: {known})")
    return name


def schema(kind_or_name: str) -> dict[str, Any]:
    """Return a deep copy of a component schema (its `$ref`s still point into the document)."""
    component: dict[str, Any] = resolve(schema_pointer(schema_name(kind_or_name)))
    return component


@functools.cache
def _registry() -> Registry:
    """The document registered once under DOCUMENT_URI, so `#/components/...` refs resolve."""
    resource = Resource.from_contents(shared_document(), default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource(DOCUMENT_URI, resource)  # with_resource is not annotated
    return registry


def _root_ref(name: str) -> str:
    """The `$ref` that points a validator at a component schema."""
    return DOCUMENT_URI + schema_pointer(name)


@functools.cache
def _compiled(name: str) -> Validator:
    """Build (once per name) a Draft 2020-12 validator, format checking on."""
    return Draft202012Validator(
        {"$ref": _root_ref(name)},
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def validator(kind_or_name: str) -> Validator:
    """Return the compiled validator of a kind or component schema (shared; compiled once)."""
    return _compiled(schema_name(kind_or_name))


def validate(kind_or_name: str, body: Any) -> list[SchemaViolation]:
    """Return the body's violations of its schema, most specific first; empty when valid."""
    name = schema_name(kind_or_name)
    errors = _compiled(name).iter_errors(body)
    return select(errors, body, _root_ref(name), shared_document())


def check(kind_or_name: str, body: Any) -> None:
    """Raise SchemaValidationError (a SpecError) carrying the violations when the body is invalid."""
    violations = validate(kind_or_name, body)
    if violations:
        raise SchemaValidationError(schema_name(kind_or_name), violations)
