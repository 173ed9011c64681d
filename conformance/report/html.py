"""A self-contained HTML report of one run (inline CSS and JS, no network)."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from typing import Any

VERDICTS = ("PASS", "FAIL", "FLAKY", "WARN", "UNSUPPORTED", "IGNORED", "NOT_EXERCISED", "SKIPPED", "ERROR")

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}
th{background:#f3f3f3;text-align:left}.num{text-align:right}
.v{font-weight:600;padding:0 .3em;border-radius:3px}
.PASS{background:#d4f4d4}.FAIL{background:#f8c8c8}.WARN{background:#fde9b8}.UNSUPPORTED{background:#dde6f7}
.IGNORED{background:#f3d1ec}.SKIPPED{background:#eee}.ERROR{background:#c33;color:#fff}
.FLAKY{background:#f7b267}.NOT_EXERCISED{background:#cdeff3}
pre{white-space:pre-wrap;word-break:break-all;background:#f8f8f8;padding:.4em;max-height:24em;overflow:auto;margin:.2em 0}
details{margin:.2em 0}.filters *{margin-right:.6em}.req{max-width:48em}
.gate{padding:.6em .8em;border-radius:4px;margin:.5em 0 1em}.gate.ok{background:#d4f4d4}.gate.bad{background:#f8c8c8}
"""

JS = """
function applyFilters(){
  const v=document.getElementById('f-verdict').value, g=document.getElementById('f-group').value,
        l=document.getElementById('f-level').value, t=document.getElementById('f-text').value.toLowerCase();
  let shown=0;
  document.querySelectorAll('tr.clause').forEach(function(r){
    const ok=(!v||r.dataset.verdict===v)&&(!g||r.dataset.group===g)&&(!l||r.dataset.level===l)
      &&(!t||r.textContent.toLowerCase().indexOf(t)>=0);
    r.style.display=ok?'':'none'; const d=document.getElementById('ev-'+r.id); if(d){d.style.display=ok?'':'none';}
    if(ok){shown++;}
  });
  document.getElementById('shown').textContent=shown;
}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _badge(verdict: str) -> str:
    return f'<span class="v {_e(verdict)}">{_e(verdict)}</span>'


def render_html(doc: dict[str, Any]) -> str:
    """Render one run's results document as a standalone HTML page."""
    target = doc.get("target", {})
    label = target.get("label") or target.get("base_url")
    clauses = doc["clauses"]
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>chatconform: {_e(label)}</title><style>{CSS}</style></head><body>",
        f"<h1>chatconform report: {_e(label)}</h1>",
        _gate_banner(doc),
        f"<table><tr><th>target</th><td>{_e(label)}" + (f" at <code>{_e(target.get('base_url'))}</code>"
                                                        if label != target.get("base_url") else "") + "</td></tr>",
        "<tr><th>models</th><td>" + _e(", ".join(target.get("models") or []) or "(none listed)")
        + (f" (requests name <code>{_e(target.get('model'))}</code>)" if target.get("model") else "") + "</td></tr>",
        f"<tr><th>system_fingerprint</th><td>{_e(target.get('system_fingerprint'))}</td></tr>",
        f"<tr><th>suite / spec / catalogue</th><td>{_e(doc.get('suite_version'))} / {_e(doc.get('spec_version'))}"
        f" / {_e(doc.get('catalogue_version'))}</td></tr>",
        f"<tr><th>started / duration</th><td>{_e(doc.get('started'))} / {float(doc.get('duration_s') or 0):.1f} s</td></tr>",
        f"<tr><th>seed</th><td>{_e(doc.get('seed'))}</td></tr>",
        "<tr><th>config</th><td><code>" + _e(json.dumps(doc.get("config"), sort_keys=True)) + "</code></td></tr></table>",
        "<h2>Summary by capability</h2>", _summary_table(clauses, doc.get("summary", {})),
        "<h2>Clauses</h2>", _filters(clauses), _clause_table(clauses),
        f"<script>{JS}</script></body></html>",
    ]
    return "\n".join(parts)


def _gate_banner(doc: dict[str, Any]) -> str:
    """What `chatconform check` concludes from this run: exit code and why, the clauses behind it."""
    gate = doc.get("gate")
    if not gate:
        return ""
    ok = gate["code"] == 0
    lines = [f"<b>gate: exit {_e(gate['code'])}</b>: {_e(gate['reason'])}"]
    for key, title in (("regressions", "required clauses that failed"),
                       ("orphaned", "required clauses not exercised, with no failing root"),
                       ("errors", "suite-side errors"), ("expected", "expected failures (--expect)"),
                       ("fixed", "listed in --expect, now passing")):
        if gate.get(key):
            lines.append(f"{title}: " + ", ".join(f"<code>{_e(c)}</code>" for c in gate[key]))
    for note in ("interrupted", "unresponsive", "unreachable"):
        if doc.get(note):
            lines.append(f"{note}: {_e(doc[note])}")
    return f'<div class="gate {"ok" if ok else "bad"}">' + "<br>".join(lines) + "</div>"


def _summary_table(clauses: list[dict[str, Any]], summary: dict[str, int]) -> str:
    groups: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(VERDICTS, 0))
    for clause in clauses:
        groups[clause["group"]][clause["verdict"]] += 1
    rows = ["<table><tr><th>group</th>" + "".join(f"<th>{_badge(v)}</th>" for v in VERDICTS) + "</tr>"]
    for group, counts in groups.items():
        rows.append(f"<tr><td>{_e(group)}</td>" + "".join(
            f'<td class=num>{counts[v] or ""}</td>' for v in VERDICTS) + "</tr>")
    rows.append("<tr><th>all clauses</th>" + "".join(
        f"<th class=num>{summary.get(v, 0)}</th>" for v in VERDICTS) + "</tr></table>")
    rows.append(f"<p>{summary.get('checks', 0)} checks over {len(clauses)} clauses.</p>")
    return "\n".join(rows)


def _filters(clauses: list[dict[str, Any]]) -> str:
    def select(ident: str, label: str, values: list[str]) -> str:
        options = "".join(f"<option>{_e(v)}</option>" for v in values)
        return f'<label>{label} <select id="{ident}" onchange="applyFilters()"><option value="">all</option>{options}</select></label>'
    groups = list(dict.fromkeys(c["group"] for c in clauses))
    return ('<div class=filters>' + select("f-verdict", "verdict", list(VERDICTS)) + select("f-group", "group", groups)
            + select("f-level", "level", ["MUST", "SHOULD", "MAY"])
            + '<label>text <input id="f-text" oninput="applyFilters()" placeholder="id or words"></label>'
            + f'<span><span id="shown">{len(clauses)}</span> shown</span></div>')


def _latency(clause: dict[str, Any]) -> str:
    durations = [float(c.get("duration_s") or 0) for c in clause["checks"] if c.get("nodeid")]
    if not durations:
        return ""
    return f"{sum(durations):.2f} s" + (f" (max {max(durations):.2f})" if len(durations) > 1 else "")


def _clause_table(clauses: list[dict[str, Any]]) -> str:
    rows = ["<table><tr><th>clause</th><th>level</th><th>group</th><th>verdict</th><th>requirement / result</th>"
            "<th>time</th></tr>"]
    for index, clause in enumerate(clauses):
        verdict = clause["verdict"]
        messages = [c.get("message") for c in clause["checks"] if c.get("message")]
        note = "<br>".join(_e(m) for m in messages[:3])
        if verdict == "NOT_EXERCISED" and clause.get("root"):
            root_index = next((i for i, c in enumerate(clauses) if c["id"] == clause["root"]), None)
            link = (f'<a href="#c{root_index}"><code>{_e(clause["root"])}</code></a>' if root_index is not None
                    else f'<code>{_e(clause["root"])}</code>')
            note = f"{_e(clause.get('because'))} &rarr; root: {link}<br>" + note
        if clause.get("runs"):
            note = "verdict per run: " + _e(", ".join(clause["runs"])) + "<br>" + note
        expected = " (expected failure)" if clause.get("expected_failure") else ""
        rows.append(
            f'<tr class=clause id="c{index}" data-verdict="{_e(verdict)}" data-group="{_e(clause["group"])}" '
            f'data-level="{_e(clause["level"])}"><td><code>{_e(clause["id"])}</code></td><td>{_e(clause["level"])}</td>'
            f'<td>{_e(clause["group"])}</td><td>{_badge(verdict)}{expected}</td>'
            f'<td class=req>{_e(clause["requirement"])}<br><small>{note}</small></td><td class=num>{_latency(clause)}</td></tr>'
        )
        evidence = _evidence(clause)
        if evidence:
            rows.append(f'<tr id="ev-c{index}"><td colspan=6>{evidence}</td></tr>')
    rows.append("</table>")
    return "\n".join(rows)


def _evidence(clause: dict[str, Any]) -> str:
    blocks = []
    for check in clause["checks"]:
        if not check.get("nodeid") or (check["verdict"] in ("PASS", "SKIPPED") and not check.get("evidence")):
            continue
        inner = [f"<b>{_e(check['nodeid'])}</b> {_badge(check['verdict'])} {_e(check.get('message'))}"]
        if check.get("expected") is not None or check.get("actual") is not None:
            inner.append("<pre>expected: " + _e(json.dumps(check.get("expected"), indent=1)) + "\nactual:   "
                         + _e(json.dumps(check.get("actual"), indent=1)) + "</pre>")
        for ev in check.get("evidence") or []:
            req = ev.get("request", {})
            head = "\n".join(f"{k}: {v}" for k, v in (ev.get("headers") or {}).items())
            body = "\n".join(ev["sse_lines"]) if ev.get("sse_lines") else ev.get("body")
            inner.append(
                f"<details><summary>{_e(req.get('method'))} {_e(req.get('url'))} &rarr; {_e(ev.get('status'))}"
                f" ({_e(ev.get('elapsed_s'))} s)</summary>"
                f"<pre>{_e(req.get('body'))}</pre><pre>{_e(head)}</pre><pre>{_e(body)}</pre>"
                f"<pre>{_e(ev.get('curl'))}</pre></details>"
            )
        blocks.append("<div>" + "".join(inner) + "</div>")
    if not blocks:
        return ""
    return f"<details><summary>evidence ({len(blocks)})</summary>" + "".join(blocks) + "</details>"
