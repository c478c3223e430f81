"""dns.py against FakeDnsServer on loopback: MX order, implicit and null MX,
failures, CNAMEs, addresses, literals, the TTL cache on a fake clock, IDNA,
PTR and TXT. No live DNS and no sleeps: a timeout is a server that never
answers and a short resolver timeout."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.config.schema import DnsConfig
from postoffice.dns import (
    DNS_TEMP_FAILURE,
    INVALID_DOMAIN,
    MAX_NEGATIVE_TTL,
    MAX_POSITIVE_TTL,
    NO_ADDRESS,
    NO_MAIL_DOMAIN,
    NO_SUCH_DOMAIN,
    NULL_MX,
    TEMP_FAILURE_TTL,
    DnsError,
    DnsPermFail,
    DnsTempFail,
    MxHost,
    Resolver,
    a_label,
)
from postoffice.errors import ConfigError, PermFail, TempFail
from postoffice.testing.clock import FakeClock
from postoffice.testing.fake_dns import FakeDnsServer, ZoneEntry

FAST = 0.3  # seconds: the resolver timeout where a test waits for a silent server

ZONES: dict[str, ZoneEntry] = {
    "example.org": {
        "MX": [(20, "mx2.example.org"), (10, "mx1.example.org"), (30, "mx3.example.org")]
    },
    "mx1.example.org": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
    "mx2.example.org": {"A": ["192.0.2.2", "192.0.2.3"]},
    "equal.example": {
        "MX": [
            (10, "a.equal.example"),
            (10, "b.equal.example"),
            (10, "c.equal.example"),
            (10, "d.equal.example"),
            (5, "first.equal.example"),
            (20, "last.equal.example"),
        ]
    },
    "dup.example": {"MX": [(20, "mx.dup.example"), (10, "MX.dup.example."), (30, "other.example")]},
    "implicit.example": {"A": ["192.0.2.10"]},
    "implicit6.example": {"AAAA": ["2001:db8::10"]},
    "nothing.example": {"TXT": ["no mail here"]},
    "null.example": {"MX": [(0, ".")]},
    "mixednull.example": {"MX": [(0, "."), (10, "mx1.example.org")]},
    "nx.example": "NXDOMAIN",
    "broken.example": "SERVFAIL",
    "refused.example": "REFUSED",
    "slow.example": "TIMEOUT",
    "alias1.example": {"CNAME": "alias2.example"},
    "alias2.example": {"CNAME": "example.org"},
    "host-alias.example": {"CNAME": "mx1.example.org"},
    "dangling.example": {"CNAME": "nx.example"},
    "loop1.example": {"CNAME": "loop2.example"},
    "loop2.example": {"CNAME": "loop1.example"},
    "dual.example": {
        "A": ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
        "AAAA": ["2001:db8::1", "2001:db8::2", "2001:db8::3"],
    },
    "half.example": {"A": ["192.0.2.8"], "AAAA": "TIMEOUT"},
    "halfbroken.example": {"AAAA": "SERVFAIL", "TXT": ["x"]},
    "bücher.example": {"MX": [(10, "mx.bücher.example")]},
    "mx.bücher.example": {"A": ["192.0.2.77"]},
    "txt.example": {"TXT": ["v=spf1 -all", ("part one, ", "part two"), "z" * 600]},
    "big.example": {"TXT": [f"{i:03d}" + "x" * 200 for i in range(12)]},
    "192.0.2.1": {"PTR": "mx1.example.org"},
    "2001:db8::1": {"PTR": "Six.Example.Org."},
    "192.0.2.9": "SERVFAIL",
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeDnsServer]:
    with FakeDnsServer(ZONES) as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def resolver(server: FakeDnsServer, clock: FakeClock) -> Resolver:
    return server.resolver(timeout=FAST, clock=clock, rng=random.Random(7))


def hosts(mxs: list[MxHost]) -> list[tuple[int, str]]:
    return [(m.preference, m.host) for m in mxs]


# -- MX: RFC 5321 §5.1 ---------------------------------------------------------


async def test_mx_sorted_by_preference(resolver: Resolver) -> None:
    assert await resolver.mx("example.org") == [
        MxHost(preference=10, host="mx1.example.org"),
        MxHost(preference=20, host="mx2.example.org"),
        MxHost(preference=30, host="mx3.example.org"),
    ]


async def test_mx_shuffles_equal_preferences_only(server: FakeDnsServer) -> None:
    orders = set()
    for seed in range(20):
        r = server.resolver(timeout=FAST, rng=random.Random(seed))
        got = hosts(await r.mx("equal.example"))
        assert got[0] == (5, "first.equal.example")
        assert got[-1] == (20, "last.equal.example")
        assert sorted(got[1:5]) == [(10, f"{c}.equal.example") for c in "abcd"]
        orders.add(tuple(got))
        again = server.resolver(timeout=FAST, rng=random.Random(seed))
        assert hosts(await again.mx("equal.example")) == got  # seeded: reproducible
    assert len(orders) > 5


async def test_mx_reshuffles_on_every_call_even_from_the_cache(resolver: Resolver) -> None:
    orders = {tuple(hosts(await resolver.mx("equal.example"))) for _ in range(20)}
    assert len(orders) > 1
    assert resolver.statistics()["queries"] == 1


async def test_mx_duplicate_host_kept_once_at_its_best_preference(resolver: Resolver) -> None:
    assert hosts(await resolver.mx("dup.example")) == [
        (10, "mx.dup.example"),
        (30, "other.example"),
    ]


async def test_implicit_mx_from_a_or_aaaa(resolver: Resolver) -> None:
    for domain in ("implicit.example", "implicit6.example"):
        assert await resolver.mx(domain) == [MxHost(preference=0, host=domain, implicit=True)]


async def test_no_mx_and_no_address_is_permanent(resolver: Resolver) -> None:
    with pytest.raises(DnsPermFail) as info:
        await resolver.mx("nothing.example")
    assert info.value.reply == NO_MAIL_DOMAIN
    assert "nothing.example" in info.value.reason


async def test_null_mx_is_permanent_556_5_1_10(resolver: Resolver) -> None:
    with pytest.raises(DnsPermFail) as info:
        await resolver.mx("null.example")
    assert info.value.reply == NULL_MX
    assert (info.value.reply.code, info.value.reply.enhanced) == (556, "5.1.10")


async def test_null_mx_among_real_ones_is_ignored(resolver: Resolver) -> None:
    assert hosts(await resolver.mx("mixednull.example")) == [(10, "mx1.example.org")]


async def test_nxdomain_is_permanent(resolver: Resolver) -> None:
    with pytest.raises(DnsPermFail) as info:
        await resolver.mx("nx.example")
    assert info.value.reply == NO_SUCH_DOMAIN
    assert isinstance(info.value, PermFail)  # errors.PermFail handlers see it too
    assert "nx.example" in str(info.value)


async def test_unknown_name_is_nxdomain(resolver: Resolver) -> None:
    with pytest.raises(DnsPermFail):
        await resolver.mx("never-heard-of.example")


@pytest.mark.parametrize("domain", ["broken.example", "refused.example"])
async def test_servfail_and_refused_are_temporary(resolver: Resolver, domain: str) -> None:
    with pytest.raises(DnsTempFail) as info:
        await resolver.mx(domain)
    assert info.value.reply == DNS_TEMP_FAILURE
    assert (info.value.reply.code, info.value.reply.enhanced) == (451, "4.4.3")
    assert isinstance(info.value, TempFail)


async def test_timeout_is_temporary_and_bounded(resolver: Resolver) -> None:
    started = time.monotonic()
    with pytest.raises(DnsTempFail) as info:
        await resolver.mx("slow.example")
    assert time.monotonic() - started < FAST + 2.0  # one timeout covers every retry
    assert "timed out" in info.value.reason


# -- CNAME ---------------------------------------------------------------------


async def test_cname_chain_followed_for_mx(resolver: Resolver) -> None:
    assert hosts(await resolver.mx("alias1.example"))[0] == (10, "mx1.example.org")


async def test_cname_followed_for_addresses(resolver: Resolver) -> None:
    assert await resolver.addresses("host-alias.example") == ["::1", "127.0.0.1"]


async def test_cname_to_nxdomain_is_permanent(resolver: Resolver) -> None:
    with pytest.raises(DnsPermFail):
        await resolver.mx("dangling.example")


async def test_cname_loop_is_temporary(resolver: Resolver) -> None:
    with pytest.raises(DnsTempFail):
        await resolver.mx("loop1.example")


# -- addresses -------------------------------------------------------------------


async def test_addresses_ipv6_first_then_ipv4_each_shuffled(server: FakeDnsServer) -> None:
    seen = set()
    for seed in range(10):
        got = await server.resolver(timeout=FAST, rng=random.Random(seed)).addresses("dual.example")
        assert sorted(got[:3]) == ["2001:db8::1", "2001:db8::2", "2001:db8::3"]
        assert sorted(got[3:]) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        seen.add(tuple(got))
    assert len(seen) > 1


async def test_addresses_ipv4_only(resolver: Resolver) -> None:
    assert sorted(await resolver.addresses("mx2.example.org")) == ["192.0.2.2", "192.0.2.3"]


async def test_addresses_partial_when_one_family_times_out(resolver: Resolver) -> None:
    assert await resolver.addresses("half.example") == ["192.0.2.8"]


async def test_addresses_temporary_when_nothing_found_and_one_family_failed(
    resolver: Resolver,
) -> None:
    with pytest.raises(DnsTempFail):
        await resolver.addresses("halfbroken.example")


async def test_addresses_none_is_permanent_5_4_4(resolver: Resolver) -> None:
    for host in ("nothing.example", "nx.example"):
        with pytest.raises(DnsPermFail) as info:
            await resolver.addresses(host)
        assert info.value.reply == NO_ADDRESS


async def test_addresses_servfail_is_temporary(resolver: Resolver) -> None:
    with pytest.raises(DnsTempFail):
        await resolver.addresses("broken.example")


@pytest.mark.parametrize(
    ("literal", "address"),
    [
        ("[192.0.2.1]", "192.0.2.1"),
        ("[010.000.000.001]", "10.0.0.1"),
        ("[IPv6:2001:DB8::1]", "2001:db8::1"),
        ("[ipv6:::1]", "::1"),
        ("192.0.2.5", "192.0.2.5"),
        ("2001:db8:0::5", "2001:db8::5"),
    ],
)
async def test_literals_need_no_query(literal: str, address: str, clock: FakeClock) -> None:
    with FakeDnsServer({}) as srv:
        r = srv.resolver(timeout=FAST, clock=clock)
        assert await r.addresses(literal) == [address]
        if literal.startswith("["):
            (mx,) = await r.mx(literal)
            assert mx.implicit and mx.preference == 0
            assert await r.addresses(mx.host) == [address]
        assert srv.queries == []


async def test_mx_of_literal_is_canonical() -> None:
    r = Resolver(nameservers=["127.0.0.1:9"])  # never asked
    assert hosts(await r.mx("[IPv6:2001:db8:0:0::1]")) == [(0, "[IPv6:2001:db8::1]")]
    assert hosts(await r.mx("[010.0.0.1]")) == [(0, "[10.0.0.1]")]


@pytest.mark.parametrize(
    "bad",
    ["[300.1.1.1]", "[1.2.3]", "[1.2.3.4", "[IPv6:zz::1]", "[IPv6:fe80::1%eth0]", "[]", "[x]"],
)
async def test_bad_literals_are_permanent(bad: str) -> None:
    r = Resolver(nameservers=["127.0.0.1:9"])
    with pytest.raises(DnsPermFail) as info:
        await r.addresses(bad)
    assert info.value.reply == INVALID_DOMAIN
    with pytest.raises(DnsPermFail):
        await r.mx(bad)


# -- names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["", ".", "@", "a..b", "x" * 64 + ".example", ".".join(["abcdefgh"] * 32), "-\udcff"]
)
async def test_impossible_names_are_permanent_without_a_query(bad: str) -> None:
    with FakeDnsServer({}) as srv:
        r = srv.resolver(timeout=FAST)
        with pytest.raises(DnsPermFail) as info:
            await r.mx(bad)
        assert info.value.reply == INVALID_DOMAIN
        with pytest.raises(DnsPermFail):
            await r.txt(bad)
        assert srv.queries == []


async def test_idna_domain_queried_as_a_labels(server: FakeDnsServer) -> None:
    r = server.resolver(timeout=FAST)
    assert hosts(await r.mx("Bücher.example")) == [(10, "mx.xn--bcher-kva.example")]
    assert await r.addresses("mx.bücher.example") == ["192.0.2.77"]
    assert ("xn--bcher-kva.example", "MX") in server.queries
    assert a_label("BÜCHER.Example.") == "xn--bcher-kva.example"


async def test_names_are_case_insensitive_with_or_without_final_dot(resolver: Resolver) -> None:
    first = await resolver.mx("EXAMPLE.org.")
    assert await resolver.mx("example.ORG") == first
    assert resolver.statistics()["queries"] == 1


# -- the cache -------------------------------------------------------------------


async def test_cache_hit_until_ttl_expires(clock: FakeClock) -> None:
    zones = {"ttl.example": {"MX": [(10, "mx1.example.org")], "TTL": 60}}
    with FakeDnsServer(zones) as srv:
        r = srv.resolver(timeout=FAST, clock=clock)
        await r.mx("ttl.example")
        clock.advance(59)
        await r.mx("ttl.example")
        assert srv.queries == [("ttl.example", "MX")]
        assert r.statistics()["cache_hits"] == 1
        srv.set("ttl.example", {"MX": [(5, "new.example.org")]})
        clock.advance(2)
        assert hosts(await r.mx("ttl.example")) == [(5, "new.example.org")]
        assert len(srv.queries) == 2


async def test_positive_ttl_capped_at_an_hour(clock: FakeClock) -> None:
    with FakeDnsServer({"long.example": {"A": ["192.0.2.1"], "AAAA": ["::1"]}}, ttl=86400) as srv:
        r = srv.resolver(timeout=FAST, clock=clock)
        await r.addresses("long.example")
        clock.advance(MAX_POSITIVE_TTL - 1)
        await r.addresses("long.example")
        assert len(srv.queries) == 2  # AAAA and A, once
        clock.advance(2)
        await r.addresses("long.example")
        assert len(srv.queries) == 4


async def test_cname_chain_cached_for_its_shortest_ttl(clock: FakeClock) -> None:
    zones = {
        "short.example": {"CNAME": "long.example", "TTL": 30},
        "long.example": {"TXT": ["hello"], "TTL": 600},
    }
    with FakeDnsServer(zones) as srv:
        r = srv.resolver(timeout=FAST, clock=clock)
        assert await r.txt("short.example") == ["hello"]
        clock.advance(29)
        await r.txt("short.example")
        assert len(srv.queries) == 1
        clock.advance(2)
        await r.txt("short.example")
        assert len(srv.queries) == 2


async def test_nxdomain_cached_by_soa_minimum(clock: FakeClock) -> None:
    with FakeDnsServer({}, negative_ttl=120) as srv:
        r = srv.resolver(timeout=FAST, clock=clock)
        for _ in range(3):
            with pytest.raises(DnsPermFail):
                await r.mx("later.example")
        assert len(srv.queries) == 1
        stats = r.statistics()
        assert (stats["queries"], stats["cache_hits"], stats["perm_failures"]) == (1, 2, 1)
        srv.set("later.example", {"MX": [(10, "mx1.example.org")]})
        clock.advance(119)
        with pytest.raises(DnsPermFail):
            await r.mx("later.example")
        clock.advance(2)
        assert hosts(await r.mx("later.example")) == [(10, "mx1.example.org")]


async def test_nodata_cached_by_soa_minimum(clock: FakeClock) -> None:
    with FakeDnsServer({"nodata.example": {"A": ["192.0.2.1"]}}, negative_ttl=50) as srv:
        r = srv.resolver(timeout=FAST, clock=clock)
        assert await r.txt("nodata.example") == []
        clock.advance(49)
        assert await r.txt("nodata.example") == []
        assert len(srv.queries) == 1
        clock.advance(2)
        await r.txt("nodata.example")
        assert len(srv.queries) == 2


async def test_negative_ttl_capped_at_an_hour(clock: FakeClock) -> None:
    with FakeDnsServer({}, negative_ttl=86400) as srv:
        r = srv.resolver(timeout=FAST, clock=clock)
        with pytest.raises(DnsPermFail):
            await r.txt("gone.example")
        clock.advance(MAX_NEGATIVE_TTL + 1)
        with pytest.raises(DnsPermFail):
            await r.txt("gone.example")
        assert len(srv.queries) == 2


async def test_servfail_cached_briefly(clock: FakeClock) -> None:
    with FakeDnsServer({"flaky.example": "SERVFAIL"}) as srv:
        r = srv.resolver(timeout=FAST, clock=clock)
        for _ in range(2):
            with pytest.raises(DnsTempFail):
                await r.mx("flaky.example")
        assert len(srv.queries) == 1
        assert r.statistics()["temp_failures"] == 1
        srv.set("flaky.example", {"MX": [(10, "mx1.example.org")]})
        clock.advance(TEMP_FAILURE_TTL + 1)
        assert hosts(await r.mx("flaky.example")) == [(10, "mx1.example.org")]


async def test_timeout_cached_briefly(server: FakeDnsServer, clock: FakeClock) -> None:
    r = server.resolver(timeout=FAST, clock=clock)
    with pytest.raises(DnsTempFail):
        await r.txt("slow.example")
    started = time.monotonic()
    with pytest.raises(DnsTempFail):
        await r.txt("slow.example")
    assert time.monotonic() - started < FAST  # answered from the cache
    assert r.statistics()["queries"] == 1


async def test_cache_bounded_least_recently_used_first(server: FakeDnsServer) -> None:
    r = server.resolver(timeout=FAST, cache_size=2, clock=FakeClock())
    for name in ("example.org", "equal.example", "example.org", "dup.example"):
        await r.mx(name)
    stats = r.statistics()
    assert stats["cache_entries"] == 2
    assert (stats["queries"], stats["cache_hits"]) == (3, 1)
    await r.mx("example.org")  # kept: recently used
    await r.mx("equal.example")  # dropped: asked again
    assert r.statistics()["queries"] == 4


async def test_cache_size_zero_disables_the_cache(server: FakeDnsServer) -> None:
    r = server.resolver(timeout=FAST, cache_size=0)
    await r.mx("example.org")
    await r.mx("example.org")
    assert r.statistics() == {
        "queries": 2, "cache_hits": 0, "temp_failures": 0, "perm_failures": 0, "cache_entries": 0
    }  # fmt: skip


async def test_concurrent_identical_questions_share_one_query(server: FakeDnsServer) -> None:
    r = server.resolver(timeout=FAST, cache_size=0)
    results = await asyncio.gather(*(r.mx("example.org") for _ in range(5)))
    assert all(hosts(x) == hosts(results[0]) for x in results)
    assert r.statistics()["queries"] == 1


async def test_clear_cache(resolver: Resolver) -> None:
    await resolver.mx("example.org")
    resolver.clear_cache()
    await resolver.mx("example.org")
    assert resolver.statistics()["queries"] == 2


# -- PTR and TXT -----------------------------------------------------------------


async def test_ptr(resolver: Resolver) -> None:
    assert await resolver.ptr("192.0.2.1") == "mx1.example.org"
    assert await resolver.ptr("::ffff:192.0.2.1") == "mx1.example.org"
    assert await resolver.ptr("2001:db8::1") == "six.example.org"


@pytest.mark.parametrize("ip", ["192.0.2.200", "192.0.2.9", "not an ip", "", "[192.0.2.1]"])
async def test_ptr_none_on_any_failure(resolver: Resolver, ip: str) -> None:
    assert await resolver.ptr(ip) is None


async def test_txt(resolver: Resolver) -> None:
    assert sorted(await resolver.txt("txt.example")) == [
        "part one, part two",
        "v=spf1 -all",
        "z" * 600,
    ]
    assert await resolver.txt("mx1.example.org") == []
    with pytest.raises(DnsPermFail):
        await resolver.txt("nx.example")
    with pytest.raises(DnsTempFail):
        await resolver.txt("broken.example")


async def test_large_answer_retried_over_tcp(resolver: Resolver, server: FakeDnsServer) -> None:
    before = server.queries.count(("big.example", "TXT"))
    got = await resolver.txt("big.example")
    assert sorted(got) == [f"{i:03d}" + "x" * 200 for i in range(12)]
    assert server.queries.count(("big.example", "TXT")) == before + 2  # UDP (TC), then TCP


# -- configuration -----------------------------------------------------------------


async def test_from_config(server: FakeDnsServer) -> None:
    r = Resolver.from_config(DnsConfig(nameservers=(server.address,), timeout=FAST, cache_size=5))
    assert hosts(await r.mx("example.org"))[0] == (10, "mx1.example.org")


@pytest.mark.parametrize(
    "ns", ["127.0.0.1", "127.0.0.1:5353", "::1", "[::1]", "[::1]:5353", "[2001:db8::1]:53"]
)
def test_nameserver_forms(ns: str) -> None:
    Resolver(nameservers=[ns])


@pytest.mark.parametrize(
    "ns", ["", "localhost", "127.0.0.1:0", "127.0.0.1:70000", "[::1", "[::1]x", "1.2.3.4:x"]
)
def test_bad_nameserver_is_a_config_error(ns: str) -> None:
    with pytest.raises(ConfigError) as info:
        Resolver(nameservers=[ns])
    assert info.value.key == "dns.nameservers"


def test_bad_timeout_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Resolver(timeout=0)


def test_default_nameservers_from_the_system() -> None:
    Resolver()  # reads /etc/resolv.conf (or falls back to 127.0.0.1); asks nothing


def test_error_classes() -> None:
    assert issubclass(DnsTempFail, DnsError) and issubclass(DnsPermFail, DnsError)
    assert issubclass(DnsTempFail, TempFail) and issubclass(DnsPermFail, PermFail)
    assert not issubclass(DnsTempFail, PermFail)
    err = DnsPermFail("x.example/MX: no such domain")
    assert (err.reason, err.reply, str(err)) == (
        "x.example/MX: no such domain",
        NO_SUCH_DOMAIN,
        err.reason,
    )


# -- fuzzing ---------------------------------------------------------------------


def test_arbitrary_names_raise_only_dns_errors() -> None:
    with FakeDnsServer(ZONES) as srv:
        r = srv.resolver(timeout=FAST)

        async def every_lookup(text: str) -> None:
            for lookup in (r.mx, r.addresses, r.txt):
                try:
                    await lookup(text)
                except DnsError:
                    pass
            await r.ptr(text)

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            st.one_of(
                st.text(max_size=80),
                st.from_regex(r"\A[a-z0-9\[\]:.\-]{0,40}\Z"),
                st.sampled_from(sorted(ZONES)).map(lambda n: n.upper() + "."),
            )
        )
        def check(text: str) -> None:
            asyncio.run(every_lookup(text))

        check()
        assert srv.errors == []
