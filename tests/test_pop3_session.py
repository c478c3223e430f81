"""The POP3 session through the real adapter and engine, over MemoryStore (no sockets).

The maildrop lock (a second session: -ERR [IN-USE]), UPDATE only after
QUIT (a dropped connection deletes nothing and marks nothing \\Seen),
delete_on_retr, a snapshot that ignores mail arriving meanwhile (and the
next session sees it), messages expunged under the session, store failures,
the shared failure throttle, SASL CRAM-MD5, batched RETR reads, and the
Dovecot-style log lines.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import pytest

from conftest import make_site
from pop3_support import MAILDROPS, MemoryDrops, memory_deps, sized_message
from postoffice.auth.throttle import FailureThrottle
from postoffice.config.load import load_config
from postoffice.errors import TempFail
from postoffice.pop3 import session as session_module
from postoffice.pop3.server import Pop3Connection, Pop3Server
from postoffice.pop3.session import Client, Pop3Deps
from postoffice.smtp.replies import Reply as SmtpReply
from postoffice.store.interfaces import SEEN
from postoffice.testing.memory_store import MemoryFolder
from postoffice.testing.pop3_transcript import MemoryTransport, settle

LOGIN = b"USER alice@example.test\r\nPASS secret-pw\r\n"


class Dialog:
    """One connection through Pop3Connection and an in-memory transport."""

    def __init__(self, deps: Pop3Deps, ip: str = "127.0.0.1") -> None:
        self.conn = Pop3Connection(Pop3Server(deps))
        self.transport = MemoryTransport(Client(ip=ip, port=1234, local_ip="127.0.0.1"))
        self.conn.connection_made(self.transport)
        self.greeting = self.take()

    def take(self) -> str:
        out = bytes(self.transport.out).decode()
        self.transport.out.clear()
        return out

    async def send(self, data: bytes) -> str:
        self.conn.data_received(data)
        await settle(self.conn)
        return self.take()

    async def login(self) -> str:
        await self.send(b"USER alice@example.test\r\n")
        return await self.send(b"PASS secret-pw\r\n")

    async def drop(self) -> None:
        self.conn.connection_lost(None)
        await settle(self.conn)


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_config(str(make_site(tmp_path / "site").config))


@pytest.fixture
def drops() -> MemoryDrops:
    return MemoryDrops()


@pytest.fixture
def folder(drops: MemoryDrops) -> MemoryFolder:
    return drops.fill("alice@example.test", "seed")


async def test_a_second_session_finds_the_maildrop_locked(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    deps = memory_deps(config, drops)
    first, second = Dialog(deps), Dialog(deps)
    assert (await first.login()).startswith("+OK")
    assert folder.locked
    # seed 001 §1.6.2: "-ERR maildrop already locked", then QUIT still works
    assert await second.login() == "-ERR [IN-USE] maildrop already locked\r\n"
    assert await second.send(b"QUIT\r\n") == "+OK mail.example.test POP3 server signing off\r\n"
    assert await first.send(b"QUIT\r\n") == "+OK mail.example.test POP3 server signing off\r\n"
    assert not folder.locked
    third = Dialog(deps)
    assert (await third.login()).startswith("+OK")
    await third.drop()
    assert not folder.locked


async def test_a_dropped_connection_changes_nothing(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    d = Dialog(memory_deps(config, drops))
    await d.login()
    assert (await d.send(b"RETR 1\r\nDELE 1\r\nDELE 2\r\n")).endswith("+OK message 2 deleted\r\n")
    await d.drop()
    state = folder.sync()
    assert len(state.messages) == 2
    assert all(SEEN not in m.flags for m in state.messages)
    assert not folder.locked
    assert folder.calls.get("expunge", 0) == 0 and folder.calls.get("store_flags", 0) == 0


async def test_update_marks_seen_and_expunges_deleted(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    before = folder.sync()
    d = Dialog(memory_deps(config, drops))
    await d.login()
    await d.send(b"RETR 2\r\nTOP 1 0\r\nDELE 1\r\n")
    assert await d.send(b"QUIT\r\n") == "+OK mail.example.test POP3 server signing off\r\n"
    after = folder.sync()
    assert [m.uid for m in after.messages] == [2]
    assert SEEN in after.messages[0].flags  # RETR'd; TOP does not mark
    assert after.highestmodseq > before.highestmodseq
    assert d.transport.closed


async def test_delete_on_retr(tmp_path: Path, drops: MemoryDrops) -> None:
    site = make_site(tmp_path / "s", extra_toml="[pop3]\nlisten = []\ndelete_on_retr = true\n")
    folder = drops.fill("alice@example.test", "seed")
    d = Dialog(memory_deps(load_config(str(site.config)), drops))
    await d.login()
    await d.send(b"RETR 2\r\nQUIT\r\n")
    assert [m.uid for m in folder.sync().messages] == [1]


async def test_the_snapshot_holds_and_the_next_session_sees_new_mail(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    deps = memory_deps(config, drops)
    d = Dialog(deps)
    await d.login()
    folder.deliver(sized_message(3, 300))  # delivery never waits for the POP3 lock
    assert await d.send(b"STAT\r\n") == "+OK 2 320\r\n"
    assert (await d.send(b"RETR 3\r\n")).startswith("-ERR no such message")
    await d.send(b"DELE 1\r\nQUIT\r\n")
    d2 = Dialog(deps)
    assert (await d2.login()).endswith("maildrop has 2 messages (500 octets)\r\n")
    assert await d2.send(b"UIDL\r\n") == (
        "+OK\r\n1 0000000200000001\r\n2 0000000300000001\r\n.\r\n"  # UIDs stay
    )


async def test_a_message_expunged_meanwhile(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    d = Dialog(memory_deps(config, drops))
    await d.login()
    folder.expunge([1])  # e.g. an IMAP session
    assert await d.send(b"RETR 1\r\n") == (
        "-ERR [SYS/PERM] Message was removed by another session.\r\n"
    )
    assert (await d.send(b"RETR 2\r\n")).startswith("+OK 200 octets\r\n")
    await d.send(b"DELE 1\r\nQUIT\r\n")  # expunging it again is no error
    assert [m.uid for m in folder.sync().messages] == [2]


async def test_store_failures(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    deps = memory_deps(config, drops)
    fail = TempFail(SmtpReply(code=451, enhanced="4.3.0", text="disk"), "disk on fire")
    folder.fail_next("sync", fail)
    d = Dialog(deps)
    assert await d.login() == "-ERR [SYS/TEMP] Temporary server failure, try again later.\r\n"
    assert not folder.locked
    assert (await d.send(LOGIN)).startswith("+OK send PASS\r\n+OK alice")
    folder.fail_next("open_message", OSError(5, "EIO"))
    assert (await d.send(b"RETR 1\r\n")).startswith("-ERR [SYS/TEMP]")
    folder.fail_next("expunge", OSError(28, "ENOSPC"))
    assert await d.send(b"DELE 1\r\nQUIT\r\n") == (
        "+OK message 1 deleted\r\n-ERR [SYS/TEMP] Some deleted messages not removed.\r\n"
    )
    assert not folder.locked and len(folder.sync().messages) == 2


async def test_no_mailbox_is_a_failed_login(config, drops) -> None:  # type: ignore[no-untyped-def]
    def nowhere(login: str) -> MemoryFolder:
        raise LookupError(login)

    d = Dialog(memory_deps(config, drops, open_inbox=nowhere))
    assert await d.login() == "-ERR [AUTH] Authentication failed.\r\n"


async def test_failures_are_throttled_and_a_success_forgives(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    throttle = FailureThrottle(base=0.001, cap=0.002)  # SMTP AUTH shares this object
    d = Dialog(memory_deps(config, drops, throttle=throttle))
    for _ in range(3):
        await d.send(b"USER alice@example.test\r\nPASS nope\r\n")
    assert await d.send(b"APOP alice@example.test " + b"0" * 32 + b"\r\n") == (
        "-ERR [AUTH] Authentication failed.\r\n"  # no {PLAIN} secret? this one has: wrong digest
    )
    assert throttle.statistics()["failed"] == 4
    assert throttle.delay_for("127.0.0.1") == 0.002
    assert (await d.login()).startswith("+OK")
    assert throttle.delay_for("127.0.0.1") == 0.0


async def test_cram_md5(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    import base64

    d = Dialog(memory_deps(config, drops))
    challenge = await d.send(b"AUTH CRAM-MD5\r\n")
    assert challenge.startswith("+ ")
    nonce = base64.b64decode(challenge[2:].strip())
    digest = hmac.new(b"secret-pw", nonce, hashlib.md5).hexdigest()
    answer = base64.b64encode(f"alice@example.test {digest}".encode())
    assert (await d.send(answer + b"\r\n")).startswith("+OK alice@example.test's maildrop")


async def test_apop_with_the_banner_timestamp(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    d = Dialog(memory_deps(config, drops))
    stamp = d.greeting.split()[-1]
    assert stamp.startswith("<") and stamp.endswith(">")
    digest = hashlib.md5((stamp + "secret-pw").encode()).hexdigest()
    line = f"APOP alice@example.test {digest}\r\n".encode()
    assert (await d.send(line)).startswith("+OK alice@example.test's maildrop has 2")


def test_banner_timestamps_never_repeat() -> None:
    stamps = session_module.TimestampSource(clock=lambda: 5_000_000)
    seen = {stamps("h") for _ in range(100)}
    assert len(seen) == 100


async def test_pipelined_retrs_are_read_in_groups(config, drops, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = drops.inbox("alice@example.test")
    for i in range(20):
        folder.deliver(sized_message(i, 1000))
    monkeypatch.setattr(session_module, "GROUP_OCTETS", 3000)
    d = Dialog(memory_deps(config, drops))
    await d.login()
    out = await d.send(b"".join(b"RETR %d\r\nNOOP\r\n" % n for n in range(1, 21)) + b"QUIT\r\n")
    heads = [line for line in out.split("\r\n") if line.startswith(("+OK", "-ERR"))]
    assert heads == ["+OK 1000 octets", "+OK"] * 20 + [
        "+OK mail.example.test POP3 server signing off"
    ]
    for i in range(20):
        assert f"Subject: message {i}\r\n" in out
    assert folder.calls["open_message"] == 20


async def test_log_lines(config, drops, folder, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="postoffice.pop3")
    d = Dialog(memory_deps(config, drops))
    await d.send(b"USER bob@example.test\r\nPASS not-this\r\n")
    await d.login()
    await d.send(b"RETR 1\r\nTOP 2 0\r\nDELE 2\r\nQUIT\r\n")
    assert d.transport.closed
    await d.drop()  # what the event loop does after close()
    text = caplog.text
    assert (
        "pop3-login: Login: user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, "
        "lip=127.0.0.1, secured" in text
    )
    top = len(MAILDROPS["seed"][1].split(b"\r\n\r\n")[0]) + 4
    assert (
        f"pop3(alice@example.test): Disconnected: Logged out top=1/{top}, retr=1/120, "
        "del=1/2, size=320" in text
    )
    assert "pop3-login: Authentication failed (password mismatch): user=<bob@example.test>" in text
    assert "not-this" not in text and "secret-pw" not in text
    d2 = Dialog(memory_deps(config, drops), ip="192.0.2.7")
    await d2.send(b"APOP eve " + b"1" * 32 + b"\r\n")
    await d2.drop()
    assert "Aborted login (auth failed, 1 attempts): user=<eve>, rip=192.0.2.7" in caplog.text


async def test_cached_reads_need_no_thread_and_misses_go_to_one(config, drops, folder) -> None:  # type: ignore[no-untyped-def]
    d = Dialog(memory_deps(config, drops))
    assert (await d.send(LOGIN)).startswith("+OK send PASS\r\n+OK alice")
    before = folder.calls.get("open_message", 0)
    first = await d.send(b"RETR 1\r\nTOP 2 0\r\n")
    assert first.startswith("+OK 120 octets\r\nFrom: sender@example.org")
    assert folder.calls.get("open_message", 0) == before  # both from read_cached
    folder.cached = False
    assert await d.send(b"RETR 1\r\nTOP 2 0\r\n") == first  # the same answers from open_message
    assert folder.calls["open_message"] == before + 2
