"""policy/engine: the connect, MAIL and RCPT verdicts, seed 002's access
examples, tcprules settings, limits, blocklists, sender domains, delay_checks
and reverse DNS, against FakeDnsServer (loopback only, no sleeps)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from policy_support import (
    HOSTNAME,
    MAILERTABLE_ERROR,
    connect,
    fake_resolve,
    make_engine,
    rcpt_from,
    user_exists,
    write_map,
)
from postoffice.config.schema import Config, MapsConfig, PolicyConfig, RelayConfig
from postoffice.policy.engine import (
    ClientState,
    Kind,
    PolicyEngine,
    Verdict,
    client_name,
)
from postoffice.policy.limits import ConnectionLimits
from postoffice.policy.relay import normalise_recipient
from postoffice.smtp.replies import Reply
from postoffice.testing.clock import FakeClock
from postoffice.testing.fake_dns import FakeDnsServer, ZoneEntry

ZONES: dict[str, ZoneEntry] = {
    "192.0.2.10": {"PTR": "good.example.net"},
    "good.example.net": {"A": ["192.0.2.10"]},
    "192.0.2.11": {"PTR": "forged.example.net"},
    "forged.example.net": {"A": ["198.51.100.1"]},
    "192.0.2.12": {"PTR": "192.0.2.12"},
    "192.0.2.20": {"PTR": "relay-host.partner.example"},
    "relay-host.partner.example": {"A": ["192.0.2.20"]},
    "2001:db8::10": {"PTR": "six.example.net"},
    "six.example.net": {"AAAA": ["2001:db8::10"]},
    "resolvable.example": {"MX": [(10, "mx.resolvable.example")]},
    "mx.resolvable.example": {"A": ["192.0.2.30"]},
    "broken.example": "SERVFAIL",
    "nullmx.example": {"MX": [(0, ".")]},
    "backup.example": {"MX": [(10, "mx.backup.example"), (20, HOSTNAME)]},
    "other.example": {"MX": [(10, "mx.other.example")]},
    "mxbroken.example": "SERVFAIL",
    "99.2.0.192.bl.example": {"A": ["127.0.0.2"], "TXT": ["spam source, see bl.example"]},
}

SEED_002 = """\
localhost.localdomain           RELAY
localhost                       RELAY
127.0.0.1                       RELAY
192.168.0           RELAY
140.116.44.125         RELAY
qq.com       DISCARD
192.168.1.100    DISCARD
dl@linux102.example.com  REJECT
from:dongliang@linux102.example.com REJECT
to:dongliang@linux102.example.com   REJECT
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[FakeDnsServer]:
    with FakeDnsServer(ZONES) as server:
        yield server


def test_verdict_helpers() -> None:
    v = Verdict(kind=Kind.DEFER, reply=Reply.of(421, "4.7.0", "bye"))
    assert v.closes and not v.accepted
    d = Verdict(kind=Kind.ACCEPT, reply=Reply.of(250, "2.1.5", "ok")).decision
    assert d.accepted and d.local


def test_normalise_recipient() -> None:
    assert normalise_recipient("<User@Example.TEST.>") == "User@example.test"
    assert normalise_recipient("<@a.example,@b.example:u@c.example>") == "u@c.example"
    assert normalise_recipient("<Postmaster>") == "postmaster"
    assert normalise_recipient('"a@b"@Example.test') == '"a@b"@example.test'
    assert normalise_recipient("<>") == ""
    for bad in ("u@example..test.", "u@", "@x.example", "nobody", "u@exa mple.test"):
        assert normalise_recipient(bad) is None


# --- seed 002 ---------------------------------------------------------------------


async def test_seed_002_relay_entries(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, access=SEED_002, trusted=())
    for ip in ("127.0.0.1", "192.168.0.5", "140.116.44.125"):
        verdict = await rcpt_from(engine, ip, "lee@linux103.example.com")
        assert verdict.kind is Kind.RELAY, ip
        assert verdict.resolution is not None
    verdict = await rcpt_from(engine, "127.0.0.1", "lee@linux103.example.com")
    assert "access 127.0.0.1 RELAY" in verdict.reason and "access:3" in verdict.reason


async def test_seed_002_relaying_denied(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, access=SEED_002, trusted=())
    for ip in ("127.0.0.2", "192.168.1.102", "140.116.44.126"):
        verdict = await rcpt_from(engine, ip, "lee@linux103.example.com")
        assert verdict.kind is Kind.REJECT
        assert verdict.reply == Reply.of(
            550,
            "5.7.1",
            f"<lee@linux103.example.com>... Relaying denied. IP name lookup failed [{ip}]",
        )
    # local recipients are accepted from anyone
    verdict = await rcpt_from(engine, "192.168.1.102", "lee@linux102.example.com")
    assert verdict.kind is Kind.ACCEPT and verdict.resolution is not None


async def test_seed_002_discard(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, access=SEED_002, trusted=())
    state, verdict = await connect(engine, "192.168.1.100")
    assert verdict.kind is Kind.DISCARD and verdict.accepted
    assert "192.168.1.100 DISCARD" in verdict.reason and "access:7" in verdict.reason
    mail = await engine.on_mail(state, "a@b.example")
    rcpt = await engine.on_rcpt(state, "anyone@anywhere.example")  # even a relay attempt
    assert mail.kind is rcpt.kind is Kind.DISCARD
    assert mail.reply.code == 250 and rcpt.reply.code == 250
    # a discarded sender: only that transaction
    state, _ = await connect(engine, "10.1.1.1")
    assert (await engine.on_mail(state, "pony@qq.com")).kind is Kind.DISCARD
    assert (await engine.on_rcpt(state, "alice@example.test")).kind is Kind.DISCARD
    assert (await engine.on_mail(state, "pony@example.org")).kind is Kind.ACCEPT
    assert (await engine.on_rcpt(state, "alice@example.test")).kind is Kind.ACCEPT


async def test_seed_002_reject_sender(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, access=SEED_002, trusted=())
    for sender in ("dl@linux102.example.com", "dongliang@linux102.example.com"):
        state, _ = await connect(engine, "10.1.1.1")
        verdict = await engine.on_mail(state, sender)
        assert verdict.kind is Kind.REJECT
        assert verdict.reply == Reply.of(550, "5.7.1", "Access denied")
    # "dongliang can still receive mail" unless blacklist_recipients is on
    verdict = await rcpt_from(engine, "10.1.1.1", "dongliang@linux102.example.com")
    assert verdict.kind is Kind.ACCEPT
    strict = make_engine(tmp_path, access=SEED_002, trusted=(), blacklist_recipients=True)
    verdict = await rcpt_from(strict, "10.1.1.1", "dongliang@linux102.example.com")
    assert verdict.kind is Kind.REJECT
    assert verdict.reply == Reply.of(
        550, "5.2.1", "<dongliang@linux102.example.com>... Mailbox disabled for this recipient"
    )


# --- connect ----------------------------------------------------------------------


async def test_tcprules_deny_and_settings(tmp_path: Path) -> None:
    rules = (
        '10.0.0.:allow,RELAYCLIENT="",DATABYTES="1000"\n192.0.2.66:deny\n'
        '192.0.2.67:allow,RBLSMTPD="-Go away"\n192.0.2.68:allow,RBLSMTPD="Busy"\n'
    )
    engine = make_engine(tmp_path, tcprules=rules, trusted=())
    state, verdict = await connect(engine, "192.0.2.66")
    assert verdict.kind is Kind.REJECT and verdict.reply == Reply.of(554, "5.7.1", "Access denied")
    assert verdict.reason == "tcprules 192.0.2.66:deny (tcprules:2)"
    again = await engine.on_mail(state, "a@b.example")  # the session should answer 503
    assert again.kind is Kind.REJECT
    state, verdict = await connect(engine, "192.0.2.67")
    assert verdict.reply == Reply.of(554, "5.7.1", "Go away")
    assert (await engine.on_rcpt(state, "alice@example.test")).reply.code == 553
    state, verdict = await connect(engine, "192.0.2.68")
    assert verdict.reply == Reply.of(421, "4.7.1", "Busy") and verdict.closes
    state, verdict = await connect(engine, "10.0.0.9")
    assert verdict.kind is Kind.ACCEPT and state.relay_client
    assert state.env == {"RELAYCLIENT": "", "DATABYTES": "1000"}
    verdict = await rcpt_from(engine, "10.0.0.9", "x@elsewhere.example")
    assert verdict.kind is Kind.RELAY and "RELAYCLIENT" in verdict.reason


async def test_connect_limits(tmp_path: Path) -> None:
    clock = FakeClock()
    limits = ConnectionLimits(max_connections_per_ip=1, max_messages_per_hour=1, clock=clock)
    engine = make_engine(tmp_path, tcprules='10.9.:allow,MAXCONNIP="3"\n', limits=limits)
    first, verdict = await connect(engine, "192.0.2.5")
    assert verdict.kind is Kind.ACCEPT
    second, verdict = await connect(engine, "192.0.2.5")
    assert verdict.kind is Kind.DEFER and verdict.closes
    assert verdict.reply.text == "Too many connections from your address, try again later"
    engine.on_disconnect(second)  # refused: never counted
    engine.on_disconnect(first)
    engine.on_disconnect(first)  # twice is harmless
    third, verdict = await connect(engine, "192.0.2.5")
    assert verdict.kind is Kind.ACCEPT
    assert (await engine.on_mail(third, "a@resolvable.example")).kind is Kind.ACCEPT
    verdict = await engine.on_mail(third, "a@resolvable.example")
    assert verdict.kind is Kind.DEFER and verdict.reply.code == 451
    for _ in range(3):  # the rule's MAXCONNIP
        _, verdict = await connect(engine, "10.9.0.1")
        assert verdict.kind is Kind.ACCEPT
    assert (await connect(engine, "10.9.0.1"))[1].closes


async def test_access_connect_refusals(tmp_path: Path) -> None:
    access = (
        "Connect:192.0.2.50 REJECT\nConnect:192.0.2.51 ERROR:4.7.1:451 Slow down\n"
        'Connect:192.0.2.52 ERROR:"550 Not you"\n'
    )
    engine = make_engine(tmp_path, access=access)
    state, verdict = await connect(engine, "192.0.2.50")
    assert verdict.reply == Reply.of(554, "5.7.1", "Access denied")
    assert (await engine.on_mail(state, "a@b.example")).reply == Reply.of(
        550, "5.7.1", "Access denied"
    )
    _, verdict = await connect(engine, "192.0.2.51")
    assert verdict.kind is Kind.DEFER and verdict.reply == Reply.of(421, "4.7.1", "Slow down")
    _, verdict = await connect(engine, "192.0.2.52")
    assert verdict.reply == Reply.of(554, "5.0.0", "Not you")


async def test_dnsbl(tmp_path: Path, dns: FakeDnsServer, caplog: pytest.LogCaptureFixture) -> None:
    resolver = dns.resolver(timeout=1.0)
    engine = make_engine(tmp_path, resolver=resolver, dnsbl_zones=("bl.example",))
    _, verdict = await connect(engine, "192.0.2.99")
    assert verdict.kind is Kind.REJECT
    assert verdict.reply == Reply.of(
        554, "5.7.1", "Rejected: 192.0.2.99 listed at bl.example: spam source, see bl.example"
    )
    exempt = make_engine(
        tmp_path,
        resolver=resolver,
        dnsbl_zones=("bl.example",),
        access="Connect:192.0.2.99 OK\n",
    )
    assert (await connect(exempt, "192.0.2.99"))[1].kind is Kind.ACCEPT
    skip = make_engine(
        tmp_path,
        resolver=resolver,
        dnsbl_zones=("bl.example",),
        tcprules='192.0.2.99:allow,RBLSMTPD=""\n',
    )
    assert (await connect(skip, "192.0.2.99"))[1].kind is Kind.ACCEPT
    trusted = make_engine(
        tmp_path, resolver=resolver, dnsbl_zones=("bl.example",), trusted=("192.0.2.0/24",)
    )
    assert (await connect(trusted, "192.0.2.99"))[1].kind is Kind.ACCEPT
    warn = make_engine(tmp_path, resolver=resolver, dnsbl_zones=("bl.example",), dnsbl_mode="warn")
    with caplog.at_level(logging.WARNING, logger="postoffice.policy"):
        state, verdict = await connect(warn, "192.0.2.99")
    assert verdict.kind is Kind.ACCEPT and state.notes
    assert "dnsbl (warn only): 192.0.2.99 listed at bl.example" in caplog.text


# --- reverse DNS ------------------------------------------------------------------


async def test_client_name(dns: FakeDnsServer) -> None:
    resolver = dns.resolver(timeout=1.0)
    assert await client_name(resolver, "192.0.2.10") == ("good.example.net", True)
    assert await client_name(resolver, "::ffff:192.0.2.10") == ("good.example.net", True)
    assert await client_name(resolver, "2001:db8::10") == ("six.example.net", True)
    assert await client_name(resolver, "192.0.2.11") == ("forged.example.net", False)
    assert await client_name(resolver, "192.0.2.12") == (None, False)  # PTR names an address
    assert await client_name(resolver, "192.0.2.13") == (None, False)
    assert await client_name(resolver, "127.0.0.1") == ("localhost", True)
    assert await client_name(resolver, "127.0.0.2") == (None, False)
    assert await client_name(None, "192.0.2.10") == (None, False)
    assert await client_name(resolver, "junk") == (None, False)


async def test_forged_names_count_for_nothing(tmp_path: Path, dns: FakeDnsServer) -> None:
    access = "Connect:forged.example.net RELAY\nConnect:good.example.net RELAY\n"
    engine = make_engine(tmp_path, access=access, resolver=dns.resolver(timeout=1.0))
    state, _ = await connect(engine, "192.0.2.11")
    assert state.received_from == "forged.example.net [192.0.2.11] (may be forged)"
    assert state.client_name == "[192.0.2.11]"
    await engine.on_mail(state, "a@resolvable.example")
    verdict = await engine.on_rcpt(state, "x@elsewhere.example")
    assert verdict.reply.text == (
        "<x@elsewhere.example>... Relaying denied. IP name possibly forged [192.0.2.11]"
    )
    state, _ = await connect(engine, "192.0.2.10")
    assert state.received_from == "good.example.net [192.0.2.10]"
    await engine.on_mail(state, "a@resolvable.example")
    assert (await engine.on_rcpt(state, "x@elsewhere.example")).kind is Kind.RELAY
    assert ClientState(ip="192.0.2.9").received_from == "[192.0.2.9]"


# --- MAIL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "kind", "reply"),
    [
        ("a@resolvable.example", Kind.ACCEPT, Reply.of(250, "2.1.0", "Sender ok")),
        ("", Kind.ACCEPT, Reply.of(250, "2.1.0", "Sender ok")),
        ("a@example.test", Kind.ACCEPT, Reply.of(250, "2.1.0", "Sender ok")),
        (
            "a@nx.example",
            Kind.REJECT,
            Reply.of(553, "5.1.8", "Domain of sender address <a@nx.example> does not exist"),
        ),
        (
            "a@broken.example",
            Kind.DEFER,
            Reply.of(451, "4.1.8", "Domain of sender address <a@broken.example> does not resolve"),
        ),
        ("a@nullmx.example", Kind.REJECT, Reply.of(550, "5.7.27", "Sender address has null MX")),
        ("a@whitelisted.example", Kind.ACCEPT, Reply.of(250, "2.1.0", "Sender ok")),
        (
            "unqualified",
            Kind.REJECT,
            Reply.of(553, "5.5.4", "Domain name required for sender address <unqualified>"),
        ),
    ],
)
async def test_sender_domains(
    tmp_path: Path, dns: FakeDnsServer, sender: str, kind: Kind, reply: Reply
) -> None:
    engine = make_engine(
        tmp_path, resolver=dns.resolver(timeout=1.0), access="From:whitelisted.example OK\n"
    )
    state, _ = await connect(engine, "192.0.2.5")
    verdict = await engine.on_mail(state, sender)
    assert (verdict.kind, verdict.reply) == (kind, reply)


async def test_sender_domains_not_checked_for_our_clients(
    tmp_path: Path, dns: FakeDnsServer
) -> None:
    resolver = dns.resolver(timeout=1.0)
    engine = make_engine(tmp_path, resolver=resolver, trusted=("10.0.0.0/8",))
    state, _ = await connect(engine, "10.1.2.3")
    assert (await engine.on_mail(state, "a@nx.example")).kind is Kind.ACCEPT
    state, _ = await connect(engine, "192.0.2.5")
    state.authenticated = "alice@example.test"
    assert (await engine.on_mail(state, "a@nx.example")).kind is Kind.ACCEPT
    lax = make_engine(tmp_path, resolver=resolver, accept_unresolvable_domains=True)
    state, _ = await connect(lax, "192.0.2.5")
    assert (await lax.on_mail(state, "a@nx.example")).kind is Kind.ACCEPT


# --- delay_checks -----------------------------------------------------------------


async def test_delay_checks_moves_connect_rejections_to_rcpt(tmp_path: Path) -> None:
    access = "Connect:192.0.2.50 REJECT\nFrom:friend@partner.example OK\n"
    engine = make_engine(tmp_path, access=access, delay_checks=True)
    state, verdict = await connect(engine, "192.0.2.50")
    assert verdict.kind is Kind.ACCEPT and verdict.reason.startswith("delayed to RCPT")
    assert (await engine.on_mail(state, "a@b.example")).kind is Kind.ACCEPT
    verdict = await engine.on_rcpt(state, "alice@example.test")
    assert verdict.reply == Reply.of(550, "5.7.1", "Access denied")
    # the recipient's own checks come first
    verdict = await engine.on_rcpt(state, "x@elsewhere.example")
    assert "Relaying denied" in verdict.reply.text
    assert (await engine.on_rcpt(state, "nobody@example.test")).reply.enhanced == "5.1.1"
    # a sender with access OK skips the delayed connect check
    await engine.on_mail(state, "friend@partner.example")
    assert (await engine.on_rcpt(state, "alice@example.test")).kind is Kind.ACCEPT
    # an authenticated client skips them all
    state.authenticated = "alice@example.test"
    await engine.on_mail(state, "a@b.example")
    assert (await engine.on_rcpt(state, "x@elsewhere.example")).kind is Kind.RELAY


async def test_delay_checks_moves_mail_rejections_to_rcpt(
    tmp_path: Path, dns: FakeDnsServer
) -> None:
    engine = make_engine(
        tmp_path,
        access="From:spammer@example.org REJECT\n",
        resolver=dns.resolver(timeout=1.0),
        delay_checks=True,
        dnsbl_zones=("bl.example",),
    )
    state, _ = await connect(engine, "192.0.2.5")
    assert (await engine.on_mail(state, "spammer@example.org")).kind is Kind.ACCEPT
    assert (await engine.on_rcpt(state, "alice@example.test")).reply.text == "Access denied"
    assert (await engine.on_mail(state, "a@nx.example")).kind is Kind.ACCEPT
    assert (await engine.on_rcpt(state, "alice@example.test")).reply.enhanced == "5.1.8"
    assert (await engine.on_mail(state, "a@resolvable.example")).kind is Kind.ACCEPT
    assert (await engine.on_rcpt(state, "alice@example.test")).kind is Kind.ACCEPT
    # a listed client gets its blocklist refusal at RCPT
    state, verdict = await connect(engine, "192.0.2.99")
    assert verdict.kind is Kind.ACCEPT
    await engine.on_mail(state, "a@resolvable.example")
    verdict = await engine.on_rcpt(state, "alice@example.test")
    assert verdict.reply.code == 554 and "listed at bl.example" in verdict.reply.text


async def test_delay_checks_discard(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, access="Connect:192.0.2.7 DISCARD\n", delay_checks=True)
    state, verdict = await connect(engine, "192.0.2.7")
    assert verdict.kind is Kind.ACCEPT
    await engine.on_mail(state, "a@b.example")
    assert (await engine.on_rcpt(state, "alice@example.test")).kind is Kind.DISCARD
    assert (await engine.on_rcpt(state, "bob@example.test")).kind is Kind.DISCARD


# --- RCPT ---------------------------------------------------------------------------


async def test_local_recipients(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    verdict = await rcpt_from(engine, "192.0.2.5", "alice@example.test")
    assert verdict.kind is Kind.ACCEPT and verdict.decision.local
    verdict = await rcpt_from(engine, "192.0.2.5", "postmaster")
    assert verdict.kind is Kind.ACCEPT
    verdict = await rcpt_from(engine, "192.0.2.5", "nobody@example.test")
    assert verdict.kind is Kind.REJECT
    assert verdict.reply == Reply.of(550, "5.1.1", "<nobody@example.test>... User unknown")
    verdict = await rcpt_from(engine, "192.0.2.5", "<>")
    assert verdict.reply == Reply.of(553, "5.1.3", "User address required")


async def test_relay_domains(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, relay_domains="partner.example\n10.20\n")
    assert (await rcpt_from(engine, "192.0.2.5", "x@partner.example")).kind is Kind.RELAY
    assert (await rcpt_from(engine, "192.0.2.5", "x@sub.partner.example")).kind is Kind.REJECT
    verdict = await rcpt_from(engine, "10.20.3.4", "x@elsewhere.example")
    assert verdict.kind is Kind.RELAY and "relay-domains 10.20" in verdict.reason
    entire = make_engine(tmp_path, relay_domains="partner.example\n", relay_entire_domain=True)
    assert (await rcpt_from(entire, "192.0.2.5", "x@sub.partner.example")).kind is Kind.RELAY
    assert (await rcpt_from(entire, "192.0.2.5", "x@host.example.test")).kind is Kind.RELAY
    assert (await rcpt_from(entire, "192.0.2.5", "x@example.test.evil")).kind is Kind.REJECT


async def test_relay_to_and_from_access(tmp_path: Path, dns: FakeDnsServer) -> None:
    access = "To:friend.example RELAY\nConnect:partner.example RELAY\n"
    engine = make_engine(tmp_path, access=access, resolver=dns.resolver(timeout=1.0))
    assert (await rcpt_from(engine, "192.0.2.5", "x@mx.friend.example")).kind is Kind.RELAY
    verdict = await rcpt_from(engine, "192.0.2.20", "x@elsewhere.example")
    assert verdict.kind is Kind.RELAY and "connect:partner.example" in verdict.reason


async def test_relay_based_on_mx(tmp_path: Path, dns: FakeDnsServer) -> None:
    engine = make_engine(tmp_path, resolver=dns.resolver(timeout=1.0), relay_based_on_mx=True)
    verdict = await rcpt_from(engine, "192.0.2.5", "x@backup.example")
    assert verdict.kind is Kind.RELAY and "relay_based_on_MX" in verdict.reason
    assert (await rcpt_from(engine, "192.0.2.5", "x@other.example")).kind is Kind.REJECT
    assert (await rcpt_from(engine, "192.0.2.5", "x@nx.example")).kind is Kind.REJECT
    verdict = await rcpt_from(engine, "192.0.2.5", "x@mxbroken.example")
    assert verdict.kind is Kind.DEFER and verdict.reply.enhanced == "4.4.0"
    off = make_engine(tmp_path, resolver=dns.resolver(timeout=1.0))
    assert (await rcpt_from(off, "192.0.2.5", "x@backup.example")).kind is Kind.REJECT


async def test_promiscuous_relay_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="postoffice.policy"):
        engine = make_engine(tmp_path, promiscuous_relay=True)
    assert "open relay" in caplog.text
    assert (await rcpt_from(engine, "192.0.2.5", "x@elsewhere.example")).kind is Kind.RELAY


async def test_routing_refusals_for_relayed_recipients(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    verdict = await rcpt_from(engine, "127.0.0.1", "x@refused.example")
    assert verdict.kind is Kind.REJECT and verdict.reply == MAILERTABLE_ERROR
    assert verdict.resolution is not None


async def test_statistics_and_problems(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, access="Connect:10 RELAYY\n", tcprules="bogus\n")
    await rcpt_from(engine, "10.0.0.1", "alice@example.test")
    stats = engine.statistics()
    assert stats["connect_reject"] == 1  # the broken value refuses
    problems = engine.problems()
    assert any(
        p.endswith(
            "access:1: connect:10: unknown value 'RELAYY' (expected OK, RELAY, "
            "REJECT, DISCARD, SKIP or ERROR:...); refusing"
        )
        for p in problems
    )
    assert "tcprules:1: no ':allow' or ':deny'; line skipped" in problems
    assert not engine.reload_if_changed()


# --- configuration ----------------------------------------------------------------


async def test_from_config(tmp_path: Path) -> None:
    config = Config(
        hostname=HOSTNAME,
        local_domains=("example.test",),
        relay=RelayConfig(trusted_networks=()),
        maps=MapsConfig(
            access=write_map(tmp_path, "access", "192.168.0 RELAY\n"),
            relay_domains=write_map(tmp_path, "relay-domains", "partner.example\n"),
        ),
        policy=PolicyConfig(
            tcprules=write_map(tmp_path, "tcprules", "192.0.2.66:deny\n"),
            max_connections_per_ip=1,
        ),
    )
    engine = PolicyEngine.from_config(
        config, resolver=None, user_exists=user_exists, resolve=fake_resolve
    )
    assert (await rcpt_from(engine, "192.168.0.9", "x@elsewhere.example")).kind is Kind.RELAY
    assert (await rcpt_from(engine, "192.0.2.5", "x@partner.example")).kind is Kind.RELAY
    assert (await rcpt_from(engine, "192.0.2.6", "x@elsewhere.example")).kind is Kind.REJECT
    assert (await connect(engine, "192.0.2.66"))[1].kind is Kind.REJECT
    assert (await connect(engine, "192.0.2.5"))[1].closes  # the first one never disconnected
    write_map(tmp_path, "access", "192.168.1 RELAY\n")
    assert engine.reload_if_changed()
    assert (await rcpt_from(engine, "192.168.0.10", "x@elsewhere.example")).kind is Kind.REJECT
    empty = PolicyEngine.from_config(
        Config(maps=MapsConfig(access="", relay_domains=""), policy=PolicyConfig(tcprules="")),
        resolver=None,
        user_exists=user_exists,
    )
    assert (await connect(empty, "192.0.2.5"))[1].kind is Kind.ACCEPT
