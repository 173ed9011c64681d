"""The model list, judged once: GET /v1/models answers a list object whose entries describe the served models.

A judge reads the answer to GET .../v1/models and returns [] for any other exchange. Whether the
list holds the model under test is the clause check's to judge (it knows the target's model).

    {"object": "list", "data": [{"id": str, "object": "model", "created": int, "owned_by": str}, ...]}
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from conformance.exchange import Exchange
from conformance.judges.registry import MODELS, Problem, judge
from conformance.judges.response import int_value

MODELS_PATH = "/v1/models"
LIST_OBJECT = "list"
MODEL_OBJECT = "model"


def is_models_listing(ex: Exchange) -> bool:
    """The exchange is a GET of the model list (a path ending in /v1/models)."""
    return ex.method.upper() == "GET" and urlsplit(ex.url).path.rstrip("/").endswith(MODELS_PATH)


def model_entries(ex: Exchange) -> list[Any] | None:
    """The data list of a 200 model list (None when there is none)."""
    body = ex.json if ex.status == 200 and is_models_listing(ex) else None
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, list) else None


def entry_problems(entry: Any) -> list[str]:
    """What is wrong with one /v1/models entry (empty when it has id, object model, created and owned_by)."""
    entry = entry if isinstance(entry, dict) else {}
    problems = []
    if not (isinstance(entry.get("id"), str) and entry["id"].strip()):
        problems.append(f"id {entry.get('id')!r}")
    if entry.get("object") != MODEL_OBJECT:
        problems.append(f"object {entry.get('object')!r}")
    if int_value(entry.get("created")) is None:
        problems.append(f"created {entry.get('created')!r}")
    if not isinstance(entry.get("owned_by"), str):
        problems.append(f"owned_by {entry.get('owned_by')!r}")
    return problems


@judge("routes.models.lists-served", on=[MODELS])
def lists_models(ex: Exchange) -> list[Problem]:
    """GET /v1/models answers 200 with object list and a non-empty data list (which model it must hold, the check knows)."""
    if not is_models_listing(ex):
        return []
    if ex.status != 200:
        return [Problem("GET /v1/models did not answer 200", expected=200, actual=ex.status)]
    body = ex.json
    if not (isinstance(body, dict) and body.get("object") == LIST_OBJECT):
        return [Problem("GET /v1/models: object is not list", expected=LIST_OBJECT,
                        actual=body.get("object") if isinstance(body, dict) else ex.body_text[:200])]
    data = body.get("data")
    if not (isinstance(data, list) and data):
        return [Problem("GET /v1/models: data is not a non-empty list", expected="non-empty list", actual=data)]
    return []


@judge("routes.models.entry", on=[MODELS])
def model_entry(ex: Exchange) -> list[Problem]:
    """Every /v1/models entry has a non-empty id, object model, an integer created and a string owned_by."""
    return [Problem(f"/v1/models entry {i}: " + ", ".join(problems),
                    expected="id non-empty, object model, integer created, string owned_by", actual=entry)
            for i, entry in enumerate(model_entries(ex) or []) if (problems := entry_problems(entry))]


__all__ = ["entry_problems", "is_models_listing", "model_entries"]
