"""Generation parameters: logit_bias, max_tokens, stop, seed reproducibility, temperature, penalty ranges.

Statistical clauses compare outputs of the same prompt under two parameter settings with the same
seeds, so a server that honours the parameter passes on any model while one that ignores it
shows no difference (IGNORED for SHOULD clauses) or the wrong one (FAIL). Every request is sent
with `x-use-cache: false`, so a response cache cannot fake reproducibility. The clauses whose
effect needs logprobs to be seen safely (seed variation, top_p, the penalties) are in
test_sampling_effects.py.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from conformance.client import Exchange, Target
from conformance.config import SuiteConfig
from conformance.judges import enforce
from conformance.judges.stream import stream_texts
from conformance.registry import clause
from conformance.samples import need_answer, require_repeatable
from conformance.verdicts import (
    Fail,
    Ignored,
    NotApplicable,
    Unsupported,
    need,
    not_exercised,
    refused_clearly,
    require,
)

FRESH = {"x-use-cache": "false"}
STORY = "Write a long story about a dragon who learns to fly."
POEM = "Write a short poem about the sea."
SENTENCE = "Write two sentences about the ocean."


def _ask(target: Target, prompt: str, feature: str, **params: Any) -> Exchange:
    """One fresh (uncached) request with a single user message; 200 + JSON object or Fail/Unsupported."""
    body = target.body(messages=[{"role": "user", "content": prompt}], **params)
    return target.ok(body, feature=feature, headers=FRESH)


def _choice(ex: Exchange) -> dict[str, Any]:
    """The first choice of a completion (Fail when there is none)."""
    choices = ex.json_object.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict):
        raise Fail("the response holds no choice", expected="choices[0]", actual=ex.body_text[:300], exchanges=ex)
    return first


def _content(ex: Exchange) -> str:
    """choices[0].message.content as a string ('' when null)."""
    message = _choice(ex).get("message") or {}
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _finish(ex: Exchange) -> Any:
    return _choice(ex).get("finish_reason")


def _completion_tokens(ex: Exchange) -> int:
    """usage.completion_tokens: NotExercised when the response has none, as response.usage.present judges."""
    usage = ex.json_object.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, int):
        raise not_exercised("usage.completion_tokens (to count the generated tokens with)",
                            root="response.usage.present", actual=usage if usage is not None else "(absent)",
                            exchanges=ex)
    return tokens


# --- request.logit-bias -------------------------------------------------------------------------


@clause("request.logit-bias.accepted-or-refused")
def test_logit_bias_accepted_or_refused(target: Target) -> None:
    """A request with logit_bias mapping a token id to a bias in [-100, 100] is answered 200 or refused with a 4xx error naming logit_bias."""
    body = target.body(logit_bias={"15": 5, "16": -100, "17": 100}, max_tokens=4)
    ex = target.chat(body, headers=FRESH)
    if ex.status == 200:
        require(isinstance(ex.json, dict), "200 without a JSON body", actual=ex.body_text[:300], exchanges=ex)
        return
    if refused_clearly(ex) and "logit_bias" in ex.body_text:
        raise Unsupported(f"logit_bias refused with {ex.status}", exchanges=ex)
    raise Fail("logit_bias is neither accepted (200) nor refused with a 4xx error naming logit_bias",
               expected="200, or 4xx + envelope naming logit_bias", actual=f"{ex.status} {ex.body_text[:300]}",
               exchanges=ex)


# --- params.max-tokens --------------------------------------------------------------------------


@clause("params.max-tokens.respected")
def test_max_tokens_respected(target: Target) -> None:
    """A response never holds more than max_tokens generated tokens, as counted by completion_tokens."""
    limits = (1, 5, 12)
    answers = target.many(partial(_ask, target, STORY, "max_tokens", max_tokens=n, temperature=0) for n in limits)
    for max_tokens, ex in zip(limits, answers, strict=True):
        _completion_tokens(ex)
        enforce("params.max-tokens.respected", ex, f"max_tokens {max_tokens}")


@clause("params.max-tokens.length-reported")
def test_max_tokens_length_reported(target: Target) -> None:
    """A generation cut off by max_tokens reports finish_reason length and completion_tokens equal to max_tokens."""
    for max_tokens in (6, 3):
        ex = _ask(target, STORY, "max_tokens", max_tokens=max_tokens, temperature=0)
        used, finish = _completion_tokens(ex), _finish(ex)
        if finish == "stop" and used < max_tokens:
            continue  # the model ended on its own before the limit: not a cut-off generation
        need(used <= max_tokens, f"a generation within max_tokens {max_tokens} (it used {used})",
             root="params.max-tokens.respected", actual=f"finish_reason {finish!r}, completion_tokens {used}",
             exchanges=ex)
        enforce("params.max-tokens.length-reported", ex, f"max_tokens {max_tokens}")
        return
    raise NotApplicable("the model ended every generation before max_tokens; nothing was cut off")


# --- params.stop ----------------------------------------------------------------------------------


class StopCase:
    """A greedy baseline, a stop sequence taken from its middle, and the text expected before it."""

    def __init__(self, baseline: Exchange, stop: str, expected: str) -> None:
        self.baseline = baseline
        self.stop = stop
        self.expected = expected


def _pick_stop(text: str) -> tuple[str, str] | None:
    """A word from the middle of text (first occurring after position 0) and the text before it."""
    words = [w for w in text.split() if w.isprintable()]
    for word in words[len(words) // 3:] + words[: len(words) // 3]:
        at = text.find(word)
        if at > 0 and len(word) >= 2 and text[:at].strip():
            return word, text[:at]
    return None


@pytest.fixture(scope="module")
def stop_case(target: Target) -> StopCase:
    """Greedy baseline without stop; the stop sequence is a word the baseline generates."""
    baseline = _ask(target, SENTENCE, "stop", max_tokens=32, temperature=0)
    picked = _pick_stop(_content(baseline))
    if picked is None:
        raise NotApplicable("the greedy baseline holds no word to use as a stop sequence", exchanges=baseline)
    return StopCase(baseline, picked[0], picked[1])


@clause("params.stop.ends-generation")
def test_stop_ends_generation(target: Target, stop_case: StopCase) -> None:
    """When the output would contain a stop sequence, generation ends there and finish_reason is stop."""
    ex = _ask(target, SENTENCE, "stop", max_tokens=32, temperature=0, stop=[stop_case.stop])
    content = _content(ex)
    require(_finish(ex) == "stop", f"generation that reached stop sequence {stop_case.stop!r} must report stop",
            expected="finish_reason stop", actual=_finish(ex), exchanges=(stop_case.baseline, ex))
    # Greedy decoding repeats the baseline up to the stop; some servers trim trailing whitespace.
    require(content.rstrip() == stop_case.expected.rstrip(),
            f"generation must end where the baseline first produced {stop_case.stop!r}",
            expected=stop_case.expected, actual=content, exchanges=(stop_case.baseline, ex))


@clause("params.stop.excluded-from-output")
def test_stop_excluded_from_output(target: Target, stop_case: StopCase) -> None:
    """The returned content contains none of the stop sequences."""
    stops = [stop_case.stop, "zzqx-never"]
    ex = _ask(target, SENTENCE, "stop", max_tokens=32, temperature=0, stop=stops)
    _choice(ex)
    enforce("params.stop.excluded-from-output", ex, f"stop {stops}")


@clause("params.stop.string-accepted")
def test_stop_string_accepted(target: Target, stop_case: StopCase) -> None:
    """A stop given as a single string instead of a list is accepted and behaves as a list of that one string."""
    as_list, as_string = target.many([
        lambda: _ask(target, SENTENCE, "stop", max_tokens=32, temperature=0, stop=[stop_case.stop]),
        lambda: _ask(target, SENTENCE, "stop as a string", max_tokens=32, temperature=0, stop=stop_case.stop)])
    require((_content(as_string), _finish(as_string)) == (_content(as_list), _finish(as_list)),
            "stop as a string must behave as a one-item list",
            expected=(_content(as_list), _finish(as_list)), actual=(_content(as_string), _finish(as_string)),
            exchanges=(as_list, as_string))


@clause("params.stop.stream-excluded")
def test_stop_stream_excluded(target: Target, stop_case: StopCase) -> None:
    """At temperature 0 with a stop sequence that the output reaches, the streamed content equals the non-streamed content, the stop sequence left out of both."""
    body = target.body(messages=[{"role": "user", "content": SENTENCE}], max_tokens=32, temperature=0,
                       stop=[stop_case.stop])
    plain, stream = target.both(lambda: target.chat(body, headers=FRESH),
                                lambda: target.chat_stream(dict(body, stream=True), headers=FRESH))
    need_answer(plain, "the non-streamed request with a stop sequence", "params.stop.ends-generation")
    need(stream.status == 200, "a 200 answer to the streamed request with a stop sequence",
         root="stream.content-type.event-stream", actual=f"{stream.status} {stream.body_text[:200]}", exchanges=stream)
    need(_finish(plain) == "stop", "a non-streamed answer that ends at the stop sequence",
         root="params.stop.ends-generation", actual=_finish(plain), exchanges=plain)
    texts, reasons = stream_texts(stream)
    streamed = texts.get(0, "")
    require(stop_case.stop not in streamed, f"the streamed content contains the stop sequence {stop_case.stop!r}",
            expected=f"no {stop_case.stop!r}", actual=streamed, exchanges=(plain, stream))
    if (streamed, reasons.get(0)) != (_content(plain), "stop"):
        require_repeatable(target, body, plain, _content)
    require((streamed, reasons.get(0)) == (_content(plain), "stop"),
            "the streamed content differs from the non-streamed content with the same stop sequence",
            expected=(_content(plain), "stop"), actual=(streamed, reasons.get(0)), exchanges=(plain, stream))


# --- params.seed / temperature / top_p -------------------------------------------------------------


def _seeds(config: SuiteConfig, count: int = 5) -> list[int]:
    return [config.seed + i for i in range(count)]


@clause("params.seed.reproducible")
def test_seed_reproducible(target: Target, suite_config: SuiteConfig) -> None:
    """Two identical requests with the same seed at temperature 1 yield identical content."""
    first, second = target.many(
        [lambda: _ask(target, POEM, "seed", max_tokens=16, temperature=1.0, seed=suite_config.seed)] * 2)
    if _content(first) != _content(second):
        raise Ignored("the same seed at temperature 1 gave different content: the seed has no effect",
                      expected=_content(first), actual=_content(second), exchanges=(first, second))


@clause("params.temperature.zero-repeatable")
def test_temperature_zero_repeatable(target: Target) -> None:
    """Two identical requests at temperature 0 yield identical content."""
    first, second = target.many([lambda: _ask(target, POEM, "temperature", max_tokens=24, temperature=0)] * 2)
    require(_content(first) == _content(second), "temperature 0 gave different content for the same request",
            expected=_content(first), actual=_content(second), exchanges=(first, second))


@clause("params.temperature.higher-more-diverse")
def test_temperature_higher_more_diverse(target: Target, suite_config: SuiteConfig) -> None:
    """Over the same five seeds, temperature 1.5 yields at least as many distinct contents as temperature 0.1."""
    seeds = _seeds(suite_config)
    answers = target.many(partial(_ask, target, POEM, "temperature", max_tokens=12, temperature=t, seed=s)
                          for t in (0.1, 1.5) for s in seeds)
    cold, hot = answers[:len(seeds)], answers[len(seeds):]
    n_cold, n_hot = len({_content(e) for e in cold}), len({_content(e) for e in hot})
    require(n_hot >= n_cold, "temperature 1.5 gave fewer distinct contents than temperature 0.1",
            expected=f">= {n_cold} distinct", actual=n_hot, exchanges=cold + hot)
    if n_hot == 1 and [_content(e) for e in hot] == [_content(e) for e in cold]:
        raise Ignored("temperature 1.5 and 0.1 gave one and the same content for five seeds",
                      expected="more diversity at 1.5", actual=_content(hot[0]), exchanges=cold + hot)


# --- params.penalties -------------------------------------------------------------------------------


@clause("params.penalties.negative-accepted")
def test_penalties_negative_accepted(target: Target) -> None:
    """frequency_penalty and presence_penalty values anywhere in [-2.0, 2.0], negative ones included, are accepted."""
    plan = [(name, value) for name in ("frequency_penalty", "presence_penalty") for value in (-2.0, -0.5, 0.5, 2.0)]
    answers = target.many(partial(target.chat, target.body(max_tokens=4, **{n: v}), headers=FRESH)
                          for n, v in plan)
    for (name, value), ex in zip(plan, answers, strict=True):
        require(ex.status == 200, f"{name} {value} must be accepted", expected=200, actual=ex.status, exchanges=ex)


@clause("params.sampling.bounds-accepted")
def test_sampling_bounds_accepted(target: Target) -> None:
    """The boundary values temperature 0 and 2 and top_p 1 are accepted and answered 200."""
    plan = ({"temperature": 0}, {"temperature": 2}, {"top_p": 1}, {"temperature": 2, "top_p": 1})
    answers = target.many(partial(target.chat, target.body(max_tokens=4, seed=1, **p), headers=FRESH) for p in plan)
    for params, ex in zip(plan, answers, strict=True):
        require(ex.status == 200, f"boundary value {params} must be answered 200", expected=200,
                actual=ex.status, exchanges=ex)
