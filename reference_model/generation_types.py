"""The generation interface's values: requests, events, tool calls, and the errors of bad requests.

Re-exported by `reference_model.generation`, which is where callers import them from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from reference_model.errors import Param, PromptTooLongError, ReferenceModelError, RequestError, check_context
from reference_model.grammar import CompiledGrammar
from reference_model.logprobs import TokenLogprob
from reference_model.sampling import SamplingParams, check_vocabulary
from reference_model.stopping import FinishReason

__all__ = ["PromptTooLongError"]  # re-exported with the rest by reference_model.generation

RequestId = int


class GenerationRequestError(RequestError):
    """A generation request's input is malformed; names the input, the rule and the value."""

    def __init__(self, param: Param, rule: str, value: object) -> None:
        super().__init__(param, f"must be {rule}, got {value!r}", rule=rule,
                         message=f"{param.value} must be {rule}, got {value!r}")


class GenerationSetupError(ReferenceModelError, TypeError):
    """A request or generator built wrongly by its caller (a programming error, not an input to refuse)."""

    def __init__(self, what: str, rule: str, value: object) -> None:
        super().__init__(f"{what} must be {rule}, got {value!r}")


class GenerationFailed(ReferenceModelError):
    """Generation broke for some requests (engine or grammar failure, not bad input); they are dropped.

    The events the other requests produced in the same step are returned by the next `step()`.
    """

    def __init__(self, message: str, request_ids: tuple[RequestId, ...]) -> None:
        super().__init__(message)
        self.request_ids = request_ids


# --- the interface ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    """One choice to generate: templated prompt ids, sampling parameters and an optional grammar."""

    prompt_ids: tuple[int, ...]  # already templated and tokenized (chat_template.encode)
    params: SamplingParams
    constraint: CompiledGrammar | None = None  # grammar.compile_constraint(...), its tool policy included

    def __post_init__(self) -> None:
        raw: object = self.prompt_ids  # callers may pass any sequence: checked and normalised here
        if isinstance(raw, str | bytes) or not hasattr(raw, "__iter__"):
            raise GenerationRequestError(Param.PROMPT, "a sequence of token ids", raw)
        ids = tuple(raw)
        if not ids:
            raise GenerationRequestError(Param.PROMPT, "a non-empty sequence of token ids", [])
        for t in ids:
            if not isinstance(t, int | np.integer) or isinstance(t, bool):
                raise GenerationRequestError(Param.PROMPT, "a sequence of integer token ids", t)
        object.__setattr__(self, "prompt_ids", tuple(int(t) for t in ids))
        if not isinstance(self.params, SamplingParams):
            raise GenerationSetupError("params", "a SamplingParams", self.params)
        if self.constraint is not None and not isinstance(self.constraint, CompiledGrammar):
            raise GenerationSetupError("constraint", "a CompiledGrammar or None", self.constraint)


def check_admissible(request: GenerationRequest, *, vocab_size: int, context_length: int) -> None:
    """The rules a valid request must also meet on one model: its ids in the vocabulary, its length in the context.

    The generator checks them when it admits a request; a server may check them first, with the same
    function, to refuse a request before queueing it. Raises a RequestError naming the input.
    """
    bad = next((t for t in request.prompt_ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise GenerationRequestError(Param.PROMPT, f"token ids in [0, {vocab_size})", bad)
    check_vocabulary(request.params, vocab_size)
    check_context(len(request.prompt_ids), request.params.max_tokens, context_length)


@dataclass(frozen=True)
class ToolCallDelta:
    """What a token adds to tool call `index`: the call's first delta has its id and name, later ones neither."""

    index: int
    id: str | None
    name: str | None
    arguments: str  # the next fragment of the arguments' JSON text (may be "")


@dataclass(frozen=True)
class TokenEvent:
    """One generated token, in order, with the content it releases (may be "") and its logprob entry."""

    token_id: int
    text: str  # concatenation of all TokenEvent.text + Finished.text == final content
    logprob: TokenLogprob | None  # when params.logprobs; its text equals `text`
    # Tool-call output: what this token completed of the calls (their fragments concatenate to the calls).
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True)
class ToolCallOut:
    """A parsed tool call: deterministic id, function name, arguments as JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Finished:
    """The last event of every request."""

    reason: FinishReason
    text: str  # trailing content not carried by a token event ("" when none)
    prompt_tokens: int
    completion_tokens: int  # token events emitted; the end-of-turn token is not counted
    # Every call begun (content is then ""): reason tool_calls, or length with the last call's arguments cut.
    tool_calls: tuple[ToolCallOut, ...]
    seed: int  # the seed actually used
    content: str = ""  # the whole final content (the concatenation described above), for convenience


Event = TokenEvent | Finished


def tool_call_id(seed: int, index: int) -> str:
    """The id of the index-th call of a generation with this seed: 'call_' + 24 hex digits."""
    return "call_" + hashlib.sha256(f"chatconform-call:{seed}:{index}".encode()).hexdigest()[:24]


def collect(events: list[Event]) -> tuple[list[TokenEvent], Finished]:
    """Split one request's events into its token events and its Finished (which must be last)."""
    items = list(events)
    if not items or not isinstance(items[-1], Finished):
        raise ReferenceModelError(f"events must end with Finished, got {items[-1:]!r}")
    tokens = [e for e in items[:-1] if isinstance(e, TokenEvent)]
    if len(tokens) != len(items) - 1:
        raise ReferenceModelError("Finished must be the only and last Finished event")
    return tokens, items[-1]
