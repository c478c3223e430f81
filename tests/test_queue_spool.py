"""FileSpool: commit, state changes, recovery, disk errors, group commit, the trigger."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import postoffice.queue.spool as spool_mod
from postoffice.errors import TempFail
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.ids import new_queue_id
from postoffice.queue.spool import FileSpool
from postoffice.smtp import replies

BODY = b"Received: from x\r\nSubject: hi\r\n\r\n" + b"0123456789" * 10_000  # > 64 KiB buffer


def make_env(qid: str, *rcpts: str, sender: str = "alice@example.org") -> Envelope:
    return Envelope(
        queue_id=qid,
        sender=sender,
        recipients=tuple(EnvelopeRecipient(address=r) for r in rcpts or ("bob@example.net",)),
        arrival_time=1_800_000_000.0,
    )


async def commit(spool: FileSpool, body: bytes = BODY, *rcpts: str) -> Envelope:
    msg = spool.begin()
    for i in range(0, len(body), 7000):
        msg.write(body[i : i + 7000])
    await spool.commit(msg, make_env(msg.queue_id, *rcpts))
    entry = spool.load(msg.queue_id)
    assert entry is not None
    return entry.envelope  # as stored: the size filled in


def files(root: Path) -> dict[str, list[str]]:
    q = root / "queue"
    return {d.name: sorted(p.name for p in d.iterdir()) for d in sorted(q.iterdir()) if d.is_dir()}


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[FileSpool]:
    s = FileSpool(tmp_path)
    yield s
    s.close()


async def test_commit_layout_and_modes(spool: FileSpool, tmp_path: Path) -> None:
    env = await commit(spool)
    qid = env.queue_id
    assert files(tmp_path) == {
        "active": [qid], "body": [qid], "corrupt": [], "deferred": [], "hold": [], "incoming": [],
    }  # fmt: skip
    q = tmp_path / "queue"
    for d in ("incoming", "active", "deferred", "hold", "corrupt", "body"):
        assert stat.S_IMODE((q / d).stat().st_mode) == 0o700
    assert stat.S_IMODE((q / "active" / qid).stat().st_mode) == 0o600
    assert stat.S_IMODE((q / "body" / qid).stat().st_mode) == 0o600
    assert stat.S_ISFIFO((q / "trigger").stat().st_mode)
    assert (q / "active" / qid).read_bytes().startswith(b"version: 1\n")
    with spool.open_body(qid) as f:
        assert f.read() == BODY
    entry = spool.load(qid)
    assert entry is not None and entry.state == "active"
    assert entry.envelope.size == len(BODY)  # filled in from the body when 0
    assert spool.envelopes() == [entry.envelope]
    st = spool.statistics()
    assert (st.commits, st.file_fsyncs, st.dir_fsync_requests) == (1, 2, 2)


async def test_small_messages_touch_the_disk_only_at_the_commit(
    spool: FileSpool, tmp_path: Path
) -> None:
    msg = spool.begin()
    msg.write(b"small")
    assert files(tmp_path)["incoming"] == []
    msg.abort()
    empty = spool.begin()
    await spool.commit(empty, make_env(empty.queue_id))
    with spool.open_body(empty.queue_id) as f:
        assert f.read() == b""


async def test_abort_leaves_nothing(spool: FileSpool, tmp_path: Path) -> None:
    msg = spool.begin()
    msg.write(BODY)
    assert files(tmp_path)["incoming"] == [msg.queue_id + ".body"]
    msg.abort()
    msg.abort()
    assert all(not v for v in files(tmp_path).values())
    with pytest.raises(RuntimeError):
        msg.write(b"more")
    assert spool.statistics().aborts == 1


async def test_abort_after_commit_keeps_the_message(spool: FileSpool) -> None:
    msg = spool.begin()
    msg.write(b"x")
    await spool.commit(msg, make_env(msg.queue_id))
    msg.abort()
    assert spool.load(msg.queue_id) is not None


async def test_commit_checks_its_arguments(spool: FileSpool, tmp_path: Path) -> None:
    msg = spool.begin()
    with pytest.raises(ValueError):
        await spool.commit(msg, make_env(new_queue_id()))
    other = FileSpool(tmp_path / "other")
    try:
        with pytest.raises(TypeError):
            await other.commit(msg, make_env(msg.queue_id))
    finally:
        other.close()
    await spool.commit(msg, make_env(msg.queue_id))
    with pytest.raises(RuntimeError):
        await spool.commit(msg, make_env(msg.queue_id))


async def test_update_hold_release_remove(spool: FileSpool, tmp_path: Path) -> None:
    env = await commit(spool)
    qid = env.queue_id
    later = make_env(qid)
    later = Envelope.from_bytes(later.to_bytes().replace(b"attempts: 0", b"attempts: 1"))
    await spool.update(later, deferred=True)
    entry = spool.load(qid)
    assert entry is not None and entry.state == "deferred" and entry.envelope.attempts == 1
    assert files(tmp_path)["deferred"] == [qid] and files(tmp_path)["active"] == []

    assert await spool.hold(qid)
    assert not await spool.hold(qid)
    await spool.update(env, deferred=False)  # an update never releases a hold
    entry = spool.load(qid)
    assert entry is not None and entry.state == "hold" and entry.envelope == env
    assert [e.state for e in spool.entries()] == ["hold"]
    assert spool.entries(("active", "deferred")) == []

    assert await spool.release(qid)
    assert not await spool.release(qid)
    assert spool.load(qid) is not None and spool.load(qid).state == "active"  # type: ignore[union-attr]

    await spool.remove(qid)
    await spool.remove(qid)  # idempotent
    assert spool.load(qid) is None
    assert all(not v for v in files(tmp_path).values())
    with pytest.raises(FileNotFoundError):
        spool.open_body(qid)
    assert spool.statistics().dir_fsyncs <= spool.statistics().dir_fsync_requests


async def test_update_of_a_removed_message_is_a_no_op(
    spool: FileSpool, caplog: pytest.LogCaptureFixture
) -> None:
    env = await commit(spool)
    await spool.remove(env.queue_id)
    await spool.update(env, deferred=True)
    assert spool.load(env.queue_id) is None
    assert "no longer queued" in caplog.text


async def test_queue_ids_are_checked(spool: FileSpool) -> None:
    for bad in ("../active/x", "", "a/b"):
        with pytest.raises(ValueError):
            spool.open_body(bad)
        with pytest.raises(ValueError):
            spool.load(bad)
        with pytest.raises(ValueError):
            await spool.remove(bad)
        with pytest.raises(ValueError):
            await spool.hold(bad)


async def test_durable_off_skips_fsync(tmp_path: Path) -> None:
    s = FileSpool(tmp_path, durable=False)
    try:
        await commit(s)
        st = s.statistics()
        assert (st.file_fsyncs, st.dir_fsyncs, st.commits) == (0, 0, 1)
    finally:
        s.close()


# --- recovery -------------------------------------------------------------------


async def test_recover(spool: FileSpool, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="postoffice.queue")
    q = tmp_path / "queue"
    active = await commit(spool)
    deferred = await commit(spool)
    await spool.update(deferred, deferred=True)
    held = await commit(spool)
    await spool.hold(held.queue_id)
    # Debris of a crash: an incoming file nobody holds, a body without envelope,
    # an unreadable envelope, an envelope without body, a stray name.
    dead = spool.begin()
    dead.write(b"partial")
    dead.flush()
    os.close(dead.fd)  # the process died: its lock is gone
    dead.fd = -1
    (q / "body" / new_queue_id()).write_bytes(b"orphan")
    garbled = new_queue_id()
    (q / "active" / garbled).write_bytes(b"version: 99\n")
    (q / "body" / garbled).write_bytes(b"x")
    no_body = new_queue_id()
    (q / "deferred" / no_body).write_bytes(make_env(no_body).to_bytes())
    (q / "active" / "README").write_text("hi")
    # A message being received by a live process right now must be left alone.
    live = FileSpool(tmp_path)
    busy = live.begin()
    busy.write(b"in progress")
    busy.flush()  # on disk, as a message past the buffer is

    got = FileSpool(tmp_path).recover()

    assert sorted(e.queue_id for e in got) == sorted([active.queue_id, deferred.queue_id])
    f = files(tmp_path)
    assert f["incoming"] == [busy.queue_id + ".body"]
    assert f["active"] == [active.queue_id] and f["deferred"] == [deferred.queue_id]
    assert f["hold"] == [held.queue_id]
    assert len(f["corrupt"]) == 5 and "active-README" in f["corrupt"]
    assert f"active-{garbled}" in f["corrupt"] and f"deferred-{no_body}" in f["corrupt"]
    assert "never committed" in caplog.text
    assert "unreadable envelope" in caplog.text and "envelope without content" in caplog.text
    assert "content without an envelope" in caplog.text
    # The live message still commits.
    await live.commit(busy, make_env(busy.queue_id))
    assert live.load(busy.queue_id) is not None
    live.close()


async def test_recover_duplicates(
    spool: FileSpool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A move cut short leaves a message in two queues: the newest copy stays."""
    q = tmp_path / "queue"
    a = await commit(spool)
    os.link(q / "active" / a.queue_id, q / "deferred" / a.queue_id)  # one inode, two names
    b = await commit(spool)
    (q / "hold" / b.queue_id).write_bytes(b.to_bytes())  # equal copies: the hold wins
    c = await commit(spool)
    newer = Envelope.from_bytes(c.to_bytes().replace(b"attempts: 0", b"attempts: 1"))
    (q / "active" / c.queue_id).write_bytes(newer.to_bytes())
    (q / "deferred" / c.queue_id).write_bytes(c.to_bytes())  # older, though written later
    got = spool.recover()
    assert got == [a, newer]
    f = files(tmp_path)
    assert f["deferred"] == [a.queue_id] and f["active"] == [c.queue_id]
    assert f["hold"] == [b.queue_id] and f["corrupt"] == []
    assert caplog.text.count("queued in") == 3


async def test_recover_keeps_a_body_under_commit(tmp_path: Path) -> None:
    """A commit in another process between body rename and envelope rename holds its lock."""
    spool = FileSpool(tmp_path)
    qid = new_queue_id()
    body = tmp_path / "queue" / "body" / qid
    body.write_bytes(b"content")
    fd = os.open(body, os.O_RDONLY)
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        FileSpool(tmp_path).recover()
        assert body.exists()
    finally:
        os.close(fd)
    spool.recover()
    assert not body.exists() and files(tmp_path)["corrupt"] == [f"body-{qid}"]
    spool.close()


# --- disk errors -------------------------------------------------------------------


class FaultyOS:
    """spool.py's view of `os`, failing the n-th call of `op` with `err`."""

    def __init__(self, op: str, n: int, err: int) -> None:
        self.op, self.n, self.err = op, n, err
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name != self.op:
            return real

        def call(*a: Any, **kw: Any) -> Any:
            self.calls += 1
            if self.calls == self.n:
                raise OSError(self.err, os.strerror(self.err))
            return real(*a, **kw)

        return call


@pytest.mark.parametrize(
    ("op", "n", "err", "reply"),
    [
        ("write", 1, errno.ENOSPC, replies.INSUFFICIENT_STORAGE),  # while receiving
        ("write", 2, errno.ENOSPC, replies.INSUFFICIENT_STORAGE),  # the body's tail
        ("write", 3, errno.EDQUOT, replies.INSUFFICIENT_STORAGE),  # the envelope
        ("fsync", 1, errno.EIO, replies.LOCAL_ERROR),  # the body
        ("fsync", 2, errno.EIO, replies.LOCAL_ERROR),  # the envelope
        ("fsync", 3, errno.EIO, replies.LOCAL_ERROR),  # body/
        ("fsync", 4, errno.EIO, replies.LOCAL_ERROR),  # active/, after the rename
        ("rename", 1, errno.EIO, replies.LOCAL_ERROR),
        ("rename", 2, errno.ENOSPC, replies.INSUFFICIENT_STORAGE),
        ("open", 1, errno.ENOSPC, replies.INSUFFICIENT_STORAGE),  # begin()
        ("open", 2, errno.ENOSPC, replies.INSUFFICIENT_STORAGE),  # the envelope
    ],
)
async def test_io_errors_are_tempfail_and_leave_nothing(
    spool: FileSpool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    op: str,
    n: int,
    err: int,
    reply: replies.Reply,
) -> None:
    faulty = FaultyOS(op, n, err)
    monkeypatch.setattr(spool_mod, "os", faulty)
    with pytest.raises(TempFail) as info:
        msg = spool.begin()
        msg.write(BODY[:70_000])  # over 64 KiB: one write(2) now
        msg.write(BODY[70_000:])  # buffered: written at the commit
        await spool.commit(msg, make_env(msg.queue_id))
    msg_abort = locals().get("msg")
    if msg_abort is not None:
        msg_abort.abort()  # what the session does; must be harmless
    monkeypatch.undo()
    assert faulty.calls >= n
    assert info.value.reply == reply
    assert "/" not in str(info.value.reply)  # no paths in what the client sees
    assert all(not v for v in files(tmp_path).values()), files(tmp_path)
    assert spool.recover() == []


async def test_update_error_is_tempfail_and_keeps_the_old_envelope(
    spool: FileSpool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await commit(spool)
    monkeypatch.setattr(spool_mod, "os", FaultyOS("fsync", 1, errno.ENOSPC))
    changed = Envelope.from_bytes(env.to_bytes().replace(b"attempts: 0", b"attempts: 5"))
    with pytest.raises(TempFail) as info:
        await spool.update(changed, deferred=True)
    monkeypatch.undo()
    assert info.value.reply == replies.INSUFFICIENT_STORAGE
    assert spool.load(env.queue_id) == spool.entries()[0]
    assert spool.entries()[0].envelope == env and spool.entries()[0].state == "active"
    assert files(tmp_path)["incoming"] == []


# --- group commit --------------------------------------------------------------------


async def test_concurrent_commits_share_directory_fsyncs(
    spool: FileSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one directory fsync runs, every later rename waits for, and shares, the next."""
    gate = threading.Event()
    first = threading.Event()
    calls: list[str] = []
    real = spool_mod._fsync_dir

    def slow_fsync_dir(path: str) -> None:
        calls.append(os.path.basename(path))
        if len(calls) == 1:
            first.set()
            gate.wait(10)
        real(path)

    monkeypatch.setattr(spool_mod, "_fsync_dir", slow_fsync_dir)
    lead = asyncio.create_task(commit(spool, b"first"))
    await asyncio.to_thread(first.wait, 10)  # the first body/ fsync is running and held
    others = [asyncio.create_task(commit(spool, b"x%d" % i)) for i in range(19)]
    while spool._sync["body"].requests < 20:  # all 19 have renamed and asked
        await asyncio.sleep(0)
        await asyncio.to_thread(lambda: None)
    gate.set()
    await asyncio.gather(lead, *others)
    st = spool.statistics()
    assert st.commits == 20 and st.dir_fsync_requests == 40
    assert calls.count("body") == 2  # the held one, then one for the other 19
    assert calls.count("active") <= 20 and st.dir_fsyncs < 40
    assert len(spool.entries()) == 20


async def test_a_failed_directory_fsync_fails_every_commit_it_covered(
    spool: FileSpool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: str) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(spool_mod, "_fsync_dir", broken)
    results = await asyncio.gather(*(commit(spool, b"x") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, TempFail) for r in results)
    assert all(not v for v in files(tmp_path).values())


async def test_commit_finishes_when_the_caller_is_cancelled(spool: FileSpool) -> None:
    msg = spool.begin()
    msg.write(b"hello")
    task = asyncio.create_task(spool.commit(msg, make_env(msg.queue_id)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*rest)
    assert spool.load(msg.queue_id) is not None  # complete: the client may have seen no 250


# --- trigger ----------------------------------------------------------------------------


async def test_trigger(spool: FileSpool, tmp_path: Path) -> None:
    spool.pull_trigger()  # nobody listens: no error, no block
    woke = asyncio.Event()
    count = 0

    def on_pull() -> None:
        nonlocal count
        count += 1
        woke.set()

    stop: Callable[[], None] = spool.watch_trigger(on_pull)
    other = FileSpool(tmp_path)  # as another process would
    other.pull_trigger()
    await asyncio.wait_for(woke.wait(), 10)
    woke.clear()
    for _ in range(3):
        other.pull_trigger()
    await asyncio.wait_for(woke.wait(), 10)
    assert 2 <= count <= 4  # pulls may coalesce
    stop()
    stop()
    other.pull_trigger()  # no reader again
    other.close()


async def test_trigger_from_another_process(spool: FileSpool, tmp_path: Path) -> None:
    woke = asyncio.Event()
    stop = spool.watch_trigger(woke.set)
    code = (
        "import asyncio, sys\n"
        "from postoffice.queue.spool import FileSpool\n"
        "from postoffice.queue.envelope import Envelope, EnvelopeRecipient\n"
        "s = FileSpool(sys.argv[1]); m = s.begin(); m.write(b'from afar')\n"
        "r = (EnvelopeRecipient(address='x@y'),)\n"
        "e = Envelope(queue_id=m.queue_id, sender='', recipients=r, arrival_time=1.0)\n"
        "asyncio.run(s.commit(m, e)); s.pull_trigger(); s.close(); print(m.queue_id)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(tmp_path), stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    await asyncio.wait_for(woke.wait(), 10)
    stop()
    qid = out.decode().strip()
    entry = spool.load(qid)
    assert entry is not None and entry.state == "active"
    with spool.open_body(qid) as f:
        assert f.read() == b"from afar"


def test_replaces_a_trigger_that_is_not_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "queue").mkdir()
    (tmp_path / "queue" / "trigger").write_text("x")
    s = FileSpool(tmp_path)
    assert stat.S_ISFIFO((tmp_path / "queue" / "trigger").stat().st_mode)
    s.close()


async def test_state_change_during_a_commit_waits_for_it(tmp_path: Path) -> None:
    """A remove racing its own commit (a scan saw the envelope early) must not deadlock:
    it waits for the commit in the event loop, not on the flock in the only I/O thread."""
    spool = FileSpool(tmp_path, io_threads=1)
    msg = spool.begin()
    msg.write(b"x")
    committing = asyncio.create_task(spool.commit(msg, make_env(msg.queue_id)))
    await asyncio.sleep(0)
    assert spool.entries() == []  # not listed until complete
    removing = asyncio.create_task(spool.remove(msg.queue_id))
    await asyncio.wait_for(asyncio.gather(committing, removing), 10)
    assert spool.load(msg.queue_id) is None and spool.entries() == []
    spool.close()
