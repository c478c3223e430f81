"""`postoffice queue` and `sendmail -q...`: selecting, showing, moving and flushing queued mail."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from conftest import Site
from postoffice.cli.main import main
from postoffice.cli.queue import Filter, format_entry, matches, requeue_where, server_running
from postoffice.cli.sendmail import UsageError, parse_args
from postoffice.cli.sendmail import main as sendmail_main
from postoffice.config.schema import QueueConfig
from postoffice.queue.envelope import Envelope, EnvelopeRecipient, RcptState
from postoffice.queue.interfaces import Delivered, Outcome, QueueEntry
from postoffice.queue.manager import QueueManager
from postoffice.queue.spool import FileSpool
from postoffice.smtp.replies import Reply
from postoffice.testing.clock import FakeClock

NOW = time.time()


def make(state: Path, sender: str, *rcpts: str, where: str = "deferred", reason: str = "") -> str:
    """Queue one message in `where` (active, deferred or hold); its id."""
    spool = FileSpool(state, durable=False)

    async def go() -> str:
        msg = spool.begin()
        msg.write(b"Subject: queued\r\n\r\nbody\r\n")
        env = Envelope(
            queue_id=msg.queue_id,
            sender=sender,
            recipients=tuple(EnvelopeRecipient(address=r, reason=reason) for r in rcpts),
            arrival_time=NOW - 7200,
            size=msg.size,
        )
        await spool.commit(msg, env)
        if where != "active":
            later = dataclasses.replace(
                env, attempts=2, next_attempt=NOW + 3600, last_reason=reason
            )
            await spool.update(later, deferred=True)
        if where == "hold":
            await spool.hold(msg.queue_id)
        return msg.queue_id

    try:
        return asyncio.run(go())
    finally:
        spool.close()


def state_of(site: Site, qid: str) -> str | None:
    spool = FileSpool(site.state, durable=False)
    try:
        entry = spool.load(qid)
        return entry.state if entry else None
    finally:
        spool.close()


def run(site: Site, *argv: str) -> int:
    return main(["-c", str(site.config), "queue", *argv])


@pytest.fixture
def three(site: Site) -> tuple[str, str, str]:
    a = make(site.state, "alice@a.test", "bob@office.example", reason="451 4.4.1 No route")
    b = make(site.state, "carol@c.test", "dave@elsewhere.example")
    c = make(site.state, "alice@a.test", "erin@elsewhere.example", where="active")
    return a, b, c


@pytest.fixture
def running(site: Site) -> Iterator[int]:
    """A reader on the trigger FIFO: to these commands, a running server."""
    spool = FileSpool(site.state, durable=False)
    fd = os.open(spool.trigger_path, os.O_RDONLY | os.O_NONBLOCK)
    spool.close()
    try:
        yield fd
    finally:
        os.close(fd)


def pulled(fd: int) -> bool:
    try:
        return bool(os.read(fd, 64))
    except BlockingIOError:
        return False


# --- selecting ---------------------------------------------------------------------------


def test_filters_follow_sendmail() -> None:
    env = Envelope(
        queue_id="01ABC", sender="Alice@A.test", arrival_time=0.0,
        recipients=(EnvelopeRecipient(address="bob@x.test", orig="list@y.test"),
                    EnvelopeRecipient(address="done@z.test", state=RcptState.DELIVERED)),
    )  # fmt: skip
    assert matches(env, [])
    assert matches(env, [Filter(kind="sender", text="alice@a")])  # case-insensitive
    assert matches(env, [Filter(kind="recipient", text="list@")])  # the original address too
    assert not matches(env, [Filter(kind="recipient", text="done@")])  # only pending ones
    r = [Filter(kind="recipient", text="nope"), Filter(kind="recipient", text="@x.test")]
    assert matches(env, r)  # one kind: or
    assert not matches(env, [*r, Filter(kind="sender", text="carol")])  # kinds: and
    assert matches(env, [Filter(kind="queue_id", text="abc")])
    assert not matches(env, [Filter(kind="queue_id", text="abc", negate=True)])


def test_list_with_filters(
    site: Site, three: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = three
    assert run(site, "list") == 0
    out = capsys.readouterr().out
    assert all(q in out for q in three) and "(Deferred: 451 4.4.1 No route)" in out
    assert run(site, "list", "-s", "ALICE", "-r", "elsewhere") == 0
    out = capsys.readouterr().out
    assert c in out and a not in out and b not in out and "(1 request)" in out


# --- show ------------------------------------------------------------------------------


def test_format_entry() -> None:
    env = Envelope(
        queue_id="01JD7Q4W2N000000000000ABCD", sender="", arrival_time=1795000000.0,
        recipients=(EnvelopeRecipient(address="bob@x.test", state=RcptState.PENDING,
                                      reason="451 4.4.1 No route", orig="list@y.test",
                                      notify=frozenset({"FAILURE"})),
                    EnvelopeRecipient(address="carol@x.test", state=RcptState.DELIVERED,
                                      reason="250 2.0.0 delivered to maildir")),
        size=1234, attempts=3, next_attempt=1795000000.0 + 7200 + 2520,
        last_reason="451 4.4.1 No route", client_address="192.0.2.1", client_name="c.example",
        helo="c.example", ret="HDRS", envid="e1",
    )  # fmt: skip
    text = format_entry(
        QueueEntry(envelope=env, state="deferred"), now=1795000000.0 + 7200, tz=datetime.UTC
    )
    assert text.splitlines() == [
        "Queue ID:      01JD7Q4W2N000000000000ABCD",
        "Queue:         deferred",
        "Arrival:       2026-11-18 11:06:40 (2h 0m ago)",
        "Sender:        <>  (the null sender)",
        "Size:          1234 bytes, 7BIT",
        "Attempts:      3",
        "Next attempt:  2026-11-18 13:48:40 (in 42m 0s)",
        "Last reason:   451 4.4.1 No route",
        "Client:        c.example[192.0.2.1] (helo=c.example, ESMTP)",
        "DSN:           RET=HDRS ENVID=e1",
        "Recipients:    2 (1 pending)",
        "  <bob@x.test>  pending  (451 4.4.1 No route)",
        "      for <list@y.test>; NOTIFY=FAILURE",
        "  <carol@x.test>  delivered  (250 2.0.0 delivered to maildir)",
    ]
    held = format_entry(QueueEntry(envelope=env, state="hold"), now=0.0, tz=datetime.UTC)
    assert "Queue:         hold (held by the administrator)" in held
    assert "Next attempt:  none while held" in held


def test_show(site: Site, three: tuple[str, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    a, _, _ = three
    assert run(site, "show", a) == 0
    out = capsys.readouterr().out
    assert f"Queue ID:      {a}" in out and "Sender:        <alice@a.test>" in out
    assert "  <bob@office.example>  pending  (451 4.4.1 No route)" in out
    assert "Attempts:      2" in out and "(2h 0m ago)" in out
    assert run(site, "show", "NOSUCHID", a) == 1
    captured = capsys.readouterr()
    assert captured.err == "postoffice: NOSUCHID: no such message in the queue\n"
    assert a in captured.out


# --- hold, release, delete, requeue -------------------------------------------------------


def test_hold_and_release_by_filter_and_all(
    site: Site, three: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = three
    assert run(site, "hold", "-s", "alice") == 0
    assert capsys.readouterr().out.splitlines() == sorted([f"{a}: held", f"{c}: held"])
    assert [state_of(site, q) for q in three] == ["hold", "deferred", "hold"]
    assert run(site, "release", "ALL") == 0
    assert [state_of(site, q) for q in three] == ["active", "deferred", "active"]
    assert run(site, "release", b) == 1  # not held
    assert "not hold" in capsys.readouterr().err


def test_delete(
    site: Site, three: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _ = three
    assert run(site, "delete") == 1  # names nothing: refused
    assert "name the messages" in capsys.readouterr().err
    assert run(site, "delete", a, "-r", "nomatch") == 0  # the filter leaves nothing
    assert state_of(site, a) == "deferred"
    assert run(site, "delete", a, b) == 0
    assert capsys.readouterr().out.splitlines() == [f"{a}: deleted", f"{b}: deleted"]
    assert [state_of(site, q) for q in three] == [None, None, "active"]
    assert not (site.state / "queue" / "body" / a).exists()


def test_requeue_without_a_server(
    site: Site, three: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    a = three[0]
    assert run(site, "requeue", "-r", "office") == 0
    captured = capsys.readouterr()
    assert captured.out == f"{a}: requeued\n" and "no server is running" in captured.err
    assert [state_of(site, q) for q in three] == ["active", "deferred", "active"]
    spool = FileSpool(site.state, durable=False)
    entry = spool.load(a)
    spool.close()
    assert entry is not None and entry.envelope.next_attempt <= time.time()
    assert entry.envelope.attempts == 2  # nothing else changed


# --- flush and sendmail -q ----------------------------------------------------------------


def test_flush_needs_a_running_server(
    site: Site, three: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(site, "flush") == 75
    assert capsys.readouterr().err == "postoffice: cannot flush the queue: no server is running\n"
    assert [state_of(site, q) for q in three] == ["deferred", "deferred", "active"]


def test_flush_requeues_everything_and_wakes_the_server(
    site: Site, three: tuple[str, str, str], running: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(site, "flush") == 0
    assert capsys.readouterr().out == "queue run requested (2 deferred messages requeued)\n"
    assert [state_of(site, q) for q in three] == ["active", "active", "active"]
    assert pulled(running)


def test_sendmail_q(
    site: Site, three: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    b = three[1]
    cfg = f"-C{site.config}"
    assert sendmail_main([cfg, "-q"]) == 75
    assert "no postoffice server is running" in capsys.readouterr().err
    assert sendmail_main([cfg, "-q20m"]) == 0
    assert "s ([queue] run_interval); -q1200s changes nothing" in capsys.readouterr().out
    spool = FileSpool(site.state, durable=False)
    fd = os.open(spool.trigger_path, os.O_RDONLY | os.O_NONBLOCK)
    spool.close()
    try:
        assert sendmail_main([cfg, "-qR", "OFFICE.example"]) == 0
        assert [state_of(site, q) for q in three] == ["active", "deferred", "active"]
        assert pulled(fd)
        assert sendmail_main([cfg, "-q!Scarol"]) == 0  # carol's is the only one left deferred
        assert state_of(site, b) == "deferred"
        assert sendmail_main([cfg, f"-qI{b[-6:].lower()}"]) == 0
        assert state_of(site, b) == "active"
        assert sendmail_main([cfg, "-q"]) == 0 and pulled(fd)
    finally:
        os.close(fd)
    assert sendmail_main([cfg, "-qX"]) == 64


@pytest.mark.parametrize(
    ("argv", "run", "interval", "filters"),
    [
        (["-q"], True, None, []),
        (["-q20m"], False, 1200.0, []),
        (["-q1h30m"], False, 5400.0, []),
        (["-q15"], False, 900.0, []),  # sendmail: minutes when no unit is given
        (["-q2d", "-q30s"], False, 30.0, []),
        (["-qRfoo"], True, None, [("R", "foo", False)]),
        (["-qR", "foo", "-qS", "bar"], True, None, [("R", "foo", False), ("S", "bar", False)]),
        (["-q!Ibar"], True, None, [("I", "bar", True)]),
    ],
)
def test_sendmail_q_flags(
    argv: list[str], run: bool, interval: float | None, filters: list[tuple[str, str, bool]]
) -> None:
    o = parse_args(argv)
    assert (o.queue_run, o.queue_interval, o.queue_filters, o.recipients) == (
        run, interval, filters, []
    )  # fmt: skip


@pytest.mark.parametrize("argv", [["-qR"], ["-qS", ""], ["-q!"], ["-qG1"], ["-qf"], ["-qp"]])
def test_unsupported_q_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


def test_server_running(tmp_path: Path) -> None:
    assert not server_running(str(tmp_path / "none"))
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    assert not server_running(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert server_running(fifo)
    finally:
        os.close(fd)


# --- what the running server must do with a requeued message -------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        self.calls.append(envelope.queue_id)
        return [Delivered(recipient=r, reply=Reply(code=250, text="ok")) for r in recipients]


async def test_the_manager_delivers_a_requeued_message_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    qid = await asyncio.to_thread(make, state, "a@b.test", "c@d.test")
    spool = FileSpool(state, durable=False)
    agent = Recorder()
    clock = FakeClock(NOW)
    manager = QueueManager(spool, {"smtp": agent}, lambda e, r: "smtp", QueueConfig(), clock)
    try:
        await manager.run_queue()  # scheduled for its retry time, an hour away
        assert agent.calls == []
        await requeue_where(spool, lambda e: True, now=clock())
        await manager.run_queue()  # the scan the trigger causes finds it in active/
        assert agent.calls == [qid]
    finally:
        await manager.stop()
        spool.close()
