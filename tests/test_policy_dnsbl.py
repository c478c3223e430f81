"""policy/dnsbl against FakeDnsServer on loopback: listed (with and without
TXT), not listed, failing lists never block, odd answers ignored, IPv6
nibbles, warn mode, RBLSMTPD replies. No live DNS, no sleeps (a timeout is a
silent server and a short resolver timeout)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from postoffice.errors import ConfigError
from postoffice.policy.dnsbl import DnsBlocklist, clean_text, query_name, rblsmtpd_reply
from postoffice.smtp.replies import Reply
from postoffice.testing.fake_dns import FakeDnsServer, ZoneEntry

V6 = "2001:db8::1"
V6_NAME = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"

ZONES: dict[str, ZoneEntry] = {
    # RFC 5782 §5: 127.0.0.2 is the test entry every list carries.
    "2.0.0.127.bl.example": {"A": ["127.0.0.2"], "TXT": ["Listed: see https://bl.example/q?2"]},
    "99.2.0.192.bl.example": {"A": ["127.0.0.4"]},
    "99.2.0.192.second.example": {"A": ["127.0.0.3"], "TXT": ["second says no"]},
    "98.2.0.192.second.example": {"A": ["127.0.0.10"], "TXT": ["only the second\r\n list"]},
    f"{V6_NAME}.bl.example": {"A": ["127.0.0.2"], "TXT": ["v6 listed"]},
    "55.2.0.192.bl.example": {"A": ["192.0.2.200"]},  # a wildcard, not a listing
    "56.2.0.192.bl.example": {"A": ["127.255.255.254"]},  # an error code, not a listing
    "99.2.0.192.broken.example": "SERVFAIL",
    "99.2.0.192.slow.example": "TIMEOUT",
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeDnsServer]:
    with FakeDnsServer(ZONES) as srv:
        yield srv


def test_query_names() -> None:
    assert query_name("192.0.2.99", "bl.example") == "99.2.0.192.bl.example"
    assert query_name("::ffff:192.0.2.99", "bl.example.") == "99.2.0.192.bl.example"
    assert query_name(V6, "bl.example") == f"{V6_NAME}.bl.example"


async def test_loopback_is_never_asked_and_unlisted_is_none(server: FakeDnsServer) -> None:
    bl = DnsBlocklist(server.resolver(timeout=1.0), ["bl.example"])
    listing = await bl.check("127.0.0.2")
    assert listing is None  # loopback is never looked up
    bl_zone = DnsBlocklist(server.resolver(timeout=1.0), ["2.0.0.127.bl.example"])
    assert await bl_zone.check("10.0.0.1") is None  # not listed: NXDOMAIN


async def test_listing_reply_and_reason(server: FakeDnsServer) -> None:
    bl = DnsBlocklist(server.resolver(timeout=1.0), ["bl.example"])
    listing = await bl.check(V6)
    assert listing is not None and listing.enforce
    assert listing.zone == "bl.example" and listing.addresses == ("127.0.0.2",)
    assert listing.reply == Reply.of(
        554, "5.7.1", f"Rejected: {V6} listed at bl.example: v6 listed"
    )
    listing = await bl.check("192.0.2.99")
    assert listing is not None and listing.text == ""
    assert listing.reply.text == "Rejected: 192.0.2.99 listed at bl.example"
    assert listing.reason == "192.0.2.99 listed at bl.example (127.0.0.4)"
    assert await bl.check("192.0.2.1") is None
    assert bl.statistics() == {"checks": 3, "listed": 2, "failures": 0}


async def test_first_zone_in_order_wins(server: FakeDnsServer) -> None:
    bl = DnsBlocklist(server.resolver(timeout=1.0), ["second.example", "bl.example"])
    listing = await bl.check("192.0.2.99")
    assert listing is not None and listing.zone == "second.example"
    assert listing.text == "second says no"
    listing = await bl.check("192.0.2.98")
    assert listing is not None and listing.text == "only the second list"  # cleaned


async def test_failing_lists_never_block(
    server: FakeDnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    bl = DnsBlocklist(server.resolver(timeout=0.3), ["broken.example", "slow.example"])
    with caplog.at_level("WARNING", logger="postoffice.policy"):
        assert await bl.check("192.0.2.99") is None
    assert bl.statistics()["failures"] == 2
    assert "dnsbl broken.example: lookup failed, not blocking 192.0.2.99" in caplog.text
    assert "dnsbl slow.example" in caplog.text


async def test_a_failing_list_does_not_hide_a_listing(server: FakeDnsServer) -> None:
    bl = DnsBlocklist(server.resolver(timeout=0.3), ["broken.example", "bl.example"])
    listing = await bl.check("192.0.2.99")
    assert listing is not None and listing.zone == "bl.example"


async def test_odd_answers_are_not_listings(server: FakeDnsServer) -> None:
    bl = DnsBlocklist(server.resolver(timeout=1.0), ["bl.example"])
    assert await bl.check("192.0.2.55") is None
    assert await bl.check("192.0.2.56") is None


async def test_answers_are_cached(server: FakeDnsServer) -> None:
    resolver = server.resolver(timeout=1.0)
    bl = DnsBlocklist(resolver, ["bl.example"])
    await bl.check("192.0.2.99")
    asked = resolver.statistics()["queries"]
    assert await bl.check("192.0.2.99") is not None
    assert resolver.statistics()["queries"] == asked


async def test_warn_mode(server: FakeDnsServer) -> None:
    bl = DnsBlocklist(server.resolver(timeout=1.0), ["bl.example"], mode="warn")
    listing = await bl.check("192.0.2.99")
    assert listing is not None and not listing.enforce


def test_bad_configuration(server: FakeDnsServer) -> None:
    with pytest.raises(ConfigError, match=r"policy\.dnsbl_mode"):
        DnsBlocklist(server.resolver(), ["bl.example"], mode="maybe")
    with pytest.raises(ConfigError, match=r"policy\.dnsbl_zones"):
        DnsBlocklist(server.resolver(), ["bad..zone"])


def test_rblsmtpd_replies() -> None:
    assert rblsmtpd_reply("-Go away") == Reply.of(553, "5.7.1", "Go away")
    assert rblsmtpd_reply("Busy, later") == Reply.of(451, "4.7.1", "Busy, later")
    assert rblsmtpd_reply("-").text == "Access denied"


def test_clean_text() -> None:
    assert clean_text("a\r\nb\x00c  d") == "a b c d"
    assert len(clean_text("x" * 1000)) == 200
