"""Tests of the clause catalogue (spec/clauses.yaml) and its loader (spec/clauses.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from spec.clauses import (
    AREAS,
    CLAUSE_ID_PATTERN,
    Catalogue,
    CatalogueError,
    Clause,
    Level,
    SourceDoc,
    Status,
    load_catalogue,
    parse_catalogue,
    pointer_covers,
    pointer_segments,
)

ID_LEDGER = Path(__file__).parent / "data" / "clause_ids.txt"
SCHEMAS = "#/components/schemas/"

# The property trees every clause location must cover, walked from these component schemas.
REQUEST_ROOTS = ("ChatCompletionRequest",)
RESPONSE_ROOTS = ("ChatCompletion", "ChatCompletionChunk", "ErrorBody", "ModelList", "Health")


# ----------------------------------------------------------------------------- helpers


def _raw_catalogue() -> dict[str, Any]:
    text = resources.files("spec").joinpath("clauses.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    text = resources.files("spec").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _resolve(document: Any, pointer: str) -> Any:
    node = document
    for segment in pointer_segments(pointer):
        if isinstance(node, list):
            node = node[int(segment)]
        elif isinstance(node, dict):
            node = node[segment]
        else:
            raise KeyError(segment)
    return node


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def property_pointers(document: dict[str, Any], root: str) -> set[str]:
    """Pointers to every property reachable from a component schema, following $ref.

    Each property is named where it is declared (``#/components/schemas/X/properties/p``), so
    a property shared through $ref is one path. Structural keywords are walked (properties,
    items, prefixItems, additionalProperties, oneOf, anyOf, allOf); conditional keywords
    (if/then/else, not, dependentSchemas) only restate constraints on properties declared
    elsewhere in the same schema and add no fields.
    """
    found: set[str] = set()
    visited: set[str] = set()

    def walk(node: Any, pointer: str) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in visited:
            visited.add(ref)
            walk(_resolve(document, ref), ref)
        for name, sub in (node.get("properties") or {}).items():
            path = f"{pointer}/properties/{_escape(name)}"
            found.add(path)
            walk(sub, path)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{pointer}/{key}")
        for key in ("oneOf", "anyOf", "allOf", "prefixItems"):
            for index, sub in enumerate(node.get(key) or []):
                walk(sub, f"{pointer}/{key}/{index}")

    start = SCHEMAS + root
    visited.add(start)
    walk(_resolve(document, start), start)
    return found


def uncovered(clauses: tuple[Clause, ...], pointers: set[str]) -> list[str]:
    """The pointers no clause location covers, sorted."""
    return sorted(p for p in pointers if not any(clause.covers(p) for clause in clauses))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _ledger_ids() -> list[str]:
    lines = ID_LEDGER.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _valid_entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "stream.terminator.done",
        "level": "MUST",
        "requirement": "The last event of every stream is data: [DONE].",
        "source": {"doc": "seed-hf-inference-api", "where": "before the data: [DONE] message"},
        "location": ["#/paths/~1v1~1chat~1completions/post/responses/200"],
        "group": "streaming",
        "status": "active",
        "since": "1.0.0",
    }
    entry.update(changes)
    return entry


def _document(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "catalogue_version": "1.0.0",
        "spec_version": "1.0.0",
        "groups": {"core": "Core.", "streaming": "Streams."},
        "clauses": list(entries) or [_valid_entry()],
    }


# ------------------------------------------------------------------- the catalogue file


def test_catalogue_loads_once_from_package_data(catalogue: Catalogue) -> None:
    assert load_catalogue() is catalogue
    assert catalogue.version == _raw_catalogue()["catalogue_version"]
    assert len(catalogue.clauses) == len(_raw_catalogue()["clauses"])


def test_spec_version_matches_openapi_info_version(
    catalogue: Catalogue, openapi: dict[str, Any]
) -> None:
    assert catalogue.spec_version == openapi["info"]["version"]


def test_raw_ids_are_unique() -> None:
    # Checked on the raw YAML so that the test does not rely on the loader's own check.
    ids = [entry["id"] for entry in _raw_catalogue()["clauses"]]
    duplicates = sorted({clause_id for clause_id in ids if ids.count(clause_id) > 1})
    assert duplicates == []


def test_ids_match_the_pattern_and_a_known_area(catalogue: Catalogue) -> None:
    bad = [
        clause.id
        for clause in catalogue.clauses
        if not CLAUSE_ID_PATTERN.match(clause.id) or clause.id.split(".")[0] not in AREAS
    ]
    assert bad == []


def test_every_raw_entry_is_complete() -> None:
    required = {"id", "level", "requirement", "source", "location", "group", "status", "since"}
    incomplete = {
        entry.get("id", f"#{position}"): sorted(required - entry.keys())
        for position, entry in enumerate(_raw_catalogue()["clauses"], start=1)
        if required - entry.keys()
    }
    assert incomplete == {}


def test_every_clause_has_valid_fields(catalogue: Catalogue) -> None:
    known_groups = set(catalogue.group_names)
    for clause in catalogue.clauses:
        assert isinstance(clause.level, Level), clause.id
        assert isinstance(clause.status, Status), clause.id
        assert isinstance(clause.source.doc, SourceDoc), clause.id
        assert clause.group in known_groups, clause.id
        assert clause.requirement.endswith(".") and "\n" not in clause.requirement, clause.id
        assert clause.source.where, clause.id
        assert clause.locations, clause.id
        assert _version_tuple(clause.since) <= _version_tuple(catalogue.version), clause.id


def test_retired_clauses_have_a_reason(catalogue: Catalogue) -> None:
    for clause in catalogue.clauses:
        if clause.status is Status.RETIRED:
            assert clause.retired_reason, clause.id
        else:
            assert clause.retired_reason is None, clause.id


def test_every_location_resolves_in_openapi(
    catalogue: Catalogue, openapi: dict[str, Any]
) -> None:
    broken = []
    for clause in catalogue.clauses:
        for location in clause.locations:
            try:
                _resolve(openapi, location)
            except (KeyError, IndexError, ValueError):
                broken.append(f"{clause.id}: {location}")
    assert broken == []


def test_every_group_has_an_active_clause(catalogue: Catalogue) -> None:
    empty = [name for name in catalogue.group_names if not catalogue.by_group(name)]
    assert empty == []


def test_every_must_and_should_is_listed_by_exactly_one_group(catalogue: Catalogue) -> None:
    wanted = {Level.MUST, Level.SHOULD}
    listed = [
        clause.id
        for name in catalogue.group_names
        for clause in catalogue.by_group(name)
        if clause.level in wanted
    ]
    expected = [clause.id for clause in catalogue.active() if clause.level in wanted]
    assert sorted(listed) == sorted(expected)


# --------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("root", REQUEST_ROOTS + RESPONSE_ROOTS)
def test_every_property_is_covered_by_an_active_clause(
    catalogue: Catalogue, openapi: dict[str, Any], root: str
) -> None:
    pointers = property_pointers(openapi, root)
    assert pointers, f"no properties found under {root}"
    missing = uncovered(catalogue.active(), pointers)
    assert missing == [], f"properties under {root} that no active clause covers:\n" + "\n".join(
        missing
    )


def test_walker_reaches_nested_request_and_response_properties(openapi: dict[str, Any]) -> None:
    request = property_pointers(openapi, "ChatCompletionRequest")
    for expected in (
        "ChatCompletionRequest/properties/temperature",
        "ChatCompletionRequest/properties/stream_options",
        "StreamOptions/properties/include_usage",
        "UserMessage/properties/content",
        "TextContentPart/properties/text",
        "ImageUrl/properties/url",
        "ToolMessage/properties/tool_call_id",
        "FunctionDefinition/properties/name",
        "NamedToolChoice/properties/function/properties/name",
        "ResponseFormatRegex/properties/value",
        "JsonSchemaFormat/properties/schema",
    ):
        assert SCHEMAS + expected in request, expected
    response = property_pointers(openapi, "ChatCompletion")
    chunk = property_pointers(openapi, "ChatCompletionChunk")
    for expected in (
        "ChatCompletion/properties/system_fingerprint",
        "ChatCompletionMessage/properties/tool_calls",
        "FunctionCall/properties/arguments",
        "TokenLogprob/properties/bytes",
        "TopLogprob/properties/logprob",
        "Usage/properties/total_tokens",
    ):
        assert SCHEMAS + expected in response, expected
    for expected in ("ChunkDelta/properties/content", "ToolCallDelta/properties/index"):
        assert SCHEMAS + expected in chunk, expected


def test_coverage_check_fails_when_a_property_loses_its_clauses(
    catalogue: Catalogue, openapi: dict[str, Any]
) -> None:
    target = SCHEMAS + "ChatCompletionRequest/properties/top_p"
    pointers = property_pointers(openapi, "ChatCompletionRequest")
    remaining = tuple(c for c in catalogue.active() if not c.covers(target))
    assert len(remaining) < len(catalogue.active())
    assert target in uncovered(remaining, pointers)


# ------------------------------------------------------------------------ ID ledger


def test_ledger_lists_each_id_once() -> None:
    ids = _ledger_ids()
    assert len(ids) == len(set(ids))
    assert all(CLAUSE_ID_PATTERN.match(clause_id) for clause_id in ids)


def test_no_issued_id_has_disappeared(catalogue: Catalogue) -> None:
    missing = sorted(set(_ledger_ids()) - set(catalogue.ids))
    assert missing == [], (
        "IDs listed in tests/spec/data/clause_ids.txt are missing from spec/clauses.yaml; "
        f"retire clauses instead of deleting them: {missing}"
    )


def test_every_catalogue_id_is_in_the_ledger(catalogue: Catalogue) -> None:
    unrecorded = [clause_id for clause_id in catalogue.ids if clause_id not in set(_ledger_ids())]
    assert unrecorded == [], (
        "append these new IDs to tests/spec/data/clause_ids.txt: " + ", ".join(unrecorded)
    )


# ------------------------------------------------------------------- Catalogue API


def test_get_returns_the_clause_and_rejects_unknown_ids(catalogue: Catalogue) -> None:
    clause = catalogue.get("stream.terminator.done")
    assert clause.level is Level.MUST
    assert clause.group == "streaming"
    with pytest.raises(CatalogueError, match="unknown clause id 'stream.nope.never'"):
        catalogue.get("stream.nope.never")


def test_active_excludes_retired_clauses_but_get_finds_them() -> None:
    retired = _valid_entry(
        id="stream.terminator.old", status="retired", retired_reason="Replaced by x.y.z."
    )
    parsed = parse_catalogue(_document(_valid_entry(), retired))
    assert [c.id for c in parsed.active()] == ["stream.terminator.done"]
    assert parsed.get("stream.terminator.old").retired_reason == "Replaced by x.y.z."
    assert parsed.by_group("streaming") == parsed.active()


def test_by_group_rejects_an_unknown_group(catalogue: Catalogue) -> None:
    with pytest.raises(CatalogueError, match="unknown group 'vibes'"):
        catalogue.by_group("vibes")


def test_select_matches_prefixes_at_dot_boundaries() -> None:
    parsed = parse_catalogue(
        _document(
            _valid_entry(id="stream.terminator.done"),
            _valid_entry(id="stream.terminator.nothing-after"),
            _valid_entry(id="stream.usage.last-chunk"),
            _valid_entry(id="tools.stream.index-integer"),
        )
    )
    assert [c.id for c in parsed.select(["stream.terminator"])] == [
        "stream.terminator.done",
        "stream.terminator.nothing-after",
    ]
    assert [c.id for c in parsed.select(["stream.term"])] == []
    assert len(parsed.select(["stream"])) == 3
    assert [c.id for c in parsed.select(["tools", "stream.usage.last-chunk"])] == [
        "stream.usage.last-chunk",
        "tools.stream.index-integer",
    ]
    with pytest.raises(CatalogueError, match="empty prefix"):
        parsed.select([""])


def test_real_catalogue_select_by_area(catalogue: Catalogue) -> None:
    errors = catalogue.select(["errors"])
    assert errors and all(c.id.startswith("errors.") for c in errors)


def test_pointer_helpers() -> None:
    assert pointer_segments("#/paths/~1v1~1models/get") == ("paths", "/v1/models", "get")
    assert pointer_segments("#/a~0b") == ("a~b",)
    assert pointer_covers("#/components/schemas/Usage", "#/components/schemas/Usage/properties/x")
    assert pointer_covers("#/components/schemas/Usage", "#/components/schemas/Usage")
    assert not pointer_covers("#/components/schemas/Usage", "#/components/schemas/UsageX")
    assert not pointer_covers(
        "#/components/schemas/Usage/properties/x", "#/components/schemas/Usage"
    )
    with pytest.raises(CatalogueError, match="must start with '#/'"):
        pointer_segments("components/schemas")


# ----------------------------------------------------------------- loader errors


def _bad_entries() -> Iterator[tuple[dict[str, Any], str]]:
    entry = _valid_entry()
    del entry["requirement"]
    yield entry, r"clause #1 \(id 'stream.terminator.done'\): field 'requirement': missing"
    yield _valid_entry(level="must"), r"field 'level': must be one of MUST, SHOULD, MAY, got 'must'"
    yield _valid_entry(group="speed"), r"field 'group': must be one of core, streaming, got 'speed'"
    yield _valid_entry(id="Stream.Done"), r"clause #1 \(id 'Stream.Done'\): field 'id': must match"
    yield _valid_entry(id="weather.today.sunny"), r"field 'id': area 'weather' is not one of"
    yield _valid_entry(status="retired"), r"field 'retired_reason': required when status is retired"
    yield _valid_entry(retired_reason="no"), r"field 'retired_reason': only allowed when status"
    yield _valid_entry(location=["components/x"]), r"field 'location': each entry must be a JSON"
    yield _valid_entry(location=[]), r"field 'location': must be a JSON pointer or a non-empty"
    yield _valid_entry(source={"doc": "blog", "where": "x"}), r"field 'source.doc': must be one of"
    yield _valid_entry(source={"doc": "openai"}), r"field 'source': must be a mapping with exactly"
    yield _valid_entry(requirement="Two lines\nhere."), r"field 'requirement': must be one sentence"
    yield _valid_entry(requirement="No period"), r"field 'requirement': must be one sentence"
    yield _valid_entry(since=1.0), r"field 'since': must be a quoted 'X.Y.Z' version string"
    yield _valid_entry(owner="me"), r"clause #1 \(id 'stream.terminator.done'\): unknown field"


@pytest.mark.parametrize(("entry", "message"), list(_bad_entries()))
def test_malformed_entry_is_rejected_naming_entry_and_field(
    entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(_document(entry), origin="clauses.yaml")


def test_duplicate_id_is_rejected_naming_both_entries() -> None:
    with pytest.raises(CatalogueError, match=r"clause #2 .*field 'id': duplicate of clause #1"):
        parse_catalogue(_document(_valid_entry(), _valid_entry()))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("groups"), "missing top-level key"),
        (lambda d: d.update(extra=1), "unknown top-level key"),
        (lambda d: d.update(spec_version="1.0"), "spec_version: must be a quoted 'X.Y.Z'"),
        (lambda d: d.update(clauses=[]), "clauses must be a non-empty list"),
        (lambda d: d.update(groups={"Core": "x"}), "groups: name must be kebab-case"),
        (lambda d: d.update(clauses=["stream.done.last"]), r"clause #1: must be a mapping"),
    ],
)
def test_malformed_top_level_is_rejected(change: Any, message: str) -> None:
    document = copy.deepcopy(_document())
    change(document)
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(document)


def test_non_mapping_document_is_rejected() -> None:
    with pytest.raises(CatalogueError, match="top level must be a mapping, got list"):
        parse_catalogue([1, 2])


def test_the_real_catalogue_passes_through_parse_unchanged(catalogue: Catalogue) -> None:
    assert parse_catalogue(_raw_catalogue(), origin="clauses.yaml") == catalogue
