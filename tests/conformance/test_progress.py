"""What a CI log shows: plain progress lines from a run and from the embedded mock's model steps."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from conformance.embedded import MODEL_STEP_PREFIX, EmbeddedMock, EmbeddedStartError
from conformance.progress import ProgressPlugin


def _run(plugin: ProgressPlugin, nodeid: str, verdict: str) -> None:
    """What pytest tells the plugin of one check: its start, then its report."""
    plugin.pytest_runtest_logstart(nodeid, None)
    plugin.pytest_runtest_logreport(SimpleNamespace(nodeid=nodeid, when="teardown",
                                                    user_properties=[("chatconform_verdict", verdict)]))


def test_plain_mode_prints_a_line_per_finished_module_with_counts() -> None:
    out = io.StringIO()
    plugin = ProgressPlugin(Console(file=out, width=200), mode="lines")
    plugin.pytest_collection_finish(SimpleNamespace(items=[1, 2, 3]))
    _run(plugin, "checks/test_core.py::test_a", "PASS")
    _run(plugin, "checks/test_core.py::test_b", "FAIL")
    _run(plugin, "checks/test_streaming.py::test_c", "PASS")
    lines = out.getvalue().splitlines()
    assert lines[0] == "chatconform: 3 checks to run"
    assert "test_core.py done: FAIL 1 PASS 1" in lines[1] and lines[1].startswith("[  2/3 ")
    assert "test_streaming.py: FAIL 1 PASS 2" in lines[2] and lines[2].startswith("[  3/3 ")  # the last check


def test_off_mode_prints_nothing() -> None:
    out = io.StringIO()
    plugin = ProgressPlugin(Console(file=out), mode="off")
    plugin.pytest_collection_finish(SimpleNamespace(items=[1]))
    _run(plugin, "checks/test_core.py::test_a", "PASS")
    assert out.getvalue() == ""


def test_embedded_start_relays_the_childs_model_steps(tmp_path: Path) -> None:
    # A child that logs two model steps (and other noise), then exits without answering: start() fails,
    # but it relayed each step once, in order, without the prefix, however slowly the child ran.
    script = tmp_path / "child.py"
    script.write_text(
        "import sys\n"
        f"print('noise'); print({MODEL_STEP_PREFIX!r} + 'downloading (93.0 MB)', flush=True)\n"
        f"print({MODEL_STEP_PREFIX!r} + 'converting int4', flush=True)\n"
        "sys.exit(3)\n", encoding="utf-8")
    mock = EmbeddedMock(start_timeout=600.0)  # a hang guard only: the child's exit ends start()
    mock.command = lambda: [sys.executable, str(script)]  # type: ignore[method-assign]
    steps: list[str] = []
    try:
        with pytest.raises(EmbeddedStartError, match="exited with status 3"):
            mock.start(on_step=steps.append)
    finally:
        mock.stop()
    assert steps == ["downloading (93.0 MB)", "converting int4"]
