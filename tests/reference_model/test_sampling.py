"""Sampling parameters (validation, no clamping) and the sampler's stages, order and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_model.errors import Param, ReferenceModelError
from reference_model.logprobs import log_softmax
from reference_model.sampling import (
    MAX_SEED,
    Sampler,
    SamplingError,
    SamplingParamError,
    SamplingParams,
    apply_penalties,
    apply_temperature,
    apply_top_p,
    choose_sample,
    softmax,
)

# --- SamplingParams -------------------------------------------------------------------------------

RANGES = [
    # (param, lowest accepted, highest accepted, refused just below, refused just above, rule text)
    ("temperature", 0.0, 2.0, -1e-9, 2.0 + 1e-9, "a number in [0, 2]"),
    ("top_p", 1e-12, 1.0, 0.0, 1.0 + 1e-9, "a number in (0, 1]"),
    ("frequency_penalty", -2.0, 2.0, -2.0 - 1e-9, 2.0 + 1e-9, "a number in [-2, 2]"),
    ("presence_penalty", -2.0, 2.0, -2.0 - 1e-9, 2.0 + 1e-9, "a number in [-2, 2]"),
]


@pytest.mark.parametrize(("param", "low", "high", "below", "above", "rule"), RANGES)
def test_range_edges_accepted_and_kept_exactly(param, low, high, below, above, rule) -> None:
    """Both edges of each range are accepted and stored unchanged."""
    for value in (low, high):
        assert getattr(SamplingParams(**{param: value}), param) == value


@pytest.mark.parametrize(("param", "low", "high", "below", "above", "rule"), RANGES)
def test_range_outside_refused_naming_param_rule_value(param, low, high, below, above, rule) -> None:
    """Values just outside, NaN, infinities, booleans and strings are refused, never clamped."""
    for value in (below, above, math.nan, math.inf, -math.inf, True, "1"):
        with pytest.raises(SamplingParamError) as info:
            SamplingParams(**{param: value})
        message = str(info.value)
        assert message.startswith(f"{param} must be {rule}, got "), message
        assert repr(value) in message
        assert info.value.param is Param(param) and info.value.detail == message[len(param) + 1:]
        assert isinstance(info.value, ReferenceModelError) and isinstance(info.value, ValueError)


def test_temperature_message_example() -> None:
    with pytest.raises(SamplingParamError, match=r"^temperature must be a number in \[0, 2\], got 3\.5$"):
        SamplingParams(temperature=3.5)


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": -3}, "max_tokens"), ({"max_tokens": 2.0}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"seed": -1}, "seed"), ({"seed": MAX_SEED + 1}, "seed"), ({"seed": 1.5}, "seed"),
    ({"top_logprobs": -1, "logprobs": True}, "top_logprobs"), ({"top_logprobs": True, "logprobs": True}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"), ({"logprobs": 1}, "logprobs"),
    ({"stop": ["a", ""]}, "stop[1]"), ({"stop": [3]}, "stop[0]"), ({"stop": 5}, "stop"),
    ({"logit_bias": {5: math.nan}}, "logit_bias[5]"), ({"logit_bias": {5: "1"}}, "logit_bias[5]"),
    ({"logit_bias": {-1: 1.0}}, "logit_bias"),
])
def test_discrete_parameters_refused(kwargs, param) -> None:
    """Integer, boolean and list parameters outside their rules are refused, naming the parameter (typed)."""
    with pytest.raises(SamplingParamError) as info:
        SamplingParams(**kwargs)
    assert info.value.where == param
    assert str(info.value).startswith(f"{param} must be ")


def test_api_limits_are_not_the_engines() -> None:
    """How many stop sequences or alternatives, how large a bias: an API's bounds, not the sampler's."""
    params = SamplingParams(stop=["a", "b", "c", "d", "e"], logprobs=True, top_logprobs=20, logit_bias={3: 250.0})
    assert len(params.stop) == 5 and params.logit_bias == ((3, 250.0),)
    with pytest.raises(SamplingParamError, match=r"top_logprobs must be at most the vocabulary size 5"):
        Sampler(SamplingParams(logprobs=True, top_logprobs=6), 5)


def test_discrete_edges_accepted() -> None:
    """max_tokens 1, seeds 0 and 2^64-1, top_logprobs 0..5, four stops, bias +-100 are accepted."""
    assert SamplingParams(max_tokens=1).max_tokens == 1
    assert SamplingParams(seed=0).seed == 0
    assert SamplingParams(seed=MAX_SEED).seed == MAX_SEED
    for k in range(6):
        assert SamplingParams(logprobs=True, top_logprobs=k).top_logprobs == k
    assert SamplingParams(stop=["a", "b", "c", "d"]).stop == ("a", "b", "c", "d")
    assert SamplingParams(stop="END").stop == ("END",)
    assert SamplingParams(logit_bias={7: -100, 3: 100.0}).logit_bias == ((3, 100.0), (7, -100.0))


# --- stages ---------------------------------------------------------------------------------------


def test_penalties_follow_openai_arithmetic() -> None:
    """logit - fp * count - pp * (count > 0), on a hand-computed vector."""
    logits = np.array([1.0, 2.0, 3.0, -1.0])
    counts = np.array([0, 1, 3, 2])
    out = apply_penalties(logits, counts, 0.5, 0.25)
    assert out.tolist() == [1.0, 2.0 - 0.5 - 0.25, 3.0 - 1.5 - 0.25, -1.0 - 1.0 - 0.25]
    out = apply_penalties(logits, counts, -1.0, -2.0)  # negative penalties encourage repetition
    assert out.tolist() == [1.0, 2.0 + 1.0 + 2.0, 3.0 + 3.0 + 2.0, -1.0 + 2.0 + 2.0]


@settings(max_examples=80, deadline=None)
@given(logits=st.lists(st.floats(-20, 20), min_size=2, max_size=12),
       data=st.data(),
       presence=st.floats(0, 2))
def test_presence_penalty_never_raises_a_repeated_tokens_probability(logits, data, presence) -> None:
    """A positive presence penalty lowers (or keeps) the probability of every token already generated."""
    counts = np.array(data.draw(st.lists(st.integers(0, 5), min_size=len(logits), max_size=len(logits))))
    row = np.array(logits)
    before = softmax(row)
    after = softmax(apply_penalties(row, counts, 0.0, presence))
    assert np.all(after[counts > 0] <= before[counts > 0] + 1e-12)


@settings(max_examples=80, deadline=None)
@given(logits=st.lists(st.floats(-20, 20), min_size=2, max_size=12), data=st.data(),
       frequency=st.floats(0, 2), presence=st.floats(0, 2))
def test_positive_penalties_never_raise_the_most_repeated_token(logits, data, frequency, presence) -> None:
    """With fp, pp >= 0 the most-penalized token's probability and the repeated tokens' mass never rise.

    (A less repeated token may gain when a more repeated one loses more, so the property is stated
    for the token with the largest penalty and for the repeated tokens together.)
    """
    counts = np.array(data.draw(st.lists(st.integers(0, 5), min_size=len(logits), max_size=len(logits))))
    row = np.array(logits)
    before = softmax(row)
    after = softmax(apply_penalties(row, counts, frequency, presence))
    penalty = frequency * counts + presence * (counts > 0)
    worst = int(np.argmax(penalty))
    assert after[worst] <= before[worst] + 1e-12
    assert after[counts > 0].sum() <= before[counts > 0].sum() + 1e-12


def test_top_p_keeps_the_smallest_head_reaching_the_mass() -> None:
    """With probabilities 0.5, 0.3, 0.15, 0.05, top_p 0.8 keeps two tokens and 0.81 three."""
    logits = np.log(np.array([0.15, 0.5, 0.05, 0.3]))
    assert np.isfinite(apply_top_p(logits, 0.8)).tolist() == [False, True, False, True]
    assert np.isfinite(apply_top_p(logits, 0.81)).tolist() == [True, True, False, True]
    assert np.isfinite(apply_top_p(logits, 1e-9)).tolist() == [False, True, False, False]
    assert np.isfinite(apply_top_p(logits, 1.0)).all()


def test_top_p_excludes_the_tail_when_sampling() -> None:
    """Over 500 seeded draws at top_p 0.8 the two tail tokens never appear, the two head tokens do."""
    logits = np.log(np.array([0.15, 0.5, 0.05, 0.3], dtype=np.float32))
    sampler = Sampler(SamplingParams(top_p=0.8, seed=3), vocab_size=4)
    seen = {sampler.sample(logits).token_id for _ in range(500)}
    assert seen == {1, 3}


def test_temperature_zero_is_argmax_with_ties_to_lowest_id() -> None:
    logits = np.array([0.5, 3.0, -1.0, 3.0, 2.9], dtype=np.float32)
    sampler = Sampler(SamplingParams(temperature=0.0), vocab_size=5)
    assert [sampler.sample(logits).token_id for _ in range(5)] == [1] * 5


def test_temperature_stage_refuses_zero() -> None:
    with pytest.raises(SamplingError, match="temperature > 0"):
        apply_temperature(np.zeros(3), 0.0)


def test_choose_sample_never_picks_zero_probability() -> None:
    logits = np.array([-np.inf, 0.0, -np.inf, 0.0, -np.inf])
    picks = {choose_sample(logits, u) for u in np.linspace(0, 1, 101, endpoint=False)}
    assert picks == {1, 3}


# --- determinism ----------------------------------------------------------------------------------


def _draws(params: SamplingParams, n: int = 200, vocab: int = 64) -> list[int]:
    logits = np.random.default_rng(11).normal(0, 2, size=(n, vocab)).astype(np.float32)
    sampler = Sampler(params, vocab)
    return [sampler.sample(row).token_id for row in logits]


def test_same_seed_same_tokens_over_200_draws() -> None:
    params = SamplingParams(temperature=1.3, top_p=0.95, frequency_penalty=0.3, seed=1234)
    assert _draws(params) == _draws(params)


def test_different_seeds_differ() -> None:
    assert _draws(SamplingParams(seed=1)) != _draws(SamplingParams(seed=2))


def test_without_seed_fresh_randomness_and_seed_used_replays() -> None:
    """No seed draws fresh entropy; replaying `seed_used` as a seed gives the same tokens."""
    a = Sampler(SamplingParams(), 8)
    b = Sampler(SamplingParams(), 8)
    assert a.seed_used != b.seed_used
    rows = np.random.default_rng(5).normal(size=(50, 8)).astype(np.float32)
    tokens = [a.sample(r).token_id for r in rows]
    replay = Sampler(SamplingParams(seed=a.seed_used), 8)
    assert [replay.sample(r).token_id for r in rows] == tokens


def _reference_tokens(params: SamplingParams, rows: np.ndarray, masks: np.ndarray) -> list[int]:
    """Plain-Python sampler written from the documented order, drawing one uniform per token."""
    rng = np.random.Generator(np.random.PCG64(params.seed))
    counts = [0] * rows.shape[1]
    out = []
    for row, allowed in zip(rows, masks, strict=True):
        # 2. penalties, 4. mask, 5. temperature, 6. top_p, 7. inverse CDF in id order
        z = [float(v) - params.frequency_penalty * c - params.presence_penalty * (c > 0)
             for v, c in zip(row, counts, strict=True)]
        z = [v if ok else -math.inf for v, ok in zip(z, allowed, strict=True)]
        z = [v / params.temperature for v in z]
        top = max(z)
        p = [math.exp(v - top) for v in z]
        total = sum(p)
        p = [v / total for v in p]
        order = sorted(range(len(p)), key=lambda i: (-p[i], i))
        kept, mass = set(), 0.0
        for i in order:
            kept.add(i)
            mass += p[i]
            if mass >= params.top_p - 1e-9:
                break
        weights = [math.exp(z[i] - top) if i in kept else 0.0 for i in range(len(z))]
        target = float(rng.random()) * sum(weights)
        acc, token = 0.0, len(weights) - 1
        for i, w in enumerate(weights):
            acc += w
            if acc > target:
                token = i
                break
        counts[token] += 1
        out.append(token)
    return out


def test_sampler_matches_a_reference_written_from_the_documented_order() -> None:
    """200 tokens with penalties, a mask, temperature and top_p equal an independent reference."""
    rng = np.random.default_rng(9)
    rows = rng.normal(0, 1.5, size=(200, 12)).astype(np.float32)
    masks = rng.random((200, 12)) < 0.7
    masks[:, 0] = True
    params = SamplingParams(temperature=0.7, top_p=0.9, frequency_penalty=0.6, presence_penalty=0.4, seed=77)
    sampler = Sampler(params, 12)
    tokens = [sampler.sample(r, m).token_id for r, m in zip(rows, masks, strict=True)]
    assert tokens == _reference_tokens(params, rows, masks)
    assert sampler.counts.sum() == 200


def test_penalties_come_before_temperature() -> None:
    """A draw that picks token 1 only if penalties are applied before dividing by the temperature.

    logits [2, 1], token 0 seen once, fp 0.8, T 0.5: penalties first give p0 = sigmoid(0.4) = 0.599,
    temperature first would give sigmoid(1.2) = 0.769. A seed whose first uniform lies between
    them picks token 1 in the documented order and token 0 in the other.
    """
    p_right, p_wrong = 1 / (1 + math.exp(-0.4)), 1 / (1 + math.exp(-1.2))
    seed = next(s for s in range(1000)
                if p_right < np.random.Generator(np.random.PCG64(s)).random() < p_wrong)
    sampler = Sampler(SamplingParams(temperature=0.5, frequency_penalty=0.8, seed=seed), 2)
    sampler.record(0)
    choice = sampler.sample(np.array([2.0, 1.0], dtype=np.float32))
    assert choice.token_id == 1
    # The logprob is taken after penalties and before temperature: log_softmax([1.2, 1.0]).
    assert choice.logprob == pytest.approx(float(log_softmax(np.array([1.2, 1.0]))[1]))


def test_logit_bias_applies_and_checks_ids() -> None:
    sampler = Sampler(SamplingParams(temperature=0.0, logit_bias={3: 100}), 5)
    assert sampler.sample(np.array([5.0, 4.0, 3.0, 2.0, 1.0], dtype=np.float32)).token_id == 3
    with pytest.raises(SamplingParamError, match=r"logit_bias\[9\] must be keyed by token ids in \[0, 5\), got 9"):
        Sampler(SamplingParams(logit_bias={9: 1.0}), 5)


@pytest.mark.parametrize(("logits", "allowed", "message"), [
    (np.array([0.0, np.nan, 1.0]), None, "NaN or infinite"),
    (np.zeros(4), None, r"shape \(3,\)"),
    (np.zeros(3), np.zeros(3, dtype=bool), "no token is allowed"),
])
def test_sampler_refuses_broken_inputs(logits, allowed, message) -> None:
    with pytest.raises(SamplingError, match=message):
        Sampler(SamplingParams(seed=1), 3).sample(logits, allowed)


def test_mask_is_respected_at_every_temperature() -> None:
    allowed = np.array([False, True, False, True, False])
    logits = np.array([9.0, 0.0, 8.0, -1.0, 7.0], dtype=np.float32)
    for temperature in (0.0, 0.5, 2.0):
        sampler = Sampler(SamplingParams(temperature=temperature, seed=4), 5)
        assert {sampler.sample(logits, allowed).token_id for _ in range(100)} <= {1, 3}
