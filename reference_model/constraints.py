"""The per-request grammar state: which tokens may come next, advanced token by token.

A `Constraint` runs one `CompiledGrammar` (grammar.py) for one generation with llguidance's
matcher. The next mask is computed in a small worker pool while the engine's forward pass runs
(`prefetch` right after `advance`); llguidance releases the GIL while it computes.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import llguidance
import numpy as np
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from reference_model.errors import Param
from reference_model.grammar import CompiledGrammar, ConstraintError, first_line, grammar_tokenizer
from reference_model.tokenizer import Tokenizer

# --- the per-request matcher -----------------------------------------------------------------------

_MASK_POOL: ThreadPoolExecutor | None = None
_MASK_POOL_LOCK = threading.Lock()


def _mask_pool() -> ThreadPoolExecutor:
    global _MASK_POOL
    with _MASK_POOL_LOCK:
        if _MASK_POOL is None:
            _MASK_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llg-mask")
        return _MASK_POOL


class Constraint:
    """One generation's grammar state: which tokens are allowed next, advanced token by token."""

    def __init__(self, compiled: CompiledGrammar, tokenizer: Tokenizer) -> None:
        self.compiled = compiled
        self.vocab_size = tokenizer.vocab_size
        self._matcher = llguidance.LLMatcher(grammar_tokenizer(tokenizer), compiled.grammar, log_level=0)
        if self._matcher.is_error():
            raise ConstraintError(Param.GRAMMAR, first_line(self._matcher.get_error()))
        self._bitmask = allocate_token_bitmask(1, self.vocab_size)  # int32 [1, ceil(vocab/32)]
        self._allowed = np.zeros(self.vocab_size, dtype=bool)  # the last mask, unpacked
        self._pending: Future[None] | None = None

    def _fill(self) -> None:
        # llguidance releases the GIL here, so this overlaps with the engine's forward pass.
        fill_next_token_bitmask(self._matcher, self._bitmask)
        # Unpacked here too, so a prefetched mask costs the decode loop nothing (about 60 us otherwise).
        # Bit j of int32 word w is token 32*w + j (little-endian), as llguidance lays it out.
        bits = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")
        self._allowed = bits[:self.vocab_size].astype(bool)

    def prefetch(self) -> None:
        """Start computing the next mask in a worker thread (call right after `advance`)."""
        if self._pending is None:
            self._pending = _mask_pool().submit(self._fill)

    def _wait(self) -> bool:
        if self._pending is None:
            return False
        pending, self._pending = self._pending, None
        pending.result()
        return True

    def allowed_mask(self) -> np.ndarray:
        """Allowed next tokens, bool [vocab] (waits for a prefetched mask if one is running)."""
        if not self._wait():
            self._fill()
        if self._matcher.is_error():
            raise ConstraintError(Param.GRAMMAR, first_line(self._matcher.get_error()))
        return self._allowed.copy()

    def advance(self, token_id: int) -> None:
        """Consume a chosen token; a token the grammar forbids is a ConstraintError."""
        self._wait()
        if not self._matcher.consume_token(int(token_id)):
            raise ConstraintError(Param.GRAMMAR, f"token {token_id} is not allowed here: "
                                  f"{first_line(self._matcher.get_error())}")

    def is_accepting(self) -> bool:
        """Whether the output so far is complete under the grammar (ending now is allowed)."""
        return self._matcher.is_accepting()

    def is_stopped(self) -> bool:
        """Whether nothing but the end-of-turn token can follow."""
        return self._matcher.is_stopped()
