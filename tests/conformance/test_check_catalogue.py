"""The checks against the catalogue: every clause has a check, docstrings state requirements, clause order."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import FunctionType, ModuleType

import pytest

import conformance.checks
from spec.clauses import load_catalogue

# Modules whose checks this test holds to clause order (one module per area, checks in catalogue order).
ORDERED_MODULES = ("test_core", "test_messages", "test_usage", "test_streaming", "test_errors", "test_headers", "test_routes")


@pytest.fixture(autouse=True)
def clause_marker(pytestconfig: pytest.Config) -> None:
    """Register the marker as the plugin does (importing the checks applies it; --strict-markers is on)."""
    pytestconfig.addinivalue_line("markers", "clause(id): the spec clause a conformance check verifies")


def check_modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(conformance.checks.__path__) if m.name.startswith("test_")]
    return [importlib.import_module(f"conformance.checks.{name}") for name in sorted(names)]


def checks(module: ModuleType) -> list[tuple[str, FunctionType]]:
    out = []
    for name, func in inspect.getmembers(module, inspect.isfunction):
        if func.__module__ != module.__name__ or not name.startswith("test_"):
            continue
        marks = [m for m in getattr(func, "pytestmark", []) if m.name == "clause"]
        if marks:
            out.append((marks[0].args[0], func))
    return sorted(out, key=lambda item: item[1].__code__.co_firstlineno)


def all_checks() -> list[tuple[str, str, FunctionType]]:
    return [(module.__name__, cid, func) for module in check_modules() for cid, func in checks(module)]


def test_every_active_clause_of_the_protocol_groups_has_a_check() -> None:
    covered = {cid for _, cid, _ in all_checks()}
    catalogue = load_catalogue()
    mine = [c.id for g in ("core", "streaming", "errors", "headers") for c in catalogue.by_group(g)
            if not c.id.startswith("clients.")]
    assert [cid for cid in mine if cid not in covered] == []


def test_every_must_clause_has_a_check() -> None:
    covered = {cid for _, cid, _ in all_checks()}
    missing = [c.id for c in load_catalogue().active() if c.level == "MUST" and c.id not in covered]
    assert missing == []


def test_each_check_has_a_present_tense_docstring_naming_its_requirement() -> None:
    catalogue = load_catalogue()
    bad = []
    for module, cid, func in all_checks():
        doc = inspect.getdoc(func) or ""
        if not doc.strip():
            bad.append(f"{module}.{func.__name__}: no docstring")
        elif module.rsplit(".", 1)[-1] in ORDERED_MODULES and doc.splitlines()[0] != catalogue.get(cid).requirement:
            bad.append(f"{module}.{func.__name__}: docstring differs from the requirement of {cid}")
    assert bad == []


@pytest.mark.parametrize("name", ORDERED_MODULES)
def test_checks_follow_clause_order(name: str) -> None:
    order = {cid: i for i, cid in enumerate(load_catalogue().ids)}
    module = importlib.import_module(f"conformance.checks.{name}")
    positions = [order[cid] for cid, _ in checks(module)]
    assert positions == sorted(positions), f"{name}: checks are not in catalogue order"
