"""The SMTP session against the engine, with the in-memory spool and injected faults."""

from __future__ import annotations

import dataclasses

from conftest import HOSTNAME
from postoffice.config.schema import Config, LimitsConfig
from postoffice.policy.relay import RecipientPolicy
from postoffice.queue.envelope import Envelope
from postoffice.routing.local import LocalRouter
from postoffice.smtp.session import SessionDeps
from postoffice.testing.memory_spool import MemorySpool
from postoffice.testing.transcript import run_engine

USERS = {"alice@example.test"}


def deps(spool: MemorySpool, submitted: list[Envelope], **limits: int) -> SessionDeps:
    config = Config(
        hostname=HOSTNAME,
        local_domains=("example.test", "localhost"),
        limits=dataclasses.replace(LimitsConfig(), **limits),
    )
    router = LocalRouter(local_domains=config.local_domains, hostname=HOSTNAME)
    return SessionDeps(
        config=config,
        policy=RecipientPolicy(
            local_domains=config.local_domains,
            user_exists=lambda a: a.lower() in USERS,
            trusted_networks=("127.0.0.0/8",),
        ),
        spool=spool,
        submit=submitted.append,
        qualify=router.qualify,
        clock=lambda: 1795000000.0,
    )


HEAD = "S: 220 *\nC: EHLO c.example\nS: 250-*\n" + "S: 250-*\n" * 6 + "S: 250 CHUNKING\n"


async def test_disk_full_at_commit_is_452_and_nothing_is_queued() -> None:
    spool, got = MemorySpool(), []
    spool.fail_next_commit()
    await run_engine(
        HEAD + "C: MAIL FROM:<a@b.example>\nS: 250 *\nC: RCPT TO:<alice@example.test>\n"
        "S: 250 *\nC: DATA\nS: 354 *\nC: hi\nC: .\nS: 452 4.3.1 *\n"
        # the session goes on: the client may try again
        "C: MAIL FROM:<a@b.example>\nS: 250 *\nC: RCPT TO:<alice@example.test>\n"
        "S: 250 *\nC: DATA\nS: 354 *\nC: hi\nC: .\nS: 250 2.0.0 Ok: *\n",
        deps(spool, got),
    )
    assert len(got) == 1 and len(spool.envelopes()) == 1


async def test_write_error_during_data_is_a_temporary_failure() -> None:
    spool, got = MemorySpool(), []
    spool.fail_next_write()  # the Received: line written at DATA
    await run_engine(
        HEAD + "C: MAIL FROM:<a@b.example>\nS: 250 *\nC: RCPT TO:<alice@example.test>\n"
        "S: 250 *\nC: DATA\nS: 452 4.3.1 *\n",
        deps(spool, got),
    )
    assert got == [] and spool.envelopes() == []


async def test_long_address_is_cut_in_the_reply() -> None:
    spool, got = MemorySpool(), []
    lines = await run_engine(
        HEAD + "C: MAIL FROM:<a@b.example>\nS: 250 *\n"
        f"C: RCPT TO:<{'n' * 2500}@example.test>\nS: 550 5.1.1 <nnn*...>... User unknown\n",
        deps(spool, got),
    )
    assert all(len(line) + 2 <= 512 for line in lines)  # RFC 5321 §4.5.3.1.5


async def test_hop_count_split_across_chunks() -> None:
    spool, got = MemorySpool(), []
    received = "C: Received: from x by y; Sat, 21 Nov 2026 17:00:00 +0000\n" * 3
    await run_engine(
        HEAD + "C: MAIL FROM:<a@b.example>\nS: 250 *\nC: RCPT TO:<alice@example.test>\n"
        "S: 250 *\nC: DATA\nS: 354 *\n" + received + "C:\nC: body\nC: .\nS: 554 5.4.6 *\n",
        deps(spool, got, max_hops=3),
    )
    assert got == []


async def test_received_and_envelope() -> None:
    spool, got = MemorySpool(), []
    await run_engine(
        HEAD + "C: MAIL FROM:<a@b.example> BODY=8BITMIME RET=HDRS ENVID=xyz\nS: 250 *\n"
        "C: RCPT TO:<alice@example.test> NOTIFY=FAILURE,DELAY\nS: 250 *\n"
        "C: RCPT TO:<postmaster>\nS: 250 *\nC: DATA\nS: 354 *\nC: Subject: s\nC:\nC: b\nC: .\n"
        "S: 250 2.0.0 Ok: queued as *\n",
        deps(spool, got),
    )
    (env,) = got
    assert env.sender == "a@b.example" and env.body_type == "8BITMIME"
    assert env.ret == "HDRS" and env.envid == "xyz"
    assert [r.address for r in env.recipients] == ["alice@example.test", f"postmaster@{HOSTNAME}"]
    assert env.recipients[0].notify == frozenset({"FAILURE", "DELAY"})
    with spool.open_body(env.queue_id) as f:
        body = f.read()
    first = body.split(b"\r\n\t")[0]
    assert first == b"Received: from c.example (localhost [127.0.0.1])"
    assert f"with ESMTP id {env.queue_id}".encode() in body
    assert body.endswith(b"Subject: s\r\n\r\nb\r\n")
