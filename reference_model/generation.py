"""The generation loop: continuous batching of requests over one engine, yielding token events.

One `BatchGenerator.step()`:

1. drops cancelled requests (their engine sequences are released);
2. admits waiting requests while the engine has free slots, and prefills each (B=1, chunked);
3. runs ONE batched decode forward (`Engine.step`) over every running request whose last
   token has not been fed yet;
4. for every request holding fresh logits: grammar mask (prefetched during the forward pass)
   -> sampler (bias, penalties, logprobs, mask, temperature, top_p, draw) -> grammar advance
   -> next mask prefetched -> content assembly (UTF-8, stop sequences, tool calls) -> events.

Each request has its own sampler and seeded generator, so its tokens do not depend on what
else runs in the batch (up to the engine's batched-kernel rounding; exact for fp32 graphs).

When a generation ends (documented for the server's renderer):

- end-of-turn token (`tokenizer.eos_id`, `<|im_end|>`): finish_reason `stop` (or `tool_calls`).
  The end-of-turn token is NOT a completion token: it has no event and no logprob entry, and
  `completion_tokens` counts content (and tool-call) tokens only; so completion_tokens always
  equals the number of token events and of logprob entries.
- the grammar is complete and allows nothing more (`Constraint.is_stopped()`): ends at once,
  without another forward pass, as `stop` (or `tool_calls`).
- a stop sequence completes: `stop`; the token that completed it is the last one counted.
  Tokens whose text was cut keep their events and logprob entries, with `text` holding only the
  released part (so event texts concatenate to the content; see `generation_output.py`).
  Stop sequences apply to constrained text as well (a cut JSON output is then not valid JSON:
  the caller asked for it); they never apply to tool-call output.
- `max_tokens` tokens generated: `length`; the context is full (prompt + completion tokens =
  the engine's context length): `length`. `add` refuses prompt + max_tokens > context length
  (`PromptTooLongError`, param MAX_TOKENS) and a prompt leaving no room (param PROMPT): the rule
  of `errors.check_context`, run by `check_admissible`.
- output that is tool calls (grammars with tools) ending naturally: `tool_calls`, content "",
  calls parsed into `ToolCallOut`s. While they are generated, token events carry each call's
  fragments (`ToolCallDelta`: its id and name once, then argument text). Calls cut by `length`
  are reported as begun (the last one's arguments cut), with `length`. With several calls allowed
  (`ToolPolicy.max_calls`), a further call is begun only while the tokens left (under
  max_tokens and the context) are at least twice the longest call so far; else the output ends
  after the last complete call, so a small max_tokens ends with usable calls, not a cut one.

Without a seed, the sampler draws one from the OS; `Finished.seed` reports the seed used, and
tool-call ids derive from it (`tool_call_id`). Errors for bad input, raised by `add` before any
work, are `RequestError`s naming the input (`.param`, a `Param`, and `.index`); failures during `step` raise
`GenerationFailed`
for the requests concerned only (they are dropped; the others' events come with the next step).

Control tokens other than end-of-turn (`<|im_start|>`, `<|endoftext|>`, ...) are never sampled:
they are not text, and the chat format would let them forge a new turn. The mask does not touch
logprobs (they are taken before any mask, see `sampling.py`).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from reference_model.constraints import Constraint
from reference_model.engine import Engine, SeqId
from reference_model.errors import PromptTooLongError
from reference_model.generation_output import OutputAssembler, OutputMode, ReleasedToken
from reference_model.generation_types import (
    Event,
    Finished,
    GenerationFailed,
    GenerationRequest,
    GenerationRequestError,
    GenerationSetupError,
    RequestId,
    TokenEvent,
    ToolCallDelta,
    ToolCallOut,
    check_admissible,
    collect,
    tool_call_id,
)
from reference_model.logprobs import LogprobTracker
from reference_model.sampling import Sampler
from reference_model.stopping import FinishReason
from reference_model.tokenizer import Tokenizer

__all__ = [
    "BatchGenerator", "Event", "Finished", "GenerationFailed", "GenerationRequest", "GenerationRequestError",
    "GenerationSetupError", "PromptTooLongError", "RequestId", "TokenEvent", "ToolCallDelta", "ToolCallOut",
    "check_admissible", "collect", "generate", "tool_call_id",
]
CALL_BUDGET_FACTOR = 2  # a further call needs this many times the longest call so far in tokens left

# --- per-request state -------------------------------------------------------------------------------


@dataclass
class _Active:
    """Generator-side state of one admitted or waiting request."""

    rid: RequestId
    request: GenerationRequest
    sampler: Sampler
    constraint: Constraint | None
    output: OutputAssembler
    tracker: LogprobTracker | None
    seq: SeqId | None = None
    logits: np.ndarray | None = None  # float32 [vocab] for the next token
    to_feed: int | None = None  # sampled, not yet run through the engine
    generated: int = 0  # completion tokens so far


def _events(released: list[ReleasedToken], seed: int) -> list[Event]:
    return [TokenEvent(r.token_id, r.text, r.logprob,
                       tuple(ToolCallDelta(f.index, None if f.name is None else tool_call_id(seed, f.index), f.name,
                                           f.arguments) for f in r.calls))
            for r in released]


class BatchGenerator:
    """Continuous batching over one Engine: requests join and leave between steps.

    Synchronous: one thread calls `step()`; `add`, `cancel`, `has_work`, `running` and
    `waiting` may be called from other threads.
    """

    def __init__(self, engine: Engine, tokenizer: Tokenizer, *, max_batch: int | None = None) -> None:
        if tokenizer.vocab_size != engine.config.vocab_size:
            raise GenerationSetupError("tokenizer", f"a tokenizer of the engine's vocabulary size "
                                       f"{engine.config.vocab_size}", tokenizer.vocab_size)
        if max_batch is not None and (not isinstance(max_batch, int) or not 1 <= max_batch <= engine.max_batch):
            raise GenerationSetupError("max_batch", f"an int in [1, {engine.max_batch}] (the engine's "
                                       "max_batch) or None", max_batch)
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_batch = max_batch if max_batch is not None else engine.max_batch
        # bool [vocab]: what may be sampled without a grammar (control tokens except end-of-turn: no).
        allowed = np.ones(tokenizer.vocab_size, dtype=bool)
        allowed[[i for i in tokenizer.special_ids if i != tokenizer.eos_id]] = False
        self._base_allowed = allowed
        self._eos_only = np.zeros(tokenizer.vocab_size, dtype=bool)
        self._eos_only[tokenizer.eos_id] = True
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: deque[_Active] = deque()
        self._running: dict[RequestId, _Active] = {}
        self._cancelled: set[RequestId] = set()
        self._outbox: dict[RequestId, list[Event]] = {}

    # ---- admission -------------------------------------------------------------------------------

    def add(self, request: GenerationRequest) -> RequestId:
        """Validate a request (before any work) and queue it; returns its id."""
        if not isinstance(request, GenerationRequest):
            raise GenerationSetupError("request", "a GenerationRequest", request)
        check_admissible(request, vocab_size=self.tokenizer.vocab_size, context_length=self.engine.context_length)
        sampler = Sampler(request.params, self.tokenizer.vocab_size)
        compiled = request.constraint
        constraint = None if compiled is None else Constraint(compiled, self.tokenizer)
        policy = compiled.policy if compiled is not None else None
        output = OutputAssembler(self.tokenizer, request.params.stop,
                                 tools=policy.names if policy is not None else (),
                                 calls_only=policy is not None and policy.calls_only)
        tracker = LogprobTracker(self.tokenizer) if request.params.logprobs else None
        if constraint is not None:
            constraint.prefetch()  # the first mask computes while the request waits and prefills
        with self._lock:
            rid = self._next_id
            self._next_id += 1
            self._waiting.append(_Active(rid, request, sampler, constraint, output, tracker))
        return rid

    def cancel(self, rid: RequestId) -> None:
        """Stop a request; its sequence is freed at the next step (unknown or finished ids: no effect)."""
        with self._lock:
            self._cancelled.add(rid)

    def has_work(self) -> bool:
        """Whether a step would do anything (requests waiting, running or cancelled, events pending)."""
        with self._lock:
            return bool(self._waiting or self._running or self._cancelled or self._outbox)

    @property
    def running(self) -> int:
        """Requests admitted to the engine and not finished."""
        with self._lock:
            return len(self._running)

    @property
    def waiting(self) -> int:
        """Requests added and not yet admitted."""
        with self._lock:
            return len(self._waiting)

    # ---- the step --------------------------------------------------------------------------------

    def step(self) -> dict[RequestId, list[Event]]:
        """Prefill newly admitted requests, run ONE batched decode forward, sample; new events per request.

        Raises GenerationFailed naming the requests that broke (engine or grammar failure); they
        are dropped, and the events of the others come with the next call.
        """
        events, self._outbox = self._outbox, {}
        failed: dict[RequestId, BaseException] = {}
        self._drop_cancelled()
        for active, seq in self._admit():
            try:
                active.logits = self.engine.prefill(seq)
            except Exception as exc:
                failed[active.rid] = exc
                self._remove(active)
        feed = {a.seq: a.to_feed for a in self._running.values() if a.to_feed is not None and a.seq is not None}
        if feed:
            try:
                out = self.engine.step(feed)
            except Exception as exc:
                for active in list(self._running.values()):
                    if active.to_feed is not None:
                        failed[active.rid] = exc
                        self._remove(active)
                out = {}
            for active in self._running.values():
                if active.seq in out:
                    active.logits, active.to_feed = out[active.seq], None
        for active in list(self._running.values()):
            logits, active.logits = active.logits, None
            if logits is None:
                continue
            try:
                new = self._advance(active, logits)
            except Exception as exc:
                failed[active.rid] = exc
                self._remove(active)
                continue
            if new:
                events.setdefault(active.rid, []).extend(new)
        if failed:
            self._outbox = events
            first = next(iter(failed.values()))
            raise GenerationFailed(f"generation failed for requests {sorted(failed)}: {first}",
                                   tuple(sorted(failed))) from first
        return events

    def _drop_cancelled(self) -> None:
        with self._lock:
            cancelled, self._cancelled = self._cancelled, set()
            self._waiting = deque(a for a in self._waiting if a.rid not in cancelled)
        for rid in cancelled:
            self._outbox.pop(rid, None)
            active = self._running.get(rid)
            if active is not None:
                self._remove(active)

    def _admit(self) -> list[tuple[_Active, SeqId]]:
        admitted = []
        with self._lock:
            while (self._waiting and len(self._running) < self.max_batch
                   and len(self.engine.active) < self.engine.max_batch):
                active = self._waiting.popleft()
                params = active.request.params
                limit = self.engine.context_length - len(active.request.prompt_ids)
                seq = self.engine.start(active.request.prompt_ids, min(params.max_tokens or 1, limit))
                active.seq = seq
                self._running[active.rid] = active
                admitted.append((active, seq))
        return admitted

    def _remove(self, active: _Active) -> None:
        with self._lock:
            self._running.pop(active.rid, None)
        if active.seq is not None and active.seq in self.engine.active:
            self.engine.release(active.seq)
        active.seq = None

    def _advance(self, active: _Active, logits: np.ndarray) -> list[Event]:
        """Sample one token from the request's logits and turn it into events (and maybe the end)."""
        allowed = self._base_allowed
        if active.constraint is not None:
            allowed = active.constraint.allowed_mask() & allowed
            if active.output.between_calls and not self._room_for_a_call(active):
                allowed = allowed & self._eos_only  # the grammar allows the end here: it is complete
        choice = active.sampler.sample(logits, allowed)
        token = choice.token_id
        if active.constraint is not None:
            active.constraint.advance(token)
        if token == self.tokenizer.eos_id:
            return self._finish(active, [], natural=True)
        entry = None
        if active.tracker is not None:
            entry = active.tracker.record(token, choice.logprob, choice.top)
        active.generated += 1
        released = active.output.push(token, entry)
        max_tokens = active.request.params.max_tokens
        if active.output.stop_matched:
            return self._finish(active, released, natural=True)
        if active.constraint is not None and active.constraint.is_stopped():
            return self._finish(active, released, natural=True)
        # The context holds the prompt and the completion: prompt + completion <= context length.
        if active.generated == max_tokens or (len(active.request.prompt_ids) + active.generated
                                              >= self.engine.context_length):
            return self._finish(active, released, natural=False)
        active.to_feed = token
        if active.constraint is not None:
            active.constraint.prefetch()  # overlaps the next engine.step
        return _events(released, active.sampler.seed_used)

    def _room_for_a_call(self, active: _Active) -> bool:
        """Whether the tokens left could hold another call (see the module docstring)."""
        left = self.engine.context_length - len(active.request.prompt_ids) - active.generated
        max_tokens = active.request.params.max_tokens
        if max_tokens is not None:
            left = min(left, max_tokens - active.generated)
        return left >= CALL_BUDGET_FACTOR * active.output.longest_call_tokens

    def _finish(self, active: _Active, released: list[ReleasedToken], *, natural: bool) -> list[Event]:
        final = active.output.finish(natural=natural)
        released = released + list(final.tokens)
        if final.mode is OutputMode.CALLS and final.tool_calls and natural:
            reason = FinishReason.TOOL_CALLS
        elif natural:
            reason = FinishReason.STOP
        else:
            reason = FinishReason.LENGTH
        seed = active.sampler.seed_used
        calls = tuple(ToolCallOut(tool_call_id(seed, i), c.name, c.arguments) for i, c in enumerate(final.tool_calls))
        self._remove(active)
        done = Finished(reason=reason, text=final.text, prompt_tokens=len(active.request.prompt_ids),
                        completion_tokens=active.generated, tool_calls=calls, seed=seed, content=final.content)
        return [*_events(released, seed), done]


def generate(engine: Engine, tokenizer: Tokenizer, request: GenerationRequest) -> list[Event]:
    """Run one request to completion on its own; its events, the last one `Finished`."""
    gen = BatchGenerator(engine, tokenizer, max_batch=1)
    rid = gen.add(request)
    events: list[Event] = []
    while gen.has_work():
        events.extend(gen.step().get(rid, []))
    return events
