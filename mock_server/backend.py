"""The server's view of the model: a small interface, and its implementation over reference_model.

The HTTP layer knows only `Backend`: the model's facts (`ModelInfo`), the tokenizer and chat
template used to build prompts, and `submit` to run generations (through the scheduler's worker
thread). `EngineBackend` implements it with reference_model's Engine + BatchGenerator; tests use
the same class on the tiny random-weight model, or any object with these members.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mock_server.config import ServerConfig
from mock_server.engine_errors import api_error
from mock_server.scheduler import Describe, Scheduler, Ticket
from reference_model.chat_template import ChatTemplate
from reference_model.generation import BatchGenerator, GenerationRequest
from reference_model.tokenizer import Tokenizer

if TYPE_CHECKING:  # the engine (onnxruntime) is imported where a model is loaded, not with this module
    from reference_model.engine import EngineOptions

log = logging.getLogger("mock_server.backend")

REFERENCE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY_MODEL_ID = "chatconform/tiny-random"
REFERENCE_MODEL_CREATED = 1730332800  # 2024-10-31, SmolLM2's release


@dataclass(frozen=True)
class ModelInfo:
    """What the server says about its model."""

    id: str
    context_length: int
    vocab_size: int
    weights: str
    digest: str  # sha256 of the weights the graph came from (tiny: of its seed and config)
    provider: str  # ONNX Runtime execution provider in use
    created: int  # unix seconds, the model's listing date
    max_batch: int


class Backend(Protocol):
    """What the HTTP layer needs from a model."""

    info: ModelInfo
    tokenizer: Tokenizer
    template: ChatTemplate

    def submit(self, requests: Sequence[GenerationRequest], describe: Describe = api_error) -> Ticket:
        """Queue one generation per choice; raises Overloaded when full."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters: running, waiting, outstanding, steps, tokens."""
        ...

    def close(self) -> None:
        """Stop the worker thread."""
        ...


class EngineBackend:
    """A Backend over a BatchGenerator driven by a Scheduler."""

    def __init__(self, generator: BatchGenerator, info: ModelInfo, tokenizer: Tokenizer, template: ChatTemplate,
                 *, max_queue: int) -> None:
        self.info = info
        self.tokenizer = tokenizer
        self.template = template
        self.generator = generator
        self.scheduler = Scheduler(generator, max_batch=info.max_batch, max_queue=max_queue)

    def submit(self, requests: Sequence[GenerationRequest], describe: Describe = api_error) -> Ticket:
        """Queue one generation per choice; raises Overloaded when full (describe: see Scheduler.submit)."""
        return self.scheduler.submit(requests, describe)

    def stats(self) -> dict[str, int]:
        """Counters: running, waiting, outstanding, steps, tokens."""
        return {"running": int(self.generator.running), "waiting": int(self.generator.waiting),
                "outstanding": self.scheduler.outstanding, "steps": self.scheduler.steps,
                "tokens": self.scheduler.tokens,
                **{f"prefix_{k}": v for k, v in self.generator.engine.prefix_stats().items()}}

    def close(self) -> None:
        """Stop the worker thread."""
        self.scheduler.close()


def _tiny_digest(seed: int, config: object) -> str:
    return hashlib.sha256(f"tiny:{seed}:{config}".encode()).hexdigest()


def load_backend(config: ServerConfig, *, work_dir: Path | None = None,
                 make_generator: Callable[..., BatchGenerator] = BatchGenerator) -> EngineBackend:
    """Build the model named by the config (preparing the reference model on first use).

    make_generator: called as (engine, tokenizer, max_batch=...); a BatchGenerator subclass may
    be given (tests gate its steps to make timing-dependent behaviour deterministic).
    """
    from reference_model.engine import Engine

    tokenizer = Tokenizer.load()
    template = ChatTemplate.load()
    options: EngineOptions = {"device": config.device, "threads": config.threads, "max_batch": config.max_batch,
                              "spin": config.spin}
    if config.model == "tiny":
        from reference_model.tiny import TINY_SEED, build_tiny

        directory = work_dir or Path(tempfile.mkdtemp(prefix="chatconform-tiny-"))
        model = build_tiny(directory, config.weights)
        engine = Engine(model, **options)
        model_id, digest, created = TINY_MODEL_ID, _tiny_digest(TINY_SEED, model.config), int(time.time())
    else:
        from reference_model.prepared import prepare

        prepared = prepare(config.weights, progress=True)  # a bar on a terminal, plain lines in a log
        engine = Engine(prepared, **options)
        model_id, digest, created = REFERENCE_MODEL_ID, prepared.manifest.gguf_sha256, REFERENCE_MODEL_CREATED
    info = ModelInfo(id=model_id, context_length=engine.context_length, vocab_size=engine.config.vocab_size,
                     weights=config.weights, digest=digest, provider=engine.provider,
                     created=created, max_batch=config.max_batch)
    generator = make_generator(engine, tokenizer, max_batch=config.max_batch)
    return EngineBackend(generator, info, tokenizer, template, max_queue=config.max_queue)
