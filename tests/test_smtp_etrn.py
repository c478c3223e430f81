"""ETRN (RFC 1985): the engine's parsing, the session's answers, and a flush of the real spool."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import HOSTNAME
from postoffice.cli.queue import flush_for_etrn
from postoffice.config.schema import Config
from postoffice.errors import TempFail
from postoffice.policy.relay import RecipientPolicy
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.spool import FileSpool
from postoffice.routing.local import LocalRouter
from postoffice.smtp import events as ev
from postoffice.smtp.events import EngineConfig, Etrn
from postoffice.smtp.protocol import ServerProtocol
from postoffice.smtp.replies import Reply
from postoffice.smtp.session import FlushDomain, SessionDeps
from postoffice.smtp.wire import ehlo_keywords
from postoffice.testing.memory_spool import MemorySpool
from postoffice.testing.transcript import run_engine

ETRN_ON = EngineConfig(hostname=HOSTNAME, etrn=True)

# --- the node argument ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "node", "kind"),
    [
        ("example.org", "example.org", "domain"),
        ("Office.Example.ORG.", "office.example.org", "domain"),
        ("@example.org", "example.org", "subdomains"),
        ("#outgoing", "outgoing", "queue"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example", "domain"),
    ],
)
def test_etrn_nodes(argument: str, node: str, kind: str) -> None:
    e = Etrn.from_argument(argument)
    assert e is not None and (e.node, e.kind, e.argument) == (node, kind, argument)


@pytest.mark.parametrize(
    "argument",
    ["", "a b", "@", "#", "-bad.example", "bad-.example", "a..b", "under_score.example",
     "b\u00fccher.example", "[192.0.2.1]", "x" * 64 + ".example", "a@b.example"],
)  # fmt: skip
def test_etrn_non_nodes(argument: str) -> None:
    assert Etrn.from_argument(argument) is None


def test_selects_the_domain_or_its_subdomains() -> None:
    one = Etrn.from_argument("example.org")
    sub = Etrn.from_argument("@example.org")
    queue = Etrn.from_argument("#q")
    assert one is not None and sub is not None and queue is not None
    assert one.selects("EXAMPLE.org.") and not one.selects("a.example.org")
    assert sub.selects("example.org") and sub.selects("a.b.example.org")
    assert not sub.selects("badexample.org") and not queue.selects("q")


# --- the engine --------------------------------------------------------------------


def feed(engine: ServerProtocol, data: bytes) -> tuple[list[ev.Event], list[str]]:
    events = engine.receive_data(data)
    return events, engine.data_to_send().decode().splitlines()


def test_etrn_is_advertised_and_becomes_an_event() -> None:
    assert "ETRN" in ehlo_keywords(ETRN_ON)
    assert "ETRN" not in ehlo_keywords(EngineConfig(hostname=HOSTNAME))
    engine = ServerProtocol(ETRN_ON)
    events, lines = feed(engine, b"ETRN example.org\r\n")
    assert lines == ["503 Bad sequence of commands"]  # RFC 1985: after EHLO
    feed(engine, b"EHLO client.example\r\n")
    engine.answer(Reply(code=250, text=HOSTNAME))
    assert "250 ETRN" in engine.data_to_send().decode().splitlines()
    events, lines = feed(engine, b"ETRN @Example.org\r\nNOOP\r\n")
    assert events == [Etrn(node="example.org", kind="subdomains", argument="@Example.org")]
    assert events[0].needs_answer
    engine.answer(Reply(code=250, enhanced="2.0.0", text="Queuing for node @Example.org started"))
    events, lines = feed(engine, b"")  # the pipelined NOOP runs once ETRN is answered
    assert lines == ["250 2.0.0 Queuing for node @Example.org started", "250 2.0.0 Ok"]


def test_engine_refusals() -> None:
    engine = ServerProtocol(ETRN_ON)
    feed(engine, b"EHLO c.example\r\n")
    engine.answer(Reply(code=250, text=HOSTNAME))
    engine.data_to_send()
    for line, want in [
        (b"ETRN\r\n", "501 5.5.4 *"),
        (b"ETRN a b\r\n", "501 5.5.4 *"),
        (b"ETRN bad_name.example\r\n", "501 5.5.4 *"),
    ]:
        events, lines = feed(engine, line)
        assert isinstance(events[0], ev.CommandRejected) and lines[0].startswith(want[:9])
    feed(engine, b"MAIL FROM:<a@b.example>\r\n")
    engine.answer(Reply(code=250, text="ok"))
    engine.data_to_send()
    events, lines = feed(engine, b"ETRN example.org\r\n")  # not during a transaction
    assert lines == ["503 5.5.1 Bad sequence of commands"]
    off = ServerProtocol(EngineConfig(hostname=HOSTNAME))
    feed(off, b"EHLO c.example\r\n")
    off.answer(Reply(code=250, text=HOSTNAME))
    off.data_to_send()
    assert feed(off, b"ETRN example.org\r\n")[1] == ["502 5.5.1 Command not implemented"]


# --- the session ---------------------------------------------------------------------

HEAD = "S: 220 *\nC: EHLO c.example\n" + "S: 250-*\n" * 8 + "S: 250 ETRN\n"


def etrn_deps(flush: FlushDomain | None = None) -> SessionDeps:
    config = Config(hostname=HOSTNAME, local_domains=("example.test", "localhost"))
    router = LocalRouter(local_domains=config.local_domains, hostname=HOSTNAME)
    return SessionDeps(
        config=config,
        policy=RecipientPolicy(
            local_domains=config.local_domains,
            user_exists=lambda a: False,
            trusted_networks=("127.0.0.0/8",),
        ),
        spool=MemorySpool(),
        submit=lambda envelope: None,
        qualify=router.qualify,
        flush_domain=flush,
    )


async def test_session_answers() -> None:
    asked: list[Etrn] = []

    async def flush(node: Etrn) -> int:
        asked.append(node)
        return 0 if node.node == "empty.example" else 3

    await run_engine(
        HEAD
        + "C: ETRN office.example\nS: 250 2.0.0 Queuing for node office.example started\n"
        + "C: ETRN @Office.Example\nS: 250 2.0.0 Queuing for node @Office.Example started\n"
        + "C: ETRN empty.example\nS: 251 2.0.0 OK, no messages waiting for node empty.example\n"
        + "C: ETRN example.test\n"
        + "S: 459 4.7.0 Node example.test not allowed: mail for it is delivered here\n"
        + "C: ETRN #outgoing\n"
        + "S: 459 4.5.4 Node #outgoing not allowed: queue names are not supported\n"
        + "C: QUIT\nS: 221 *\n",
        etrn_deps(flush),
        engine_config=ETRN_ON,
    )
    assert [(a.node, a.kind) for a in asked] == [
        ("office.example", "domain"), ("office.example", "subdomains"), ("empty.example", "domain"),
    ]  # fmt: skip


async def test_session_without_a_queue_or_with_a_failing_one() -> None:
    await run_engine(
        HEAD + "C: ETRN office.example\nS: 458 4.3.0 Unable to queue messages for node office.*\n",
        etrn_deps(None),
        engine_config=ETRN_ON,
    )

    async def broken(node: Etrn) -> int:
        raise TempFail(reply=Reply(code=458, enhanced="4.3.0", text="try later"), reason="disk")

    await run_engine(
        HEAD + "C: ETRN office.example\nS: 458 4.3.0 try later\n",
        etrn_deps(broken),
        engine_config=ETRN_ON,
    )


# --- flushing a real spool (what app.py wires) -------------------------------------------


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[FileSpool]:
    s = FileSpool(tmp_path / "state", durable=False)
    yield s
    s.close()


async def deferred(spool: FileSpool, *rcpts: str) -> str:
    msg = spool.begin()
    msg.write(b"Subject: x\r\n\r\nx\r\n")
    env = Envelope(
        queue_id=msg.queue_id,
        sender="a@b.test",
        recipients=tuple(EnvelopeRecipient(address=r) for r in rcpts),
        arrival_time=time.time() - 600,
        size=msg.size,
    )
    await spool.commit(msg, env)
    later = dataclasses.replace(env, attempts=1, next_attempt=time.time() + 3600)
    await spool.update(later, deferred=True)
    return msg.queue_id


async def test_etrn_requeues_the_nodes_deferred_mail(spool: FileSpool) -> None:
    office = await deferred(spool, "bob@office.example", "x@elsewhere.example")
    sub = await deferred(spool, "carol@branch.office.example")
    other = await deferred(spool, "dave@elsewhere.example")
    reader = os.open(spool.trigger_path, os.O_RDONLY | os.O_NONBLOCK)  # a "running server"

    flush = flush_for_etrn(spool)

    try:
        await run_engine(
            HEAD
            + "C: ETRN office.example\nS: 250 2.0.0 Queuing for node office.example started\n"
            + "C: ETRN @office.example\nS: 250 2.0.0 *\n"
            + "C: ETRN nothing.example\nS: 251 2.0.0 *\n",
            etrn_deps(flush),
            engine_config=ETRN_ON,
        )
        assert os.read(reader, 16)  # the trigger was pulled
    finally:
        os.close(reader)
    states = {qid: e.state for qid in (office, sub, other) if (e := spool.load(qid))}
    assert states == {office: "active", sub: "active", other: "deferred"}
    entry = spool.load(office)
    assert entry is not None and entry.envelope.next_attempt <= time.time()
