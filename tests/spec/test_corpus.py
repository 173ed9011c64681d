"""The example corpus (spec/corpus/<kind>/<case>.json) behaves as labelled under the spec's validators."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import pytest

from spec import schemas

KINDS = ("request", "response", "chunk", "error")
CASE_KEYS = {"kind", "expect", "why", "violates", "body"}


def corpus_files() -> list[Traversable]:
    """Every corpus file, read from the installed package, sorted by kind then name."""
    root = resources.files("spec").joinpath("corpus")
    return sorted(
        (f for kind in root.iterdir() if kind.is_dir() for f in kind.iterdir() if f.name.endswith(".json")),
        key=lambda f: f.name,
    )


CASES: dict[str, dict[str, Any]] = {}
for _file in corpus_files():
    CASES[f"{json.loads(_file.read_text(encoding='utf-8'))['kind']}/{_file.name[:-5]}"] = json.loads(
        _file.read_text(encoding="utf-8")
    )


def test_corpus_is_well_formed() -> None:
    """Each case has the agreed keys, a known kind matching its folder, and a `violates` path only when invalid."""
    root = resources.files("spec").joinpath("corpus")
    for kind_dir in root.iterdir():
        assert kind_dir.name in KINDS, f"spec/corpus/{kind_dir.name}: not a kind"
        for path in kind_dir.iterdir():
            case = json.loads(path.read_text(encoding="utf-8"))
            where = f"spec/corpus/{kind_dir.name}/{path.name}"
            assert set(case) <= CASE_KEYS and {"kind", "expect", "why", "body"} <= set(case), where
            assert case["kind"] == kind_dir.name, where
            assert case["expect"] in ("valid", "invalid"), where
            assert ("violates" in case) == (case["expect"] == "invalid"), where
            if "violates" in case:
                assert case["violates"].startswith("$"), where


def test_corpus_is_broad() -> None:
    """At least 60 cases, valid and invalid ones of every kind, and the seeds' snippet requests."""
    assert len(CASES) >= 60
    counts = Counter((case["kind"], case["expect"]) for case in CASES.values())
    for kind in KINDS:
        assert counts[(kind, "valid")] >= 3 and counts[(kind, "invalid")] >= 3, kind
    assert {"request/seed_huggingface_hub_streaming", "request/seed_llama_text", "request/seed_vlm_image"} <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_behaves_as_labelled(name: str) -> None:
    """A valid case has no violation; an invalid one's first violation is at the labelled path."""
    case = CASES[name]
    violations = schemas.validate(case["kind"], case["body"])
    if case["expect"] == "valid":
        assert violations == [], f"{name}: {case['why']} -> {[v.message for v in violations]}"
    else:
        assert violations, f"{name}: expected invalid ({case['why']}) but the body validates"
        first = violations[0]
        assert first.path == case["violates"], f"{name}: first violation {first.message!r}, expected at {case['violates']}"
        assert first.message.startswith(first.path + ": ")
