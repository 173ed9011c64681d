"""Sending abuse requests to a server and counting what came back: for tests/abuse and bench/abuse.py."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.abuse.bodies import AbuseRequest

CHAT_PATH = "/v1/chat/completions"
STATUS_TRANSPORT_ERROR = 0  # no HTTP answer at all (connection reset, timeout)


@dataclass
class Outcome:
    """What one request got: status (0: no answer), the start of the body, which request."""

    request: AbuseRequest
    status: int
    text: str


@dataclass
class Tally:
    """Status counts overall and per mutation kind, and the answers a server must never give."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    by_kind: dict[str, collections.Counter[int]] = field(default_factory=lambda: collections.defaultdict(
        collections.Counter))
    bad: list[Outcome] = field(default_factory=list)  # 5xx or no answer

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        self.statuses[outcome.status] += 1
        self.by_kind[outcome.request.kind.split(":")[0]][outcome.status] += 1
        if outcome.status >= 500 or outcome.status == STATUS_TRANSPORT_ERROR:
            self.bad.append(outcome)

    def table(self) -> str:
        """The counts as a text table: one row per mutation family, one column per status."""
        statuses = sorted(self.statuses)
        head = f"{'kind':<12}" + "".join(f"{s:>7}" for s in statuses) + f"{'total':>8}"
        rows = [head]
        for kind in sorted(self.by_kind):
            counts = self.by_kind[kind]
            rows.append(f"{kind:<12}" + "".join(f"{counts.get(s, 0):>7}" for s in statuses)
                        + f"{sum(counts.values()):>8}")
        rows.append(f"{'all':<12}" + "".join(f"{self.statuses[s]:>7}" for s in statuses)
                    + f"{sum(self.statuses.values()):>8}")
        return "\n".join(rows)


def send(client: httpx.Client, request: AbuseRequest) -> Outcome:
    """POST one abuse request; status 0 when no HTTP answer came."""
    # As bytes: a header value may hold non-ASCII text, which a client may send as UTF-8.
    headers = {name: value.encode() for name, value in {"Content-Type": "application/json", **request.headers}.items()}
    try:
        response = client.post(CHAT_PATH, content=request.body, headers=headers)
    except httpx.HTTPError as exc:
        return Outcome(request, STATUS_TRANSPORT_ERROR, f"{type(exc).__name__}: {exc}")
    return Outcome(request, response.status_code, response.text[:300])


def run_all(base_url: str, requests: Iterable[AbuseRequest], workers: int = 4,
            timeout_s: float = 120.0) -> Tally:
    """Send every request over `workers` connections; the tally of their answers."""
    tally = Tally()
    with httpx.Client(base_url=base_url, timeout=timeout_s) as client, ThreadPoolExecutor(workers) as pool:
        for outcome in pool.map(lambda r: send(client, r), requests):
            tally.add(outcome)
    return tally
