"""The open-relay battery at the policy level: address tricks that must never
be relayed (or accepted at all), under the default options and under the most
permissive sane ones (relay_entire_domain, relay_based_on_MX, delay_checks),
and the legitimate cases that must be accepted. The SMTP-level tricks (relay
after a failed AUTH, after RSET, via STARTTLS injection, auth-less relay on
submission) belong to the session's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from policy_support import HOSTNAME, connect, make_engine, rcpt_from
from postoffice.policy.engine import Kind, PolicyEngine
from postoffice.testing.fake_dns import FakeDnsServer, ZoneEntry

ZONES: dict[str, ZoneEntry] = {
    "other.example": {"MX": [(10, "mx.other.example")]},
    "mx.other.example": {"A": ["192.0.2.200"]},
    "backup.example": {"MX": [(10, HOSTNAME)]},
    "sender.example": {"MX": [(10, "mx.other.example")]},
    "192.0.2.5": {"PTR": "mail.example.test"},  # claims to be us: not confirmed
    "192.0.2.6": {"PTR": "relay.partner.example"},  # claims an access RELAY name: forged
    "relay.partner.example": {"A": ["192.0.2.60"]},
    "192.0.2.60": {"PTR": "relay.partner.example"},  # the real one
}

ACCESS = """\
Connect:192.0.2.5            OK
Connect:relay.partner.example RELAY
Connect:198.51.100           RELAY
To:ok-only.example           OK
To:friend.example            RELAY
From:alice@example.test      RELAY
From:example.test            RELAY
"""
RELAY_DOMAINS = "partner.example\n"
TCPRULES = '192.0.2.5:allow,RBLSMTPD=""\n10.0.0.:allow,RELAYCLIENT=""\n'

CLIENT = "192.0.2.5"  # untrusted, with a PTR that says it is us (not confirmed)

# (name, recipient) — every one must be refused for CLIENT.
TRICKS = [
    ("plain relay", "user@other.example"),
    ("percent hack via local", "user%other.example@example.test"),
    ("percent hack, two hops", "user%other.example%third.example@example.test"),
    ("percent hack via hostname", "user%other.example@mail.example.test"),
    ("percent hack via localhost", "user%other.example@localhost"),
    ("source route via local", "<@example.test:user@other.example>"),
    ("source route, two hops", "<@example.test,@mail.example.test:user@other.example>"),
    ("bang path via local", "other.example!user@example.test"),
    ("bang path, bare", "other.example!user"),
    ("quoted @ via local", '"user@other.example"@example.test'),
    ("quoted % via local", '"user%other.example"@example.test'),
    ("quoted @, no domain", '"user@other.example"'),
    ("unquoted double @ via local", "user@other.example@example.test"),
    ("local domain before remote", "user@example.test@other.example"),
    ("trailing dot", "user@other.example."),
    ("two trailing dots", "user@other.example.."),
    ("upper case", "USER@OTHER.EXAMPLE"),
    ("mixed case trailing dot", "User@Other.Example."),
    ("IPv4 literal", "user@[192.0.2.1]"),
    ("loopback literal, not ours", "user@[127.0.0.1]"),
    ("the client's own literal", f"user@[{CLIENT}]"),
    ("IPv6 loopback literal", "user@[IPv6:::1]"),
    ("IPv6 literal", "user@[IPv6:2001:db8::1]"),
    ("local name as a prefix", "user@example.test.other.example"),
    ("local name as a suffix without a dot", "user@evilexample.test"),
    ("localhost as a prefix", "user@localhost.other.example"),
    ("relay-domain as a prefix", "user@partner.example.other.example"),
    ("relay-domain as a suffix without a dot", "user@evilpartner.example"),
    ("unresolvable domain", "user@nx.example"),
    ("access To: OK is not RELAY", "user@ok-only.example"),
    ("postmaster elsewhere", "postmaster@other.example"),
    ("homoglyph of the local domain", "user@exаmple.test"),  # Cyrillic a
    ("percent hack to a relay domain", "user%other.example@partner.example.other.example"),
]


@pytest.fixture(scope="module")
def dns() -> Iterator[FakeDnsServer]:
    with FakeDnsServer(ZONES) as server:
        yield server


def engines(tmp_path: Path, dns: FakeDnsServer) -> list[PolicyEngine]:
    resolver = dns.resolver(timeout=1.0)
    maps = {"access": ACCESS, "relay_domains": RELAY_DOMAINS, "tcprules": TCPRULES}
    return [
        make_engine(tmp_path / "default", resolver=resolver, **maps),
        make_engine(
            tmp_path / "permissive",
            resolver=resolver,
            relay_entire_domain=True,
            relay_based_on_mx=True,
            delay_checks=True,
            blacklist_recipients=True,
            **maps,
        ),
    ]


@pytest.fixture
def both(tmp_path: Path, dns: FakeDnsServer) -> list[PolicyEngine]:
    (tmp_path / "default").mkdir()
    (tmp_path / "permissive").mkdir()
    return engines(tmp_path, dns)


def test_battery_is_big_enough() -> None:
    assert len(TRICKS) >= 25
    assert len({name for name, _ in TRICKS}) == len(TRICKS)


@pytest.mark.parametrize(("name", "recipient"), TRICKS, ids=[name for name, _ in TRICKS])
async def test_trick_is_refused(both: list[PolicyEngine], name: str, recipient: str) -> None:
    for engine in both:
        for sender in ("someone@other.example", "alice@example.test", ""):
            verdict = await rcpt_from(engine, CLIENT, recipient, sender=sender)
            assert not verdict.accepted, (name, sender, verdict)
            assert verdict.kind is Kind.REJECT, (name, verdict)
            assert verdict.reply.code in (501, 550, 553), (name, verdict.reply)


@pytest.mark.parametrize(
    "recipient",
    [
        r
        for name, r in TRICKS
        if "via local" in name or "via hostname" in name or "localhost" in name
    ],
)
async def test_tricks_through_local_domains_are_not_relayed_even_for_trusted_clients(
    both: list[PolicyEngine], recipient: str
) -> None:
    """A %-hack or bang path at a local domain is a local name that does not
    exist, whoever sends it: routing never forwards it."""
    for engine in both:
        verdict = await rcpt_from(engine, "127.0.0.1", recipient)
        if verdict.kind is Kind.RELAY:  # only when the final domain itself is remote
            assert verdict.resolution is not None
            targets = verdict.resolution.targets
            assert all(t.address.endswith("other.example") for t in targets)
        else:
            assert verdict.kind is Kind.REJECT


async def test_forged_names_do_not_relay(both: list[PolicyEngine]) -> None:
    for engine in both:
        for ip in (CLIENT, "192.0.2.6"):  # PTR claims us / a RELAY host, not confirmed
            state, _ = await connect(engine, ip)
            assert state.hostname and not state.name_confirmed
            await engine.on_mail(state, "someone@other.example")
            verdict = await engine.on_rcpt(state, "user@other.example")
            assert verdict.kind is Kind.REJECT
            assert verdict.reply.text.endswith(f"Relaying denied. IP name possibly forged [{ip}]")


async def test_rset_and_a_new_transaction_keep_nothing(both: list[PolicyEngine]) -> None:
    """A later MAIL from a RELAY sender does not open relaying (no relay_mail_from)."""
    for engine in both:
        state, _ = await connect(engine, CLIENT)
        await engine.on_mail(state, "alice@example.test")
        assert (await engine.on_rcpt(state, "alice@example.test")).accepted
        assert not (await engine.on_rcpt(state, "user@other.example")).accepted
        await engine.on_mail(state, "")
        assert not (await engine.on_rcpt(state, "user@other.example")).accepted


# --- the legitimate cases -----------------------------------------------------------

LEGIT = [
    # (name, client ip, recipient, authenticated, kind)
    ("local user", CLIENT, "alice@example.test", "", Kind.ACCEPT),
    ("local user, upper case, trailing dot", CLIENT, "Alice@EXAMPLE.TEST.", "", Kind.ACCEPT),
    ("postmaster at the host name", CLIENT, "postmaster@mail.example.test", "", Kind.ACCEPT),
    ("bare postmaster", CLIENT, "<Postmaster>", "", Kind.ACCEPT),
    ("postmaster of a local domain", CLIENT, "postmaster@example.test", "", Kind.ACCEPT),
    ("source route ending locally", CLIENT, "<@other.example:alice@example.test>", "", Kind.ACCEPT),
    ("trusted network", "127.0.0.1", "user@other.example", "", Kind.RELAY),
    ("RELAYCLIENT", "10.0.0.5", "user@other.example", "", Kind.RELAY),
    ("access Connect: RELAY network", "198.51.100.77", "user@other.example", "", Kind.RELAY),
    ("confirmed RELAY host name", "192.0.2.60", "user@other.example", "", Kind.RELAY),
    ("authenticated", CLIENT, "user@other.example", "alice@example.test", Kind.RELAY),
    ("authenticated, IP literal", CLIENT, "user@[192.0.2.1]", "alice@example.test", Kind.RELAY),
    ("relay-domains", CLIENT, "user@partner.example", "", Kind.RELAY),
    ("access To: RELAY", CLIENT, "user@friend.example", "", Kind.RELAY),
    ("access To: RELAY subdomain", CLIENT, "user@mx.friend.example", "", Kind.RELAY),
]


@pytest.mark.parametrize(
    ("name", "ip", "recipient", "user", "kind"), LEGIT, ids=[case[0] for case in LEGIT]
)
async def test_legitimate_case_is_accepted(
    both: list[PolicyEngine], name: str, ip: str, recipient: str, user: str, kind: Kind
) -> None:
    for engine in both:
        verdict = await rcpt_from(engine, ip, recipient, authenticated=user)
        assert verdict.kind is kind, (name, verdict)
        assert verdict.reply.code == 250
        # routing says where (a bare <Postmaster> is this host's, without a router step)
        assert verdict.resolution is not None or recipient == "<Postmaster>"


async def test_permissive_options_accept_what_they_promise(both: list[PolicyEngine]) -> None:
    default, permissive = both
    for recipient in ("user@backup.example", "user@sub.partner.example", "user@host.example.test"):
        assert (await rcpt_from(default, CLIENT, recipient)).kind is Kind.REJECT
        assert (await rcpt_from(permissive, CLIENT, recipient)).kind is Kind.RELAY
