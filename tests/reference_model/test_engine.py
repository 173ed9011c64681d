"""The engine on the tiny model: golden tokens, batching, join/leave, chunked prefill, limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reference_model.engine import Engine, SeqId
from reference_model.engine_session import EngineError
from reference_model.errors import ContextLengthError, ReferenceModelError
from reference_model.tiny import TinyModel, build_tiny

# Greedy continuation of "The quick brown fox jumps over the lazy dog." on the tiny model
# (seed 1234), identical for both weight formats and thread counts; smallest top-2 margin 0.0149.
GOLDEN_PROMPT = "The quick brown fox jumps over the lazy dog."
GOLDEN_PROMPT_IDS = [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30]
GOLDEN_TOKENS = [35351, 45319, 15048, 15048, 32202, 32202, 32202, 32202, 32202, 32202, 32202, 2923,
                 2923, 32127, 32127, 32127, 32127, 32127, 32127, 32127, 32127, 32127, 32127, 32127]


@pytest.fixture(scope="module", params=["int4", "fp32"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_tiny(tmp_path_factory.mktemp("tiny"), request.param)


@pytest.fixture(scope="module")
def engine(tiny: TinyModel) -> Engine:
    # min_fused_batch=1: every step of several sequences is one batched pass (the path under test)
    return Engine(tiny, device="cpu", threads=2, max_batch=4, min_fused_batch=1)


@pytest.fixture(autouse=True)
def _no_leaked_sequences(request: pytest.FixtureRequest):
    yield
    if "engine" in request.fixturenames:
        eng = request.getfixturevalue("engine")
        for seq in eng.active:
            eng.release(seq)


def _greedy(eng: Engine, prompt: list[int], n: int) -> tuple[list[int], list[np.ndarray]]:
    """Greedy tokens and the logits that chose each of them."""
    seq = eng.start(prompt, n)
    logits = eng.prefill(seq)
    tokens, seen = [], []
    for i in range(n):
        seen.append(logits)
        tokens.append(int(logits.argmax()))
        if i < n - 1:
            logits = eng.step({seq: tokens[-1]})[seq]
    eng.release(seq)
    return tokens, seen


def _tolerance(tiny: TinyModel) -> float:
    # fp32 batched passes are bit-identical to single ones; MatMulNBits picks a different kernel
    # for more than one row, which changes the summation order (observed up to 1.3e-5).
    return 0.0 if tiny.weights == "fp32" else 1e-4


def test_golden_tokens(engine: Engine, tokenizer) -> None:
    assert tokenizer.encode(GOLDEN_PROMPT) == GOLDEN_PROMPT_IDS
    tokens, _ = _greedy(engine, GOLDEN_PROMPT_IDS, len(GOLDEN_TOKENS))
    assert tokens == GOLDEN_TOKENS


def test_engine_reports_config_and_provider(engine: Engine, tiny: TinyModel) -> None:
    assert engine.config == tiny.config
    assert engine.context_length == tiny.config.context_length
    assert engine.provider == "CPUExecutionProvider"


def test_same_inputs_give_bit_identical_logits(engine: Engine) -> None:
    _, a = _greedy(engine, [5, 6, 7, 8], 6)
    _, b = _greedy(engine, [5, 6, 7, 8], 6)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


PROMPTS = [[1, 2, 3, 4, 5], [10, 20, 30], [7] * 9, [400, 500]]


def test_batched_step_equals_individual_steps(engine: Engine, tiny: TinyModel) -> None:
    solo = [_greedy(engine, p, 6)[1] for p in PROMPTS]
    seqs = [engine.start(p, 6) for p in PROMPTS]
    logits = {s: engine.prefill(s) for s in seqs}
    for k in range(6):
        for i, s in enumerate(seqs):
            np.testing.assert_allclose(logits[s], solo[i][k], rtol=0, atol=_tolerance(tiny))
        if k < 5:
            logits = engine.step({s: int(lg.argmax()) for s, lg in logits.items()})


def test_steps_below_min_fused_batch_run_one_pass_per_sequence(tiny: TinyModel,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    eng = Engine(tiny, device="cpu", threads=2, max_batch=4)  # default min_fused_batch=3
    solo = [_greedy(eng, p, 3)[1] for p in PROMPTS[:3]]
    passes: list[int] = []
    forward = eng._forward

    def counted(first: int, ids: np.ndarray, *rest: object) -> np.ndarray:
        passes.append(ids.shape[0])  # sequences in this pass
        return forward(first, ids, *rest)

    monkeypatch.setattr(eng, "_forward", counted)
    seqs = [eng.start(p, 3) for p in PROMPTS[:3]]
    logits = {s: eng.prefill(s) for s in seqs}
    passes.clear()
    two = eng.step({s: int(logits[s].argmax()) for s in seqs[:2]})
    assert passes == [1, 1]  # two sequences: a pass each, on the one-row path
    for i, s in enumerate(seqs[:2]):
        np.testing.assert_array_equal(two[s], solo[i][1])  # the same path as alone: bit-identical
    passes.clear()
    eng.step({seqs[2]: int(logits[seqs[2]].argmax()), **{s: int(two[s].argmax()) for s in seqs[:2]}})
    assert passes == [3]  # three: one batched pass
    with pytest.raises(EngineError, match="min_fused_batch"):
        Engine(tiny, min_fused_batch=0)


def test_sequences_join_and_leave_between_steps(engine: Engine, tiny: TinyModel) -> None:
    solo = {i: _greedy(engine, p, 8)[1] for i, p in enumerate(PROMPTS)}
    pos: dict[SeqId, int] = {}  # sequence -> index of the logits it will receive next
    which: dict[SeqId, int] = {}
    logits: dict[SeqId, np.ndarray] = {}

    def join(i: int) -> None:
        s = engine.start(PROMPTS[i], 8)
        which[s], pos[s] = i, 1
        logits[s] = engine.prefill(s)
        np.testing.assert_allclose(logits[s], solo[i][0], rtol=0, atol=_tolerance(tiny))

    def step(seqs: list[SeqId]) -> None:
        out = engine.step({s: int(logits[s].argmax()) for s in seqs})
        assert set(out) == set(seqs)
        for s, lg in out.items():
            np.testing.assert_allclose(lg, solo[which[s]][pos[s]], rtol=0, atol=_tolerance(tiny))
            logits[s], pos[s] = lg, pos[s] + 1

    join(0)
    join(1)
    step([*logits])
    join(2)  # joins while 0 and 1 are mid-generation
    a, b, c = list(logits)
    step([a, b, c])
    engine.release(b)  # leaves from the middle: c moves into its slot
    del logits[b]
    step([a, c])
    join(3)
    d = list(logits)[-1]
    step([a, d])  # a subset that is not contiguous in slots: the engine regroups them
    step([c])
    step([a, c, d])
    assert engine.active and set(engine.active) == {a, c, d}


def test_extend_equals_whole_prefill(engine: Engine) -> None:
    ids = list(range(100, 140))
    whole = engine.start(ids, 4)
    expected = engine.prefill(whole)
    engine.release(whole)
    seq = engine.start(ids[:17], 4)
    engine.prefill(seq)
    engine.extend(seq, ids[17:30])
    got = engine.extend(seq, ids[30:], max_new_tokens=4)
    assert engine.length(seq) == len(ids)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_chunked_prefill_equals_single_pass(tiny: TinyModel, engine: Engine) -> None:
    ids = list(range(1000, 1050))
    chunked = Engine(tiny, device="cpu", threads=2, max_batch=1, prefill_chunk=7)
    a = chunked.prefill(chunked.start(ids, 0), all_logits=True)
    seq = engine.start(ids, 0)
    b = engine.prefill(seq, all_logits=True)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def test_all_logits_match_token_by_token(engine: Engine) -> None:
    ids = [3, 1415, 9, 26, 535, 42, 8, 77]
    seq = engine.start(ids, 0)
    every = engine.prefill(seq, all_logits=True)  # [8, vocab]
    engine.release(seq)
    assert every.shape == (len(ids), engine.config.vocab_size)
    seq = engine.start(ids[:1], len(ids))
    rows = [engine.prefill(seq)] + [engine.step({seq: t})[seq] for t in ids[1:]]
    np.testing.assert_allclose(every, np.stack(rows), rtol=0, atol=1e-4)


def test_context_limit_is_checked_before_any_work(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran before the context check")

    monkeypatch.setattr(engine, "_forward", no_forward)
    limit = engine.context_length
    with pytest.raises(ContextLengthError, match=f"exceeds the context length {limit}") as info:
        engine.start([1] * 10, limit - 9)
    assert info.value.limit == limit and info.value.prompt_tokens == 10
    assert isinstance(info.value, ReferenceModelError)
    assert engine.active == []
    monkeypatch.undo()
    seq = engine.start([1] * 10, limit - 10)  # exactly fits
    engine.prefill(seq)
    monkeypatch.setattr(engine, "_forward", no_forward)
    with pytest.raises(ContextLengthError):
        engine.extend(seq, [2] * 5, max_new_tokens=limit - 14)
    assert engine.length(seq) == 10


def test_step_at_the_context_limit_raises(tiny: TinyModel) -> None:
    eng = Engine(tiny, device="cpu", threads=1, max_batch=1, max_context=8)
    seq = eng.start([1] * 7, 1)
    eng.prefill(seq)
    eng.step({seq: 3})  # 8th position: fits
    with pytest.raises(ContextLengthError, match="context length 8"):
        eng.step({seq: 3})


def test_misuse_gives_clear_errors(engine: Engine) -> None:
    with pytest.raises(EngineError, match=r"prompt_ids must be token ids in \[0, 49152\), got 49152"):
        engine.start([1, 49152], 1)
    with pytest.raises(EngineError, match="prompt_ids must contain at least one token"):
        engine.start([], 1)
    with pytest.raises(EngineError, match="max_new_tokens must be an int >= 0, got -1"):
        engine.start([1], -1)
    seq = engine.start([1, 2], 2)
    with pytest.raises(EngineError, match="pending tokens: prefill first"):
        engine.step({seq: 1})
    engine.prefill(seq)
    with pytest.raises(EngineError, match="tokens must be token ids"):
        engine.step({seq: -1})
    engine.release(seq)
    with pytest.raises(EngineError, match="unknown or released sequence id"):
        engine.step({seq: 1})
    others = [engine.start([1], 1) for _ in range(engine.max_batch)]
    with pytest.raises(EngineError, match="all 4 sequence slots are in use"):
        engine.start([1], 1)
    for s in others:
        engine.release(s)


def test_bad_options_are_refused(tiny: TinyModel) -> None:
    with pytest.raises(EngineError, match="device must be one of"):
        Engine(tiny, device="tpu")
    with pytest.raises(EngineError, match="threads must be a positive int"):
        Engine(tiny, threads=0)
    with pytest.raises(EngineError, match=r"max_context must be an int in \[2, 256\]"):
        Engine(tiny, max_context=1000)
    with pytest.raises(EngineError, match="prefill_chunk must be a positive int, got 0"):
        Engine(tiny, prefill_chunk=0)


def test_forced_cuda_without_a_gpu_is_a_clear_error(tiny: TinyModel) -> None:
    import onnxruntime as ort

    try:
        eng = Engine(tiny, device="cuda")
    except EngineError as exc:
        assert "CUDA execution provider did not load" in str(exc)
    else:  # a machine with a working GPU: the engine must then really run on it
        assert eng.provider == "CUDAExecutionProvider"
        assert "CUDAExecutionProvider" in ort.get_available_providers()


def test_int4_and_fp32_tiny_models_agree(tmp_path: Path) -> None:
    a = Engine(build_tiny(tmp_path, "int4"), device="cpu", threads=1)
    b = Engine(build_tiny(tmp_path, "fp32"), device="cpu", threads=1)
    la = a.prefill(a.start(GOLDEN_PROMPT_IDS, 0))
    lb = b.prefill(b.start(GOLDEN_PROMPT_IDS, 0))
    np.testing.assert_allclose(la, lb, atol=1e-3)
