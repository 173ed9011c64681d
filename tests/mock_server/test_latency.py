"""Latency profiles: the schedule drawn from a seed, its bounds, and the server applying it (read from its log).

No wall-clock asserts: the server logs every delay it adds (debug, `mock_server.latency`), and the
tests compare those with the schedule the profile draws.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mock_server.backend import EngineBackend
from mock_server.cli import add_arguments
from mock_server.config import ConfigError, load_config
from mock_server.latency import (
    MAX_ITL_S,
    MAX_TTFT_S,
    NO_LATENCY,
    PRESETS,
    LatencyError,
    LatencyProfile,
    parse_profile,
)
from mock_server.server import ServerThread
from tests.mock_server.conftest import chat_body, stream_chunks, tiny_config

HEADER = "x-mock-latency"
LOGGER = "mock_server.latency"
PROFILE = "ttft=0.2,itl=0.01,jitter=0.5,seed=7"  # small: the tests wait it out


# --- the schedule ------------------------------------------------------------------------------------------

def test_schedule_is_reproducible_from_its_seed() -> None:
    profile = parse_profile(PROFILE)
    delays = profile.schedule(None).take(6)
    assert delays == profile.schedule(12345).take(6)  # the profile's seed wins over the request's
    assert delays != parse_profile("ttft=0.2,itl=0.01,jitter=0.5,seed=8").schedule(None).take(6)
    # Pinned, so that a change of the drawing (which would change every user's replayed timings) is noticed.
    assert [round(d, 6) for d in delays] == [0.164767, 0.006508, 0.011509, 0.005724, 0.010359, 0.008657]


def test_schedule_bounds_and_jitter() -> None:
    profile = LatencyProfile(ttft=2.0, itl=0.1, jitter=0.3)
    delays = profile.schedule(5).take(200)
    assert 2.0 * 0.7 <= delays[0] <= 2.0 * 1.3
    assert all(0.1 * 0.7 <= d <= 0.1 * 1.3 for d in delays[1:])
    assert len(set(delays[1:])) > 150  # jittered
    assert LatencyProfile(ttft=2.0, itl=0.1).schedule(5).take(4) == [2.0, 0.1, 0.1, 0.1]  # no jitter: exact
    full = LatencyProfile(ttft=1.0, itl=1.0, jitter=1.0).schedule(0).take(500)
    assert all(0.0 <= d <= 2.0 for d in full)


def test_seed_falls_back_to_the_request_then_zero() -> None:
    profile = LatencyProfile(ttft=1.0, itl=0.1, jitter=0.5)
    assert profile.schedule(3).take(5) == LatencyProfile(ttft=1.0, itl=0.1, jitter=0.5, seed=3).schedule(None).take(5)
    assert profile.schedule(None).take(5) == profile.schedule(0).take(5)
    assert profile.schedule(3).take(5) != profile.schedule(4).take(5)


def test_presets_and_overrides() -> None:
    assert parse_profile("none") == NO_LATENCY and NO_LATENCY.off
    assert parse_profile("typical") == LatencyProfile(ttft=0.5, itl=0.03, jitter=0.3)
    assert parse_profile("Mobile, seed=3") == LatencyProfile(ttft=1.2, itl=0.08, jitter=0.6, seed=3)
    assert parse_profile("slow-ttft,itl=0") == LatencyProfile(ttft=4.0, itl=0.0, jitter=0.3)
    assert set(PRESETS) == {"none", "fast", "typical", "slow-ttft", "mobile"}
    for profile in PRESETS.values():
        assert parse_profile(profile.text()) == profile
    assert parse_profile(PROFILE).text() == PROFILE


@pytest.mark.parametrize(("text", "names"), [
    ("ttft=61", ["ttft", "[0, 60]", "'61'"]),
    ("itl=5.5", ["itl", "[0, 5]", "'5.5'"]),
    ("ttft=-1", ["ttft", "'-1'"]),
    ("ttft=nan", ["ttft", "'nan'"]),
    ("itl=inf", ["itl", "'inf'"]),
    ("itl=fast", ["itl", "'fast'"]),
    ("jitter=1.5", ["jitter", "[0, 1]", "'1.5'"]),
    ("seed=-3", ["seed", "'-3'"]),
    ("seed=1.5", ["seed", "'1.5'"]),
    ("warp", ["'warp'", "fast", "slow-ttft", "ttft="]),
    ("ttft=1,speed=2", ["'speed=2'", "itl="]),
    ("ttft=1,typical", ["'typical'"]),
    ("ttft=1,ttft=2", ["ttft", "twice"]),
])
def test_bad_profiles_name_the_value(text: str, names: list[str]) -> None:
    with pytest.raises(LatencyError) as err:
        parse_profile(text)
    message = str(err.value)
    assert all(name in message for name in names), message
    assert repr(text) in message
    assert MAX_TTFT_S == 60 and MAX_ITL_S == 5


def test_option_and_environment() -> None:
    assert load_config({}, env={}).latency is None
    assert load_config({}, env={"CHATCONFORM_MOCK_LATENCY": "fast"}).latency == "ttft=0.15,itl=0.01,jitter=0.2"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--latency", "ttft=1,seed=2"])
    assert load_config(vars(args), env={"CHATCONFORM_MOCK_LATENCY": "fast"}).latency == "ttft=1,itl=0,jitter=0,seed=2"
    with pytest.raises(ConfigError) as err:
        load_config({"latency": "itl=9"}, env={})
    assert "--latency" in str(err.value) and "'9'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config({}, env={"CHATCONFORM_MOCK_LATENCY": "ttft=70"})
    assert "CHATCONFORM_MOCK_LATENCY" in str(err.value) and "'70'" in str(err.value)


# --- the server applies it ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slowed(tiny_backend: EngineBackend) -> Iterator[ServerThread]:
    """No latency of its own; requests ask for theirs."""
    with ServerThread(tiny_config(keepalive=0), tiny_backend) as srv:
        yield srv


def _logged(caplog: pytest.LogCaptureFixture, answer_id: str) -> list[float]:
    """The delays the server logged for one answer, checked to be numbered 1, 2, ... in order."""
    entries = []
    for record in caplog.records:
        match = re.fullmatch(rf"{answer_id}: latency (\d+): ([\d.]+) s", record.getMessage())
        if record.name == LOGGER and match:
            entries.append((int(match[1]), float(match[2])))
    assert [n for n, _ in entries] == list(range(1, len(entries) + 1))
    return [d for _, d in entries]


def _post(base_url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        return c.post("/v1/chat/completions", json=body, headers=headers)


@pytest.mark.parametrize("stream", [True, False])
def test_server_applies_the_schedule(slowed: ServerThread, caplog: pytest.LogCaptureFixture, stream: bool) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    body = chat_body(max_tokens=5, seed=4, stream=stream, stream_options={"include_usage": True} if stream else None)
    body = {k: v for k, v in body.items() if v is not None}
    r = _post(slowed.base_url, body, {HEADER: PROFILE})
    assert r.status_code == 200, r.text
    if stream:
        chunks = stream_chunks(r.text)
        answer_id, tokens = chunks[0]["id"], chunks[-1]["usage"]["completion_tokens"]
    else:
        answer_id, tokens = r.json()["id"], r.json()["usage"]["completion_tokens"]
    assert tokens == 5
    expected = parse_profile(PROFILE).schedule(None).take(tokens)  # streamed or not: ttft, then itl per token
    assert _logged(caplog, answer_id) == pytest.approx(expected, abs=1e-6)


def test_request_seed_draws_the_jitter(slowed: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    profile = "ttft=0.1,itl=0.01,jitter=0.9"
    r = _post(slowed.base_url, chat_body(max_tokens=3, seed=11), {HEADER: profile})
    assert r.status_code == 200, r.text
    expected = parse_profile(profile).schedule(11).take(3)
    assert _logged(caplog, r.json()["id"]) == pytest.approx(expected, abs=1e-6)


def test_server_option_applies_and_the_header_replaces_it(tiny_backend: EngineBackend,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with ServerThread(tiny_config(keepalive=0, latency="ttft=0.05,itl=0.01,seed=2"), tiny_backend) as srv:
        default = _post(srv.base_url, chat_body(max_tokens=3), {})
        none = _post(srv.base_url, chat_body(max_tokens=3), {HEADER: "none"})
        other = _post(srv.base_url, chat_body(max_tokens=3), {HEADER: "ttft=0.02,itl=0"})
    assert _logged(caplog, default.json()["id"]) == pytest.approx([0.05, 0.01, 0.01], abs=1e-6)
    assert _logged(caplog, none.json()["id"]) == []
    assert _logged(caplog, other.json()["id"]) == pytest.approx([0.02, 0.0, 0.0], abs=1e-6)


@pytest.mark.parametrize("value", ["ttft=61", "itl=9", "jitter=2", "sluggish", "ttft=1,x=2"])
def test_bad_header_is_a_400_naming_it(slowed: ServerThread, value: str) -> None:
    for stream in (True, False):
        r = _post(slowed.base_url, chat_body(max_tokens=2, stream=stream), {HEADER: value})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error.startswith(HEADER + ":") and repr(value) in error
