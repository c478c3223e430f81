"""Tests for postoffice.delivery.smtp: RemoteAgent against fake MX hosts on loopback.

The resolver is a small fake with dns.Resolver's two methods; every MX
host resolves to a loopback address where a FakeMx (tests/test_smtp_client.py)
listens, or where nothing does. Nothing sleeps.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from typing import Any, BinaryIO

import pytest
import trustme

from postoffice.config.schema import Config, RoutingConfig, SmtpClientConfig
from postoffice.delivery.smtp import RemoteAgent, parse_nexthop
from postoffice.dns import NO_ADDRESS, NULL_MX, DnsPermFail, DnsTempFail, MxHost
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Outcome
from postoffice.routing.generics import SenderRewriter
from postoffice.routing.masquerade import Masquerade
from postoffice.routing.targets import Mailbox, Remote, to_spec
from test_smtp_client import MX_NAME, FakeMx, running, server_context, trusting

DOMAIN = "example.net"
BODY = b"From: alice@host.example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"


class FakeResolver:
    """dns.Resolver's mx()/addresses() from two dicts; a value may be an exception."""

    def __init__(
        self,
        mx: dict[str, list[MxHost] | Exception] | None = None,
        a: dict[str, list[str] | Exception] | None = None,
    ) -> None:
        self.mx_records = mx if mx is not None else {DOMAIN: [MxHost(preference=10, host=MX_NAME)]}
        self.a_records = a if a is not None else {MX_NAME: ["127.0.0.1"]}
        self.questions: list[str] = []

    async def mx(self, domain: str) -> list[MxHost]:
        self.questions.append(f"MX {domain}")
        got = self.mx_records.get(domain)
        if isinstance(got, Exception):
            raise got
        if got is None:
            raise DnsPermFail(f"{domain}: NXDOMAIN")
        return got

    async def addresses(self, host: str) -> list[str]:
        self.questions.append(f"A {host}")
        if host.replace(".", "").isdigit():
            return [host]
        got = self.a_records.get(host)
        if isinstance(got, Exception):
            raise got
        if got is None:
            raise DnsPermFail(f"{host}: no A or AAAA records", NO_ADDRESS)
        return got


def config(port: int, **client: Any) -> Config:
    routing = client.pop("routing", RoutingConfig())
    timeouts = {"connect_timeout": 5.0, "command_timeout": 5.0, "data_timeout": 5.0}
    c = replace(SmtpClientConfig(), port=port, **{**timeouts, **client})
    return Config(hostname="mail.example.org", smtp_client=c, routing=routing)


def envelope(
    *rcpts: str | EnvelopeRecipient, sender: str = "alice@host.example.org", **kw: Any
) -> Envelope:
    recipients = tuple(
        r if isinstance(r, EnvelopeRecipient) else EnvelopeRecipient(address=r)
        for r in rcpts or (f"bob@{DOMAIN}",)
    )
    return Envelope(queue_id="Q1", sender=sender, recipients=recipients, arrival_time=0.0, **kw)


def opener(body: bytes = BODY) -> Any:
    def open_body(queue_id: str) -> BinaryIO:
        return io.BytesIO(body)

    return open_body


async def deliver(agent: RemoteAgent, *rcpts: str | EnvelopeRecipient, **kw: Any) -> list[Outcome]:
    env = envelope(*rcpts, **kw)
    return await agent.deliver(env, env.recipients)


def kinds(outcomes: list[Outcome]) -> list[tuple[str, int, str]]:
    return [(type(o).__name__, o.reply.code, o.reply.enhanced) for o in outcomes]


def make_agent(
    port: int, resolver: FakeResolver | None = None, body: bytes = BODY, **kw: Any
) -> RemoteAgent:
    agent_kw = {
        k: kw.pop(k)
        for k in list(kw)
        if k in ("rewriter", "ssl_context_factory", "allow_plaintext_auth", "idle_timeout")
    }
    return RemoteAgent(resolver or FakeResolver(), opener(body), config(port, **kw), **agent_kw)


# --- nexthops -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nexthop", "domain", "expected"),
    [
        ("", "Example.NET.", ("example.net", True, 25, "example.net")),
        ("", "[192.0.2.1]", ("192.0.2.1", False, 25, "[192.0.2.1]")),
        ("", "[IPv6:2001:db8::1]", ("2001:db8::1", False, 25, "[2001:db8::1]")),
        ("[relay.example]", "x", ("relay.example", False, 25, "[relay.example]")),
        ("[relay.example]:587", "x", ("relay.example", False, 587, "[relay.example]:587")),
        ("relay.example", "x", ("relay.example", True, 25, "relay.example")),
        ("relay.example:2525", "x", ("relay.example", True, 2525, "relay.example:2525")),
    ],
)
def test_parse_nexthop(nexthop: str, domain: str, expected: tuple[str, bool, int, str]) -> None:
    d = parse_nexthop(nexthop, domain, 25)
    assert (d.name, d.mx, d.port, d.key) == expected


@pytest.mark.parametrize(
    "nexthop", ["[relay", "[relay]x", "[relay]:x", "relay:99999", "relay:", "a b", "", "[]"]
)
def test_parse_nexthop_refuses(nexthop: str) -> None:
    with pytest.raises(ValueError):
        parse_nexthop(nexthop, "", 25)


# --- delivery ------------------------------------------------------------------------------------


async def test_delivered_with_relay_and_content() -> None:
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port)
        outcomes = await deliver(agent, f"bob@{DOMAIN}", f"carol@{DOMAIN}")
        await agent.close()
    assert kinds(outcomes) == [("Delivered", 250, "2.0.0")] * 2
    assert outcomes[0].relay == f"{MX_NAME}[127.0.0.1]:{mx.port}"
    assert outcomes[0].detail == "queued as FAKE"
    (msg,) = mx.messages
    assert msg.recipients == [f"bob@{DOMAIN}", f"carol@{DOMAIN}"] and msg.content == BODY
    assert agent.statistics()["delivered"] == 2 and mx.quits == 1


async def test_4xx_then_250_on_retry() -> None:
    calls: list[str] = []

    def rcpt(address: str) -> bytes:
        calls.append(address)
        return b"450 4.2.0 greylisted, try again" if len(calls) == 1 else b"250 ok"

    async with running(FakeMx(rcpt_reply=rcpt)) as mx:
        agent = make_agent(mx.port)
        first = await deliver(agent)
        second = await deliver(agent)
        await agent.close()
    assert kinds(first) == [("Deferred", 450, "4.2.0")]
    assert first[0].detail == (
        f"host {MX_NAME}[127.0.0.1] said: 450 4.2.0 greylisted, try again "
        "(in reply to RCPT TO command)"
    )
    assert kinds(second) == [("Delivered", 250, "2.0.0")]
    assert len(mx.messages) == 1


async def test_5xx_and_mixed_results() -> None:
    def rcpt(address: str) -> bytes:
        return {"bad": b"550 5.1.1 no such user", "full": b"452 4.2.2 mailbox full"}.get(
            address.split("@")[0], b"250 ok"
        )

    async with running(FakeMx(rcpt_reply=rcpt)) as mx:
        agent = make_agent(mx.port)
        outcomes = await deliver(agent, f"bad@{DOMAIN}", f"ok@{DOMAIN}", f"full@{DOMAIN}")
        await agent.close()
    assert kinds(outcomes) == [
        ("Bounced", 550, "5.1.1"),
        ("Delivered", 250, "2.0.0"),
        ("Deferred", 452, "4.2.2"),
    ]
    assert all(o.relay == f"{MX_NAME}[127.0.0.1]:{mx.port}" for o in outcomes)


async def test_data_refusal_applies_to_all_accepted() -> None:
    async with running(FakeMx(end_reply=lambda m: b"554 5.7.1 spam")) as mx:
        agent = make_agent(mx.port)
        outcomes = await deliver(agent, f"a@{DOMAIN}", f"b@{DOMAIN}")
        await agent.close()
    assert kinds(outcomes) == [("Bounced", 554, "5.7.1")] * 2
    assert outcomes[0].detail.endswith("(in reply to end of DATA command)")


async def test_disconnect_mid_data_defers_all_and_tries_no_other_host() -> None:
    resolver = FakeResolver(
        mx={DOMAIN: [MxHost(preference=10, host=MX_NAME), MxHost(preference=20, host="mx2")]},
        a={MX_NAME: ["127.0.0.1"], "mx2": ["127.0.0.1"]},
    )
    async with running(FakeMx(drop="DATA")) as mx:
        agent = make_agent(mx.port, resolver)
        outcomes = await deliver(agent, f"a@{DOMAIN}", f"b@{DOMAIN}")
        await agent.close()
    assert kinds(outcomes) == [("Deferred", 451, "4.4.2")] * 2
    assert mx.connections == 1 and "A mx2" not in resolver.questions


async def test_8bit_to_a_peer_without_8bitmime() -> None:
    body = "Subject: x\r\n\r\nGrüße\r\n".encode()
    async with running(FakeMx(keywords=("PIPELINING",))) as mx:
        agent = make_agent(mx.port, body=body)
        assert kinds(await deliver(agent)) == [("Delivered", 250, "2.0.0")]
        await agent.close()
        assert b"Gr=C3=BC=C3=9Fe" in mx.messages[0].content
        bad = make_agent(mx.port, body="Subject: grüße\r\n\r\nü\r\n".encode())
        assert kinds(await deliver(bad)) == [("Bounced", 554, "5.6.3")]
        await bad.close()


async def test_smtputf8_required_and_absent() -> None:
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port)
        outcomes = await deliver(agent, f"jösé@{DOMAIN}", smtputf8=True)
        await agent.close()
    assert kinds(outcomes) == [("Bounced", 553, "5.6.7")]
    assert mx.messages == []


async def test_size_limit_of_the_peer() -> None:
    async with running(FakeMx(keywords=("SIZE 10",))) as mx:
        agent = make_agent(mx.port)
        assert kinds(await deliver(agent)) == [("Bounced", 552, "5.3.4")]
        await agent.close()


async def test_slow_peer_times_out_and_the_next_host_is_tried() -> None:
    slow = FakeMx(stall="MAIL", host="127.0.0.2")
    async with running(slow):
        fast = FakeMx(port=slow.port)
        async with running(fast):
            resolver = FakeResolver(
                mx={DOMAIN: [MxHost(preference=5, host="slow"), MxHost(preference=9, host="fast")]},
                a={"slow": ["127.0.0.2"], "fast": ["127.0.0.1"]},
            )
            agent = make_agent(slow.port, resolver, command_timeout=0.1)
            outcomes = await deliver(agent)
            await agent.close()
    assert kinds(outcomes) == [("Delivered", 250, "2.0.0")]
    assert outcomes[0].relay == f"fast[127.0.0.1]:{slow.port}"
    assert slow.connections == 1 and len(fast.messages) == 1


async def test_slow_peer_alone_defers() -> None:
    async with running(FakeMx(stall="MAIL")) as mx:
        agent = make_agent(mx.port, command_timeout=0.05)
        outcomes = await deliver(agent)
        await agent.close()
    assert kinds(outcomes) == [("Deferred", 451, "4.4.2")]
    assert outcomes[0].detail == (
        f"Conversation timed out while sending MAIL FROM (host {MX_NAME}[127.0.0.1])"
    )


async def test_mx_order_refused_connection_and_5xx_greeting_are_skipped() -> None:
    rude = FakeMx(greeting=b"554 5.7.1 no thanks", host="127.0.0.2")
    async with running(rude):
        good = FakeMx(port=rude.port)
        async with running(good):
            resolver = FakeResolver(
                mx={
                    DOMAIN: [
                        MxHost(preference=1, host="down"),
                        MxHost(preference=2, host="rude"),
                        MxHost(preference=3, host="good"),
                    ]
                },
                a={"down": ["127.0.0.3"], "rude": ["127.0.0.2"], "good": ["127.0.0.1"]},
            )
            agent = make_agent(rude.port, resolver, idle_timeout=0)
            assert kinds(await deliver(agent)) == [("Delivered", 250, "2.0.0")]
            # without the good host the 5xx greeting defers (never bounces)
            del resolver.mx_records[DOMAIN][2]  # type: ignore[union-attr]
            outcomes = await deliver(agent)
            await agent.close()
    assert kinds(outcomes) == [("Deferred", 454, "4.7.1")]
    assert outcomes[0].relay == f"rude[127.0.0.2]:{rude.port}"
    assert "refused to talk to me" in outcomes[0].detail


async def test_4xx_to_mail_tries_the_next_host() -> None:
    busy = FakeMx(mail_reply=lambda s: b"451 4.3.0 busy", host="127.0.0.2")
    async with running(busy):
        good = FakeMx(port=busy.port)
        async with running(good):
            resolver = FakeResolver(
                mx={DOMAIN: [MxHost(preference=1, host="busy"), MxHost(preference=2, host="good")]},
                a={"busy": ["127.0.0.2"], "good": ["127.0.0.1"]},
            )
            agent = make_agent(busy.port, resolver)
            assert kinds(await deliver(agent)) == [("Delivered", 250, "2.0.0")]
            await agent.close()


async def test_nothing_listens() -> None:
    mx = FakeMx()
    async with running(mx):
        port = mx.port
    agent = make_agent(port)
    outcomes = await deliver(agent)
    assert kinds(outcomes) == [("Deferred", 451, "4.4.1")]
    assert outcomes[0].detail == f"connect to {MX_NAME}[127.0.0.1]:{port}: Connection refused"
    assert outcomes[0].relay == f"{MX_NAME}[127.0.0.1]:{port}"


# --- DNS ------------------------------------------------------------------------------------------


async def test_dns_failures() -> None:
    resolver = FakeResolver(
        mx={
            "temp.example": DnsTempFail("temp.example: SERVFAIL"),
            "null.example": DnsPermFail("null.example: null MX", NULL_MX),
            "noaddr.example": [MxHost(preference=1, host="ghost.example")],
            "tempaddr.example": [
                MxHost(preference=1, host="ghost.example"),
                MxHost(preference=2, host="flaky.example"),
            ],
        },
        a={"flaky.example": DnsTempFail("flaky.example: timeout")},
    )
    agent = make_agent(25, resolver)
    outcomes = await deliver(
        agent,
        "a@nxdomain.example",
        "b@temp.example",
        "c@null.example",
        "d@noaddr.example",
        "e@tempaddr.example",
    )
    assert kinds(outcomes) == [
        ("Bounced", 550, "5.1.2"),
        ("Deferred", 451, "4.4.3"),
        ("Bounced", 556, "5.1.10"),
        ("Bounced", 550, "5.4.4"),
        ("Deferred", 451, "4.4.3"),
    ]
    assert outcomes[1].detail == "Host or domain name lookup failed: temp.example: SERVFAIL"
    assert all(o.relay == "none" for o in outcomes)


async def test_mx_pointing_back_to_us() -> None:
    resolver = FakeResolver(
        mx={
            "loop.example": [MxHost(preference=10, host="mail.example.org")],
            "backup.example": [
                MxHost(preference=10, host=MX_NAME),
                MxHost(preference=20, host="MAIL.example.org."),
                MxHost(preference=30, host="never.example"),
            ],
        }
    )
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port, resolver)
        outcomes = await deliver(agent, "a@loop.example", "b@backup.example")
        await agent.close()
    assert kinds(outcomes) == [("Bounced", 554, "5.4.6"), ("Delivered", 250, "2.0.0")]
    assert "A never.example" not in resolver.questions


# --- routing targets, smart host, rewriting -----------------------------------------------------


async def test_targets_and_address_literals() -> None:
    async with running(FakeMx()) as mx:
        resolver = FakeResolver(mx={}, a={"relay.example": ["127.0.0.1"]})
        agent = make_agent(mx.port, resolver)
        rcpts = [
            EnvelopeRecipient(
                address="x@far.example",
                target=to_spec(Remote(address="x@far.example", nexthop="[relay.example]")),
            ),
            EnvelopeRecipient(address="y@[127.0.0.1]"),
            EnvelopeRecipient(
                address="z@far.example",
                target=to_spec(Mailbox(address="z@far.example", spec="maildir:/x")),
            ),
            EnvelopeRecipient(
                address="w@far.example",
                target=to_spec(Remote(address="w@far.example", nexthop="[bad")),
            ),
        ]
        outcomes = await deliver(agent, *rcpts)
        await agent.close()
    assert kinds(outcomes) == [
        ("Delivered", 250, "2.0.0"),
        ("Delivered", 250, "2.0.0"),
        ("Bounced", 554, "5.3.5"),
        ("Bounced", 553, "5.1.2"),
    ]
    assert not any(q.startswith("MX") for q in resolver.questions)
    assert outcomes[1].relay == f"127.0.0.1[127.0.0.1]:{mx.port}"


async def test_smart_host_with_auth_and_tls_policy(ca: trustme.CA) -> None:
    mx = FakeMx(
        keywords=("STARTTLS", "AUTH PLAIN"),
        tls_context=server_context(ca, "relay.example"),
        auth=("user", "pw"),
    )
    async with running(mx):
        nexthop = f"[relay.example]:{mx.port}"
        resolver = FakeResolver(mx={}, a={"relay.example": ["127.0.0.1"]})
        rcpt = EnvelopeRecipient(
            address="x@far.example",
            target=to_spec(Remote(address="x@far.example", nexthop=nexthop)),
        )
        agent = make_agent(
            25,
            resolver,
            ssl_context_factory=trusting(ca),
            routing=RoutingConfig(smart_host=nexthop),
            smart_host_user="user",
            smart_host_password="pw",
            tls_policy={"[relay.example]": "verify"},
        )
        assert kinds(await deliver(agent, rcpt)) == [("Delivered", 250, "2.0.0")]
        assert mx.messages[0].tls and agent.statistics()["tls"] == 1
        await agent.close()
        wrong = make_agent(
            25,
            resolver,
            ssl_context_factory=trusting(ca),
            routing=RoutingConfig(smart_host=nexthop),
            smart_host_user="user",
            smart_host_password="nope",
        )
        outcomes = await deliver(wrong, rcpt)
        assert kinds(outcomes) == [("Deferred", 435, "4.7.8")]
        await wrong.close()


async def test_tls_policy_verify_failure_defers(ca: trustme.CA) -> None:
    mx = FakeMx(keywords=("STARTTLS",), tls_context=server_context(ca, "someone.else"))
    async with running(mx):
        agent = make_agent(mx.port, ssl_context_factory=trusting(ca), tls_policy={DOMAIN: "verify"})
        outcomes = await deliver(agent)
        assert kinds(outcomes) == [("Deferred", 454, "4.7.5")]
        assert "not trusted" in outcomes[0].detail
        may = make_agent(mx.port, ssl_context_factory=trusting(ca))
        assert kinds(await deliver(may)) == [("Delivered", 250, "2.0.0")]
        await may.close()
        odd = make_agent(mx.port, tls_policy={DOMAIN: "sometimes"})
        assert kinds(await deliver(odd)) == [("Deferred", 451, "4.3.5")]


async def test_broken_tls_falls_back_to_plaintext() -> None:
    async with running(FakeMx(keywords=("STARTTLS",))) as mx:  # 220 then garbage
        agent = make_agent(mx.port)
        outcomes = await deliver(agent)
        await agent.close()
    assert kinds(outcomes) == [("Delivered", 250, "2.0.0")]
    assert mx.connections == 2 and not mx.messages[0].tls


async def test_rewriter_applies_to_headers_and_envelope_sender() -> None:
    rewriter = SenderRewriter(
        masquerade=Masquerade(
            masquerade_as="example.org",
            domains=("host.example.org",),
            envelope=True,
            hostname="host.example.org",
        ),
        hostname="host.example.org",
    )
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port, rewriter=rewriter)
        assert kinds(await deliver(agent)) == [("Delivered", 250, "2.0.0")]
        await agent.close()
    msg = mx.messages[0]
    assert msg.sender == "alice@example.org"
    assert msg.content.startswith(b"From: alice@example.org\r\n")
    assert msg.content.endswith(b"\r\n\r\nHello.\r\n")


async def test_a_list_owners_copies_go_in_their_own_transaction() -> None:
    def rcpt(address: str) -> bytes:
        return b"550 5.1.1 no such user" if address.startswith("gone@") else b"250 ok"

    owner = "owner-list@host.example.org"
    rcpts = [
        EnvelopeRecipient(address=f"a@{DOMAIN}"),
        EnvelopeRecipient(address=f"m1@{DOMAIN}", sender=owner),
        EnvelopeRecipient(address=f"gone@{DOMAIN}", sender=owner),
        EnvelopeRecipient(address=f"b@{DOMAIN}"),
        EnvelopeRecipient(address=f"m2@{DOMAIN}", sender=owner),
    ]
    async with running(FakeMx(rcpt_reply=rcpt)) as mx:
        agent = make_agent(mx.port, max_recipients=2)
        outcomes = await deliver(agent, *rcpts)
        await agent.close()
    assert [o.recipient for o in outcomes] == rcpts  # in order, whatever the grouping
    assert kinds(outcomes) == [("Delivered", 250, "2.0.0")] * 2 + [
        ("Bounced", 550, "5.1.1"),
        ("Delivered", 250, "2.0.0"),
        ("Delivered", 250, "2.0.0"),
    ]
    got = [(m.sender, m.recipients) for m in mx.messages]
    assert got == [
        ("alice@host.example.org", [f"a@{DOMAIN}", f"b@{DOMAIN}"]),
        (owner, [f"m1@{DOMAIN}"]),  # gone@ was refused at RCPT
        (owner, [f"m2@{DOMAIN}"]),  # max_recipients=2 per transaction
    ]
    assert mx.connections == 1  # one connection for all three transactions


async def test_an_owner_sender_is_masqueraded_like_any_envelope_sender() -> None:
    rewriter = SenderRewriter(
        masquerade=Masquerade(
            masquerade_as="example.org",
            domains=("host.example.org",),
            envelope=True,
            hostname="host.example.org",
        ),
        hostname="host.example.org",
    )
    rcpts = [
        EnvelopeRecipient(address=f"a@{DOMAIN}", sender="owner-list@host.example.org"),
        EnvelopeRecipient(address=f"b@{DOMAIN}"),
    ]
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port, rewriter=rewriter)
        outcomes = await deliver(agent, *rcpts, sender="")
        await agent.close()
    assert kinds(outcomes) == [("Delivered", 250, "2.0.0")] * 2
    got = sorted((m.sender, tuple(m.recipients)) for m in mx.messages)
    assert got == [("", (f"b@{DOMAIN}",)), ("owner-list@example.org", (f"a@{DOMAIN}",))]
    assert all(m.content.startswith(b"From: alice@example.org\r\n") for m in mx.messages)


async def test_dsn_parameters_and_orcpt_from_orig() -> None:
    mx = FakeMx(keywords=("PIPELINING", "DSN"))
    async with running(mx):
        agent = make_agent(mx.port)
        rcpt = EnvelopeRecipient(
            address=f"bob@{DOMAIN}", notify=frozenset({"SUCCESS"}), orig="list@example.org"
        )
        assert kinds(await deliver(agent, rcpt, ret="HDRS", envid="E1")) == [
            ("Delivered", 250, "2.0.0")
        ]
        await agent.close()
    rcpt_line = next(line for line in mx.lines if line.startswith(b"RCPT"))
    assert (
        rcpt_line
        == f"RCPT TO:<bob@{DOMAIN}> NOTIFY=SUCCESS ORCPT=rfc822;list@example.org\r\n".encode()
    )
    assert mx.messages[0].mail_params == ["RET=HDRS", "ENVID=E1"]


async def test_unreadable_queue_file_defers() -> None:
    def broken(queue_id: str) -> BinaryIO:
        raise FileNotFoundError(queue_id)

    agent = RemoteAgent(FakeResolver(), broken, config(25))
    outcomes = await deliver(agent)
    assert kinds(outcomes) == [("Deferred", 451, "4.3.0")]


# --- connections: reuse, limits -------------------------------------------------------------------


async def test_several_messages_over_one_connection() -> None:
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port, max_recipients=2)
        outcomes = await deliver(agent, *(f"r{i}@{DOMAIN}" for i in range(5)))
        assert kinds(outcomes) == [("Delivered", 250, "2.0.0")] * 5
        for _ in range(2):
            assert kinds(await deliver(agent)) == [("Delivered", 250, "2.0.0")]
        assert agent.statistics()["idle"] == 1
        await agent.close()
    assert [len(m.recipients) for m in mx.messages] == [2, 2, 1, 1, 1]
    assert mx.connections == 1 and mx.quits == 1
    stats = agent.statistics()
    assert stats["connections"] == 1 and stats["reused"] == 4 and stats["idle"] == 0


async def test_max_messages_per_connection() -> None:
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port, max_messages_per_connection=2)
        for _ in range(3):
            assert kinds(await deliver(agent)) == [("Delivered", 250, "2.0.0")]
        await agent.close()
    assert mx.connections == 2


async def test_a_stale_pooled_connection_is_replaced() -> None:
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port)
        await deliver(agent)
        pooled = agent._pool.take(f"{DOMAIN}")
        assert pooled is not None
        pooled._writer.transport.abort()
        agent._pool.put(DOMAIN, pooled)
        assert kinds(await deliver(agent)) == [("Delivered", 250, "2.0.0")]
        await agent.close()
    assert mx.connections == 2 and len(mx.messages) == 2


async def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port, idle_timeout=0.01)
        await deliver(agent)
        await asyncio.wait_for(mx.quit_seen.wait(), 5)
        await agent.close()
    assert agent.statistics()["idle"] == 0


async def test_no_pooling() -> None:
    async with running(FakeMx()) as mx:
        agent = make_agent(mx.port, idle_timeout=0)
        await deliver(agent)
        await deliver(agent)
        await agent.close()
    assert mx.connections == 2 and mx.quits == 2


@pytest.mark.parametrize(("per_destination", "total"), [(1, 10), (10, 1)])
async def test_connection_limits(per_destination: int, total: int) -> None:
    async with running(FakeMx()) as mx:
        agent = make_agent(
            mx.port,
            max_connections_per_destination=per_destination,
            max_connections=total,
            idle_timeout=0,
        )
        results = await asyncio.gather(*(deliver(agent) for _ in range(4)))
        await agent.close()
    assert all(kinds(r) == [("Delivered", 250, "2.0.0")] for r in results)
    assert mx.max_active == 1 and mx.connections == 4


async def test_different_destinations_in_parallel() -> None:
    async with running(FakeMx()) as mx:
        resolver = FakeResolver(
            mx={d: [MxHost(preference=1, host=MX_NAME)] for d in ("a.example", "b.example")}
        )
        agent = make_agent(mx.port, resolver, idle_timeout=0)
        outcomes = await deliver(agent, "x@a.example", "y@b.example", "z@a.example")
        await agent.close()
    assert kinds(outcomes) == [("Delivered", 250, "2.0.0")] * 3
    assert sorted(m.recipients for m in mx.messages) == [
        ["x@a.example", "z@a.example"],
        ["y@b.example"],
    ]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()
