"""Route checks: /v1/models, /health and the per-model chat route."""

from __future__ import annotations

from functools import partial
from typing import Any

from conformance.client import Target
from conformance.expectations import completion, first_content
from conformance.judges import enforce
from conformance.judges.models import model_entries
from conformance.registry import clause
from conformance.verdicts import NotExercised, need, require


def _models(target: Target) -> tuple[Any, Any]:
    ex = target.get("/v1/models")
    return ex, ex.json


@clause("routes.models.lists-served")
def test_models_lists_served(target: Target) -> None:
    """GET /v1/models answers 200 with object list and a data list that holds the served model."""
    ex, body = _models(target)
    enforce("routes.models.lists-served", ex)
    ids = [m.get("id") for m in body["data"] if isinstance(m, dict)]  # a non-empty list: judged above
    if target.config.model is not None:
        require(target.config.model in ids, "GET /v1/models does not list the model under test",
                expected=target.config.model, actual=ids, exchanges=ex)


@clause("routes.models.entry")
def test_models_entry(target: Target) -> None:
    """Every /v1/models entry has a non-empty id, object model, an integer created and a string owned_by."""
    ex, _ = _models(target)
    if not model_entries(ex):
        raise NotExercised("not exercised: GET /v1/models lists no entry to judge (judged by routes.models.lists-served)",
                           root="routes.models.lists-served", actual=f"{ex.status} {ex.body_text[:300]}", exchanges=ex)
    enforce("routes.models.entry", ex)


@clause("routes.health.ready")
def test_health_ready(target: Target) -> None:
    """GET /health answers 200 once the server answers chat requests."""
    completion(target.chat(target.body(max_tokens=1)), "a chat request before GET /health")
    ex = target.get("/health")
    require(ex.status == 200, "GET /health did not answer 200 although chat requests are answered",
            expected=200, actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


def _model_route(target: Target) -> None:
    """NotExercised unless a model id is known: without --model it comes from GET /v1/models, which
    routes.models.lists-served requires to list the served model."""
    if not target.model:
        models = target.get("/v1/models")
        need(False, "a model id (from --model or GET /v1/models)", root="routes.models.lists-served",
             actual=f"{models.status} {models.body_text[:200]}", exchanges=models)


@clause("routes.model-path.served")
def test_model_path_served(target: Target) -> None:
    """POST /models/{model_id}/v1/chat/completions with the served model answers 200 with a schema-valid chat completion."""
    _model_route(target)
    ex = target.chat(target.body(max_tokens=4), route="model")
    completion(ex, "the model route")
    enforce("response.body.schema-valid", ex, "the model route")


@clause("routes.model-path.equivalent")
def test_model_path_equivalent(target: Target) -> None:
    """At temperature 0, both chat routes give the same content for the same request."""
    _model_route(target)
    body = target.body(max_tokens=12, temperature=0, messages=[{"role": "user", "content": "Name a city."}])
    v1, by_model = target.many(partial(target.chat, body, route=route, headers={"x-use-cache": "false"})
                               for route in ("v1", "model"))
    a, b = first_content(v1, "/v1/chat/completions"), first_content(by_model, "the model route")
    require(a == b, "the two chat routes answer differently at temperature 0", expected=a, actual=b,
            exchanges=(v1, by_model))
