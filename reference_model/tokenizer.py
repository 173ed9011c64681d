"""The reference model's tokenizer, built from the GGUF and matching llama.cpp token for token.

SmolLM2 uses byte-level BPE (GGUF `tokenizer.ggml.model = gpt2`, `pre = smollm`). llama.cpp's
`smollm` pre-tokenizer splits every digit on its own and then applies the GPT-2 regex, which the
`tokenizers` library expresses as Digits(individual_digits=True) then ByteLevel(use_regex=True).
The 17 control tokens (ids 0..16) are registered as special tokens.

Two encoders share one vocabulary: one parses control-token text into control ids (llama.cpp
`tokenize(special=True)`, for trusted template text) and one treats it as plain text
(`special=False`, for anything a user typed), so `<|im_end|>` in a message cannot end a turn.
"""

from __future__ import annotations

import codecs
import hashlib
import threading
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers

from reference_model.errors import TokenizerError, WeightsError

if TYPE_CHECKING:
    from gguf import GGUFReader

# GGUF token_type values (llama.cpp's llama_token_type).
TOKEN_TYPE_NORMAL = 1
TOKEN_TYPE_UNKNOWN = 2
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4
TOKEN_TYPE_UNUSED = 5
TOKEN_TYPE_BYTE = 6


@cache
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters used in BPE vocabularies."""
    # Printable Latin-1 bytes stand for themselves; the rest (controls, space, ...) are shifted to
    # code points 256+ so that every byte has a visible, whitespace-free character.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in keep}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


@cache
def unicode_to_byte() -> dict[str, int]:
    """Inverse of `byte_to_unicode`."""
    return {ch: b for b, ch in byte_to_unicode().items()}


def _field_strings(reader: GGUFReader, key: str, path: Path) -> list[str]:
    field = reader.fields.get(key)
    if field is None:
        raise TokenizerError(f"GGUF {path} has no metadata key {key!r}; cannot build the tokenizer")
    # Each array element is one part of the field; decoding the parts directly avoids the
    # slower generic contents() path for ~49k strings.
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def _field_scalar(reader: GGUFReader, key: str) -> int | str | None:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


class Tokenizer:
    """Byte-level BPE tokenizer for the reference model, equal to llama.cpp's on the same GGUF."""

    def __init__(self, tokens: Sequence[str], token_types: Sequence[int], merges: Sequence[str],
                 *, bos_id: int, eos_id: int, source: str = "") -> None:
        if len(tokens) != len(token_types):
            raise TokenizerError(f"tokenizer: {len(tokens)} tokens but {len(token_types)} token types")
        for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= value < len(tokens):
                raise TokenizerError(f"tokenizer: {name} must be in [0, {len(tokens)}), got {value}")
        self._tokens = list(tokens)
        self._types = list(token_types)
        self._bos_id = bos_id
        self._eos_id = eos_id
        self.source = source
        self._special_ids = frozenset(i for i, t in enumerate(token_types) if t == TOKEN_TYPE_CONTROL)
        self._special_parser = self._build(tokens, token_types, merges)
        # A second instance whose encode never parses special-token text. Two objects rather than
        # toggling `encode_special_tokens` on one, so concurrent callers cannot race on the flag.
        self._plain = tokenizers.Tokenizer.from_str(self._special_parser.to_str())
        self._plain.encode_special_tokens = True
        self._bytes = [self._compute_token_bytes(i) for i in range(len(tokens))]

    @staticmethod
    def _build(tokens: Sequence[str], token_types: Sequence[int], merges: Sequence[str]) -> tokenizers.Tokenizer:
        vocab = {tok: i for i, tok in enumerate(tokens)}
        if len(vocab) != len(tokens):
            raise TokenizerError("tokenizer: the GGUF vocabulary has duplicate token strings")
        pairs: list[tuple[str, str]] = []
        for n, merge in enumerate(merges):
            left, sep, right = merge.partition(" ")
            if not sep or not left or not right:
                raise TokenizerError(f"tokenizer: merge #{n} must be two tokens separated by one space, got {merge!r}")
            pairs.append((left, right))
        hf = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
        hf.decoder = decoders.ByteLevel()
        control = [AddedToken(tokens[i], special=True, normalized=False)
                   for i, t in enumerate(token_types) if t == TOKEN_TYPE_CONTROL]
        # llama.cpp always parses user-defined tokens, even with special=False.
        user = [AddedToken(tokens[i], special=False, normalized=False)
                for i, t in enumerate(token_types) if t == TOKEN_TYPE_USER_DEFINED]
        hf.add_special_tokens(control)
        if user:
            hf.add_tokens(user)
        return hf

    @classmethod
    def from_gguf(cls, path: str | Path) -> Tokenizer:
        """Build the tokenizer from a GGUF's tokenizer.ggml.* metadata."""
        from reference_model.gguf_file import open_gguf

        path = Path(path)
        try:
            reader = open_gguf(path)
        except WeightsError as exc:
            raise TokenizerError(f"tokenizer: {exc}") from exc
        model = _field_scalar(reader, "tokenizer.ggml.model")
        if model != "gpt2":
            raise TokenizerError(f"tokenizer: GGUF {path} has tokenizer.ggml.model={model!r}; only 'gpt2' "
                                 "(byte-level BPE) is supported")
        tokens = _field_strings(reader, "tokenizer.ggml.tokens", path)
        merges = _field_strings(reader, "tokenizer.ggml.merges", path)
        type_field = reader.fields.get("tokenizer.ggml.token_type")
        types = ([int(t) for t in type_field.contents()] if type_field is not None
                 else [TOKEN_TYPE_NORMAL] * len(tokens))
        bos = _field_scalar(reader, "tokenizer.ggml.bos_token_id")
        eos = _field_scalar(reader, "tokenizer.ggml.eos_token_id")
        if bos is None or eos is None:
            raise TokenizerError(f"tokenizer: GGUF {path} lacks tokenizer.ggml.bos_token_id/eos_token_id")
        return cls(tokens, types, merges, bos_id=int(bos), eos_id=int(eos), source=str(path))

    @classmethod
    def load(cls) -> Tokenizer:
        """The reference model's tokenizer (weights prepared on first use), built once per process."""
        from reference_model.weights import ensure_gguf

        return _load_cached(ensure_gguf())

    # --- vocabulary facts -------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of token ids (the logits width)."""
        return len(self._tokens)

    @property
    def bos_id(self) -> int:
        """Beginning-of-sequence id (`<|im_start|>` for SmolLM2)."""
        return self._bos_id

    @property
    def eos_id(self) -> int:
        """End-of-sequence / end-of-turn id (`<|im_end|>` for SmolLM2)."""
        return self._eos_id

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of control tokens: they decode to nothing useful for users and never appear from plain text."""
        return self._special_ids

    @property
    def special_tokens(self) -> dict[str, int]:
        """Control-token text -> id."""
        return {self._tokens[i]: i for i in sorted(self._special_ids)}

    @property
    def unencodable_bytes(self) -> frozenset[int]:
        """Byte values with no single-byte token; `encode` drops them, exactly as llama.cpp does.

        For SmolLM2 these are 0x04 0x06 0x13 0x14 0x16 0x1d (rare ASCII controls), the UTF-8 lead
        bytes 0xf1 0xf2 (code points U+40000..U+BFFFF, unassigned) and bytes never valid in UTF-8.
        """
        table = byte_to_unicode()
        return frozenset(b for b in range(256) if self._special_parser.token_to_id(table[b]) is None)

    @property
    def hf_tokenizer(self) -> tokenizers.Tokenizer:
        """The underlying `tokenizers.Tokenizer` (special-token parsing variant); do not mutate it."""
        return self._special_parser

    def _check_id(self, token_id: int) -> int:
        if not isinstance(token_id, int) or isinstance(token_id, bool) or not 0 <= token_id < len(self._tokens):
            raise TokenizerError(f"token id must be an int in [0, {len(self._tokens)}), got {token_id!r}")
        return token_id

    def id_to_token(self, token_id: int) -> str:
        """The vocabulary string of a token (byte-level characters, e.g. 'Ġhello')."""
        return self._tokens[self._check_id(token_id)]

    def token_to_id(self, token: str) -> int | None:
        """The id of a vocabulary string, or None."""
        return self._special_parser.token_to_id(token)

    def _compute_token_bytes(self, token_id: int) -> bytes:
        text = self._tokens[token_id]
        if self._types[token_id] in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED):
            return text.encode("utf-8")
        table = unicode_to_byte()
        try:
            return bytes(table[ch] for ch in text)
        except KeyError as exc:
            raise TokenizerError(f"tokenizer: token {token_id} {text!r} has a character outside the "
                                 f"byte-level alphabet: {exc}") from exc

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes a token contributes to the text (control tokens: their text in UTF-8)."""
        return self._bytes[self._check_id(token_id)]

    # --- encode / decode --------------------------------------------------------------------

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of `text`; special=True parses control-token text, special=False keeps it plain (user text).

        Lossless except for `unencodable_bytes`, which are dropped (llama.cpp does the same).
        """
        if not isinstance(text, str):
            raise TokenizerError(f"encode: text must be a str, got {type(text).__name__}")
        tok = self._special_parser if special else self._plain
        return tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], *, skip_special: bool = False) -> str:
        """Text of token ids; bytes that do not form valid UTF-8 become U+FFFD."""
        data = b"".join(self.token_bytes(i) for i in ids if not (skip_special and i in self._special_ids))
        return data.decode("utf-8", errors="replace")

    # --- export for llguidance -----------------------------------------------------------------

    def to_json(self) -> str:
        """The `tokenizers` JSON of this tokenizer (what llguidance's LLTokenizer accepts)."""
        return self._special_parser.to_str()

    def write_json(self, directory: Path | None = None) -> Path:
        """Write `to_json()` once to a content-addressed file (default: the chatconform cache) and return it."""
        from reference_model.weights import _atomic_write_bytes, cache_dir

        body = self.to_json().encode("utf-8")
        directory = Path(directory) if directory is not None else cache_dir() / "tokenizer"
        path = directory / f"tokenizer-{hashlib.sha256(body).hexdigest()[:16]}.json"
        if not path.is_file():
            directory.mkdir(parents=True, exist_ok=True)
            _atomic_write_bytes(path, body)
        return path


_LOAD_LOCK = threading.Lock()


@cache
def _load_cached_unlocked(path: Path) -> Tokenizer:
    return Tokenizer.from_gguf(path)


def _load_cached(path: Path) -> Tokenizer:
    # The lock makes concurrent first calls build the tokenizer once, not once per thread.
    with _LOAD_LOCK:
        return _load_cached_unlocked(path)


class IncrementalDecoder:
    """Turn a stream of token ids into text, never emitting half a UTF-8 character.

    Byte-level BPE tokens can end in the middle of a multi-byte character (an emoji is often two or
    three tokens). `push(id)` returns only text made of complete characters and holds the bytes of
    a split character back until the token that completes it arrives. Bytes that can never become
    valid UTF-8 are replaced by U+FFFD as soon as that is certain. `flush()` ends the stream:
    an incomplete tail becomes U+FFFD. The concatenation of every `push` and the final `flush`
    equals `Tokenizer.decode` of the same ids.
    """

    def __init__(self, tokenizer: Tokenizer, *, skip_special: bool = False) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Feed one token; returns the newly completed text (possibly empty)."""
        data = self._tokenizer.token_bytes(token_id)
        if self._skip_special and token_id in self._tokenizer.special_ids:
            return ""
        return self._utf8.decode(data, final=False)

    def pending(self) -> bytes:
        """Bytes held back because they are the start of an incomplete character."""
        return self._utf8.getstate()[0]

    def flush(self) -> str:
        """End the stream: returns held-back bytes as U+FFFD (empty if none) and resets the decoder."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text
