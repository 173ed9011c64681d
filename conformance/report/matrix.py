"""The matrix page: several runs side by side (rows clauses, columns targets)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from conformance.report.html import CSS, VERDICTS
from conformance.results import load_results

MATRIX_JS = """
function applyFilters(){
  const t=document.getElementById('f-text').value.toLowerCase(), d=document.getElementById('f-diff').checked;
  document.querySelectorAll('tr.clause').forEach(function(r){
    const ok=(!t||r.textContent.toLowerCase().indexOf(t)>=0)&&(!d||r.dataset.differs==='1');
    r.style.display=ok?'':'none';
  });
}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def target_label(doc: dict[str, Any]) -> str:
    """A column title: base URL, model and start time of a run."""
    target = doc.get("target", {})
    return f"{target.get('base_url')} {target.get('model') or ''} {doc.get('started', '')}".strip()


def render_matrix(docs: list[dict[str, Any]]) -> str:
    """Render several results documents as one comparison page."""
    order: list[str] = []
    info: dict[str, dict[str, Any]] = {}
    cells: list[dict[str, dict[str, Any]]] = []
    for doc in docs:
        by_id = {}
        for clause in doc["clauses"]:
            if clause["id"] not in info:
                order.append(clause["id"])
                info[clause["id"]] = clause
            by_id[clause["id"]] = clause
        cells.append(by_id)
    head = "".join(f"<th>{_e(target_label(d))}<br><small>suite {_e(d.get('suite_version'))}, catalogue "
                   f"{_e(d.get('catalogue_version'))}</small></th>" for d in docs)
    rows = [f"<table><tr><th>clause</th><th>level</th><th>group</th>{head}</tr>"]
    for verdict in VERDICTS:
        counts = "".join(f"<td class=num>{d.get('summary', {}).get(verdict, 0)}</td>" for d in docs)
        rows.append(f'<tr><th colspan=3><span class="v {verdict}">{verdict}</span></th>{counts}</tr>')
    for cid in order:
        clause = info[cid]
        verdicts = [c.get(cid, {}).get("verdict") for c in cells]
        differs = "1" if len(set(verdicts)) > 1 else "0"
        tds = []
        for by_id in cells:
            entry = by_id.get(cid)
            if entry is None:
                tds.append("<td>(not run)</td>")
                continue
            reason = next((c.get("message") for c in entry["checks"] if c.get("message") and c["verdict"] != "PASS"), "")
            tds.append(f'<td title="{_e(reason)}"><span class="v {_e(entry["verdict"])}">{_e(entry["verdict"])}</span></td>')
        rows.append(f'<tr class=clause data-differs="{differs}"><td><code>{_e(cid)}</code><br><small>'
                    f'{_e(clause["requirement"])}</small></td><td>{_e(clause["level"])}</td><td>{_e(clause["group"])}</td>'
                    + "".join(tds) + "</tr>")
    rows.append("</table>")
    return "\n".join([
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>chatconform matrix</title>",
        f"<style>{CSS}</style></head><body><h1>chatconform matrix: {len(docs)} runs</h1>",
        '<div class=filters><label>text <input id="f-text" oninput="applyFilters()"></label>'
        '<label><input type=checkbox id="f-diff" onchange="applyFilters()"> only rows that differ</label></div>',
        *rows, f"<script>{MATRIX_JS}</script></body></html>",
    ])


def write_matrix(paths: list[Path], out: Path) -> Path:
    """Read results.json files and write the matrix page."""
    docs = [load_results(p) for p in paths]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_matrix(docs), encoding="utf-8")
    return out
