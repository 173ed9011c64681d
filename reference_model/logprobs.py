"""Log-probabilities of chosen tokens and their alternatives, with the text each token adds.

Which distribution: the log-softmax of the logits after logit bias and penalties, before the
constraint mask, temperature and top_p (stage 3 in `sampling.py`). Before the mask, because a
masked token would have logprob -inf, which JSON cannot carry, and there would be fewer than
`top_logprobs` alternatives where a grammar allows only a few tokens; one distribution for the
chosen token and its alternatives keeps them consistent. Before temperature and top_p, as OpenAI
does, so the numbers describe the model rather than the randomness of one draw; after penalties,
so at temperature 0 without a constraint the chosen token is the first alternative.

Token text: byte-level BPE tokens can end inside a multi-byte UTF-8 character (an emoji is often
two or three tokens). A token's `text` is the characters it completes: the text an incremental
UTF-8 decoder emits when the token's bytes arrive after all earlier tokens' bytes. A token that
only starts a character gets "" and the next one gets the whole character; `bytes` always holds
the token's own raw bytes. So the concatenation of `text` over all entries, plus `finish()` (the
U+FFFD that replaces an unfinished character when the stream ends), equals the decoded content.
An alternative's text follows the same rule at the same position in the stream.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import numpy as np

from reference_model.tokenizer import Tokenizer


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Natural-log probabilities float64 [vocab] of finite scores float [vocab]."""
    row = np.asarray(scores, dtype=np.float64)
    shifted = row - np.max(row)
    log_total: np.float64 = np.log(np.sum(np.exp(shifted)))  # numpy types the sum of an array as Any
    return shifted - log_total


def top_alternatives(logprobs: np.ndarray, k: int) -> tuple[tuple[int, float], ...]:
    """The k most likely (id, logprob) pairs of a [vocab] row, highest first, ties by lower id."""
    if k <= 0:
        return ()
    k = min(k, logprobs.shape[0])
    # argpartition finds the k best in O(vocab); the final stable sort orders only those k.
    candidates = np.argpartition(-logprobs, k - 1)[:k]
    # The k-th value may tie with ids outside `candidates`; take every id at that value and
    # keep the lowest ones so the result does not depend on argpartition's internal order.
    threshold = logprobs[candidates].min()
    pool = np.flatnonzero(logprobs >= threshold)
    order = pool[np.lexsort((pool, -logprobs[pool]))][:k]
    return tuple((int(i), float(logprobs[i])) for i in order)


@dataclass(frozen=True)
class TopLogprob:
    """One alternative at a position: id, the text it would add, its raw bytes, its logprob."""

    token_id: int
    text: str
    bytes: bytes
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token at a position, its logprob and the alternatives sorted by logprob, highest first."""

    token_id: int
    text: str
    bytes: bytes
    logprob: float
    top: tuple[TopLogprob, ...] = ()


class LogprobTracker:
    """Turns sampled (id, logprob, alternatives) into `TokenLogprob`s with stream-aware token text."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _text_after(self, state: tuple[bytes, int], data: bytes) -> str:
        # Decode `data` from a copy of the stream state without moving the real stream.
        probe = codecs.getincrementaldecoder("utf-8")(errors="replace")
        probe.setstate(state)
        return probe.decode(data, final=False)

    def record(self, token_id: int, logprob: float, top: tuple[tuple[int, float], ...] = ()) -> TokenLogprob:
        """The entry of a chosen token; advances the stream by its bytes."""
        state = self._utf8.getstate()
        alternatives = []
        for alt_id, alt_logprob in top:
            data = self._tokenizer.token_bytes(int(alt_id))
            alternatives.append(TopLogprob(token_id=int(alt_id), text=self._text_after(state, data),
                                           bytes=data, logprob=float(alt_logprob)))
        data = self._tokenizer.token_bytes(int(token_id))
        text = self._utf8.decode(data, final=False)
        return TokenLogprob(token_id=int(token_id), text=text, bytes=data, logprob=float(logprob),
                            top=tuple(alternatives))

    def pending(self) -> bytes:
        """Bytes of an unfinished character at the end of the stream so far."""
        return self._utf8.getstate()[0]

    def finish(self) -> str:
        """End the stream: U+FFFD for an unfinished character (else ""), to append to the last entry's text."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text
