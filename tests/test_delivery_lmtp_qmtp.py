"""The LMTP and QMTP delivery agents: next-hop spellings, outcomes, and a queue run end to end."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from postoffice.config.schema import QueueConfig
from postoffice.delivery.lmtp import Endpoint, LmtpAgent, outcome, parse_nexthop
from postoffice.delivery.qmtp import QmtpAgent
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Delivered, Outcome
from postoffice.queue.manager import QueueManager
from postoffice.queue.spool import FileSpool
from postoffice.routing.targets import Mailbox, Remote, from_spec, to_spec, transport
from postoffice.smtp import replies
from postoffice.smtp.qmtp import start_qmtp_server
from postoffice.smtp.replies import Reply
from test_lmtp_client import Store, start_store
from test_smtp_qmtp import Handler

# --- next hops ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nexthop", "endpoint"),
    [
        ("lmtp:unix:/run/dovecot/lmtp", Endpoint(path="/run/dovecot/lmtp")),
        ("lmtp:/run/dovecot/lmtp", Endpoint(path="/run/dovecot/lmtp")),
        ("lmtp:store.example:2424", Endpoint(host="store.example", port=2424)),
        ("lmtp:[store.example]:2424", Endpoint(host="store.example", port=2424)),
        ("lmtp:[store.example]", Endpoint(host="store.example", port=24)),
        ("lmtp:store.example", Endpoint(host="store.example", port=24)),
        ("LMTP:inet:10.0.0.5:24", Endpoint(host="10.0.0.5", port=24)),
        ("lmtp:[2001:db8::1]:24", Endpoint(host="2001:db8::1", port=24)),
        ("lmtp:[IPv6:::1]", Endpoint(host="::1", port=24)),
    ],
)
def test_lmtp_nexthops(nexthop: str, endpoint: Endpoint) -> None:
    assert parse_nexthop(nexthop, "lmtp", 24) == endpoint


def test_qmtp_nexthops_default_to_port_209() -> None:
    assert parse_nexthop("qmtp:gw.office.example", "qmtp", 209) == Endpoint(
        host="gw.office.example", port=209
    )
    assert parse_nexthop("qmtp:[gw]:2209", "qmtp", 209).port == 2209
    assert parse_nexthop("qmtp:unix:/run/qmtp", "qmtp", 209).path == "/run/qmtp"
    assert Endpoint(host="::1", port=209).label == "[::1]:209"


@pytest.mark.parametrize(
    "nexthop",
    ["smtp:[mx]", "lmtp:", "lmtp:host:0", "lmtp:host:99999", "lmtp:host:x", "lmtp:2001:db8::1",
     "lmtp:[host", "lmtp:[host]x", "lmtp:unix:relative", "lmtp:a b", "lmtp", "lmtp:[]:24"],
)  # fmt: skip
def test_bad_nexthops(nexthop: str) -> None:
    with pytest.raises(ValueError):
        parse_nexthop(nexthop, "lmtp", 24)


def test_routing_sends_these_nexthops_to_their_agents() -> None:
    assert transport(Remote(address="a@b", nexthop="lmtp:unix:/x")) == "lmtp"
    assert transport(Remote(address="a@b", nexthop="qmtp:host")) == "qmtp"


def test_outcomes_from_replies() -> None:
    rcpt = EnvelopeRecipient(address="a@b")
    ok = outcome(rcpt, Reply(code=250, text="Saved"), relay="h[1.2.3.4]:24", stage="end of DATA")
    assert isinstance(ok, Delivered) and ok.reply.enhanced == "2.0.0" and ok.detail == "Saved"
    later = outcome(rcpt, replies.MAILBOX_BUSY, relay="h", stage="RCPT TO")
    assert isinstance(later, Deferred)
    assert later.detail == f"host h said: {replies.MAILBOX_BUSY} (in reply to RCPT TO)"
    never = outcome(rcpt, Reply(code=550, text="no"), relay="h", stage="")
    assert isinstance(never, Bounced) and never.reply.enhanced == "5.0.0"


# --- the agents against fake peers ------------------------------------------------------

BODY = b"Subject: agents\r\n\r\n.dot\r\nbody\r\n"


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[FileSpool]:
    s = FileSpool(tmp_path / "state", durable=False)
    yield s
    s.close()


async def queue(spool: FileSpool, targets: Sequence[tuple[str, str]]) -> Envelope:
    msg = spool.begin()
    msg.write(BODY)
    env = Envelope(
        queue_id=msg.queue_id,
        sender="alice@a.test",
        recipients=tuple(
            EnvelopeRecipient(address=a, target=to_spec(Remote(address=a, nexthop=n)))
            for a, n in targets
        ),
        arrival_time=0.0,
        size=msg.size,
    )
    await spool.commit(msg, env)
    return env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kinds(outcomes: Sequence[Outcome]) -> list[str]:
    return [type(o).__name__ for o in outcomes]


async def test_lmtp_agent_maps_each_reply(spool: FileSpool, tmp_path: Path) -> None:
    store = Store(
        rcpt={"gone@b.test": replies.USER_UNKNOWN},
        final={"full@b.test": Reply(code=452, text="Mailbox is full")},
    )
    sock = str(tmp_path / "lmtp.sock")
    srv, _ = await start_store(store, sock)
    nexthop = f"lmtp:unix:{sock}"
    env = await queue(
        spool,
        [("bob@b.test", nexthop), ("gone@b.test", nexthop), ("full@b.test", nexthop),
         ("odd@b.test", "lmtp:a b"), ("carol@b.test", nexthop)],
    )  # fmt: skip
    agent = LmtpAgent(open_body=spool.open_body, hostname="mail.a.test", max_recipients=2)
    try:
        got = await agent.deliver(env, env.recipients)
    finally:
        srv.close()
        await srv.wait_closed()
    assert kinds(got) == ["Delivered", "Bounced", "Deferred", "Deferred", "Delivered"]
    assert [o.recipient.address for o in got] == [r.address for r in env.recipients]
    assert got[0].relay == sock and got[0].detail == "<bob@b.test> Saved"
    assert got[1].reply.enhanced == "5.1.1" and "(in reply to RCPT TO)" in got[1].detail
    assert got[2].reply == Reply(code=452, enhanced="4.0.0", text="Mailbox is full")
    assert got[3].reply.enhanced == "4.3.5" and got[3].relay == "none"
    # two transactions of at most two recipients each (gone@ was refused in the first)
    assert [m[1] for m in store.messages] == [["bob@b.test"], ["full@b.test", "carol@b.test"]]
    assert all(m[2] == BODY and m[3] == "mail.a.test" for m in store.messages)


async def test_lmtp_agent_defers_when_the_store_is_down(spool: FileSpool) -> None:
    port = closed_port()
    env = await queue(spool, [("bob@b.test", f"lmtp:127.0.0.1:{port}")])
    got = await LmtpAgent(open_body=spool.open_body, hostname="h").deliver(env, env.recipients)
    assert kinds(got) == ["Deferred"]
    assert got[0].reply.enhanced == "4.4.1" and got[0].relay == f"127.0.0.1:{port}"
    assert f"connect to 127.0.0.1:{port}" in got[0].detail


async def test_qmtp_agent_maps_each_response(spool: FileSpool) -> None:
    handler = Handler({"full@b.test": replies.MAILBOX_BUSY, "gone@b.test": replies.USER_UNKNOWN})
    server = await start_qmtp_server(handler, "127.0.0.1", 0)
    port = server.addresses[0][1]
    hop = f"qmtp:[127.0.0.1]:{port}"
    down = f"qmtp:127.0.0.1:{closed_port()}"
    env = await queue(
        spool,
        [("bob@b.test", hop), ("full@b.test", hop), ("gone@b.test", hop), ("x@c.test", down),
         ("carol@b.test", hop)],
    )  # fmt: skip
    try:
        got = await QmtpAgent(open_body=spool.open_body, max_recipients=3).deliver(
            env, env.recipients
        )
    finally:
        await server.stop()
    assert kinds(got) == ["Delivered", "Deferred", "Bounced", "Deferred", "Delivered"]
    assert got[1].reply.enhanced == "4.2.1" and got[2].reply.enhanced == "5.1.1"
    assert got[3].reply.enhanced == "4.4.1" and "connect to" in got[3].detail
    assert got[0].relay.startswith("127.0.0.1[127.0.0.1]:")
    assert handler.store == [
        ("alice@a.test", ["bob@b.test", "full@b.test", "gone@b.test"], BODY),
        ("alice@a.test", ["carol@b.test"], BODY),
    ]
    assert len(handler.peers) == 2 and handler.peers[0] == handler.peers[1]  # one connection


async def test_a_queue_run_delivers_over_lmtp_and_qmtp(spool: FileSpool, tmp_path: Path) -> None:
    """The integration app.py does: agents by transport name, routing.targets.transport."""
    store = Store()
    sock = str(tmp_path / "lmtp.sock")
    srv, _ = await start_store(store, sock)
    handler = Handler()
    qmtp = await start_qmtp_server(handler, "127.0.0.1", 0)
    env = await queue(
        spool,
        [
            ("bob@b.test", f"lmtp:{sock}"),
            ("carol@c.test", f"qmtp:127.0.0.1:{qmtp.addresses[0][1]}"),
        ],
    )

    def transport_for(envelope: Envelope, rcpt: EnvelopeRecipient) -> str:
        target = from_spec(rcpt.address, rcpt.target)
        assert not isinstance(target, Mailbox)
        return transport(target)

    manager = QueueManager(
        spool,
        {
            "lmtp": LmtpAgent(open_body=spool.open_body, hostname="mail.a.test"),
            "qmtp": QmtpAgent(open_body=spool.open_body),
        },
        transport_for,
        QueueConfig(),
    )
    try:
        manager.submit_nowait(env)
        assert await manager.run_due() == 1
    finally:
        srv.close()
        await srv.wait_closed()
        await qmtp.stop()
    assert spool.load(env.queue_id) is None  # delivered and removed
    assert [m[1] for m in store.messages] == [["bob@b.test"]]
    assert [m[1] for m in handler.store] == [["carol@c.test"]]
