"""Breakers of headers, routes, the official clients and the fuzz clauses.

See breakers.py for what a breaker is; the transforms live in breaker_hooks.py, breaker_requests.py,
breaker_stream.py and breaker_transforms.py.
"""

from __future__ import annotations

from dataclasses import replace

from tests.conformance.breaker_hooks import (
    KEYED_TOKEN,
    hf_error,
    limit_in_flight,
    on_error,
    on_events,
)
from tests.conformance.breaker_hooks import breaker as _b
from tests.conformance.breaker_stream import insert_after_first
from tests.conformance.breaker_transforms import (
    canned_completion,
    die_after,
    drop_estimated_time,
    drop_header,
    get_route,
    inject_token,
    model_route_404,
    model_route_differs,
    model_route_ignored,
    models_empty,
    models_no_owner,
    refuse_any_token,
    refuse_header,
    remember_uncached,
    replay_uncached,
    restatus,
    strip_chat_token,
    throttle_first,
    vary_cached,
)
from tests.conformance.breaking_proxy import Breaker

BURST_LIMIT = limit_in_flight(4)
FUZZ_ARGS = ("--fuzz-budget", "10")  # enough generated requests to meet the broken case, and quick

SERVICE: tuple[Breaker, ...] = (
    # headers
    _b("valid-token-refused", "headers.authorization.bearer", "chat requests lose their valid token on the way",
       request=strip_chat_token, upstream="keyed", suite_args=("--api-key", KEYED_TOKEN)),
    _b("cache-varies", "headers.x-use-cache.cached-identical", "x-use-cache true answers differ each time",
       reply=vary_cached),
    _b("auth-not-enforced", "headers.authorization.required headers.authorization.invalid",
       "the right token injected into every request", request=inject_token, upstream="keyed",
       suite_args=("--api-key", KEYED_TOKEN)),
    _b("any-token-401", "headers.authorization.ignored-when-open", "401 to any request with a token (open target)",
       request=refuse_any_token),
    _b("x-use-cache-refused", "headers.x-use-cache.accepted", "400 on x-use-cache",
       request=refuse_header("x-use-cache")),
    _b("uncached-replayed", "headers.x-use-cache.false-fresh", "x-use-cache false answered from a cache",
       request=replay_uncached, reply=remember_uncached),
    _b("wait-header-dropped", "headers.x-wait-for-model.waits", "x-wait-for-model dropped on the way",
       request=drop_header("x-wait-for-model"), upstream="loading"),
    _b("loading-500", "headers.loading.503", "the loading 503 answered as 500",
       reply=restatus((503,), 500), upstream="loading"),
    _b("loading-no-estimate", "headers.loading.estimated-time", "loading 503s without estimated_time",
       reply=drop_estimated_time, upstream="loading"),
    _b("429-no-retry-after", "headers.retry-after.429", "the first two chat requests get 429 without Retry-After",
       request=throttle_first(2)),
    _b("burst-429-no-retry-after", "headers.retry-after.429",
       "429 without Retry-After to a chat request that arrives while 4 are answered (only the burst overlaps)",
       request=BURST_LIMIT[0], reply=BURST_LIMIT[1]),
    _b("x-wait-refused", "headers.x-wait-for-model.accepted", "400 on x-wait-for-model",
       request=refuse_header("x-wait-for-model")),
    # routes
    _b("models-empty", "routes.models.lists-served", "/v1/models lists nothing",
       reply=get_route("/v1/models", models_empty)),
    _b("models-no-owner", "routes.models.entry", "/v1/models entries without owned_by",
       reply=get_route("/v1/models", models_no_owner)),
    _b("health-500", "routes.health.ready", "/health answers 500",
       reply=get_route("/health", lambda r: hf_error(500, "unhealthy", "internal"))),
    _b("model-route-404", "routes.model-path.served", "404 on /models/{model}/v1/chat/completions",
       request=model_route_404),
    _b("model-route-differs", "routes.model-path.equivalent", "the model route's content gains a character",
       reply=model_route_differs),
    _b("unknown-model-route-200", "errors.model.unknown-route", "any /models/{x} route served by the one model",
       request=model_route_ignored),
    # clients
    _b("answer-not-json", "clients.openai.completion clients.hf.completion", "a 200 application/json body that is no JSON",
       reply=lambda c, r: replace(r, body=r.body[:-1]) if c.is_chat and r.ok_json else r),
    _b("stream-error-event", "clients.openai.stream clients.hf.stream", "an error event in the middle of the stream",
       reply=on_events(insert_after_first('{"error": {"message": "boom", "type": "server_error"}}'))),
    # fuzz
    _b("invalid-accepted-by-fuzz", "fuzz.invalid.refused", "schema-invalid requests answered 200",
       reply=on_error(canned_completion),
       suite_args=FUZZ_ARGS),
    _b("undocumented-status", "fuzz.status.documented", "refusals answered 418", reply=restatus((400, 422), 418),
       suite_args=FUZZ_ARGS),
    _b("valid-500", "fuzz.valid.accepted", "every request the mock answers 200 is answered 500",
       reply=restatus((200,), 500), suite_args=FUZZ_ARGS),
    _b("server-dies", "fuzz.server.survives", "after 15 chat requests every request gets 500",
       request=die_after(15), suite_args=FUZZ_ARGS),
)
