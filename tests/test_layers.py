"""The hard layering of the packages, enforced on the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level modules it must never import (directly or lazily, anywhere in its source)
FORBIDDEN: dict[str, set[str]] = {
    # the engine yields token events; it knows nothing of HTTP or the API's JSON shapes
    "reference_model": {"mock_server", "conformance", "spec", "aiohttp", "httpx"},
    # the server talks to the engine through an interface, so tests can swap in the tiny model
    "mock_server": {"onnxruntime", "conformance"},
    # the suite is a black-box client of the wire protocol
    "conformance": {"mock_server", "reference_model", "onnxruntime"},
    # the spec is data plus its loaders
    "spec": {"mock_server", "reference_model", "conformance", "onnxruntime"},
}

# package -> modules of a forbidden package it may import all the same (by their full name)
ALLOWED: dict[str, frozenset[str]] = {
    # the cassette format (standard library only) is shared: the mock records and replays the files the suite judges
    "mock_server": frozenset({"conformance.cassette"}),
}


def imported_modules(path: Path) -> set[str]:
    """Return the full module names imported anywhere in a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def imported_top_levels(path: Path, allowed: frozenset[str] = frozenset()) -> set[str]:
    """Return the top-level module names imported anywhere in a source file (less the `allowed` full names)."""
    return {name.split(".")[0] for name in imported_modules(path) - allowed}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_its_layer(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_top_levels(path, ALLOWED.get(package, frozenset())) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "layering broken:\n" + "\n".join(offenders)


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import a.b\nfrom c.d import e\nfrom . import f\nimportlib.import_module('g.h')\n")
    assert imported_top_levels(src) == {"a", "c", "g"}


def test_nothing_reads_the_shared_folder_beside_the_checkout() -> None:
    """A user's clone has no ../shared: no code or test may depend on it."""
    offenders = []
    for top in ("spec", "conformance", "mock_server", "reference_model", "tests", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.resolve() == Path(__file__).resolve():
                continue
            text = path.read_text(encoding="utf-8")
            if "../shared" in text or "/work/shared" in text:
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these files reach outside the clone: {offenders}"
