"""Prefix reuse: a prompt sharing stored blocks with an earlier one gives the logits of a cold prefill, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from reference_model.engine import Engine
from reference_model.engine_session import EngineError
from reference_model.prefix_cache import PrefixCache
from reference_model.tiny import TinyModel, build_tiny

BLOCK = 8


@pytest.fixture(scope="module", params=["int4", "fp32"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_tiny(tmp_path_factory.mktemp("tiny"), request.param)


def _engine(model, *, cache_mb: int = 64, chunk: int = 16) -> Engine:
    return Engine(model, device="cpu", threads=2, max_batch=2, prefill_chunk=chunk,
                  prefix_cache_mb=cache_mb, prefix_block=BLOCK)


def _prompt(n: int, salt: int = 0) -> list[int]:
    rng = np.random.default_rng(1000 + salt)
    return [int(t) for t in rng.integers(3, 400, size=n)]


def _prefill(eng: Engine, ids: list[int], decode: list[int] = ()) -> list[np.ndarray]:
    """Prefill logits, then the logits of each forced decode token."""
    seq = eng.start(ids, len(decode) + 1)
    out = [eng.prefill(seq)]
    for tok in decode:
        out.append(eng.step({seq: tok})[seq])
    eng.release(seq)
    return out


@pytest.mark.parametrize(("shared", "total"), [(40, 57), (33, 34), (16, 16), (47, 60), (5, 30)])
def test_reused_prefix_gives_cold_logits_bit_for_bit(tiny: TinyModel, shared: int, total: int) -> None:
    first = _prompt(shared) + _prompt(9, salt=1)  # stored: the shared part and a different tail
    second = _prompt(shared) + _prompt(total - shared, salt=2)
    decode = [7, 11, 13]
    cold = _prefill(_engine(tiny, cache_mb=0), second, decode)
    warm_engine = _engine(tiny)
    _prefill(warm_engine, first)
    warm = _prefill(warm_engine, second, decode)
    stats = warm_engine.prefix_stats()
    expected_reuse = min(shared, total - 2) // BLOCK * BLOCK
    assert stats["reused_tokens"] == expected_reuse
    assert stats["hits"] == (1 if expected_reuse else 0) and stats["lookups"] == 2
    for a, b in zip(cold, warm, strict=True):
        np.testing.assert_array_equal(a, b)


def test_identical_prompt_reuses_all_but_the_last_two_tokens(tiny: TinyModel) -> None:
    eng = _engine(tiny)
    ids = _prompt(42)
    cold = _prefill(eng, ids)[0]
    again = _prefill(eng, ids)[0]
    np.testing.assert_array_equal(cold, again)
    assert eng.prefix_stats()["reused_tokens"] == 40 // BLOCK * BLOCK


def test_all_logits_prefill_never_reuses(tiny: TinyModel) -> None:
    eng = _engine(tiny)
    ids = _prompt(30)
    _prefill(eng, ids)
    seq = eng.start(ids, 1)
    every = eng.prefill(seq, all_logits=True)
    eng.release(seq)
    assert every.shape[0] == len(ids)
    assert eng.prefix_stats()["lookups"] == 1


def test_no_chunk_has_one_row(tiny: TinyModel) -> None:
    eng = _engine(tiny, chunk=16)
    assert eng._chunks(33) == [(0, 16), (16, 31), (31, 33)]
    assert eng._chunks(32) == [(0, 16), (16, 32)]
    assert eng._chunks(1) == [(0, 1)]


def test_a_one_token_extend_is_not_stored(tiny: TinyModel) -> None:
    eng = _engine(tiny)
    seq = eng.start(_prompt(7), 4)
    eng.prefill(seq)
    eng.extend(seq, [5])  # position 7 from a one-row pass: not exact, so block 0 is incomplete
    eng.release(seq)
    assert len(eng.prefix_cache) == 0


def test_budget_evicts_least_recently_used_blocks() -> None:
    cache = PrefixCache(budget_bytes=4 * 10, block_tokens=2, bytes_per_token=10)  # two blocks fit

    def read(a: int, b: int) -> np.ndarray:
        return np.full((2, 1, 1, b - a, 1), a, np.float32)

    cache.store([1, 2, 3, 4], 4, read)
    assert len(cache) == 2 and cache.nbytes == 40
    cache.store([9, 9], 2, read)  # the LRU block, the tail [3, 4] of the first chain, goes
    assert [b.kv[0, 0, 0, 0, 0] for b in cache.lookup([1, 2, 3, 4], 4)] == [0.0]
    assert len(cache.lookup([9, 9, 1], 3)) == 1
    assert cache.stats.evicted_blocks == 1
    assert cache.stats.hits == 2 and cache.stats.lookups == 2


def test_bad_prefix_options_are_refused(tiny: TinyModel) -> None:
    with pytest.raises(EngineError, match="prefix_cache_mb must be an int >= 0, got -1"):
        Engine(tiny, prefix_cache_mb=-1)
    with pytest.raises(EngineError, match="prefix_block must be an int >= 1, got 0"):
        Engine(tiny, prefix_block=0)


@pytest.mark.slow
def test_real_model_reused_chat_prefix_gives_cold_logits(chat_template, tokenizer) -> None:
    """The real int4 graph (MatMulNBits): a second chat turn reusing the first's prompt blocks."""
    from reference_model.prepared import prepare

    system = {"role": "system", "content": "You answer briefly. " * 30}
    turn1 = [system, {"role": "user", "content": "What is the capital of France?"}]
    turn2 = [*turn1, {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Spain?"}]
    first, second = (list(chat_template.encode(m, tokenizer)) for m in (turn1, turn2))
    model = prepare("int4")
    cold_engine = Engine(model, device="cpu", threads=2, max_batch=1, max_context=1024, prefix_cache_mb=0)
    cold = _prefill(cold_engine, second, [tokenizer.encode(" Madrid")[0]])
    del cold_engine
    warm_engine = Engine(model, device="cpu", threads=2, max_batch=1, max_context=1024)
    _prefill(warm_engine, first)
    warm = _prefill(warm_engine, second, [tokenizer.encode(" Madrid")[0]])
    assert warm_engine.prefix_stats()["reused_tokens"] >= len(first) - 2 - 32
    for a, b in zip(cold, warm, strict=True):
        np.testing.assert_array_equal(a, b)


def test_generation_with_a_reused_prefix_equals_a_cold_one(tiny: TinyModel, tokenizer) -> None:
    """Through BatchGenerator: same tokens and logprobs with and without the stored prefix."""
    from reference_model.generation import GenerationRequest, collect, generate
    from reference_model.sampling import SamplingParams

    history = _prompt(70, salt=3)
    request = GenerationRequest(tuple(history + _prompt(5, salt=4)),
                                SamplingParams(temperature=0.8, seed=7, max_tokens=12, logprobs=True, top_logprobs=2))
    cold = collect(generate(_engine(tiny, cache_mb=0), tokenizer, request))
    warm_engine = _engine(tiny)
    generate(warm_engine, tokenizer, GenerationRequest(tuple(history), SamplingParams(max_tokens=1)))
    warm = collect(generate(warm_engine, tokenizer, request))
    assert warm_engine.prefix_stats()["reused_tokens"] == 64
    assert warm == cold
