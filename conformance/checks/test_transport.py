"""Transport checks: every request gets a complete HTTP answer, and kept-alive connections can be reused.

The client records what the transport did during the whole run (`Target.transport`): each request
that got no complete HTTP response was sent once more on a fresh connection; an answered retry is
recorded as recovered, a second failure as a request without an answer. These checks judge that
record, so the plugin runs them after every other check; each also sends a few requests of its own,
so that it observes something when it runs alone. The keep-alive check runs first: a request of
its own that gets no answer is the other check's finding.
"""

from __future__ import annotations

from collections.abc import Callable

from conformance.client import Exchange, NoAnswer, Target
from conformance.registry import clause
from conformance.transport import TRANSPORT_ANSWER, TransportEvent
from conformance.verdicts import NOTE_PROPERTY, Fail, NotApplicable, need

# Malformed JSON: a 4xx answer, after which the connection must still be usable (or closed by saying so).
MALFORMED = b'{"messages": [{"role": "user", "content": "Hi."}'


def _attempts(events: list[TransportEvent], limit: int = 3) -> list[Exchange]:
    """The exchanges of the first `limit` events, every attempt of each."""
    return [ex for event in events[:limit] for ex in event.attempts]


def _keep_alive_probes(target: Target) -> None:
    """Requests sent one after another, so that each but the first can reuse the previous one's connection.

    A request without an answer ends the probing: it is recorded, and judged with the rest of the run.
    """
    fresh = {"x-use-cache": "false"}
    probes: list[Callable[[], Exchange]] = [
        lambda: target.get("/v1/models"),
        lambda: target.chat(target.body(max_tokens=1), headers=fresh),
        lambda: target.chat(raw=MALFORMED),  # an error answer: the connection must survive it, or be closed saying so
        lambda: target.chat(target.body(max_tokens=1), headers=fresh),
    ]
    try:
        for probe in probes:
            probe()
    except NoAnswer:
        pass


@clause("transport.keep-alive.reusable")
def test_keep_alive_reusable(target: Target, record_property: Callable[[str, object], None]) -> None:
    """A request sent on a reused persistent connection is answered, and the server never closes a kept-alive connection without answering the request it read."""
    if not target.unresponsive:
        _keep_alive_probes(target)
    log = target.transport
    drops = [event for event in log.recovered if event.reused]
    if drops:
        raise Fail(f"{len(drops)} request(s) sent on a kept-alive connection got no answer on it, and were answered "
                   "when sent again on a fresh connection", expected="an answer on the reused connection",
                   actual=[event.attempts[0].transport_error for event in drops[:5]], exchanges=_attempts(drops))
    lost_reused = sum(1 for event in log.failures if event.reused)
    need(len(log.failures) < log.requests, "an answered request", root=TRANSPORT_ANSWER, actual=log.describe(),
         exchanges=log.lost_exchanges()[:3])
    if log.reused == 0:
        raise NotApplicable(f"no request went out on a reused connection ({log.describe()}): the target keeps no "
                            "connection alive, so there is nothing to reuse")
    need(log.reused > lost_reused, "an answer to a request sent on a reused connection", root=TRANSPORT_ANSWER,
         actual=log.describe(), exchanges=log.lost_exchanges()[:3])
    record_property(NOTE_PROPERTY, f"{log.reused - lost_reused} requests answered on a reused connection; "
                                   f"{log.describe()}")


@clause("transport.answer.every-request")
def test_every_request_answered(target: Target, record_property: Callable[[str, object], None]) -> None:
    """Every request is answered with a complete HTTP response within the suite's deadline and size limit, on a fresh connection at the latest."""
    if not target.unresponsive:
        try:
            target.chat(target.body(max_tokens=1), headers={"x-use-cache": "false"})
        except NoAnswer:
            pass  # recorded in target.transport: judged below with the rest of the run
    log = target.transport
    if log.failures:
        stopped = f"; {target.unresponsive}: the run stopped sending" if target.unresponsive else ""
        raise Fail(f"{len(log.failures)} of {log.requests} requests got no complete HTTP answer (one without a "
                   f"response was sent again on a fresh connection, in vain){stopped}",
                   expected="a complete HTTP response to every request, within the deadline and the size limit",
                   actual=[event.attempts[-1].transport_error for event in log.failures[:5]],
                   exchanges=_attempts(log.failures))
    unanswered_burst = f"; {log.burst_unanswered} burst requests unanswered (tolerated)" if log.burst_unanswered else ""
    record_property(NOTE_PROPERTY, log.describe() + unanswered_burst)
