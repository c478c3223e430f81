"""The retry schedule: exponential, capped, deterministic jitter, expiry (RFC 5321 §4.5.4.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.config.schema import QueueConfig
from postoffice.queue.backoff import Backoff


def test_doubles_up_to_the_cap() -> None:
    b = Backoff(min_backoff=300, max_backoff=4000, max_lifetime=86400)
    assert [b.delay(n) for n in range(1, 7)] == [300, 600, 1200, 2400, 4000, 4000]
    assert b.delay(0) == 300
    assert b.delay(10_000) == 4000


def test_from_config() -> None:
    b = Backoff.from_config(QueueConfig(min_backoff=60, max_backoff=120, max_lifetime=3600))
    assert (b.min_backoff, b.max_backoff, b.max_lifetime) == (60, 120, 3600)


@given(st.integers(min_value=1, max_value=5000), st.text(max_size=22), st.text(max_size=5))
def test_jitter_is_bounded_and_deterministic(n: int, qid: str, seed: str) -> None:
    b = Backoff(min_backoff=300, max_backoff=14400, jitter=0.2, seed=seed)
    plain = Backoff(min_backoff=300, max_backoff=14400).delay(n)
    d = b.delay(n, qid)
    assert plain * 0.8 <= d <= plain
    assert d == b.delay(n, qid)


def test_jitter_spreads_messages() -> None:
    b = Backoff(jitter=0.1)
    assert len({b.delay(1, f"Q{i}") for i in range(50)}) > 40


def test_next_attempt_never_passes_expiry() -> None:
    b = Backoff(min_backoff=300, max_backoff=14400, max_lifetime=1000)
    assert b.next_attempt(now=100, arrival_time=0, attempts=1) == 400
    assert b.next_attempt(now=900, arrival_time=0, attempts=1) == 1000  # cut to the expiry
    assert b.next_attempt(now=2000, arrival_time=0, attempts=9) == 2000  # expired: now


def test_expired() -> None:
    b = Backoff(max_lifetime=5 * 86400)
    assert not b.expired(arrival_time=0, now=5 * 86400 - 1)
    assert b.expired(arrival_time=0, now=5 * 86400)


@pytest.mark.parametrize(
    "kw",
    [
        {"min_backoff": -1},
        {"min_backoff": 10, "max_backoff": 5},
        {"jitter": 1.0},
        {"max_lifetime": -1},
    ],
)
def test_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kw)  # type: ignore[arg-type]
