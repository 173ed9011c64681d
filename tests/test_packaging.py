"""The light install: `pip install chatconform` gives the suite alone, `chatconform[mock]` adds the model.

The heavy packages are blocked in a child interpreter (a meta-path finder refuses them, as on a
machine where they are not installed); the suite's commands and pytest (which
loads both of our pytest11 plugins) must still work, and the model's commands must say what to install.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from reference_model.extras import INSTALL_HINT, MOCK_MODULES

ROOT = Path(__file__).resolve().parents[1]
# A meta-path finder that refuses the blocked top-level modules, as if they were not installed.
BLOCK = textwrap.dedent("""
    import sys
    class _Absent:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {names!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, _Absent())
""")


def _requirement_name(spec: str) -> str:
    for stop in "<>=![; ":
        spec = spec.split(stop, 1)[0]
    return spec.strip().lower()


def _light(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run code in a child interpreter where none of the mock extra's modules can be imported."""
    script = BLOCK.format(names=sorted(MOCK_MODULES)) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, check=False)


def test_pyproject_keeps_the_models_packages_in_the_mock_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {_requirement_name(r) for r in project["dependencies"]}
    mock = {_requirement_name(r) for r in project["optional-dependencies"]["mock"]}
    assert set(MOCK_MODULES.values()) == mock
    assert base.isdisjoint(mock)


def test_the_suite_runs_without_the_mock_extra(tmp_path: Path) -> None:
    listed = _light("from conformance.cli import main\nsys.exit(main(['check', '--list']))", tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "request.messages.accepted\tMUST" in listed.stdout


def test_pytest_starts_with_our_plugins_but_without_the_mock_extra(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text("def test_nothing():\n    pass\n", encoding="utf-8")
    run = _light("import pytest\nsys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'test_app.py']))", tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_the_models_commands_name_the_extra_to_install(tmp_path: Path) -> None:
    for command in (["serve"], ["model", "prepare"], ["model", "info"]):
        run = _light(f"from conformance.cli import main\nsys.exit(main({command!r}))", tmp_path)
        assert run.returncode == 2, (command, run.stdout, run.stderr)
        assert INSTALL_HINT in run.stderr and "missing: aiohttp" in run.stderr
