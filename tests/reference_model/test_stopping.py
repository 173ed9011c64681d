"""Stop sequences over streamed text: hold-back, cut at the first completed stop, streamed == whole."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_model.stopping import (
    FinishReason,
    StopMatcher,
    StopSequenceError,
    TextStream,
    cut_at_stop,
)
from reference_model.tokenizer import Tokenizer

# A small alphabet (with a two-byte and a four-byte character) makes stops occur often.
ALPHABET = "ab c\né😀"


def reference_cut(text: str, stops: list[str]) -> tuple[str, bool]:
    """Scan end positions left to right; at the first one where a stop ends, cut at the earliest start."""
    for end in range(1, len(text) + 1):
        starts = [end - len(s) for s in stops if end >= len(s) and text[end - len(s):end] == s]
        if starts:
            return text[:min(starts)], True
    return text, False


def split_points(draw, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    pieces, last = [], 0
    for c in cuts + [len(text)]:
        pieces.append(text[last:c])
        last = c
    return pieces


@settings(max_examples=300, deadline=None)
@given(data=st.data(),
       text=st.text(alphabet=ALPHABET, max_size=40),
       stops=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=4), min_size=1, max_size=4))
def test_streamed_stop_matching_equals_reference(data, text: str, stops: list[str]) -> None:
    """Over random texts, splits and stops: no stop is emitted, and streamed == whole == reference."""
    pieces = split_points(data.draw, text)
    matcher = StopMatcher(stops)
    emitted, stopped = [], False
    for piece in pieces:
        step = matcher.push(piece)
        emitted.append(step.text)
        if step.stopped:
            stopped = True
            break
    if not stopped:
        emitted.append(matcher.flush())
    streamed = "".join(emitted)
    expected, matched = reference_cut(text, stops)
    assert (streamed, stopped) == (expected, matched)
    assert cut_at_stop(text, stops) == (expected, matched)
    assert not any(s in streamed for s in stops)


def test_holds_back_a_possible_stop_and_releases_it() -> None:
    matcher = StopMatcher(["Hello!"])
    assert matcher.push("Say Hel").text == "Say "
    assert matcher.held == "Hel"
    step = matcher.push("p me")
    assert (step.text, step.stopped) == ("Help me", False)
    assert matcher.push("Hell").text == ""
    assert matcher.flush() == "Hell"


def test_stop_across_pieces_strips_stop_and_rest() -> None:
    matcher = StopMatcher(["END", "##"])
    assert matcher.push("one E").text == "one "
    step = matcher.push("NDtwo")
    assert (step.text, step.stopped) == ("", True)
    assert matcher.push("more") .text == "" and matcher.stopped
    assert matcher.flush() == ""


def test_first_completed_stop_wins() -> None:
    """A short stop completed inside a longer candidate ends the stream where it completes."""
    assert cut_at_stop("xabcd", ["abcd", "c"]) == ("xab", True)
    assert cut_at_stop("xabcd", ["abcd", "bcd"]) == ("x", True)
    assert cut_at_stop("no stop here", ["STOP"]) == ("no stop here", False)
    assert cut_at_stop("anything", []) == ("anything", False)


@pytest.mark.parametrize("stops", [[""], ["ok", ""], "abc", [3]])
def test_bad_stops_refused(stops) -> None:
    with pytest.raises(StopSequenceError, match="stop must be a sequence of non-empty strings"):
        StopMatcher(stops)


def test_finish_reasons_are_the_api_strings() -> None:
    assert [r.value for r in FinishReason] == ["stop", "length", "tool_calls"]
    assert FinishReason("tool_calls") is FinishReason.TOOL_CALLS


def test_text_stream_emits_complete_characters_and_applies_stops(tokenizer: Tokenizer) -> None:
    """Real tokens that split emoji: only whole characters come out, and a stop across tokens cuts."""
    text = "I love 🦜 parrots 😀! The end."
    ids = tokenizer.encode(text)
    stream = TextStream(tokenizer, ["😀!"])
    out = []
    for i in ids:
        step = stream.push(i)
        out.append(step.text)
        assert "\ufffd" not in step.text
        if step.stopped:
            break
    assert stream.stopped
    assert "".join(out) == "I love 🦜 parrots "
    assert stream.flush() == ""


def test_text_stream_flush_releases_held_text_and_broken_tail(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("see 😀")
    stream = TextStream(tokenizer, ["see 😀 now"])
    out = "".join(stream.push(i).text for i in ids[:-1])  # the last token completes the emoji
    assert out == ""  # all of it could still become the stop
    assert stream.flush() == "see \ufffd"
