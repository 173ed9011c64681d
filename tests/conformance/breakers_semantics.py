"""Breakers of semantics a range check cannot see: values validated and then ignored, wrong types
coerced, a loading model hidden behind a held request, a gateway cache, refusals mistaken for
something else.

See breakers.py for what a breaker is; the transforms live in breaker_semantics_hooks.py (and the
shared ones in breaker_hooks.py and breaker_requests.py).
"""

from __future__ import annotations

from dataclasses import replace

from tests.conformance.breaker_hooks import KEYED_TOKEN, hf_error, rewrite_request
from tests.conformance.breaker_hooks import breaker as _b
from tests.conformance.breaker_semantics_hooks import (
    cached_by_default,
    coerce_wrong_types,
    hold_first_chat,
    strip_in_range,
)
from tests.conformance.breaking_proxy import Breaker, Call, Reply

GATEWAY_CACHE = cached_by_default()


def unauthenticated_500(call: Call) -> Call | Reply:
    """A keyed gateway that crashes (500) on a chat request without Authorization instead of answering 401."""
    if call.is_chat and "authorization" not in call.headers:
        return hf_error(500, "internal error: no credentials", "internal")
    return call


SEMANTICS: tuple[Breaker, ...] = (
    # sampling values that pass the range check and are then dropped
    _b("seed-stripped", "params.seed.reproducible", "a valid seed is dropped (sampling is random)",
       request=rewrite_request(strip_in_range("seed", 0, 2**64 - 1))),
    _b("top-p-stripped", "params.top-p.narrows", "a valid top_p is dropped (out-of-range ones are still refused)",
       request=rewrite_request(strip_in_range("top_p", 0, 1))),
    _b("frequency-penalty-stripped", "params.frequency-penalty.reduces-repetition",
       "a valid frequency_penalty is dropped", request=rewrite_request(strip_in_range("frequency_penalty", -2, 2))),
    # Real model only: on random weights a presence penalty cannot break the tiny model's loops, so the
    # unbroken tiny mock gives more repeated words with it (see TINY_UNOBSERVABLE in test_breakers.py).
    replace(_b("presence-penalty-stripped", "params.presence-penalty.reduces-repetition",
               "a valid presence_penalty is dropped",
               request=rewrite_request(strip_in_range("presence_penalty", -2, 2))), model="real"),
    # wrong JSON types coerced instead of refused
    _b("wrong-type-coerced-silently", "errors.field.wrong-type",
       "a number for stop and booleans for numbers dropped, fractional integers truncated, an integer logprobs "
       "read as a boolean", request=rewrite_request(coerce_wrong_types)),
    # a loading model hidden behind a held request
    _b("held-then-200", "headers.loading.503", "the first chat request (the loading probe) is held 10 s, then 200",
       request=hold_first_chat()),
    # a gateway that does not pass x-use-cache on and caches by default
    _b("cache-header-dropped", "headers.x-use-cache.false-fresh",
       "x-use-cache dropped on the way; identical bodies answered from the gateway's cache",
       request=GATEWAY_CACHE[0], reply=GATEWAY_CACHE[1]),
    # a keyed gateway that answers 500 without a token: keyed, never "open"
    _b("unauthenticated-500", "headers.authorization.required", "500 to a chat request without Authorization",
       request=unauthenticated_500, upstream="keyed", suite_args=("--api-key", KEYED_TOKEN)),
)
