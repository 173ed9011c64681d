"""Prefill and batched decode over the ONNX decoder, with a KV cache held in reusable slots.

Data flow: `start` reserves a slot (checking the context limit before any work) -> `prefill` /
`extend` run the pending tokens of one sequence (B=1, S=n) -> `step` feeds one token for each of
several sequences in ONE forward pass (B=k, S=1, each with its own length) -> `release` frees
the slot. Every call returns float32 logits over the vocabulary for the last fed token.

KV cache: per layer, one key and one value array [max_batch, n_kv_heads, context, head_dim]
float32, mapped once (anonymous memory without huge pages, committed by the OS 4 KB at a time
as positions are written: 46 KB per token for the real model, whatever the context). A
forward pass binds a contiguous range of slots as both the past and the present of
GroupQueryAttention, so new keys/values are written in place. Sequences in one `step` must
occupy contiguous slots; the engine keeps active sequences packed and swaps cache rows (only
their used lengths) when a step asks for a different grouping.

Prefix reuse: `prefill` stores the keys/values of the prompt in a `PrefixCache` (blocks of
`prefix_block` positions under `prefix_cache_mb`) and a later prefill copies the longest stored
prefix of its prompt into its slot and runs only the rest. The logits are bit-identical to a cold
prefill: each row of a multi-row pass is computed independently of the others (verified by
tests), a long prompt is cut into chunks so that no chunk has one row (one-row passes take
another kernel), and at least two tokens are always run.

Not thread-safe: one caller (the scheduler) drives an engine.
"""

from __future__ import annotations

import mmap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NewType, Protocol, TypedDict, Unpack

import numpy as np

from reference_model.config import ModelConfig
from reference_model.engine_session import EngineError, IoBinding, open_session
from reference_model.errors import ContextLengthError
from reference_model.prefix_cache import PrefixCache

SeqId = NewType("SeqId", int)


class EngineModel(Protocol):
    """What an engine needs from a model: its graph file and its hyperparameters."""

    @property
    def onnx_path(self) -> Path: ...

    @property
    def config(self) -> ModelConfig: ...


@dataclass
class _Sequence:
    """Engine-side state of one sequence."""

    slot: int
    length: int  # tokens whose keys/values are in the cache
    pending: list[int] = field(default_factory=list)  # accepted but not yet run
    exact: int = 0  # leading cached positions computed by multi-row passes (storable as a prefix)


def _lazy_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A zero float32 array whose memory the OS commits page by page, as positions are written.

    numpy asks for transparent huge pages on large arrays, and then the first write into each
    head's [context, head_dim] row commits a whole 2 MB page: 360 MB per sequence for this model
    at 8192 positions. An anonymous mapping with huge pages refused commits 4 KB at a time.
    """
    nbytes = int(np.prod(shape)) * 4
    # No swap reservation either: the full cache is virtual until sequences grow into it.
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    buf = mmap.mmap(-1, nbytes, flags=flags)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, np.float32).reshape(shape)


class Engine:
    """Runs one decoder graph for up to `max_batch` concurrent sequences.

    device: "auto" (CUDA if its provider loads, else CPU), "cpu" or "cuda" (an error if CUDA
    does not load); threads: intra-op threads (None = ONNX Runtime's default, one per core);
    max_context: a context limit below the model's (smaller limit, smaller reserved cache);
    prefill_chunk: the most tokens of one sequence run in one pass; spin: whether idle intra-op
    threads spin-wait (ONNX Runtime's default; False on a machine shared with busy processes);
    min_fused_batch: the fewest sequences a `step` runs as one batched pass (fewer: a pass each);
    prefix_cache_mb: memory for the keys/values of recent prompts (0: no prefix reuse);
    prefix_block: positions per stored block (a prompt reuses whole blocks only).
    """

    def __init__(self, model: EngineModel, *, device: str = "auto", threads: int | None = None,
                 max_batch: int = 8, max_context: int | None = None, prefill_chunk: int = 256,
                 spin: bool = True, min_fused_batch: int = 3, prefix_cache_mb: int = 256,
                 prefix_block: int = 32) -> None:
        self.config: ModelConfig = model.config
        if not isinstance(prefill_chunk, int) or prefill_chunk < 1:
            raise EngineError(f"prefill_chunk must be a positive int, got {prefill_chunk!r}")
        # Attention scratch is [n_heads, chunk, context] floats per pass (75 MB at 256 x 8192),
        # so long prompts are prefilled in chunks rather than all at once.
        self.prefill_chunk = prefill_chunk
        if not isinstance(min_fused_batch, int) or min_fused_batch < 1:
            raise EngineError(f"min_fused_batch must be a positive int, got {min_fused_batch!r}")
        self.min_fused_batch = min_fused_batch
        if not isinstance(max_batch, int) or max_batch < 1:
            raise EngineError(f"max_batch must be a positive int, got {max_batch!r}")
        limit = self.config.context_length
        if max_context is not None:
            if not isinstance(max_context, int) or not 2 <= max_context <= limit:
                raise EngineError(f"max_context must be an int in [2, {limit}] (the model's context), "
                                  f"got {max_context!r}")
            limit = max_context
        self.context_length = limit
        self.max_batch = max_batch
        for name, value, low in (("prefix_cache_mb", prefix_cache_mb, 0), ("prefix_block", prefix_block, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise EngineError(f"{name} must be an int >= {low}, got {value!r}")
        c = self.config
        self.prefix_cache = PrefixCache(budget_bytes=prefix_cache_mb << 20, block_tokens=prefix_block,
                                        bytes_per_token=2 * c.n_layers * c.n_kv_heads * c.head_dim * 4)
        choice = open_session(model.onnx_path, device=device, threads=threads, spin=spin)
        self._session = choice.session
        self.provider = choice.provider
        # One IO binding per slot range (first slot, batch) used so far: the cache buffers stay
        # bound; each pass rebinds only the small inputs and the logits.
        self._bindings: dict[tuple[int, int], IoBinding] = {}
        shape = (max_batch, c.n_kv_heads, limit, c.head_dim)
        kv = self._kv = _lazy_zeros((2, c.n_layers, *shape))
        self._keys = list(kv[0])  # n_layers x [max_batch, n_kv_heads, context, head_dim]
        self._values = list(kv[1])
        self._owner: list[SeqId | None] = [None] * max_batch
        self._seqs: dict[SeqId, _Sequence] = {}
        self._next_id = 0

    # ---- sequence management -------------------------------------------------------------------

    def start(self, prompt_ids: Sequence[int], max_new_tokens: int) -> SeqId:
        """Reserve a slot for a new sequence; raise ContextLengthError if it cannot fit."""
        ids = self._check_ids(prompt_ids, "prompt_ids")
        if not ids:
            raise EngineError("prompt_ids must contain at least one token, got []")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise EngineError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        self._check_fits(len(ids) + max_new_tokens, len(ids), "prompt_ids + max_new_tokens")
        slot = self._free_slot()
        seq = SeqId(self._next_id)
        self._next_id += 1
        self._owner[slot] = seq
        self._seqs[seq] = _Sequence(slot=slot, length=0, pending=ids)
        return seq

    def release(self, seq: SeqId) -> None:
        """Forget a sequence and free its slot (the cache rows are reused, not cleared)."""
        self._get(seq)
        state = self._seqs.pop(seq)
        self._owner[state.slot] = None
        # Keep the active slots packed at the front so a step over all of them is one range.
        last = max((s for s, o in enumerate(self._owner) if o is not None), default=-1)
        if last > state.slot:
            self._move(last, state.slot)

    def length(self, seq: SeqId) -> int:
        """Tokens of this sequence held in the cache (pending tokens not included)."""
        return self._get(seq).length

    @property
    def active(self) -> list[SeqId]:
        """Sequences started and not released, in slot order."""
        return [o for o in self._owner if o is not None]

    # ---- forward passes ---------------------------------------------------------------------------

    def prefill(self, seq: SeqId, *, all_logits: bool = False) -> np.ndarray:
        """Run the sequence's pending tokens; logits [vocab] of the last (or [n, vocab] if all_logits)."""
        state = self._get(seq)
        if not state.pending:
            raise EngineError(f"sequence {seq} has no pending tokens to prefill")
        ids, state.pending = state.pending, []
        if all_logits or state.length or not self.prefix_cache.enabled:
            return self._run_one(state, ids, all_logits)
        # At least two tokens are run: a one-row pass would round differently from a cold prefill.
        reused = self._reuse_prefix(state, ids, len(ids) - 2)
        logits = self._run_one(state, ids[reused:], all_logits)
        slot = state.slot
        self.prefix_cache.store(ids, state.exact,
                                lambda a, b: self._kv[:, :, slot, :, a:b])
        return logits

    def _reuse_prefix(self, state: _Sequence, ids: list[int], max_tokens: int) -> int:
        """Copy the longest stored prefix of ids (at most max_tokens) into the sequence's slot; its length."""
        n = 0
        for block in self.prefix_cache.lookup(ids, max_tokens):
            end = n + block.kv.shape[3]
            self._kv[:, :, state.slot, :, n:end] = block.kv
            n = end
        state.length = state.exact = n
        return n

    def prefix_stats(self) -> dict[str, int]:
        """Prefix cache counters: lookups, hits, lookup_tokens, reused_tokens, evicted_blocks, blocks, bytes."""
        st = self.prefix_cache.stats
        return {"lookups": st.lookups, "hits": st.hits, "lookup_tokens": st.lookup_tokens,
                "reused_tokens": st.reused_tokens, "evicted_blocks": st.evicted_blocks,
                "blocks": len(self.prefix_cache), "bytes": self.prefix_cache.nbytes}

    def extend(self, seq: SeqId, more_ids: Sequence[int], max_new_tokens: int = 0, *,
               all_logits: bool = False) -> np.ndarray:
        """Append a chunk onto the existing cache (multi-turn reuse); logits as in `prefill`."""
        state = self._get(seq)
        ids = state.pending + self._check_ids(more_ids, "more_ids")
        if not ids:
            raise EngineError("more_ids must contain at least one token, got []")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise EngineError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        self._check_fits(state.length + len(ids) + max_new_tokens, state.length + len(ids),
                         "cached tokens + more_ids + max_new_tokens")
        state.pending = []
        return self._run_one(state, ids, all_logits)

    def step(self, tokens: Mapping[SeqId, int]) -> dict[SeqId, np.ndarray]:
        """Feed one token to each given sequence; logits [vocab] per sequence.

        At least `min_fused_batch` sequences run in one batched pass; fewer run one pass each.
        """
        if not tokens:
            return {}
        states = []
        for seq, tok in tokens.items():
            state = self._get(seq)
            if state.pending:
                raise EngineError(f"sequence {seq} has {len(state.pending)} pending tokens: prefill first")
            self._check_ids([tok], "tokens")
            if state.length + 1 > self.context_length:
                raise ContextLengthError(
                    f"sequence {seq}: one more token would exceed the context length "
                    f"{self.context_length} (cached {state.length})",
                    prompt_tokens=state.length, limit=self.context_length)
            states.append((seq, state))
        if len(states) < self.min_fused_batch:
            # One pass per sequence: ONNX Runtime's one-row MatMulNBits path beats a pass of
            # two rows (this CPU: 103 tok/s in total for two single passes, 76 for one pass of 2).
            out = {}
            for seq, state in states:
                logits = self._forward(state.slot, np.array([[tokens[seq]]], np.int64), [state.length], 1)
                state.length += 1
                out[seq] = logits[0, 0].copy()
            return out
        first = self._gather([s for s, _ in states])
        ordered = sorted(states, key=lambda p: p[1].slot)
        ids = np.array([[tokens[s]] for s, _ in ordered], np.int64)  # [k, 1]
        lengths = [st.length for _, st in ordered]
        logits = self._forward(first, ids, lengths, 1)  # [k, 1, vocab]
        for _, st in ordered:
            st.length += 1
        return {s: logits[row, 0].copy() for row, (s, _) in enumerate(ordered)}

    # ---- internals --------------------------------------------------------------------------------

    def _run_one(self, state: _Sequence, ids: list[int], all_logits: bool) -> np.ndarray:
        """Run ids for one sequence in chunks of at most prefill_chunk tokens (none of one row)."""
        parts = []
        for start, end in self._chunks(len(ids)):
            chunk = ids[start:end]
            n_logits = len(chunk) if all_logits else 1
            logits = self._forward(state.slot, np.array([chunk], np.int64), [state.length], n_logits)
            if len(chunk) > 1 and state.exact == state.length:
                state.exact += len(chunk)
            state.length += len(chunk)
            parts.append(logits[0])  # [n_logits, vocab]
        return np.concatenate(parts) if all_logits else parts[-1][0].copy()

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        """[start, end) of each pass for n tokens; a last chunk of one row borrows one from the one before."""
        size = self.prefill_chunk
        bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
        if len(bounds) > 1 and n % size == 1 and size > 2:
            (a, _), (_, d) = bounds[-2], bounds[-1]
            bounds[-2:] = [(a, d - 2), (d - 2, d)]
        return bounds

    def _forward(self, first_slot: int, ids: np.ndarray, lengths: list[int], n_logits: int) -> np.ndarray:
        """One pass over slots [first_slot, first_slot + B): ids [B, S]; returns logits [B, n, vocab]."""
        c = self.config
        batch, seq_len = ids.shape
        totals = [n + seq_len for n in lengths]
        io = self._bindings.get((first_slot, batch))
        if io is None:
            # The cache bindings depend only on the slot range, so they are made once per range
            # (binding 4 * n_layers buffers costs ~0.5 ms, ~5% of a decode step).
            io = self._bindings[(first_slot, batch)] = self._session.io_binding()
            kv_shape = [batch, c.n_kv_heads, self.context_length, c.head_dim]
            for i in range(c.n_layers):
                for kind, arrays in (("key", self._keys), ("value", self._values)):
                    ptr = arrays[i][first_slot:first_slot + batch].ctypes.data
                    io.bind_input(f"past_{kind}.{i}", "cpu", 0, np.float32, kv_shape, ptr)
                    io.bind_output(f"present_{kind}.{i}", "cpu", 0, np.float32, kv_shape, ptr)
        # Binding a name again replaces its previous binding.
        io.bind_cpu_input("input_ids", ids)
        io.bind_cpu_input("seqlens_k", np.array([t - 1 for t in totals], np.int32))
        io.bind_cpu_input("total_seq_len", np.array(max(totals), np.int32))
        io.bind_cpu_input("num_logits", np.array([n_logits], np.int64))
        out = np.empty((batch, n_logits, c.vocab_size), np.float32)
        io.bind_output("logits", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self._session.run_with_iobinding(io)
        return out

    def _gather(self, seqs: list[SeqId]) -> int:
        """Make the given sequences occupy contiguous slots; return the first slot."""
        slots = sorted(self._seqs[s].slot for s in seqs)
        if slots[-1] - slots[0] + 1 == len(slots):
            return slots[0]
        wanted = set(seqs)
        for target in range(len(seqs)):
            owner = self._owner[target]
            if owner in wanted:
                continue
            source = next(s for s in range(target + 1, self.max_batch) if self._owner[s] in wanted)
            self._swap(source, target)
        return 0

    def _swap(self, a: int, b: int) -> None:
        """Exchange the cache rows and owners of slots a and b (copying used lengths only)."""
        used = max(self._used(a), self._used(b))
        for arrays in (self._keys, self._values):
            for arr in arrays:
                tmp = arr[a, :, :used].copy()
                arr[a, :, :used] = arr[b, :, :used]
                arr[b, :, :used] = tmp
        self._owner[a], self._owner[b] = self._owner[b], self._owner[a]
        for slot in (a, b):
            owner = self._owner[slot]
            if owner is not None:
                self._seqs[owner].slot = slot

    def _move(self, src: int, dst: int) -> None:
        """Move the sequence in slot src to the free slot dst."""
        used = self._used(src)
        for arrays in (self._keys, self._values):
            for arr in arrays:
                arr[dst, :, :used] = arr[src, :, :used]
        seq = self._owner[src]
        assert seq is not None, f"slot {src} holds no sequence to move"
        self._owner[dst], self._owner[src] = seq, None
        self._seqs[seq].slot = dst

    def _used(self, slot: int) -> int:
        owner = self._owner[slot]
        return 0 if owner is None else self._seqs[owner].length

    def _free_slot(self) -> int:
        for slot, owner in enumerate(self._owner):
            if owner is None:
                return slot
        raise EngineError(f"all {self.max_batch} sequence slots are in use (max_batch={self.max_batch}); "
                          f"release a sequence first")

    def _get(self, seq: SeqId) -> _Sequence:
        state = self._seqs.get(seq)
        if state is None:
            raise EngineError(f"unknown or released sequence id {seq!r}")
        return state

    def _check_ids(self, ids: Sequence[int], name: str) -> list[int]:
        out = [int(t) for t in ids]
        bad = [t for t in out if not 0 <= t < self.config.vocab_size]
        if bad:
            raise EngineError(f"{name} must be token ids in [0, {self.config.vocab_size}), got {bad[0]}")
        return out

    def _check_fits(self, needed: int, tokens: int, what: str) -> None:
        if needed > self.context_length:
            raise ContextLengthError(
                f"{what} = {needed} exceeds the context length {self.context_length}",
                prompt_tokens=tokens, limit=self.context_length)


class EngineOptions(TypedDict, total=False):
    """Engine's keyword arguments, as `open_engine` passes them on."""

    device: str
    threads: int | None
    max_batch: int
    max_context: int | None
    prefill_chunk: int
    spin: bool
    min_fused_batch: int
    prefix_cache_mb: int
    prefix_block: int


def open_engine(weights: str = "int4", *, progress: bool = False, **options: Unpack[EngineOptions]) -> Engine:
    """An engine on the real model in `weights` format, preparing (fetching, converting) it on first use.

    `options` are Engine's keyword arguments (device, threads, max_batch, max_context, prefill_chunk,
    spin, min_fused_batch, prefix_cache_mb, prefix_block).
    """
    from reference_model.prepared import prepare

    return Engine(prepare(weights, progress=progress), **options)
