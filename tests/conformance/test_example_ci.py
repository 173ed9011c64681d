"""The example GitHub Actions job runs as written: its gate command against a keyed tiny mock.

The step's `run` text is taken from the workflow file itself and run with bash, in a folder laid out
as the workflow expects (the expected-failure file under .github/), so the example cannot drift
from what works. CHATCONFORM_CLAUSE narrows the run to two areas to keep the test short; the command
line is the workflow's, unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conformance.breakers import KEYED_TOKEN

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "github-actions"
WORKFLOW = EXAMPLES / "chat-completions-conformance.yml"


def _steps() -> list[dict[str, object]]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return list(workflow["jobs"]["conformance"]["steps"])


def test_the_workflow_gates_with_check_and_uploads_junit_and_html() -> None:
    steps = _steps()
    gate = next(s for s in steps if "chatconform check" in str(s.get("run", "")))
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "chatconform-report/"  # type: ignore[index]
    assert "--expect .github/chatconform-expected-failures.txt" in str(gate["run"])
    assert "--report-dir chatconform-report" in str(gate["run"])


def test_the_gate_step_runs_as_written_against_a_keyed_mock(keyed_mock: str, tmp_path: Path) -> None:
    gate = next(s for s in _steps() if "chatconform check" in str(s.get("run", "")))
    (tmp_path / ".github").mkdir()
    shutil.copy(EXAMPLES / "chatconform-expected-failures.txt", tmp_path / ".github" / "chatconform-expected-failures.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATCONFORM_")}
    env.update(SERVER_URL=keyed_mock, CHATCONFORM_API_KEY=KEYED_TOKEN, CHATCONFORM_CLAUSE="response.id,stream.terminator",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", str(gate["run"])], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    report = tmp_path / "chatconform-report"
    assert (report / "junit.xml").is_file() and (report / "index.html").is_file()
    doc = json.loads((report / "results.json").read_text(encoding="utf-8"))
    assert {c["id"] for c in doc["clauses"]} >= {"response.id.present", "stream.terminator.done"}
    assert "gate: exit 0" in run.stdout
