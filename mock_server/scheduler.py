"""Continuous batching off the event loop: one worker thread drives the BatchGenerator.

Requests arrive as `Ticket`s (one GenerationRequest per choice). The worker admits them
(`BatchGenerator.add`, which validates before any work), runs `step()` while anything is active,
and hands each request's events to its ticket's asyncio queue through
`loop.call_soon_threadsafe`. A cancelled ticket (client gone) has its requests cancelled at the
worker's next turn, before the next step. The number of requests not yet finished is bounded
(batch slots + queue): beyond it `submit` raises `Overloaded` (429 with Retry-After).

Generator contract (reference_model.generation): add / cancel / step / has_work / running /
waiting; events are TokenEvent or Finished, exactly one Finished per request, last.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mock_server.engine_errors import api_error
from mock_server.errors import ApiError, GenerationFailed, InternalError, Overloaded
from reference_model.errors import ReferenceModelError, RequestError
from reference_model.generation import Event, Finished, GenerationRequest
from reference_model.generation import GenerationFailed as StepFailed

log = logging.getLogger("mock_server.scheduler")


class Generator(Protocol):
    """What the scheduler needs of reference_model.generation.BatchGenerator."""

    def add(self, request: GenerationRequest) -> int: ...
    def cancel(self, rid: int) -> None: ...
    def step(self) -> dict[int, list[Event]]: ...
    def has_work(self) -> bool: ...
    @property
    def running(self) -> int: ...
    @property
    def waiting(self) -> int: ...


@dataclass(frozen=True)
class Admitted:
    """Queue item: every request of the ticket was accepted by the generator."""


@dataclass(frozen=True)
class ChoiceEvent:
    """Queue item: one event of choice `index`."""

    index: int
    event: Event  # TokenEvent | Finished


TicketItem = Admitted | ChoiceEvent  # what a ticket yields; an ApiError in its queue is raised instead


# A generator's refusal of a request as the answer's error (it names the request's own fields).
Describe = Callable[[RequestError], ApiError]


def admission_error(exc: ReferenceModelError, describe: Describe = api_error) -> ApiError:
    """The answer to the generator's refusal: a 422 naming the field, or a 500 for a refusal that is a bug."""
    if isinstance(exc, RequestError):
        return describe(exc)
    return InternalError(f"the generator refused the request: {type(exc).__name__}: {exc}")


class Ticket:
    """One HTTP request's generations: an async stream of Admitted, ChoiceEvent, or an ApiError."""

    def __init__(self, scheduler: Scheduler, requests: Sequence[GenerationRequest],
                 loop: asyncio.AbstractEventLoop, describe: Describe = api_error) -> None:
        self.requests = tuple(requests)
        self.describe = describe  # how a refusal of these requests is told to their client
        self.queue: asyncio.Queue[TicketItem | ApiError] = asyncio.Queue()
        self._scheduler = scheduler
        self._loop = loop
        self.rids: list[int] = []
        self.remaining = len(self.requests)
        self.closed = False

    def deliver(self, item: TicketItem | ApiError) -> None:
        """Worker side: hand an item to the event loop (dropped if the loop is gone)."""
        try:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:
            pass

    async def next(self, timeout: float | None = None) -> TicketItem:
        """The next item; an ApiError item is raised; TimeoutError when none comes within `timeout` seconds."""
        if timeout is None or not self.queue.empty():
            item = await self.queue.get()
        else:  # a cancelled get leaves the queue as it was: no item is lost
            item = await asyncio.wait_for(self.queue.get(), timeout)
        if isinstance(item, ApiError):
            self.closed = True
            raise item
        return item

    def cancel(self) -> None:
        """Stop this ticket's generations at the next step (idempotent; no-op once finished)."""
        if not self.closed:
            self.closed = True
            self._scheduler.cancel(self)


class Scheduler:
    """Owns the generator and its worker thread."""

    def __init__(self, generator: Generator, *, max_batch: int, max_queue: int) -> None:
        self.generator = generator
        self.capacity = max_batch + max_queue
        self._cond = threading.Condition()
        self._inbox: list[Ticket] = []
        self._cancels: list[Ticket] = []
        self._active: dict[int, tuple[Ticket, int]] = {}  # rid -> (ticket, choice index)
        self._outstanding = 0  # requests submitted and not finished or cancelled
        self._stopping = False
        self.steps = 0
        self.tokens = 0
        self.cancels_requested = 0  # tickets cancelled before they finished (client gone, error)
        self._thread = threading.Thread(target=self._run, name="mock-scheduler", daemon=True)
        self._thread.start()

    # ---- event-loop side ---------------------------------------------------------------------

    def submit(self, requests: Sequence[GenerationRequest], describe: Describe = api_error) -> Ticket:
        """Queue the requests of one HTTP request; raises Overloaded when the bound would be passed.

        describe: the error a refusal of these requests becomes (it names the request's own fields).
        """
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._stopping:
                raise GenerationFailed("the server is shutting down")
            if self._outstanding + len(requests) > self.capacity:
                raise Overloaded(f"Model is overloaded: {self._outstanding} requests in progress, the limit is "
                                 f"{self.capacity}; retry later", retry_after=1)
            ticket = Ticket(self, requests, loop, describe)
            self._outstanding += len(requests)
            self._inbox.append(ticket)
            self._cond.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Ask the worker to cancel a ticket's requests."""
        with self._cond:
            self.cancels_requested += 1
            self._cancels.append(ticket)
            self._cond.notify()

    @property
    def outstanding(self) -> int:
        """Requests submitted and not yet finished or cancelled."""
        with self._cond:
            return self._outstanding

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (pending tickets get an error)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    # ---- worker side ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._inbox or self._cancels or self._stopping or self.generator.has_work()):
                    self._cond.wait()
                if self._stopping:
                    self._fail_all(GenerationFailed("the server is shutting down"), self._inbox)
                    return
                inbox, self._inbox = self._inbox, []
                cancels, self._cancels = self._cancels, []
            for ticket in cancels:
                self._drop(ticket)
            for ticket in inbox:
                self._admit(ticket)
            if self.generator.has_work():
                self._step()

    def _release(self, count: int) -> None:
        with self._cond:
            self._outstanding -= count

    def _drop(self, ticket: Ticket) -> None:
        for rid in ticket.rids:
            if rid in self._active:
                del self._active[rid]
                try:
                    self.generator.cancel(rid)
                except ReferenceModelError:
                    log.debug("cancel of request %s refused", rid, exc_info=True)
                self._release(1)
        ticket.rids = []

    def _admit(self, ticket: Ticket) -> None:
        if ticket.closed:  # cancelled before the worker saw it
            self._release(len(ticket.requests))
            return
        added: list[int] = []
        try:
            for index, request in enumerate(ticket.requests):
                rid = self.generator.add(request)
                added.append(rid)
                self._active[rid] = (ticket, index)
        except ReferenceModelError as exc:
            ticket.rids = added
            self._drop(ticket)
            self._release(len(ticket.requests) - len(added))
            ticket.deliver(admission_error(exc, ticket.describe))
            return
        except Exception as exc:  # a bug: report it to this client, keep serving the others
            log.exception("generator.add failed")
            ticket.rids = added
            self._drop(ticket)
            self._release(len(ticket.requests) - len(added))
            ticket.deliver(InternalError(f"the generator failed to admit the request: {type(exc).__name__}"))
            return
        ticket.rids = added
        ticket.deliver(Admitted())

    def _step(self) -> None:
        try:
            out = self.generator.step()
        except StepFailed as exc:
            # Only the named requests broke; the others' events come with the next step.
            log.error("generation failed for requests %s: %s", exc.request_ids, exc)
            error = GenerationFailed(f"Request failed during generation: {exc}")
            for rid in exc.request_ids:
                entry = self._active.get(rid)
                if entry is not None:
                    self._drop(entry[0])
                    entry[0].deliver(error)
            return
        except Exception as exc:
            log.exception("generator.step failed")
            error = GenerationFailed(f"Request failed during generation: {type(exc).__name__}: {exc}")
            tickets = {t for t, _ in self._active.values()}
            for ticket in tickets:
                self._drop(ticket)
                ticket.deliver(error)
            return
        self.steps += 1
        for rid, events in out.items():
            entry = self._active.get(rid)
            if entry is None:
                continue  # cancelled meanwhile
            ticket, index = entry
            for event in events:
                if not isinstance(event, Finished):
                    self.tokens += 1
                ticket.deliver(ChoiceEvent(index, event))
                if isinstance(event, Finished):
                    del self._active[rid]
                    self._release(1)

    def _fail_all(self, error: ApiError, inbox: list[Ticket]) -> None:
        for ticket in {t for t, _ in self._active.values()} | set(inbox):
            ticket.deliver(error)
        self._active.clear()
