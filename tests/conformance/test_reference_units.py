"""The reference comparisons on hand-made answers: tolerance arithmetic, the greedy walk, top-k sets, sampling bounds.

No server: each test builds two answers as a server would send them and checks what the
comparison finds, so every rule of conformance.reference is shown to fire and to stay quiet.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from conformance.reference.answers import END, Alt, Answer, same_token
from conformance.reference.compare import align, chosen_disagreements, top_set_problem
from conformance.reference.corpus import CORPUS, request_key
from conformance.reference.plan import stop_sequences
from conformance.reference.sampling import best_setting, certainly_outside, dist_of, readings
from conformance.reference.tolerance import TOLERANCES, chosen_interval, tolerance_for

EXACT, Q4 = TOLERANCES["same-graph"], TOLERANCES["q4_1"]


def entry(token: str | bytes, logprob: float, tops: list[tuple[str | bytes, float]], **extra: Any) -> dict[str, Any]:
    """A logprobs entry as the mock writes it (text and bytes)."""
    def alt(tok: str | bytes, lp: float) -> dict[str, Any]:
        raw = tok if isinstance(tok, bytes) else tok.encode()
        text = tok if isinstance(tok, str) else tok.decode("utf-8", "replace")
        return {"token": text, "logprob": lp, "bytes": list(raw)}
    return {**alt(token, logprob), "top_logprobs": [alt(t, lp) for t, lp in tops], **extra}


def answer(entries: list[dict[str, Any]], finish: str = "length", content: str | None = None,
           usage: tuple[int, int] = (10, 0)) -> Answer:
    """An Answer parsed from a body holding these entries."""
    text = content if content is not None else b"".join(bytes(e["bytes"]) for e in entries).decode("utf-8", "replace")
    body = {"choices": [{"message": {"content": text}, "finish_reason": finish, "logprobs": {"content": entries}}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1] or len(entries)}}
    parsed = Answer.parse(body)
    assert parsed is not None
    return parsed


HELLO = [entry("Hello", -0.1, [("Hello", -0.1), ("Hi", -2.5)]), entry(" world", -0.2, [(" world", -0.2), (" there", -1.9)]),
         entry("!", -0.9, [("!", -0.9), (".", -1.2)])]


# --- tolerance -----------------------------------------------------------------------------------------------

def test_chosen_interval_is_tight_for_confident_tokens_and_loose_for_uncertain_ones() -> None:
    low, high = chosen_interval(math.log(0.99), 1.0)
    assert high - low < 0.04 and low < math.log(0.99) < high
    low, high = chosen_interval(math.log(0.5), 1.0)
    assert high - low > 0.8
    assert chosen_interval(-1e-9, 1e-3)[1] == 0.0  # never above 0


def test_every_tolerance_describes_itself_and_unknown_names_are_refused() -> None:
    assert all(t.describe() for t in TOLERANCES.values())
    assert not TOLERANCES["other"].judged and "quantisation" in TOLERANCES["other"].why_not
    with pytest.raises(ValueError, match="target_weights: must be one of"):
        tolerance_for("q8_0")


# --- tokens ----------------------------------------------------------------------------------------------------

def test_tokens_match_by_bytes_or_text_and_end_of_turn_in_every_spelling() -> None:
    assert same_token(Alt("<|im_end|>", 0), Alt("", 0, ()))  # llama.cpp's end of turn: empty, no bytes
    assert same_token(Alt("<|im_end|>", 0), Alt("", 0, None))  # llama-cpp-python's: no bytes field
    assert same_token(Alt("\ufffd", 0, (195,)), Alt("", 0, None))  # a partial byte, written without text
    assert not same_token(Alt(" \ufffd", 0, (32, 226)), Alt(" x", 0, None))
    assert same_token(Alt(" \ufffd", 0, (32, 226)), Alt(" ", 0, None))
    assert not same_token(Alt("a", 0, (97,)), Alt("b", 0, (98,)))


# --- the greedy walk --------------------------------------------------------------------------------------------

def test_identical_answers_align_completely() -> None:
    found = align("c", answer(HELLO), answer(HELLO), EXACT)
    assert found.complete and found.judged == 3 and not found.disagreements and len(found.pairs) == 3


def test_a_different_token_at_a_confident_position_is_a_disagreement_with_both_sides() -> None:
    other = [HELLO[0], entry(" there", -0.2, [(" there", -0.2), (" world", -1.9)]), HELLO[2]]
    found = align("c", answer(HELLO), answer(other), Q4)
    assert found.disagreement is not None and found.disagreement.kind == "token" and found.disagreement.position == 1
    assert found.disagreement.reference["token"] == " world" and found.disagreement.target["token"] == " there"
    assert found.disagreement.reference["margin"] == pytest.approx(1.7)


def test_a_near_tie_excuses_the_divergence_and_nothing_after_it_is_judged() -> None:
    other = [HELLO[0], HELLO[1], entry(".", -0.9, [(".", -0.9), ("!", -1.2)]), entry("x", -5, [("x", -5)])]
    found = align("c", answer(HELLO), answer(other), Q4)  # "!" leads "." by 0.3 < 1.0
    assert found.excused_at == 2 and found.judged == 2 and not found.disagreements
    assert align("c", answer(HELLO), answer(other), EXACT).disagreement is not None  # 0.3 > 1e-3


def test_ending_early_and_going_on_are_disagreements_and_an_end_entry_is_no_extra_token() -> None:
    assert align("c", answer(HELLO), answer(HELLO[:2]), EXACT).disagreement.kind == "ended-early"
    longer = HELLO + [entry(" Bye", -0.1, [(" Bye", -0.1)])]
    assert align("c", answer(HELLO, "stop"), answer(longer), EXACT).disagreement.kind == "went-on"
    with_end = HELLO + [{"token": "", "logprob": -0.01, "bytes": [], "top_logprobs": []}]
    assert align("c", answer(HELLO, "stop"), answer(with_end, "stop", content="Hello world!"), EXACT).complete


def test_content_that_drops_a_space_is_a_detokenisation_disagreement() -> None:
    found = align("c", answer(HELLO), answer(HELLO, content="Helloworld!"), EXACT)
    assert found.disagreement.kind == "content"


def test_entries_merged_across_a_utf8_character_are_flagged_and_the_walk_goes_on() -> None:
    ours = [entry(b"\xc3", -2.0, [(b"\xc3", -2.0)]), entry(b"\x80", -0.7, [(b"\x80", -0.7)]), HELLO[1]]
    merged = [{"token": "À", "logprob": -0.7, "bytes": [195, 128], "top_logprobs": []}, HELLO[1]]
    found = align("c", answer(ours), answer(merged, content="À world"), EXACT)
    assert [d.kind for d in found.disagreements] == ["merged-entries"] and found.complete and found.judged == 3


def test_a_merged_entry_that_parts_on_its_last_byte_is_judged_at_that_position() -> None:
    ours = [entry(b"\xe3\x81", -0.1, [(b"\xe3\x81", -0.1)]), entry(b"\xa0", -0.5, [(b"\xa0", -0.5), (b"\xa7", -0.9)]),
            HELLO[1]]
    merged = [{"token": "で", "logprob": -0.9, "bytes": [227, 129, 167], "top_logprobs": []}, HELLO[1]]
    near = align("c", answer(ours), answer(merged, content="で world"), Q4)
    assert [d.kind for d in near.disagreements] == ["merged-entries"] and near.excused_at == 1
    far = align("c", answer(ours), answer(merged, content="で world"), EXACT)
    assert [d.kind for d in far.disagreements] == ["merged-entries", "token"] and far.disagreement.position == 0


def test_tail_tokens_left_unlisted_inside_a_character_are_a_reporting_fault_only() -> None:
    ours = HELLO[:2] + [entry(b"\xf0\x9f", -0.3, [(b"\xf0\x9f", -0.3), ("x", -2.0)])]
    found = align("c", answer(ours, usage=(10, 3)), answer(HELLO[:2], content="Hello world", usage=(10, 3)), EXACT)
    assert [d.kind for d in found.disagreements] == ["missing-entries"] and found.complete and not found.stopped
    short = align("c", answer(ours, usage=(10, 3)), answer(HELLO[:2], content="Hello world", usage=(10, 2)), EXACT)
    assert short.disagreement.kind == "ended-early"


def test_tokens_without_bytes_are_checked_against_the_content() -> None:
    ours = [entry(b"\xf0\x9f", -0.1, [(b"\xf0\x9f", -0.1)]), entry(b"\x8c\x8d", -0.2, [(b"\x8c\x8d", -0.2)]),
            HELLO[1]]
    blind = [{"token": "", "logprob": -0.1, "top_logprobs": []}, {"token": "", "logprob": -0.2, "top_logprobs": []},
             {"token": " world", "logprob": -0.2, "top_logprobs": []}]
    same = align("c", answer(ours), answer(blind, content="\U0001f30d world"), EXACT)
    assert same.complete and not same.disagreements
    other = align("c", answer(ours), answer(blind, content="\U0001f30e world"), EXACT)
    assert other.disagreement.kind == "token" and other.disagreement.position == 0 and not other.pairs


def test_chosen_logprobs_outside_their_interval_are_named() -> None:
    scaled = [{**e, "logprob": e["logprob"] * 1.1} for e in HELLO]
    found = chosen_disagreements(align("c", answer(HELLO), answer(scaled), EXACT), EXACT)
    assert [d.position for d in found] == [0, 1, 2]
    assert not chosen_disagreements(align("c", answer(HELLO), answer(scaled), Q4), Q4)


def test_top_sets_differ_only_beyond_near_ties_at_the_end_of_the_list() -> None:
    ours = answer([entry("a", -0.1, [("a", -0.1), ("b", -2.0), ("c", -5.0), ("d", -5.2)])]).entries[0]
    swapped_tail = answer([entry("a", -0.1, [("a", -0.1), ("b", -2.0), ("d", -5.1), ("c", -5.15)])]).entries[0]
    assert top_set_problem(ours, swapped_tail, Q4) is None
    intruder = answer([entry("a", -0.1, [("a", -0.1), ("b", -2.0), ("c", -5.0), ("z", -2.5)])]).entries[0]
    assert "does not" in (top_set_problem(ours, intruder, Q4) or "")
    missing_b = answer([entry("a", -0.1, [("a", -0.1), ("c", -5.0), ("d", -5.2), ("y", -5.3)])]).entries[0]
    assert "does not list it" in (top_set_problem(ours, missing_b, Q4) or "")


# --- stops and sampling ------------------------------------------------------------------------------------------

def test_stop_sequences_span_a_token_boundary_and_sit_inside_a_token() -> None:
    text = answer([entry("The", -0.1, []), entry(" capital", -0.1, []), entry(" of", -0.1, [])])
    chosen = dict(stop_sequences(text))
    assert chosen == {"stop-boundary": "he c", "stop-inside": "ca"}
    assert "The capital of".find(chosen["stop-boundary"]) == 1


def test_a_token_outside_the_tempered_nucleus_is_certain_only_when_the_bound_says_so() -> None:
    dist = dist_of([Alt("The", math.log(0.55)), Alt("Paris", math.log(0.125)), Alt("Le", math.log(0.036)),
                    Alt("I", math.log(0.033)), Alt("L", math.log(0.032))])
    paris = dist.tokens[1]
    assert certainly_outside(dist, paris, 0.85, 0.6, 1e-3)  # the tempered 'The' alone holds >= 0.6
    assert not certainly_outside(dist, paris, 1.0, 0.6, 1e-3)  # untempered: 'The' holds 0.55 < 0.6
    assert not certainly_outside(dist, dist.tokens[0], 0.85, 0.6, 1e-3)  # the top token is always in
    assert certainly_outside(dist, Alt("zebra", -9.0), 0.5, 0.6, 1e-3)  # unlisted, below every listed token
    temperature, top_p, mass = best_setting(dist)
    assert temperature < 1 and mass > 0.05


def test_sampled_logprobs_read_before_or_after_temperature() -> None:
    dist = dist_of([Alt("a", math.log(0.7)), Alt("b", math.log(0.2)), Alt("c", math.log(0.1))])
    assert readings(dist, Alt("b", math.log(0.2)), 0.5, 1e-3) == {"before temperature"}
    tempered_b = math.log(0.2 ** 2 / (0.7 ** 2 + 0.2 ** 2 + 0.1 ** 2))
    assert readings(dist, Alt("b", tempered_b), 0.5, 1e-3) == {"after temperature"}
    assert readings(dist, Alt("b", math.log(0.2) / 0.5), 0.5, 1e-3) == set()  # scaled, not renormalised


# --- corpus and files -------------------------------------------------------------------------------------------

def test_the_corpus_covers_its_kinds_and_files_answers_without_the_model() -> None:
    ids = [c.id for c in CORPUS]
    assert len(ids) == len(set(ids)) >= 15
    for kind in ("system", "multi-turn", "unicode-cjk", "unicode-emoji", "code-python", "whitespace-runs", "long"):
        assert kind in ids
    assert request_key({"model": "a", "x": 1}) == request_key({"x": 1, "model": "b"})


def test_answers_survive_the_reference_file_round_trip() -> None:
    first = answer(HELLO, "stop")
    again = Answer.from_json(json.loads(json.dumps(first.to_json())))
    assert again == first and again.entries[0].margin == pytest.approx(2.4)
    assert END.is_end
