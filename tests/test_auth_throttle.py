"""Tests for postoffice.auth.throttle: per-client failure delays, without sleeping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.auth.throttle import FailureThrottle, client_key
from postoffice.config.schema import AuthConfig
from postoffice.testing.clock import FakeClock


def throttle(**kw: float) -> tuple[FailureThrottle, FakeClock]:
    clock = FakeClock()
    return FailureThrottle(clock=clock, **kw), clock  # type: ignore[arg-type]


def test_delay_doubles_up_to_the_cap() -> None:
    t, _ = throttle()
    assert t.delay_for("192.0.2.1") == 0.0
    assert [t.failed("192.0.2.1") for _ in range(6)] == [2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert t.delay_for("192.0.2.1") == 15.0
    assert t.delay_for("192.0.2.2") == 0.0


def test_success_resets() -> None:
    t, _ = throttle()
    t.failed("192.0.2.1")
    t.failed("192.0.2.1")
    t.succeeded("192.0.2.1")
    assert t.delay_for("192.0.2.1") == 0.0
    assert t.failed("192.0.2.1") == 2.0
    t.succeeded("198.51.100.9")  # unknown: nothing happens


def test_old_failures_are_forgotten() -> None:
    t, clock = throttle(forget_after=600.0)
    t.failed("192.0.2.1")
    t.failed("192.0.2.1")
    clock.advance(599)
    assert t.delay_for("192.0.2.1") == 4.0
    assert t.failed("192.0.2.1") == 8.0  # refreshes the memory
    clock.advance(600)
    assert t.delay_for("192.0.2.1") == 0.0
    assert t.failed("192.0.2.1") == 2.0


def test_memory_is_bounded_lru() -> None:
    t, _ = throttle(max_entries=3)
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        t.failed(ip)
    t.failed("192.0.2.1")  # most recently seen now
    t.failed("192.0.2.4")  # evicts 192.0.2.2, the least recently seen
    assert t.delay_for("192.0.2.2") == 0.0
    assert t.delay_for("192.0.2.1") == 4.0
    assert t.delay_for("192.0.2.3") == 2.0
    assert t.statistics() == {"clients": 3, "failed": 5, "evicted": 1}


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    t, _ = throttle()
    t.failed("2001:db8:1:2::1")
    assert t.failed("2001:db8:1:2:ffff::9") == 4.0
    assert t.delay_for("2001:db8:1:3::1") == 0.0
    t.failed("::ffff:192.0.2.7")
    assert t.delay_for("192.0.2.7") == 2.0
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("/run/socket") == "/run/socket"


def test_from_config_and_zero_delay() -> None:
    clock = FakeClock()
    t = FailureThrottle.from_config(
        AuthConfig(failure_delay=1.0, max_failure_delay=3.0), clock=clock
    )
    assert [t.failed("x") for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    off, _ = throttle(base=0.0, cap=0.0)
    assert off.failed("x") == 0.0


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        FailureThrottle(base=-1.0)
    with pytest.raises(ValueError):
        FailureThrottle(max_entries=0)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 500))
def test_delay_never_exceeds_cap(n: int) -> None:
    t, _ = throttle(base=0.5, cap=10.0)
    delays = [t.failed("192.0.2.1") for _ in range(n)]
    assert all(0.5 <= d <= 10.0 for d in delays)
    assert delays == sorted(delays)
