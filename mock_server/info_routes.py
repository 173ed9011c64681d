"""The routes around the chat: GET /v1/models, /health, /info, /metrics, and the request log's /mock/requests."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mock_server import chat
from mock_server.appkeys import (
    CACHE_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    REQUEST_LOG_KEY,
    REQUEST_LOG_PATH,
    SLOT_KEY,
    catalog,
    check_auth,
    server_version,
)
from mock_server.backend import Backend
from mock_server.faults import Fault
from mock_server.limits import API_LIMITS
from mock_server.router import POLICIES, PROVIDER_ROUTES, provider_entries
from spec.schemas import spec_version

# What every route of this server does, so /info and the router's model list say the same.
FEATURES_TOOLS = True  # tools with tool_choice auto, none, required and named; parallel calls
FEATURES_STRUCTURED_OUTPUT = True  # response_format json, regex, json_object, json_schema
RESPONSE_FORMATS = ["json", "regex", "text", "json_object", "json_schema"]


def _created(app: web.Application) -> int:
    backend = app[SLOT_KEY].backend
    return backend.info.created if backend is not None else 0


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models: the served model, then its configured aliases, each with the router's `providers`."""
    check_auth(request)
    app = request.app
    backend = app[SLOT_KEY].backend
    providers = provider_entries(backend.info.context_length if backend is not None else None,
                                 tools=FEATURES_TOOLS, structured_output=FEATURES_STRUCTURED_OUTPUT)
    return web.json_response({"object": "list", "data": [
        {"id": model_id, "object": "model", "created": _created(app), "owned_by": "chatconform",
         "providers": providers}
        for model_id in catalog(app).ids]})


async def health(request: web.Request) -> web.Response:
    """GET /health: 200 when ready, 503 (loading envelope) before."""
    slot = request.app[SLOT_KEY]
    slot.check_failed()
    if not slot.ready:
        raise slot.loading_error()
    return web.json_response({"status": "ok", "model": slot.model_id})


def _info(app: web.Application) -> dict[str, Any]:
    config, slot = app[CONFIG_KEY], app[SLOT_KEY]
    backend: Backend | None = slot.backend
    info = backend.info if backend is not None else None
    models = catalog(app)
    return {
        "model": slot.model_id, "aliases": list(models.ids[1:]),
        "model_ids": "only these" if config.strict_models else "any id, served as an alias of the model",
        "version": server_version(), "spec_version": spec_version(),
        "ready": slot.ready, "weights": config.weights,
        "provider": info.provider if info else None, "model_sha256": info.digest if info else None,
        "system_fingerprint": chat.fingerprint(backend, server_version()) if backend else None,
        "limits": {"context_length": info.context_length if info else None, "max_batch": config.max_batch,
                   "max_queue": config.max_queue, "max_body_bytes": config.max_body_bytes,
                   "max_n": API_LIMITS.max_choices, "max_stop_sequences": API_LIMITS.max_stop_sequences,
                   "max_stop_chars": API_LIMITS.max_stop_chars, "max_messages": API_LIMITS.max_messages, "read_timeout": config.read_timeout,
                   "max_top_logprobs": API_LIMITS.max_top_logprobs, "max_tool_calls": API_LIMITS.max_tool_calls,
                   "max_image_bytes": config.max_image_bytes, "max_image_pixels": config.max_image_pixels},
        "features": {"stream": True, "n": True, "logprobs": True, "logit_bias": True, "tools": FEATURES_TOOLS,
                     "tool_choice": ["auto", "none", "required", "named"], "tool_prompt": True,
                     "parallel_tool_calls": True,
                     "response_format": RESPONSE_FORMATS if FEATURES_STRUCTURED_OUTPUT else [],
                     "router": {"providers": list(PROVIDER_ROUTES), "policies": list(POLICIES)},
                     "images": "data: URLs" + (" and http(s)" if config.allow_remote_images else ""),
                     "reasoning_effort": "accepted; the model does not reason, so every level is the same",
                     "x-use-cache": config.cache_size > 0, "x-wait-for-model": True,
                     "error_style": config.error_style, "unknown_fields": "refused with 422",
                     "x-mock-fault": [f.value for f in Fault] if config.allow_faults else False,
                     "sse_keepalive_s": config.keepalive or False,
                     "request_log": REQUEST_LOG_PATH if config.record_requests else False},
        "config": config.public(),
    }


async def info(request: web.Request) -> web.Response:
    """GET /info: model, version, limits, features, effective configuration."""
    check_auth(request)
    return web.json_response(_info(request.app))


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text."""
    app = request.app
    backend = app[SLOT_KEY].backend
    stats = backend.stats() if backend is not None else {}
    text = app[METRICS_KEY].render(stats, ready=app[SLOT_KEY].ready, cache_size=len(app[CACHE_KEY]))
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def list_requests(request: web.Request) -> web.Response:
    """GET /mock/requests: the recorded requests, oldest first."""
    check_auth(request)
    entries = request.app[REQUEST_LOG_KEY].all()
    return web.json_response({"object": "list", "data": [entry.to_json() for entry in entries]})


async def clear_requests(request: web.Request) -> web.Response:
    """DELETE /mock/requests: forget the recorded requests."""
    check_auth(request)
    request.app[REQUEST_LOG_KEY].clear()
    return web.Response(status=204)
