"""policy/limits on a fake clock: concurrency, connection rate, message rate,
per-rule overrides, IPv6 /64 grouping, bounded memory."""

from __future__ import annotations

from postoffice.policy.limits import (
    CONNECTION_RATE,
    MESSAGE_RATE,
    TOO_MANY_FROM_YOU,
    ConnectionLimits,
    client_key,
)
from postoffice.testing.clock import FakeClock


def test_concurrent_connections() -> None:
    limits = ConnectionLimits(max_connections_per_ip=2)
    for _ in range(2):
        assert limits.allow_connect("192.0.2.1") is None
        limits.connected("192.0.2.1")
    assert limits.allow_connect("192.0.2.1") == TOO_MANY_FROM_YOU
    assert limits.allow_connect("192.0.2.2") is None  # another client
    limits.disconnected("192.0.2.1")
    assert limits.allow_connect("192.0.2.1") is None
    assert TOO_MANY_FROM_YOU.code == 421 and TOO_MANY_FROM_YOU.enhanced == "4.7.0"
    limits.disconnected("192.0.2.1")
    limits.disconnected("192.0.2.1")
    limits.disconnected("192.0.2.1")  # one too many: no negative counts
    assert limits.open_connections("192.0.2.1") == 0
    assert limits.statistics()["clients"] == 0


def test_connection_rate_refills_over_a_minute() -> None:
    clock = FakeClock()
    limits = ConnectionLimits(max_connection_rate=3, clock=clock)
    for _ in range(3):
        assert limits.allow_connect("192.0.2.1") is None
    assert limits.allow_connect("192.0.2.1") == CONNECTION_RATE
    assert limits.allow_connect("192.0.2.1") == CONNECTION_RATE  # refusals take no token
    clock.advance(20)  # 3 per minute: one more every 20 seconds
    assert limits.allow_connect("192.0.2.1") is None
    assert limits.allow_connect("192.0.2.1") == CONNECTION_RATE
    clock.advance(600)
    for _ in range(3):  # never more than the burst, however long the pause
        assert limits.allow_connect("192.0.2.1") is None
    assert limits.allow_connect("192.0.2.1") == CONNECTION_RATE
    assert limits.statistics()["refused_rate"] == 4


def test_messages_per_hour() -> None:
    clock = FakeClock()
    limits = ConnectionLimits(max_messages_per_hour=2, clock=clock)
    assert limits.allow_message("192.0.2.1") is None
    assert limits.allow_message("192.0.2.1") is None
    assert limits.allow_message("192.0.2.1") == MESSAGE_RATE
    assert MESSAGE_RATE.code == 451 and MESSAGE_RATE.enhanced == "4.7.1"
    clock.advance(1800)
    assert limits.allow_message("192.0.2.1") is None
    assert limits.allow_message("192.0.2.1") == MESSAGE_RATE


def test_zero_is_no_limit_and_rules_override() -> None:
    clock = FakeClock()
    limits = ConnectionLimits(max_connections_per_ip=1, max_connection_rate=1, clock=clock)
    assert limits.allow_connect("10.0.0.1") is None
    limits.connected("10.0.0.1")
    assert limits.allow_connect("10.0.0.1") is not None
    for _ in range(50):  # a tcprules MAXCONNIP="0",MAXCONNRATE="0" client
        assert limits.allow_connect("10.0.0.1", max_connections=0, max_rate=0) is None
    assert limits.allow_connect("10.0.0.1", max_connections=5, max_rate=0) is None
    unlimited = ConnectionLimits(clock=clock)
    for _ in range(1000):
        assert unlimited.allow_connect("10.0.0.2") is None
        assert unlimited.allow_message("10.0.0.2") is None


def test_ipv6_clients_count_by_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    limits = ConnectionLimits(max_connections_per_ip=1)
    limits.connected("2001:db8:1:2::1")
    assert limits.allow_connect("2001:db8:1:2::ffff") == TOO_MANY_FROM_YOU
    assert limits.allow_connect("2001:db8:1:3::1") is None


def test_memory_is_bounded() -> None:
    clock = FakeClock()
    limits = ConnectionLimits(max_connection_rate=10, clock=clock, max_clients=100)
    for i in range(5000):
        limits.allow_connect(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert limits.statistics()["rate_buckets"] <= 100
    clock.advance(3600)  # everyone refilled: buckets are dropped as they are seen
    for _ in range(20):
        limits.allow_connect("192.0.2.1")
    assert limits.statistics()["rate_buckets"] < 100


def test_a_clock_stepping_back_refills_nothing() -> None:
    clock = FakeClock()
    limits = ConnectionLimits(max_connection_rate=1, clock=clock)
    assert limits.allow_connect("192.0.2.1") is None
    clock.set(clock.now - 1000)
    assert limits.allow_connect("192.0.2.1") == CONNECTION_RATE
