"""Tokenizer: equal to llama.cpp on the golden cases, lossless round trips, safe incremental decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_model.errors import TokenizerError
from reference_model.tokenizer import IncrementalDecoder, Tokenizer, byte_to_unicode, unicode_to_byte
from reference_model.weights import GGUF_SHA256

GOLDEN = Path(__file__).parent / "data" / "tokenizer_golden.json"

CORPUS = [
    "",
    "Hello, world!",
    "  leading spaces and trailing  ",
    "line one\nline two\n\n\n  indented\ttab\r\nwindows",
    "Numbers 1234567890 and 3.14159, -42, 1e-9, 2024-11-21",
    "héllo wörld — naïve café ½ ∑ √2",
    "中文字符和标点。日本語のテキスト、한국어 텍스트",
    "emoji 😀🤗👍🏽 👨‍👩‍👧‍👦 flags 🇫🇷",
    'code: def f(x):\n    return {"a": [1, 2]}  # ok',
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|><file_sep>",
    "<|im_end", "|im_end|>", "<<|im_end|>>",
    "\x00\x01 control \x7f bytes \u200b zero width \ufeff bom",
]


def _golden() -> dict:
    # Written by the llama.cpp peer job; its absence is a failure, not a skip: the whole point of
    # this tokenizer is equality with llama.cpp, and nothing else checks it.
    assert GOLDEN.is_file(), f"missing {GOLDEN}: generate it with llama-cpp-python (tokenizer golden cases)"
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_golden_file_is_for_this_gguf() -> None:
    golden = _golden()
    assert golden["gguf_sha256"] == GGUF_SHA256
    assert len(golden["cases"]) >= 10
    assert {case["special"] for case in golden["cases"]} == {False, True}


def test_ids_equal_llama_cpp_on_golden_cases(tokenizer: Tokenizer) -> None:
    mismatches = []
    for case in _golden()["cases"]:
        ids = tokenizer.encode(case["text"], special=case["special"])
        if ids != case["ids"]:
            mismatches.append((case["name"], case["special"], case["ids"], ids))
    assert mismatches == []


def test_vocabulary_facts(tokenizer: Tokenizer) -> None:
    assert tokenizer.vocab_size == 49152
    assert (tokenizer.bos_id, tokenizer.eos_id) == (1, 2)
    assert tokenizer.special_ids == frozenset(range(17))
    assert tokenizer.id_to_token(1) == "<|im_start|>" and tokenizer.id_to_token(2) == "<|im_end|>"
    assert tokenizer.special_tokens["<|endoftext|>"] == 0
    assert tokenizer.id_to_token(216) == "Ġ" and tokenizer.token_bytes(216) == b" "


def test_known_encodings(tokenizer: Tokenizer) -> None:
    # Frozen from this tokenizer after it matched llama.cpp; digits are always split one by one.
    assert tokenizer.encode("Hello world! 12345") == [19556, 905, 17, 216, 33, 34, 35, 36, 37]
    assert tokenizer.encode("😀") == [10813, 242, 218]


def test_control_text_is_plain_unless_special(tokenizer: Tokenizer) -> None:
    text = "<|im_start|>user\nhi<|im_end|>"
    assert tokenizer.encode(text, special=True) == [1, 4093, 198, 6004, 2]
    plain = tokenizer.encode(text)
    assert not set(plain) & tokenizer.special_ids
    assert tokenizer.decode(plain) == text


@pytest.mark.parametrize("text", CORPUS)
def test_round_trip_and_token_bytes(tokenizer: Tokenizer, text: str) -> None:
    for special in (False, True):
        ids = tokenizer.encode(text, special=special)
        assert tokenizer.decode(ids) == text
        assert b"".join(tokenizer.token_bytes(i) for i in ids) == text.encode("utf-8")


def test_decode_skip_special(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("<|im_start|>assistant\nHi there<|im_end|>", special=True)
    assert tokenizer.decode(ids, skip_special=True) == "assistant\nHi there"


def test_decode_of_a_split_character_uses_replacement(tokenizer: Tokenizer) -> None:
    first, *_ = tokenizer.encode("😀")
    assert tokenizer.token_bytes(first) == b"\xf0\x9f"
    assert tokenizer.decode([first]) == "\ufffd"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60))
def test_round_trip_property(tokenizer: Tokenizer, text: str) -> None:
    data = text.encode("utf-8")
    kept = bytes(b for b in data if b not in tokenizer.unencodable_bytes)
    assert tokenizer.decode(tokenizer.encode(text)).encode("utf-8", errors="surrogatepass") == \
        kept.decode("utf-8", errors="replace").encode("utf-8", errors="surrogatepass")


def test_bytes_without_a_token_are_dropped(tokenizer: Tokenizer) -> None:
    # The vocabulary has no token for these bytes; llama.cpp drops them, and so do we.
    assert tokenizer.unencodable_bytes == frozenset(
        [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, *range(0xF5, 0x100)])
    assert tokenizer.decode(tokenizer.encode("a\x04b")) == "ab"
    assert [tokenizer.token_bytes(i) for i in tokenizer.encode("\U00040000")] == [b"\x80"] * 3
    # Ids seen from llama-cpp-python 0.3.36 tokenize(special=False) on the same GGUF.
    assert tokenizer.encode("a\x04b\x06 \U00040000 z") == [81, 82, 216, 218, 218, 218, 1892]
    assert tokenizer.encode("\x13\x14\x16\x1d") == []
    assert tokenizer.encode("x\U00050000y") == [104, 234, 218, 218, 105]


def test_byte_alphabet_is_a_bijection() -> None:
    forward = byte_to_unicode()
    assert len(forward) == 256 and len(set(forward.values())) == 256
    assert all(not ch.isspace() for ch in forward.values())
    assert all(unicode_to_byte()[ch] == b for b, ch in forward.items())
    assert forward[ord("A")] == "A" and forward[ord(" ")] == "Ġ" and forward[ord("\n")] == "Ċ"


def test_bad_ids_and_text_are_rejected(tokenizer: Tokenizer) -> None:
    with pytest.raises(TokenizerError, match=r"token id must be an int in \[0, 49152\), got 49152"):
        tokenizer.token_bytes(49152)
    with pytest.raises(TokenizerError, match=r"got -1"):
        tokenizer.decode([5, -1])
    with pytest.raises(TokenizerError, match="text must be a str, got bytes"):
        tokenizer.encode(b"hi")  # type: ignore[arg-type]


# --- IncrementalDecoder -----------------------------------------------------------------------

def _stream(tokenizer: Tokenizer, ids: list[int], **kw: bool) -> list[str]:
    decoder = IncrementalDecoder(tokenizer, **kw)
    return [decoder.push(i) for i in ids] + [decoder.flush()]


def test_incremental_holds_back_split_emoji(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("a😀b")
    pieces = _stream(tokenizer, ids)
    assert "".join(pieces) == "a😀b"
    # No piece ever contains a replacement character or half a character.
    assert all("\ufffd" not in p for p in pieces)
    assert "😀" in pieces


def test_incremental_cjk_split_inside_a_character(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("中文字符")
    # The last character (符, e7 ac a6) is split across two tokens: b'\xe7\xac' then b'\xa6'.
    assert [tokenizer.token_bytes(i) for i in ids[-2:]] == [b"\xe7\xac", b"\xa6"]
    decoder = IncrementalDecoder(tokenizer)
    out = [decoder.push(i) for i in ids]
    assert out == ["中", "文", "字", "", "符"]
    assert decoder.flush() == ""


def test_incremental_pending_and_flush_of_incomplete_tail(tokenizer: Tokenizer) -> None:
    first, second, _ = tokenizer.encode("😀")
    decoder = IncrementalDecoder(tokenizer)
    assert decoder.push(first) == "" and decoder.push(second) == ""
    assert decoder.pending() == b"\xf0\x9f\x98"
    assert decoder.flush() == "\ufffd"
    assert decoder.pending() == b""
    # After a flush the decoder starts clean.
    assert decoder.push(tokenizer.encode("ok")[0]) == "ok"


def test_incremental_invalid_byte_is_replaced_immediately(tokenizer: Tokenizer) -> None:
    lone_continuation = next(i for i in range(tokenizer.vocab_size) if tokenizer.token_bytes(i) == b"\xa1")
    decoder = IncrementalDecoder(tokenizer)
    assert decoder.push(lone_continuation) == "\ufffd"


def test_incremental_skip_special(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("Hi<|im_end|>", special=True)
    assert "".join(_stream(tokenizer, ids)) == "Hi<|im_end|>"
    assert "".join(_stream(tokenizer, ids, skip_special=True)) == "Hi"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(min_value=0, max_value=49151), max_size=40))
def test_incremental_equals_decode_for_any_ids(tokenizer: Tokenizer, ids: list[int]) -> None:
    assert "".join(_stream(tokenizer, ids)) == tokenizer.decode(ids)


# --- export -------------------------------------------------------------------------------------

def test_json_round_trips_and_llguidance_agrees(tokenizer: Tokenizer, tmp_path: Path) -> None:
    import llguidance

    path = tokenizer.write_json(tmp_path)
    assert path.read_text(encoding="utf-8") == tokenizer.to_json()
    assert tokenizer.write_json(tmp_path) == path  # content-addressed: written once
    ll = llguidance.LLTokenizer(tokenizer.to_json(), eos_token=tokenizer.eos_id)
    assert ll.vocab_size == tokenizer.vocab_size
    for text in CORPUS[1:9]:
        assert ll.tokenize_str(text) == tokenizer.encode(text)


def test_load_is_cached_per_process(gguf_path: Path) -> None:
    assert Tokenizer.load() is Tokenizer.load()
    assert Tokenizer.load().source == str(gguf_path)


def test_from_gguf_rejects_a_non_gguf(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"x" * 64)
    with pytest.raises(TokenizerError, match="junk.gguf"):
        Tokenizer.from_gguf(junk)
