"""Header checks: authorization, x-use-cache, x-wait-for-model, the loading 503 and 429 Retry-After.

A 429 is only seen when the target throttles, so unless the run has already seen one, the
Retry-After check sends up to three bursts of `--burst` concurrent tiny requests (max_tokens 1),
stopping at the first 429; `--burst 0` turns that off for rate-limited or paid providers. A target
that never answers 429 leaves the clause SKIPPED.
"""

from __future__ import annotations

import statistics
from functools import partial
from typing import Any

from conformance.client import Exchange, Target
from conformance.config import SuiteConfig
from conformance.expectations import completion, envelope_problems, first_content
from conformance.judges import enforce
from conformance.registry import clause
from conformance.samples import first_choice_content, need_answer
from conformance.verdicts import Fail, NotApplicable, NotExercised, require

WRONG_TOKEN = "chatconform-wrong-token-0000"
NO_AUTH = {"Authorization": None}
# A loading probe answered 200 after being held this long (and this many times longer than the
# same request later takes) was held while the model loaded: see test_loading_503.
HELD_MIN_S = 5.0
HELD_FACTOR = 5.0
LATER_SAMPLES = 3


def _needs_key(target: Target) -> str:
    if not target.config.api_key:
        raise NotApplicable("no --api-key given: the target is treated as one that needs no token")
    return target.config.api_key


def wrong_token(target: Target) -> str:
    """A bearer token that is certainly not the configured key."""
    key = target.config.api_key or ""
    return WRONG_TOKEN if WRONG_TOKEN != key else WRONG_TOKEN + "-other"


def _refused_401(ex: Exchange, what: str) -> None:
    require(ex.status == 401, f"{what}: expected 401", expected=401, actual=f"{ex.status} {ex.body_text[:200]}",
            exchanges=ex)
    problems = envelope_problems(ex.json)
    require(not problems, f"{what}: the 401 has no proper error envelope: {'; '.join(problems)}",
            expected="error envelope", actual=ex.body_text[:300], exchanges=ex)


@clause("headers.authorization.required")
def test_authorization_required(target: Target) -> None:
    """When the target requires a token, a request without an Authorization header is refused with 401 and an error envelope."""
    _needs_key(target)
    _refused_401(target.chat(target.body(max_tokens=1), headers=NO_AUTH), "no Authorization header")


@clause("headers.authorization.invalid")
def test_authorization_invalid(target: Target) -> None:
    """When the target requires a token, a request with a wrong token is refused with 401 and an error envelope."""
    _needs_key(target)
    wrong = wrong_token(target)
    _refused_401(target.chat(target.body(max_tokens=1), headers={"Authorization": f"Bearer {wrong}"}),
                 f"a wrong bearer token ({wrong!r}, not the configured key)")


@clause("headers.authorization.bearer")
def test_authorization_bearer(target: Target) -> None:
    """A request with Authorization: Bearer followed by a valid token is answered 200."""
    key = _needs_key(target)
    completion(target.chat(target.body(max_tokens=1), headers={"Authorization": f"Bearer {key}"}), "valid bearer token")


@clause("headers.authorization.ignored-when-open")
def test_authorization_ignored_when_open(target: Target) -> None:
    """A target that needs no token answers requests that carry any Authorization header as it answers those without one."""
    body = target.body(max_tokens=8, temperature=0, seed=9)
    without = target.chat(body, headers={**NO_AUTH, "x-use-cache": "false"})
    # Open means: a request without Authorization is answered 200. A 401 means keyed; anything else
    # (a 5xx, a 403, a 429) says neither, and must not be taken for an open target.
    if without.status == 401:
        raise NotApplicable("the target requires a token (401 without Authorization)", exchanges=without)
    if without.status != 200:
        raise NotExercised(f"a request without Authorization got {without.status}, neither 200 (an open target) nor "
                           "401 (a keyed one): whether the target is open cannot be told "
                           "(judged by headers.authorization.required)", root="headers.authorization.required",
                           actual=f"{without.status} {without.body_text[:200]}", exchanges=without)
    wrong = wrong_token(target)
    with_any = target.chat(body, headers={"Authorization": f"Bearer {wrong}", "x-use-cache": "false"})
    a = first_content(without, "no Authorization header")
    b = first_content(with_any, f"an arbitrary Authorization header (Bearer {wrong})")
    require(a == b, "an arbitrary Authorization header changed the answer of an open target",
            expected=a, actual=b, exchanges=(without, with_any))


@clause("headers.x-use-cache.accepted")
def test_use_cache_accepted(target: Target) -> None:
    """Requests with x-use-cache true or false are answered 200."""
    for value in ("true", "false"):
        completion(target.chat(target.body(max_tokens=2), headers={"x-use-cache": value}), f"x-use-cache {value}")


SEEDS_TO_VARY = 3  # distinct seeds that show whether the target varies its output at all


@clause("headers.x-use-cache.false-fresh")
def test_use_cache_false_fresh(target: Target, suite_config: SuiteConfig) -> None:
    """With x-use-cache false, three identical unseeded requests with an open-ended prompt at temperature 1 get three distinct ids and at least two distinct contents.

    Three identical contents show a cache only on a target that varies its output at all: a
    deterministic server (one canned answer, fresh ids) is not a caching one. So identical contents
    are followed by three requests that differ in seed; when those give one content too, the target
    never varies and the clause is not exercised (params.seed.varies judges that).
    """
    body = target.body(max_tokens=16, temperature=1, messages=[
        {"role": "user", "content": "Write one sentence about anything you like."}])
    exchanges = target.many([lambda: target.chat(body, headers={"x-use-cache": "false"})] * 3)
    ids = [completion(ex).get("id") for ex in exchanges]
    contents = [first_content(ex, "x-use-cache false") for ex in exchanges]
    require(len(set(map(repr, ids))) == 3, "x-use-cache false: the three answers do not have three distinct ids",
            expected="3 distinct ids", actual=ids, exchanges=exchanges)
    if len(set(map(repr, contents))) >= 2:
        return
    seeds = [suite_config.seed + i for i in range(SEEDS_TO_VARY)]
    seeded = target.many(partial(target.chat, dict(body, seed=s), headers={"x-use-cache": "false"}) for s in seeds)
    for ex in seeded:
        need_answer(ex, "a seeded request at temperature 1", "request.messages.accepted")
    varied = [first_choice_content(ex) for ex in seeded]
    if len(set(map(repr, varied))) < 2:
        raise NotExercised(f"not exercised: three identical requests gave one content, and so did seeds {seeds}: the "
                           "target never varies its output at temperature 1, so identical answers show no cache "
                           "(judged by params.seed.varies)", root="params.seed.varies",
                           actual=[contents[0], varied[0]], exchanges=[*exchanges, *seeded])
    raise Fail("x-use-cache false: three sampled answers are all identical, although distinct seeds give distinct "
               "contents: the identical requests were answered from a cache", expected=">= 2 distinct contents",
               actual={"identical requests": contents, f"seeds {seeds}": varied}, exchanges=[*exchanges, *seeded])


@clause("headers.x-use-cache.cached-identical")
def test_use_cache_cached_identical(target: Target) -> None:
    """With x-use-cache true, a repeated temperature 0 request may be served from cache, with the same content as the first answer."""
    body = target.body(max_tokens=8, temperature=0, messages=[{"role": "user", "content": "Name a planet."}])
    first = target.chat(body, headers={"x-use-cache": "true"})
    second = target.chat(body, headers={"x-use-cache": "true"})
    a, b = first_content(first, "first"), first_content(second, "repeat")
    require(a == b, "x-use-cache true: a repeated temperature 0 request got different content",
            expected=a, actual=b, exchanges=(first, second))


@clause("headers.x-wait-for-model.accepted")
def test_wait_for_model_accepted(target: Target) -> None:
    """Requests with x-wait-for-model true or false to a ready model are answered 200."""
    for value in ("true", "false"):
        completion(target.chat(target.body(max_tokens=2), headers={"x-wait-for-model": value}),
                   f"x-wait-for-model {value}")


def _loading_probe(target: Target) -> tuple[Exchange, Exchange]:
    probe = target.loading_probe
    if probe is None or probe[0].status != 503:
        raise NotApplicable("the target was ready when the run began: its loading state could not be observed")
    return probe


@clause("headers.x-wait-for-model.waits")
def test_wait_for_model_waits(target: Target) -> None:
    """While the model is loading, a request with x-wait-for-model true is held until the model is ready and answered 200, never 503."""
    loading, waited = _loading_probe(target)
    require(waited.status == 200, "x-wait-for-model true while loading was not held until ready",
            expected=200, actual=f"{waited.status} {waited.body_text[:200]}", exchanges=(loading, waited))


def _loading_503s(target: Target) -> list[Exchange]:
    seen = [ex for ex in target.throttled if ex.status == 503]
    if not seen:
        raise NotApplicable("the target never answered 503 during the run (it was ready throughout)")
    return seen


def _held_while_loading(target: Target) -> None:
    """Fail when the start-of-run probe without x-wait-for-model was held, then answered 200.

    A gateway that waits for its upstream to load answers 200 after a long hold instead of 503.
    Held means: at least HELD_MIN_S seconds, and at least HELD_FACTOR times the median of the same
    request sent now (a slow target is slow every time; a loading one only at first), so neither
    a slow target nor a busy client machine alone makes the probe look held.
    """
    probe = target.loading_probe
    if probe is None or probe[0].status != 200 or probe[0].elapsed_s < HELD_MIN_S:
        return
    first = probe[0]
    again = {"x-wait-for-model": "false", "x-use-cache": "false"}
    later = target.many([lambda: target.chat(target.body(max_tokens=1), headers=again)] * LATER_SAMPLES)
    times = [ex.elapsed_s for ex in later if ex.status == 200]
    if not times or first.elapsed_s < HELD_FACTOR * statistics.median(times):
        return
    raise Fail(f"held {first.elapsed_s:.0f} s then 200 (the same request now takes {statistics.median(times):.2f} s, "
               f"median of {len(times)}): the model was loading, and without x-wait-for-model the default is 503",
               expected="503 with an error envelope while loading", actual=f"200 after {first.elapsed_s:.1f} s",
               exchanges=(first, *later))


@clause("headers.loading.503")
def test_loading_503(target: Target) -> None:
    """While the model is loading, a request without x-wait-for-model true is answered 503 with an error envelope."""
    probe = target.loading_probe
    if probe is not None and probe[0].status not in (200, 503):
        require(False, "while probing at the start, a request without x-wait-for-model got neither 200 nor 503",
                expected="200 (ready) or 503 (loading)", actual=probe[0].status, exchanges=probe[0])
    _held_while_loading(target)
    for ex in _loading_503s(target):
        problems = envelope_problems(ex.json)
        require(not problems, f"a 503 without a proper error envelope: {'; '.join(problems)}",
                expected="error envelope", actual=ex.body_text[:300], exchanges=ex)


@clause("headers.loading.estimated-time")
def test_loading_estimated_time(target: Target) -> None:
    """A 503 for a loading model carries estimated_time, a non-negative number of seconds."""
    for ex in _loading_503s(target):
        body: Any = ex.json
        value = body.get("estimated_time") if isinstance(body, dict) else None
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        require(ok, "a loading 503 without a non-negative estimated_time", expected="estimated_time >= 0",
                actual=value, exchanges=ex)


BURST_ROUNDS = 3  # bursts sent, at most, until one provokes a 429 (a fast server may keep up with one)


def _throttled_429(target: Target) -> list[Exchange]:
    return [ex for ex in target.throttled if ex.status == 429]


def burst_bodies(target: Target, count: int) -> list[dict[str, Any]]:
    """`count` distinct tiny requests (max_tokens 1), distinct so that no cache can answer them."""
    return [target.body(max_tokens=1, messages=[{"role": "user", "content": f"Request {i} of a burst. Say yes."}])
            for i in range(count)]


@clause("headers.retry-after.429")
def test_retry_after_429(target: Target, suite_config: SuiteConfig) -> None:
    """A 429 response carries a Retry-After header holding a non-negative integer of seconds or an HTTP date."""
    rounds = BURST_ROUNDS if suite_config.burst > 0 else 0
    for _ in range(rounds):
        if _throttled_429(target):
            break
        target.burst(burst_bodies(target, suite_config.burst), headers={"x-use-cache": "false"})
    seen = _throttled_429(target)
    if not seen:
        how = (f"not even to {rounds} bursts of {suite_config.burst} concurrent requests" if rounds
               else "and --burst 0 sent no burst to provoke one")
        raise NotApplicable(f"the target never answered 429 during the run, {how}")
    for ex in seen:
        enforce("headers.retry-after.429", ex, "a 429 during the run")
