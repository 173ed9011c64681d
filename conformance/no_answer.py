"""Requests that got no HTTP answer: evidence for transport.answer.every-request, never judged as a status.

The client marks such an exchange with status 0 (a timeout or a dropped connection); the client
may also raise `NoAnswer`, a NotExercised whose root is transport.answer.every-request, once a
retry on a fresh connection got no answer either. A check that judges statuses (errors.*, fuzz.*)
must neither count "0" as the server's status nor let one lost request hide the others: it sends
through `answered`, judges the answered exchanges, and reports the unanswered ones through
`raise_unanswered` (NOT_EXERCISED, rooted in the transport clause that judges them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from conformance.exchange import Exchange
from conformance.transport import TRANSPORT_ANSWER
from conformance.verdicts import NotExercised

TRANSPORT_ROOT = TRANSPORT_ANSWER


def answered(call: Callable[[], Exchange]) -> Exchange:
    """call(); a request that got no answer comes back as its status-0 exchange instead of raising."""
    try:
        return call()
    except NotExercised as exc:
        if exc.root != TRANSPORT_ROOT or not exc.exchanges:
            raise
        return exc.exchanges[-1]


def unanswered(ex: Exchange) -> bool:
    """True when the request got no HTTP answer at all (status 0: timeout, reset, closed connection)."""
    return ex.status == 0


def raise_unanswered(exchanges: Sequence[Exchange], what: str) -> None:
    """NotExercised rooted in transport.answer.every-request when any of the exchanges got no answer."""
    lost = [ex for ex in exchanges if unanswered(ex)]
    if lost:
        raise NotExercised(f"{len(lost)} of {len(exchanges)} {what} got no HTTP answer "
                           f"({lost[0].body_text[:160]}); they are judged by {TRANSPORT_ROOT}, not as a status",
                           root=TRANSPORT_ROOT, actual=[ex.body_text[:160] for ex in lost[:5]], exchanges=lost[:3])


__all__ = ["TRANSPORT_ROOT", "answered", "raise_unanswered", "unanswered"]
