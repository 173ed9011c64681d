"""Turn jsonschema's error trees into few, specific, human-readable violations."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError

from spec.document import escape_token, resolve_in

WEAK = frozenset({"oneOf", "anyOf"})
# Keywords whose failure one level below a branch's instance marks a discriminator mismatch
# (for example `role: const user` when the message's role is `tool`): that branch is not the
# one the body meant.
DISCRIMINATING = frozenset({"const", "enum"})
_MISSING: Any = None  # `value` of a violation whose property is absent


@dataclass(frozen=True)
class SchemaViolation:
    """One way a body breaks its schema.

    path: JSON path of the offending value, e.g. `$.messages[0].content`; for a missing
    property, the path the property would have (`$.messages[0].tool_call_id`), and value None.
    rule: the failing JSON Schema keyword (`maximum`, `required`, `dependentSchemas`, ...).
    message: a sentence that starts with the path, e.g. `$.temperature: 3 is greater than the
    maximum of 2`.
    value: the offending value (None when it is missing).
    schema_pointer: JSON pointer into the OpenAPI document of the failing keyword, e.g.
    `#/components/schemas/ChatCompletionRequest/properties/temperature/maximum`.
    """

    path: str
    rule: str
    message: str
    value: Any
    schema_pointer: str

    @property
    def param(self) -> str | None:
        """The path as OpenAI's error `param` names it (`messages[0].content`); None for the whole body."""
        if self.path == "$":
            return None
        return self.path[2:] if self.path.startswith("$.") else self.path[1:]


def json_path(parts: Iterable[str | int]) -> str:
    """Render instance path parts as a JSON path: `$`, `.name`, `['odd key']`, `[3]`."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += "[" + json.dumps(part) + "]"
    return out


def short(value: Any, limit: int = 60) -> str:
    """Render a value as compact JSON, cut to `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def absolute_pointer(root_ref: str, document: dict[str, Any], schema_path: Sequence[str | int]) -> str:
    """Follow a validator's schema path through `$ref`s and return where it ends in the document.

    jsonschema leaves `$ref` itself out of schema paths, so a step that the current node lacks is
    looked up in the node's `$ref` target (in 2020-12 a `$ref` may have sibling keywords).
    """
    node: Any = {"$ref": root_ref}
    pointer = ""
    for key in schema_path:
        while isinstance(node, dict) and key not in node and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            pointer = ref.split("#", 1)[1] if "#" in ref else ""
            node = resolve_in(document, pointer)
        pointer += "/" + escape_token(key)
        node = _child(node, key)
    return "#" + pointer


def _child(node: Any, key: str | int) -> Any:
    """The node under `key`; None past a scalar, or past a list for a key that is not an index."""
    if isinstance(node, dict):
        return node[key]
    if isinstance(node, list) and isinstance(key, int):
        return node[key]
    return None


def _branches(error: ValidationError) -> dict[int, list[ValidationError]]:
    """Group a oneOf/anyOf error's context by the index of the branch that produced it."""
    groups: dict[int, list[ValidationError]] = {}
    for sub in error.context or []:
        groups.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    return groups


def _tier(branch: list[ValidationError]) -> int:
    """0: the branch fits the value's type and discriminator; 1: discriminator mismatch; 2: type mismatch."""
    if any(len(e.relative_path) == 0 and e.validator == "type" for e in branch):
        return 2
    if any(len(e.relative_path) == 1 and e.validator in DISCRIMINATING for e in branch):
        return 1
    return 0


def _declared(schema: Any, document: dict[str, Any]) -> set[str]:
    """The property names a branch schema declares (following its `$ref` chain)."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 16:
        ref = schema["$ref"]
        schema = resolve_in(document, ref.split("#", 1)[1] if "#" in ref else "")
        seen += 1
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return set(properties) if isinstance(properties, dict) else set()


def leaves(error: ValidationError, document: dict[str, Any]) -> list[ValidationError]:
    """Descend into oneOf/anyOf to the errors of the branch the value most plausibly meant."""
    if error.validator not in WEAK or not error.context:
        return [error]
    groups = _branches(error)
    tiers: dict[int, list[int]] = {}
    for index, branch in sorted(groups.items()):
        tiers.setdefault(_tier(branch), []).append(index)
    chosen: int | None = None
    if tiers.get(0):
        # Several branches fit: the likeliest intent declares most of the value's properties,
        # then has the fewest problems.
        keys = set(error.instance) if isinstance(error.instance, dict) else set()

        def fit(i: int) -> tuple[int, int, int]:
            return (-len(keys & _declared(error.validator_value[i], document)), len(groups[i]), i)

        chosen = min(tiers[0], key=fit)
    elif len(tiers.get(1, [])) == 1:
        chosen = tiers[1][0]
    if chosen is None:
        return [error]
    return [leaf for sub in groups[chosen] for leaf in leaves(sub, document)]


def _rank(error: ValidationError) -> tuple[bool, tuple[tuple[int, int, str], ...], int, str]:
    """Sort key: specific keywords before oneOf/anyOf, then instance order, then fewer branch hops."""
    hops = sum(1 for key in error.absolute_schema_path if key in WEAK)
    where = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in error.absolute_path)
    return (error.validator in WEAK, where, hops, str(error.validator))


def _required_missing(error: ValidationError) -> str | None:
    """Return the missing property's name of a `required` failure."""
    missing = [name for name in error.validator_value if name not in error.instance]
    return missing[0] if missing else None


def _message(error: ValidationError) -> str:
    """Say what is wrong with the value, in words, without the path."""
    rule, bound, value = error.validator, error.validator_value, error.instance
    if rule == "type":
        kinds = bound if isinstance(bound, list) else [bound]
        return f"{short(value)} is not of type {' or '.join(map(str, kinds))}"
    if rule == "const":
        return f"{short(value)} is not the allowed value {short(bound)}"
    if rule == "enum":
        return f"{short(value)} is not one of {', '.join(short(v) for v in bound)}"
    if rule == "maxItems":
        return f"{len(value)} items, more than the maximum of {bound}"
    if rule == "minItems":
        return f"{len(value)} items, fewer than the minimum of {bound}"
    if rule == "minLength":
        return f"{short(value)} is shorter than {bound} character{'s' if bound != 1 else ''}"
    if rule == "pattern":
        return f"{short(value)} does not match the pattern {bound}"
    if rule in WEAK:
        kinds = _branch_types(error)
        if kinds:
            return f"{short(value)} is not of type {' or '.join(kinds)}"
        return f"{short(value)} matches none of the allowed shapes"
    message: str = error.message
    return message


def _branch_types(error: ValidationError) -> list[str]:
    """When every branch of a oneOf/anyOf rejects the value's type, the types they allow; else []."""
    groups = _branches(error)
    kinds: list[str] = []
    for _, branch in sorted(groups.items()):
        wrong = [e for e in branch if len(e.relative_path) == 0 and e.validator == "type"]
        if not wrong:
            return []
        bound = wrong[0].validator_value
        for kind in bound if isinstance(bound, list) else [bound]:
            if kind not in kinds:
                kinds.append(str(kind))
    return kinds


def to_violation(error: ValidationError, body: Any, root_ref: str, document: dict[str, Any]) -> SchemaViolation:
    """Convert one jsonschema error into a SchemaViolation."""
    schema_path = list(error.absolute_schema_path)
    parts = list(error.absolute_path)
    rule = str(error.validator)
    value: Any = error.instance
    message = _message(error)
    pointer = absolute_pointer(root_ref, document, schema_path)
    if "dependentSchemas" in schema_path:
        # Report a dependency at the property that triggers it (e.g. `$.top_logprobs`), whatever
        # inner keyword failed: that property is the one the client should look at.
        at = len(schema_path) - 1 - schema_path[::-1].index("dependentSchemas")
        trigger = str(schema_path[at + 1])
        descended = sum(1 for key in schema_path[at + 2 :] if key in ("properties", "items"))
        parts = parts[: len(parts) - descended] + [trigger]
        pointer = absolute_pointer(root_ref, document, schema_path[: at + 2])
        dependent = resolve_in(document, pointer)
        rule = "dependentSchemas"
        message = str(dependent.get("x-violation-message", f"{trigger} requires other properties"))
        value = _lookup(body, parts)
    elif error.validator == "required":
        missing = _required_missing(error)
        if missing is not None:
            parts = parts + [missing]
            message = "required property is missing"
            value = _MISSING
    elif "propertyNames" in schema_path:
        message = f"property name {message}"
    else:
        note = error.schema.get("x-violation-message") if isinstance(error.schema, dict) else None
        if note:
            message = str(note)
    path = json_path(parts)
    return SchemaViolation(path=path, rule=rule, message=f"{path}: {message}", value=value, schema_pointer=pointer)


def _lookup(body: Any, parts: Sequence[str | int]) -> Any:
    """Return the value at instance path `parts` of `body`, or None when absent."""
    node = body
    for part in parts:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def select(
    errors: Iterable[ValidationError], body: Any, root_ref: str, document: dict[str, Any]
) -> list[SchemaViolation]:
    """Return one violation per distinct problem, the most specific and earliest first."""
    chosen = sorted((leaf for error in errors for leaf in leaves(error, document)), key=_rank)
    found: list[SchemaViolation] = []
    seen: set[tuple[str, str]] = set()
    for leaf in chosen:
        violation = to_violation(leaf, body, root_ref, document)
        if (violation.path, violation.rule) not in seen:
            seen.add((violation.path, violation.rule))
            found.append(violation)
    # A oneOf/anyOf violation says nothing new when a specific one was found at or below its path.
    return [v for v in found if v.rule not in WEAK or not any(_under(o.path, v.path) for o in found if o is not v)]


def _under(path: str, prefix: str) -> bool:
    """Whether JSON path `path` is `prefix` or lies below it."""
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")
