"""Time to first token of a request sharing a long prefix with the one before it, against a cold one.

Per server and round: a cold request whose system turn (about `prefix_tokens` tokens, opened by a
tag never sent before, so no server holds any of it) is followed by a question, then a warm request
with the same system turn and another question. Both streamed, greedy, a few tokens. The figure is
cold TTFT / warm TTFT: what prefix reuse saves the second request of a conversation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench.server_client import CHAT_PATH, chat_body, client_for, one_stream
from bench.server_sse import StreamResult

FILLER = ("You are a careful assistant. Answer in plain words, keep to the facts you are given, and say so "
          "when you do not know. ")
QUESTIONS = ("What is the capital of France?", "Name three colours of the rainbow.")
MAX_TOKENS = 4


def system_turn(tag: str, prefix_tokens: int) -> str:
    """A system text opened by `tag`, about `prefix_tokens` tokens long (counted by our tokenizer)."""
    from reference_model.tokenizer import Tokenizer

    tokenizer = Tokenizer.load()
    text = f"Session {tag}. "
    while len(tokenizer.encode(text)) < prefix_tokens:
        text += FILLER
    return text


@dataclass(frozen=True)
class PrefixRun:
    """One cold/warm pair on one server; TTFTs in seconds (None if that request failed)."""

    round: int
    prefix_tokens: int
    cold_ttft_s: float | None
    warm_ttft_s: float | None
    errors: list[str]

    @property
    def speedup(self) -> float | None:
        """cold TTFT / warm TTFT."""
        if self.cold_ttft_s is None or not self.warm_ttft_s:
            return None
        return self.cold_ttft_s / self.warm_ttft_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the speedup."""
        return {**asdict(self), "speedup": self.speedup}


async def prefix_pair(base_url: str, model_id: str, system: str, round_index: int, prefix_tokens: int,
                      timeout_s: float) -> PrefixRun:
    """The cold request, then the warm one, one after the other on one connection."""
    results: list[StreamResult] = []
    async with client_for(1, timeout_s) as client:
        for question in QUESTIONS:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
            results.append(await one_stream(client, base_url + CHAT_PATH, chat_body(model_id, MAX_TOKENS, messages),
                                            timeout_s))
    cold, warm = results
    return PrefixRun(round=round_index, prefix_tokens=prefix_tokens,
                     cold_ttft_s=cold.ttft_s if cold.ok else None, warm_ttft_s=warm.ttft_s if warm.ok else None,
                     errors=[r.error or "" for r in results if not r.ok])
