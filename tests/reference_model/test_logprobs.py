"""Logprobs: the documented distribution, sorted alternatives, and token text over split UTF-8."""

from __future__ import annotations

import numpy as np
import pytest

from reference_model.logprobs import LogprobTracker, log_softmax, top_alternatives
from reference_model.sampling import Sampler, SamplingParams
from reference_model.tokenizer import Tokenizer

EMOJI_TEXT = "I love 🦜 parrots 😀!"


def test_log_softmax_is_a_log_distribution() -> None:
    scores = np.random.default_rng(1).normal(0, 5, size=1000)
    lp = log_softmax(scores)
    assert np.all(lp <= 0)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(lp - lp[0], scores - scores[0])


def test_top_alternatives_sorted_with_ties_by_id() -> None:
    lp = log_softmax(np.array([1.0, 3.0, 2.0, 3.0, 0.5, 3.0]))
    top = top_alternatives(lp, 4)
    assert [i for i, _ in top] == [1, 3, 5, 2]
    assert [v for _, v in top] == sorted((v for _, v in top), reverse=True)
    assert top_alternatives(lp, 0) == ()
    assert len(top_alternatives(lp, 10)) == 6


@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.7])
def test_sampler_logprobs_sorted_non_positive_and_consistent(temperature: float) -> None:
    """Each choice has exactly k alternatives, sorted, <= 0, and the chosen logprob equals its row value."""
    rng = np.random.default_rng(2)
    sampler = Sampler(SamplingParams(temperature=temperature, logprobs=True, top_logprobs=5, seed=8,
                                     frequency_penalty=0.5), 300)
    for _ in range(50):
        logits = rng.normal(0, 3, size=300).astype(np.float32)
        expected = log_softmax(sampler.scores(logits))  # penalized, before temperature
        choice = sampler.sample(logits)
        assert len(choice.top) == 5
        values = [v for _, v in choice.top]
        assert values == sorted(values, reverse=True)
        assert all(np.isfinite(v) and v <= 0 for v in values)
        assert choice.logprob == expected[choice.token_id]
        assert len({i for i, _ in choice.top}) == 5
        for i, v in choice.top:
            assert v == expected[i]
        if temperature == 0.0:
            assert choice.top[0][0] == choice.token_id


def test_logprobs_ignore_the_constraint_mask() -> None:
    """Under a mask allowing two tokens there are still k finite alternatives of the unmasked distribution."""
    sampler = Sampler(SamplingParams(temperature=0.0, logprobs=True, top_logprobs=3), 6)
    logits = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], dtype=np.float32)
    allowed = np.array([False, False, False, True, False, True])
    choice = sampler.sample(logits, allowed)
    assert choice.token_id == 3
    assert [i for i, _ in choice.top] == [0, 1, 2]
    assert choice.logprob == pytest.approx(float(log_softmax(logits.astype(np.float64))[3]))


def _split_ids(tokenizer: Tokenizer) -> list[int]:
    ids = tokenizer.encode(EMOJI_TEXT)
    # The test needs real tokens that end inside a character: check the vocabulary still splits.
    assert any(not _valid_utf8(tokenizer.token_bytes(i)) for i in ids)
    return ids


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_token_texts_concatenate_to_content_across_split_emoji(tokenizer: Tokenizer) -> None:
    """Texts are the characters each token completes; their concatenation is the content exactly."""
    ids = _split_ids(tokenizer)
    tracker = LogprobTracker(tokenizer)
    entries = [tracker.record(i, -0.5) for i in ids]
    assert tracker.finish() == ""
    assert "".join(e.text for e in entries) == EMOJI_TEXT == tokenizer.decode(ids)
    assert b"".join(e.bytes for e in entries) == EMOJI_TEXT.encode("utf-8")
    for e in entries:
        assert e.bytes == tokenizer.token_bytes(e.token_id)
        assert "\ufffd" not in e.text
    # The token holding the first bytes of the parrot emoji adds only the space; the one
    # completing it adds the whole emoji.
    parrot = next(n for n, e in enumerate(entries) if "🦜" in e.text)
    assert entries[parrot].text.endswith("🦜") and not _valid_utf8(entries[parrot].bytes)
    assert entries[parrot - 1].text in ("", " ")


def test_stream_cut_inside_a_character_ends_with_replacement(tokenizer: Tokenizer) -> None:
    """Cut mid-emoji (as max_tokens may), entries plus finish() equal the decoded ids."""
    ids = _split_ids(tokenizer)
    cut = next(n for n in range(1, len(ids))
               if not _valid_utf8(b"".join(tokenizer.token_bytes(i) for i in ids[:n])))
    tracker = LogprobTracker(tokenizer)
    entries = [tracker.record(i, -1.0) for i in ids[:cut]]
    assert tracker.pending() != b""
    tail = tracker.finish()
    assert tail == "\ufffd"
    assert "".join(e.text for e in entries) + tail == tokenizer.decode(ids[:cut])


def test_alternative_text_uses_the_same_stream_position(tokenizer: Tokenizer) -> None:
    """An alternative equal to the chosen token gets the same text; others decode from the same state."""
    ids = _split_ids(tokenizer)
    tracker = LogprobTracker(tokenizer)
    for i in ids:
        other = tokenizer.encode("x")[0]
        entry = tracker.record(i, -0.1, ((i, -0.1), (other, -3.0)))
        assert entry.top[0].text == entry.text
        assert entry.top[0].bytes == entry.bytes
        assert entry.top[1].bytes == b"x"
        assert [t.logprob for t in entry.top] == [-0.1, -3.0]
