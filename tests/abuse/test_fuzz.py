"""A seeded run of about 1,200 malformed or extreme requests (bodies.py): no 5xx, no dropped connection.

The server runs under a memory cap (harness.py) so that a regression fails here instead of taking
the machine. bench/abuse.py runs 10,000 of them and prints the status counts.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.abuse.bodies import abuse_requests
from tests.abuse.harness import MockProcess
from tests.abuse.runner import run_all

SEED = 20261202
COUNT = 1200


@pytest.fixture(scope="module")
def target() -> Iterator[MockProcess]:
    """An open server, its response cache off (so that valid mutations really generate)."""
    with MockProcess("--cache-size", "0") as server:
        yield server


def test_the_generator_is_seeded() -> None:
    first = [r.body for r in abuse_requests(7, 50)]
    assert first == [r.body for r in abuse_requests(7, 50)]
    assert first != [r.body for r in abuse_requests(8, 50)]


@pytest.mark.long  # thousands of requests (32 s on a quiet 2-core machine): make test-long and CI
def test_every_abuse_request_gets_a_clear_answer(target: MockProcess) -> None:
    tally = run_all(target.base_url, abuse_requests(SEED, COUNT), workers=3)
    report = tally.table()
    assert not tally.bad, f"{len(tally.bad)} requests got a 5xx or no answer, e.g. " + "; ".join(
        f"{o.request.kind}: {o.status} {o.text[:120]}" for o in tally.bad[:5]) + "\n" + report
    assert sum(tally.statuses.values()) == COUNT
    assert set(tally.statuses) <= {200, 400, 401, 404, 408, 413, 415, 422}, report
    assert target.alive()
    assert httpx.get(target.base_url + "/health", timeout=30).status_code == 200
