"""Keys and values of recent prompts, kept in blocks so a new prompt prefills only its new suffix.

A block holds the keys and values of `block_tokens` consecutive positions, computed by a prefill.
It is found by its tokens AND its parent block (the block before it in the same prompt): the keys
and values at a position depend on every token before it, so one chain of blocks from position 0
is one prompt prefix, and prompts sharing a prefix share its blocks (the default system turn, a
chat's history). Lookup walks the chain as far as the new prompt agrees with it.

Bounded by a memory budget; the least recently used block goes first. A lookup touches a chain
from its last block back to its first, so a chain's tail is always older than its head and is
evicted before it (a block whose parent was evicted can no longer be reached, and ages out).

Only positions computed by a pass of two or more rows are stored: ONNX Runtime's MatMulNBits runs
a one-row pass on another kernel whose rounding differs, so a cold prefill's rows (all from
multi-row passes) are reproduced bit for bit only from multi-row rows. The engine enforces this.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

BlockKey = tuple[int, tuple[int, ...]]  # (parent block id or -1, the block's tokens)


@dataclass(frozen=True)
class Block:
    """One stored block: its id (children name it as parent) and keys/values [2, layers, heads, n, dim]."""

    id: int
    kv: np.ndarray


@dataclass
class PrefixStats:
    """Counters since the cache was made (the hit rate is hits / lookups)."""

    lookups: int = 0  # prefills that asked the cache
    hits: int = 0  # of them, those that reused at least one block
    lookup_tokens: int = 0  # prompt tokens of those prefills
    reused_tokens: int = 0  # of them, tokens whose keys/values came from the cache
    evicted_blocks: int = 0


class PrefixCache:
    """Blocks of prompt keys/values under a byte budget, least recently used out."""

    def __init__(self, *, budget_bytes: int, block_tokens: int, bytes_per_token: int) -> None:
        if budget_bytes < 0 or block_tokens < 1 or bytes_per_token < 1:
            raise ValueError(f"PrefixCache needs budget_bytes >= 0, block_tokens >= 1, bytes_per_token >= 1; got "
                             f"{budget_bytes}, {block_tokens}, {bytes_per_token}")
        self.budget_bytes = budget_bytes
        self.block_tokens = block_tokens
        self.block_bytes = block_tokens * bytes_per_token
        self.stats = PrefixStats()
        self._blocks: OrderedDict[BlockKey, Block] = OrderedDict()
        self._next_id = 0

    @property
    def enabled(self) -> bool:
        """Whether at least one block fits in the budget."""
        return self.budget_bytes >= self.block_bytes

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored blocks."""
        return len(self._blocks) * self.block_bytes

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup(self, ids: Sequence[int], max_tokens: int) -> list[Block]:
        """The stored chain matching the longest prefix of `ids` of at most `max_tokens` tokens."""
        chain = self._walk(ids, max_tokens // self.block_tokens)
        self.stats.lookups += 1
        self.stats.lookup_tokens += len(ids)
        if chain:
            self.stats.hits += 1
            self.stats.reused_tokens += len(chain) * self.block_tokens
        self._touch(chain)
        return [self._blocks[key] for key in chain]

    def store(self, ids: Sequence[int], n_tokens: int, read: Callable[[int, int], np.ndarray]) -> None:
        """Store the whole blocks among the first `n_tokens` of `ids` not stored yet.

        read(start, end): the keys/values of positions [start, end) as [2, layers, heads, n, dim].
        """
        if not self.enabled:
            return
        n_blocks = n_tokens // self.block_tokens
        chain = self._walk(ids, n_blocks)
        parent = self._blocks[chain[-1]].id if chain else -1
        for b in range(len(chain), n_blocks):
            start, end = b * self.block_tokens, (b + 1) * self.block_tokens
            key = (parent, tuple(ids[start:end]))
            self._blocks[key] = Block(self._next_id, np.ascontiguousarray(read(start, end)))
            chain.append(key)
            parent = self._next_id
            self._next_id += 1
        self._touch(chain)
        while self.nbytes > self.budget_bytes:
            self._blocks.popitem(last=False)
            self.stats.evicted_blocks += 1

    def clear(self) -> None:
        """Forget every block (the counters stay)."""
        self._blocks.clear()

    def _walk(self, ids: Sequence[int], max_blocks: int) -> list[BlockKey]:
        """Keys of the stored blocks matching ids from position 0, at most max_blocks of them."""
        chain: list[BlockKey] = []
        parent = -1
        for b in range(max_blocks):
            key = (parent, tuple(ids[b * self.block_tokens:(b + 1) * self.block_tokens]))
            block = self._blocks.get(key)
            if block is None:
                break
            chain.append(key)
            parent = block.id
        return chain

    def _touch(self, chain: list[BlockKey]) -> None:
        # Tail first, head last: the head becomes the most recent, so tails are evicted first.
        for key in reversed(chain):
            self._blocks.move_to_end(key)
