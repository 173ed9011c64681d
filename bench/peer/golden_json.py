"""Write golden JSON files pretty but compact: header keys one per line, one list item per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _compact(value: Any) -> str:
    """Return one-line JSON for value (UTF-8 text kept readable)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _render_item(item: Any, nested_key: str | None) -> list[str]:
    """Return the lines of one list item; `nested_key`'s list, if present, gets one entry per line."""
    if nested_key is None or not isinstance(item, dict) or nested_key not in item:
        return [f"    {_compact(item)}"]
    head = {key: value for key, value in item.items() if key != nested_key}
    prefix = _compact(head)[:-1] + ", " if head else "{"
    opening = f"{prefix}{json.dumps(nested_key)}: ["
    entries = [f"      {_compact(entry)}," for entry in item[nested_key]]
    if entries:
        entries[-1] = entries[-1][:-1]
    return [f"    {opening}", *entries, "    ]}"]


def dumps_golden(header: dict[str, Any], list_key: str, items: list[Any], nested_key: str | None = None) -> str:
    """Return JSON text of header + {list_key: items}: each item (or each nested entry) on a line."""
    lines = ["{"]
    lines.extend(f"  {json.dumps(key)}: {_compact(value)}," for key, value in header.items())
    lines.append(f"  {json.dumps(list_key)}: [")
    for index, item in enumerate(items):
        item_lines = _render_item(item, nested_key)
        if index + 1 < len(items):
            item_lines[-1] += ","
        lines.extend(item_lines)
    lines.extend(["  ]", "}"])
    text = "\n".join(lines) + "\n"
    # Round-trip check: the layout must never change the data.
    if json.loads(text) != {**header, list_key: items}:
        raise AssertionError("golden JSON layout changed the data")
    return text


def write_golden(path: Path, header: dict[str, Any], list_key: str, items: list[Any],
                 nested_key: str | None = None) -> None:
    """Write the golden file (UTF-8), creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_golden(header, list_key, items, nested_key), encoding="utf-8")
