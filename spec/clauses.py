"""The clause catalogue: every normative requirement the suite checks, with a stable ID.

The catalogue lives in ``spec/clauses.yaml`` (package data); its header comment documents the
format. This module parses it into frozen dataclasses and rejects a malformed file with an error
that names the entry and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import yaml

__all__ = [
    "AREAS",
    "CLAUSE_ID_PATTERN",
    "Catalogue",
    "CatalogueError",
    "Clause",
    "Group",
    "Level",
    "Source",
    "SourceDoc",
    "Status",
    "load_catalogue",
    "parse_catalogue",
    "pointer_covers",
    "pointer_segments",
]

# `<area>.<subject>.<rule>`: three or more dot-separated kebab-case segments, lower case.
CLAUSE_ID_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*){2,}$")
# The first ID segment names the part of the API a clause is about (see the yaml header).
AREAS = frozenset({
    "request", "message", "response", "usage", "params", "logprobs", "stream", "tools", "format", "transport",
    "vision", "errors", "headers", "routes", "clients", "fuzz",
})
_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")
_TOP_KEYS = frozenset({"catalogue_version", "spec_version", "groups", "clauses"})
_REQUIRED_KEYS = ("id", "level", "requirement", "source", "location", "group", "status", "since")
_OPTIONAL_KEYS = frozenset({"retired_reason"})
_SOURCE_KEYS = frozenset({"doc", "where"})
CATALOGUE_RESOURCE = "clauses.yaml"
_E = TypeVar("_E", bound=StrEnum)


class CatalogueError(ValueError):
    """The clause catalogue is malformed or a lookup names an unknown clause or group."""


class Level(StrEnum):
    """RFC 2119 requirement level of a clause."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"


class Status(StrEnum):
    """Lifecycle of a clause: retired clauses keep their ID forever and are never reused."""

    ACTIVE = "active"
    RETIRED = "retired"


class SourceDoc(StrEnum):
    """Where a requirement comes from; ``chatconform`` marks the project's own tightening."""

    SEED_HF_INFERENCE_API = "seed-hf-inference-api"
    SEED_INFERENCE_PROVIDERS = "seed-inference-providers"
    OPENAI = "openai"
    TGI = "tgi"
    CHATCONFORM = "chatconform"


@dataclass(frozen=True)
class Source:
    """The document a clause derives from and the field path or sentence within it."""

    doc: SourceDoc
    where: str


@dataclass(frozen=True)
class Group:
    """A profile name the suite can select, with its one-line description."""

    name: str
    description: str


@dataclass(frozen=True)
class Clause:
    """One normative requirement: one clause is one conformance check."""

    id: str
    level: Level
    requirement: str
    source: Source
    locations: tuple[str, ...]
    group: str
    status: Status
    since: str
    retired_reason: str | None = None

    @property
    def active(self) -> bool:
        """True unless the clause is retired."""
        return self.status is Status.ACTIVE

    def covers(self, pointer: str) -> bool:
        """True when one of this clause's locations is ``pointer`` or an ancestor of it."""
        return any(pointer_covers(location, pointer) for location in self.locations)


@dataclass(frozen=True)
class Catalogue:
    """The parsed catalogue: versions, groups and clauses in file order."""

    version: str
    spec_version: str
    groups: tuple[Group, ...]
    clauses: tuple[Clause, ...]

    @property
    def group_names(self) -> tuple[str, ...]:
        """Group names in file order."""
        return tuple(group.name for group in self.groups)

    @property
    def ids(self) -> tuple[str, ...]:
        """Every clause ID, active and retired, in file order."""
        return tuple(clause.id for clause in self.clauses)

    def get(self, clause_id: str) -> Clause:
        """Return the clause with this ID (retired ones included); CatalogueError if unknown."""
        for clause in self.clauses:
            if clause.id == clause_id:
                return clause
        raise CatalogueError(f"unknown clause id {clause_id!r}")

    def active(self) -> tuple[Clause, ...]:
        """Clauses whose status is active, in file order."""
        return tuple(clause for clause in self.clauses if clause.active)

    def by_group(self, name: str) -> tuple[Clause, ...]:
        """Active clauses of one group; CatalogueError if the group is unknown."""
        if name not in self.group_names:
            raise CatalogueError(
                f"unknown group {name!r}; known groups: {', '.join(self.group_names)}"
            )
        return tuple(clause for clause in self.active() if clause.group == name)

    def select(self, prefixes: Iterable[str]) -> tuple[Clause, ...]:
        """Active clauses whose ID equals a prefix or starts with it at a dot boundary.

        ``stream`` selects ``stream.terminator.done`` but not ``streaming.x``; ``stream.usage``
        selects every ``stream.usage.*`` clause. No prefix at all selects nothing.
        """
        wanted = tuple(prefix.rstrip(".") for prefix in prefixes)
        for prefix in wanted:
            if not prefix:
                raise CatalogueError("select(prefixes): an empty prefix would select everything")
        return tuple(
            clause
            for clause in self.active()
            if any(clause.id == p or clause.id.startswith(p + ".") for p in wanted)
        )


def pointer_segments(pointer: str) -> tuple[str, ...]:
    """Split a ``#/a/b`` JSON pointer fragment into unescaped segments (``~1`` is ``/``)."""
    if pointer == "#":
        return ()
    if not pointer.startswith("#/"):
        raise CatalogueError(f"JSON pointer must start with '#/', got {pointer!r}")
    return tuple(
        part.replace("~1", "/").replace("~0", "~") for part in pointer[2:].split("/")
    )


def pointer_covers(location: str, pointer: str) -> bool:
    """True when ``location`` equals ``pointer`` or is an ancestor of it, segment by segment."""
    outer = pointer_segments(location)
    inner = pointer_segments(pointer)
    return inner[: len(outer)] == outer


@cache
def load_catalogue() -> Catalogue:
    """Load and validate ``spec/clauses.yaml`` from package data, once per process."""
    text = resources.files("spec").joinpath(CATALOGUE_RESOURCE).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{CATALOGUE_RESOURCE}: not valid YAML: {exc}") from exc
    return parse_catalogue(data, origin=CATALOGUE_RESOURCE)


def parse_catalogue(data: Any, origin: str = "<catalogue>") -> Catalogue:
    """Validate the structure of a loaded catalogue document and build a Catalogue."""
    if not isinstance(data, Mapping):
        raise CatalogueError(f"{origin}: top level must be a mapping, got {type(data).__name__}")
    missing = sorted(_TOP_KEYS - data.keys())
    unknown = sorted(str(key) for key in data.keys() - _TOP_KEYS)
    if missing:
        raise CatalogueError(f"{origin}: missing top-level key(s): {', '.join(missing)}")
    if unknown:
        raise CatalogueError(f"{origin}: unknown top-level key(s): {', '.join(unknown)}")
    version = _version(data["catalogue_version"], f"{origin}: catalogue_version")
    spec_version = _version(data["spec_version"], f"{origin}: spec_version")
    groups = _groups(data["groups"], origin)
    raw_clauses = data["clauses"]
    if not isinstance(raw_clauses, list) or not raw_clauses:
        raise CatalogueError(f"{origin}: clauses must be a non-empty list")
    known_groups = frozenset(group.name for group in groups)
    clauses: list[Clause] = []
    seen: dict[str, int] = {}
    for position, entry in enumerate(raw_clauses, start=1):
        clause = _clause(entry, f"{origin}: clause #{position}", known_groups)
        if clause.id in seen:
            raise CatalogueError(
                f"{origin}: clause #{position} (id {clause.id!r}): field 'id': duplicate of "
                f"clause #{seen[clause.id]}; IDs are never reused"
            )
        seen[clause.id] = position
        clauses.append(clause)
    return Catalogue(version, spec_version, groups, tuple(clauses))


def _version(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _VERSION_PATTERN.match(value):
        raise CatalogueError(f"{where}: must be a quoted 'X.Y.Z' version string, got {value!r}")
    return value


def _groups(value: Any, origin: str) -> tuple[Group, ...]:
    if not isinstance(value, Mapping) or not value:
        raise CatalogueError(f"{origin}: groups must be a non-empty mapping of name to description")
    groups = []
    for name, description in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9-]*", name):
            raise CatalogueError(f"{origin}: groups: name must be kebab-case, got {name!r}")
        if not isinstance(description, str) or not description.strip():
            raise CatalogueError(
                f"{origin}: groups: {name!r} needs a one-line description, got {description!r}"
            )
        groups.append(Group(name, description.strip()))
    return tuple(groups)


def _field_error(where: str, field: str, message: str) -> CatalogueError:
    return CatalogueError(f"{where}: field {field!r}: {message}")


def _clause(entry: Any, where: str, known_groups: frozenset[str]) -> Clause:
    if not isinstance(entry, Mapping):
        raise CatalogueError(f"{where}: must be a mapping, got {type(entry).__name__}")
    raw_id = entry.get("id")
    if isinstance(raw_id, str):
        where = f"{where} (id {raw_id!r})"
    for key in _REQUIRED_KEYS:
        if key not in entry:
            required = ", ".join(_REQUIRED_KEYS)
            raise _field_error(where, key, f"missing (required: {required})")
    unknown = sorted(str(key) for key in entry.keys() - set(_REQUIRED_KEYS) - _OPTIONAL_KEYS)
    if unknown:
        raise CatalogueError(f"{where}: unknown field(s): {', '.join(unknown)}")

    if not isinstance(raw_id, str) or not CLAUSE_ID_PATTERN.match(raw_id):
        raise _field_error(
            where,
            "id",
            "must match <area>.<subject>.<rule> in lower-case kebab-case "
            f"({CLAUSE_ID_PATTERN.pattern}), got {raw_id!r}",
        )
    area = raw_id.split(".", 1)[0]
    if area not in AREAS:
        raise _field_error(where, "id", f"area {area!r} is not one of {', '.join(sorted(AREAS))}")
    level = _enum(Level, entry["level"], where, "level")
    requirement = _sentence(entry["requirement"], where)
    source = _source(entry["source"], where)
    locations = _locations(entry["location"], where)
    group = entry["group"]
    if group not in known_groups:
        allowed = ", ".join(sorted(known_groups))
        raise _field_error(where, "group", f"must be one of {allowed}, got {group!r}")
    status = _enum(Status, entry["status"], where, "status")
    since = _version(entry["since"], f"{where}: field 'since'")
    reason = entry.get("retired_reason")
    if status is Status.RETIRED and (not isinstance(reason, str) or not reason.strip()):
        raise _field_error(where, "retired_reason", "required when status is retired")
    if status is Status.ACTIVE and reason is not None:
        raise _field_error(where, "retired_reason", "only allowed when status is retired")
    return Clause(raw_id, level, requirement, source, locations, group, status, since, reason)


def _enum(kind: type[_E], value: Any, where: str, field: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise _field_error(where, field, f"must be one of {allowed}, got {value!r}") from None


def _sentence(value: Any, where: str) -> str:
    # One sentence on one line, so a report can quote it verbatim next to a verdict.
    if not isinstance(value, str) or not value.strip():
        raise _field_error(where, "requirement", f"must be a non-empty string, got {value!r}")
    text = value.strip()
    if "\n" in text or not text.endswith("."):
        raise _field_error(
            where, "requirement", f"must be one sentence on one line ending with '.', got {text!r}"
        )
    return text


def _source(value: Any, where: str) -> Source:
    if not isinstance(value, Mapping) or set(value.keys()) != _SOURCE_KEYS:
        raise _field_error(
            where, "source", f"must be a mapping with exactly doc and where, got {value!r}"
        )
    doc = _enum(SourceDoc, value["doc"], where, "source.doc")
    text = value["where"]
    if not isinstance(text, str) or not text.strip():
        raise _field_error(where, "source.where", f"must be a non-empty string, got {text!r}")
    return Source(doc, text.strip())


def _locations(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _field_error(
            where, "location", f"must be a JSON pointer or a non-empty list of them, got {value!r}"
        )
    for item in items:
        if not isinstance(item, str) or not item.startswith("#/"):
            message = f"each entry must be a JSON pointer starting with '#/', got {item!r}"
            raise _field_error(where, "location", message)
    if len(set(items)) != len(items):
        raise _field_error(where, "location", f"duplicate pointer in {items!r}")
    return tuple(items)
