"""Fidelity of the converted graphs against llama.cpp goldens (real model).

Goldens (tests/reference_model/data/, written by the llama.cpp peer tooling) hold, per prompt,
64 greedy tokens and the top-10 raw logits and log-probabilities of each step:
- llamacpp_f32_goldens.json: llama.cpp on an F32 copy of the GGUF, the exactness reference;
- llamacpp_q4_1_goldens.json: llama.cpp on the Q4_1 file itself (informational comparison).

Teacher forcing: one pass over prompt + generated[:-1] gives the logits that chose each
generated token; if every argmax equals the golden token, free-running greedy decoding
reproduces the golden sequence (same inputs at every step). One case is also decoded
free-running through `Engine.step` to tie the two together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from reference_model.engine import Engine
from reference_model.prepared import prepare

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"
F32_GOLDENS = DATA / "llamacpp_f32_goldens.json"
Q4_1_GOLDENS = DATA / "llamacpp_q4_1_goldens.json"
LOGIT_TOLERANCE = 1e-3
MIN_AGREEMENT = 0.97
# A disagreement of the int4 graph is acceptable only where the reference's top-2 logits are
# this close: int4 and fp32 then both pick one of two near-equal candidates.
SMALL_MARGIN = 0.5


@dataclass(frozen=True)
class Case:
    """One golden prompt: its ids, the greedy tokens, and per step the top-k (id, logit, logprob)."""

    name: str
    prompt_ids: list[int]
    generated_ids: list[int]
    top: list[list[tuple[int, float, float]]]

    def margin(self, step: int) -> float:
        """Top-2 raw-logit margin of the reference at `step`."""
        return self.top[step][0][1] - self.top[step][1][1]


def _load(path: Path, weights: str) -> list[Case]:
    if not path.is_file():
        pytest.fail(f"{path} is missing: the llama.cpp goldens must be generated (peer tooling, "
                    f"llama-cpp-python built from source) and committed before this test can pass")
    data = json.loads(path.read_text())
    assert data["weights"] == weights, f"{path.name}: weights is {data['weights']!r}, expected {weights!r}"
    cases = [Case(c["name"], c["prompt_ids"], c["generated_ids"],
                  [[(int(t), float(lg), float(lp)) for t, lg, lp in s["top"]] for s in c["steps"]])
             for c in data["cases"]]
    assert len(cases) >= 8 and all(len(c.generated_ids) == len(c.top) >= 64 for c in cases)
    return cases


def _forced_logits(engine: Engine, case: Case) -> np.ndarray:
    """Logits [n_generated, vocab] that chose each generated token, from one teacher-forced pass."""
    ids = case.prompt_ids + case.generated_ids[:-1]
    seq = engine.start(ids, 0)
    try:
        every = engine.prefill(seq, all_logits=True)  # [len(ids), vocab]
    finally:
        engine.release(seq)
    return every[len(case.prompt_ids) - 1:]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


@pytest.fixture(scope="module")
def fp32_engine() -> Engine:
    return Engine(prepare("fp32"), device="cpu", threads=2, max_batch=1, max_context=1024)


@pytest.fixture(scope="module")
def int4_engine() -> Engine:
    return Engine(prepare("int4"), device="cpu", threads=2, max_batch=1, max_context=1024)


def test_fp32_graph_reproduces_llama_cpp_f32(fp32_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    cases = _load(F32_GOLDENS, "f32")
    worst = 0.0
    for case in cases:
        logits = _forced_logits(fp32_engine, case)
        assert logits.argmax(-1).tolist() == case.generated_ids, f"{case.name}: greedy tokens differ"
        for step, top in enumerate(case.top):
            ids = [t for t, _, _ in top]
            diff = np.abs(logits[step, ids] - np.array([lg for _, lg, _ in top])).max()
            worst = max(worst, float(diff))
            assert diff <= LOGIT_TOLERANCE, (
                f"{case.name} step {step}: top-k logits differ by {diff:.2e} > {LOGIT_TOLERANCE}; goldens "
                f"made with llama.cpp's default F16 KV cache differ from exact float32 by ~1e-2: "
                f"generate them with Llama(type_k=0, type_v=0) (GGML_TYPE_F32)")
    # Free-running greedy through the decode path, for the first case.
    case = cases[0]
    seq = fp32_engine.start(case.prompt_ids, len(case.generated_ids))
    logits, tokens = fp32_engine.prefill(seq), []
    for _ in case.generated_ids:
        tokens.append(int(logits.argmax()))
        logits = fp32_engine.step({seq: tokens[-1]})[seq]
    fp32_engine.release(seq)
    assert tokens == case.generated_ids
    with capsys.disabled():
        print(f"\n[fidelity] fp32 vs llama.cpp F32: {len(cases)} prompts x {len(case.generated_ids)} tokens "
              f"identical; max top-10 logit difference {worst:.2e}")


def test_int4_graph_agrees_with_the_fp32_reference(int4_engine: Engine,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cases = _load(F32_GOLDENS, "f32")
    agree = total = 0
    logprob_diffs: list[float] = []
    disagreements: list[str] = []
    for case in cases:
        logits = _forced_logits(int4_engine, case)
        logprobs = _log_softmax(logits)
        for step, token in enumerate(case.generated_ids):
            total += 1
            if int(logits[step].argmax()) == token:
                agree += 1
            else:
                disagreements.append(f"{case.name}@{step} (margin {case.margin(step):.3f})")
                assert case.margin(step) < SMALL_MARGIN, (
                    f"{case.name} step {step}: int4 disagrees where the reference margin is "
                    f"{case.margin(step):.3f} >= {SMALL_MARGIN}")
            ref_logprob = next(lp for t, _, lp in case.top[step] if t == token)
            logprob_diffs.append(abs(float(logprobs[step, token]) - ref_logprob))
    rate = agree / total
    with capsys.disabled():
        print(f"\n[fidelity] int4 teacher-forced on llama.cpp F32 tokens: argmax agreement {agree}/{total} "
              f"= {rate:.4f}; mean |delta logprob(chosen)| {np.mean(logprob_diffs):.2e}, max "
              f"{np.max(logprob_diffs):.2e}; disagreements: {disagreements or 'none'}")
    assert rate >= MIN_AGREEMENT


def test_int4_vs_llama_cpp_q4_1_common_prefix(int4_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    """Informational: llama.cpp's Q4_1 kernels round activations to 8 bits, so near-ties may flip."""
    cases = _load(Q4_1_GOLDENS, "q4_1")
    lines = []
    for case in cases:
        logits = _forced_logits(int4_engine, case)
        ours = logits.argmax(-1).tolist()
        prefix = next((i for i, (a, b) in enumerate(zip(ours, case.generated_ids)) if a != b),
                      len(case.generated_ids))
        if prefix == len(case.generated_ids):
            lines.append(f"  {case.name}: common prefix {prefix}/{prefix} (identical)")
            continue
        top2 = np.sort(logits[prefix])[-2:]
        lines.append(f"  {case.name}: common prefix {prefix}/{len(case.generated_ids)}; at the divergence "
                     f"llama.cpp margin {case.margin(prefix):.3f}, ours {top2[1] - top2[0]:.3f}")
        assert 0 <= prefix < len(case.generated_ids)
    with capsys.disabled():
        print("\n[fidelity] int4 vs llama.cpp Q4_1 (greedy, teacher-forced on its tokens):\n" + "\n".join(lines))


def test_batched_int4_decoding_reproduces_the_f32_goldens(capsys: pytest.CaptureFixture[str]) -> None:
    """All prompts decoded concurrently through `step`, half of them joining late and leaving early."""
    cases = _load(F32_GOLDENS, "f32")
    engine = Engine(prepare("int4"), device="cpu", threads=2, max_batch=len(cases), max_context=1024)
    produced: dict[int, list[int]] = {i: [] for i in range(len(cases))}
    seqs: dict = {}
    logits: dict = {}

    def join(i: int) -> None:
        seq = engine.start(cases[i].prompt_ids, len(cases[i].generated_ids))
        seqs[seq] = i
        logits[seq] = engine.prefill(seq)

    first, late = range(0, len(cases), 2), range(1, len(cases), 2)
    for i in first:
        join(i)
    step = 0
    while seqs:
        if step == 5:
            for i in late:
                join(i)
        feed = {}
        for seq, i in list(seqs.items()):
            produced[i].append(int(logits[seq].argmax()))
            if len(produced[i]) == len(cases[i].generated_ids):
                engine.release(seq)  # leaves while the others continue
                del seqs[seq], logits[seq]
            else:
                feed[seq] = produced[i][-1]
        logits.update(engine.step(feed))
        step += 1
    for i, case in enumerate(cases):
        assert produced[i] == case.generated_ids, f"{case.name}: batched greedy tokens differ"
    with capsys.disabled():
        print(f"\n[fidelity] batched int4 decoding ({len(cases)} concurrent, joins and leaves): "
              f"all {sum(len(c.generated_ids) for c in cases)} tokens equal llama.cpp F32")


def test_second_chunk_on_the_cache_equals_whole_prefill(int4_engine: Engine, fp32_engine: Engine) -> None:
    """Multi-turn reuse: the conversation's later turn prefilled onto the cached first part."""
    case = next(c for c in _load(F32_GOLDENS, "f32") if c.name == "multi_turn")
    ids = case.prompt_ids
    for engine in (fp32_engine, int4_engine):
        whole = engine.start(ids, 1)
        expected = engine.prefill(whole)
        engine.release(whole)
        seq = engine.start(ids[:len(ids) // 2], 1)
        engine.prefill(seq)
        got = engine.extend(seq, ids[len(ids) // 2:], max_new_tokens=1)
        engine.release(seq)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
        assert int(got.argmax()) == case.generated_ids[0]
