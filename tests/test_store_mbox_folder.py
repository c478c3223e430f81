"""Tests for store/mbox_folder.py and store/mbox_parse.py: UIDs, flags, locks, expunge, parsing."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.errors import TempFail
from postoffice.smtp import replies
from postoffice.store import mbox_folder
from postoffice.store.interfaces import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    FolderState,
    MessageGone,
)
from postoffice.store.mbox import MboxQuoter, MboxWriter, from_line, try_fcntl_lock
from postoffice.store.mbox_folder import MboxFolder, canonical_flags
from postoffice.store.mbox_parse import MboxIndex, parse_index, parse_mbox, render

ARRIVAL = 1795281136.0
PREFIX = b"Return-Path: <alice@example.org>\r\n"


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Clock:
    def __init__(self, now: float = ARRIVAL) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def folder(tmp_path: Path, **kw: Any) -> MboxFolder:
    kw.setdefault("sleep", FakeSleep())
    kw.setdefault("index_path", str(tmp_path / "state" / "index" / "mbox" / "bob"))
    return MboxFolder(str(tmp_path / "spool" / "bob"), **kw)


def deliver(path: str, msg: bytes, *, arrival: float = ARRIVAL, **kw: Any) -> None:
    kw.setdefault("sleep", FakeSleep())
    MboxWriter(path, **kw).deliver(
        io.BytesIO(msg), prefix=PREFIX, sender="alice@example.org", arrival=arrival
    )


def wire(msg: bytes) -> bytes:
    """What a message delivered with PREFIX reads back as (CRLF, final CRLF)."""
    text = (PREFIX + msg).replace(b"\r\n", b"\n")
    if not text.endswith(b"\n"):
        text += b"\n"
    return text.replace(b"\n", b"\r\n")


def read(f: MboxFolder, uid: int) -> bytes:
    return f.open_message(uid).read()


def check_sizes(f: MboxFolder, state: FolderState) -> None:
    for m in state.messages:
        assert len(read(f, m.uid)) == m.size


MSGS = [
    b"Subject: one\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\n",
    b"Subject: two\r\n\r\nbody\r\n\r\n\r\n",
    b"Subject: three\r\n\r\nno final newline",
]


def test_sync_uids_sizes_and_round_trip(tmp_path: Path) -> None:
    f = folder(tmp_path, clock=Clock())
    for i, m in enumerate(MSGS):
        deliver(f.path, m, arrival=ARRIVAL + i)
    state = f.sync()
    assert state.uidvalidity == int(ARRIVAL)
    assert [m.uid for m in state.messages] == [1, 2, 3]
    assert state.uidnext == 4
    assert [m.internaldate for m in state.messages] == [ARRIVAL, ARRIVAL + 1, ARRIVAL + 2]
    assert [read(f, m.uid) for m in state.messages] == [wire(m) for m in MSGS]
    check_sizes(f, state)
    assert all(m.flags == frozenset() for m in state.messages)
    assert len({m.modseq for m in state.messages}) == 3
    index = Path(f.index_path)
    assert index.read_text().startswith("version: 1\nuidvalidity: ")
    assert stat.S_IMODE(index.stat().st_mode) == 0o600
    assert stat.S_IMODE(index.parent.stat().st_mode) == 0o700


def test_uids_stable_across_instances_and_rewrites(tmp_path: Path) -> None:
    f = folder(tmp_path)
    for i, m in enumerate(MSGS):
        deliver(f.path, m, arrival=ARRIVAL + i)
    first = f.sync()
    g = folder(tmp_path)
    assert g.sync() == first
    deliver(f.path, b"Subject: four\r\n\r\nx\r\n", arrival=ARRIVAL + 3)
    later = folder(tmp_path).sync()
    assert later.uidvalidity == first.uidvalidity
    assert [m.uid for m in later.messages] == [1, 2, 3, 4]
    assert later.messages[:3] == first.messages
    # mutt marks message 2 read: it rewrites the file with a Status header.
    data = Path(f.path).read_bytes()
    data = data.replace(b"Subject: two\n", b"Subject: two\nStatus: RO\nX-Status: A\n")
    Path(f.path).write_bytes(data)
    again = f.sync()
    assert [m.uid for m in again.messages] == [1, 2, 3, 4]
    assert read(f, 2) == wire(MSGS[1])  # metadata headers are not served
    assert again.messages[1].size == first.messages[1].size
    # Another program removes message 1 behind our back: the rest keep their UIDs.
    Path(f.path).write_bytes(data[data.index(b"From alice", 10) :])
    assert [m.uid for m in f.sync().messages] == [2, 3, 4]
    with pytest.raises(MessageGone):
        read(f, 1)


def test_index_missing_or_corrupt_is_rebuilt(tmp_path: Path) -> None:
    clock = Clock()
    f = folder(tmp_path, clock=clock)
    deliver(f.path, MSGS[0])
    deliver(f.path, b"Subject: x\r\nStatus: RO\r\n\r\nbody\r\n")
    old = f.sync()
    f.store_flags([1], frozenset({FLAGGED}), "add")
    assert f.rebuilt == 1  # the first one
    os.unlink(f.index_path)
    rebuilt = f.sync()  # the clock has not moved, but the object remembers
    assert rebuilt.uidvalidity == old.uidvalidity + 1
    assert [m.uid for m in rebuilt.messages] == [1, 2]
    assert f.rebuilt == 2
    # Flags fall back to the headers.
    assert [m.flags for m in rebuilt.messages] == [frozenset(), frozenset({SEEN})]
    os.unlink(f.index_path)
    assert folder(tmp_path, clock=clock).sync().uidvalidity == int(ARRIVAL)  # unknown: the time
    Path(f.index_path).write_text("version: 1\nuidvalidity: 1900000000\nuidnext: x\n")
    again = folder(tmp_path, clock=clock).sync()
    assert again.uidvalidity == 1900000001  # strictly above the corrupt one
    assert [m.uid for m in again.messages] == [1, 2]
    clock.now = 2000000000.0
    Path(f.index_path).write_bytes(b"\xff garbage")
    assert f.sync().uidvalidity == int(clock.now)


def test_missing_mbox_is_empty_and_keeps_its_uidvalidity(tmp_path: Path) -> None:
    clock = Clock()
    f = folder(tmp_path, clock=clock)
    state = f.sync()
    assert state.messages == () and state.uidnext == 1
    clock.now += 50
    assert folder(tmp_path, clock=clock).sync().uidvalidity == state.uidvalidity
    assert f.expunge([1]) == []
    with pytest.raises(MessageGone):
        read(f, 1)


FOREIGN = (
    b"From mutt@example.org Sat Nov 21 17:27:16 2026\n"
    b"Subject: read and replied\nStatus: RO\nX-Status: A\n\nbody\n\n"
    b"From pine@example.org Sat Nov 21 17:27:17 2026\n"
    b"Subject: flagged draft\nX-Status: FT\nStatus: O\n\nbody\n\n"
    b"From dovecot@example.org Sat Nov 21 17:27:18 2026\n"
    b"Subject: deleted\nX-Status: D\nX-Keywords: Junk\nX-UID: 7\n  continued\n\n"
    b"Status: R in the body is not a header\n\n"
    b"From x@example.org Sat Nov 21 17:27:19 2026\nSubject: new\n\nbody\n"
)


def test_flags_from_status_headers(tmp_path: Path) -> None:
    f = folder(tmp_path)
    os.makedirs(os.path.dirname(f.path))
    Path(f.path).write_bytes(FOREIGN)
    state = f.sync()
    assert [m.flags for m in state.messages] == [
        frozenset({SEEN, ANSWERED}),
        frozenset({FLAGGED, DRAFT}),
        frozenset({DELETED}),
        frozenset(),
    ]
    assert read(f, 1) == b"Subject: read and replied\r\n\r\nbody\r\n"
    assert read(f, 3) == (b"Subject: deleted\r\n\r\nStatus: R in the body is not a header\r\n")
    check_sizes(f, state)


def test_flags_live_in_the_index(tmp_path: Path) -> None:
    f = folder(tmp_path)
    os.makedirs(os.path.dirname(f.path))
    Path(f.path).write_bytes(FOREIGN)
    state = f.sync()
    top = state.highestmodseq
    changed = f.store_flags([1, 4, 99], frozenset({"\\flagged", "Junk", "\\Recent"}), "add")
    assert [(m.uid, m.flags) for m in changed] == [
        (1, frozenset({SEEN, ANSWERED, FLAGGED, "Junk"})),
        (4, frozenset({FLAGGED, "Junk"})),
    ]
    assert [m.modseq for m in changed] == [top + 1, top + 2]
    assert f.store_flags([4], frozenset({FLAGGED}), "add") == []  # no change, no modseq
    removed = f.store_flags([1], frozenset({SEEN}), "remove")
    assert removed[0].flags == frozenset({ANSWERED, FLAGGED, "Junk"})
    replaced = f.store_flags([2], frozenset({DELETED}), "replace")
    assert replaced[0].flags == frozenset({DELETED})
    other = folder(tmp_path).sync()
    assert [m.flags for m in other.messages] == [
        frozenset({ANSWERED, FLAGGED, "Junk"}),
        frozenset({DELETED}),
        frozenset({DELETED}),
        frozenset({FLAGGED, "Junk"}),
    ]
    assert other.highestmodseq == top + 4
    assert f.sync() == other
    assert Path(f.path).read_bytes() == FOREIGN  # the mbox itself is not touched
    with pytest.raises(ValueError):
        f.store_flags([1], frozenset({"two words"}), "add")


def test_canonical_flags() -> None:
    assert canonical_flags(["\\SEEN", "\\answered", "$Label1", "\\Recent"]) == frozenset(
        {SEEN, ANSWERED, "$Label1"}
    )
    for bad in ["", "a\nb", "tab\there", "\x7f"]:
        with pytest.raises(ValueError):
            canonical_flags([bad])


def test_expunge_keeps_a_concurrent_delivery(tmp_path: Path) -> None:
    f = folder(tmp_path)
    for i, m in enumerate(MSGS):
        deliver(f.path, m, arrival=ARRIVAL + i)
    os.chmod(f.path, 0o640)
    ino = os.stat(f.path).st_ino
    f.sync()
    deliver(f.path, b"Subject: late\r\n\r\narrived after the sync\r\n", arrival=ARRIVAL + 9)
    assert f.expunge([1, 3, 42]) == [1, 3]
    st_after = os.stat(f.path)
    assert st_after.st_ino != ino  # a new file renamed over the old one
    assert stat.S_IMODE(st_after.st_mode) == 0o640
    assert not [n for n in os.listdir(os.path.dirname(f.path)) if n != "bob"]
    state = f.sync()
    assert [m.uid for m in state.messages] == [2, 4]
    assert read(f, 4) == wire(b"Subject: late\r\n\r\narrived after the sync\r\n")
    assert read(f, 2) == wire(MSGS[1])
    check_sizes(f, state)
    assert state.highestmodseq > 4
    with pytest.raises(MessageGone):
        read(f, 1)
    assert [m.uid for m in folder(tmp_path).sync().messages] == [2, 4]
    assert f.expunge([2, 4]) == [2, 4]
    assert Path(f.path).read_bytes() == b""
    assert f.sync().messages == ()


def test_expunge_seen_by_another_instance(tmp_path: Path) -> None:
    f = folder(tmp_path)
    for i, m in enumerate(MSGS):
        deliver(f.path, m, arrival=ARRIVAL + i)
    f.sync()
    g = folder(tmp_path)
    g.sync()
    assert g.expunge([2]) == [2]
    with pytest.raises(MessageGone):
        read(f, 2)
    assert read(f, 3) == wire(MSGS[2])  # found again in the rewritten file
    assert [m.uid for m in f.sync().messages] == [1, 3]


def test_expunge_in_place_when_the_owner_cannot_be_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = folder(tmp_path)
    for i, m in enumerate(MSGS):
        deliver(f.path, m, arrival=ARRIVAL + i)
    f.sync()
    ino = os.stat(f.path).st_ino

    def refuse(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refuse)
    assert f.expunge([2]) == [2]
    monkeypatch.undo()
    assert os.stat(f.path).st_ino == ino
    assert [read(f, u) for u in (1, 3)] == [wire(MSGS[0]), wire(MSGS[2])]
    assert not [n for n in os.listdir(os.path.dirname(f.path)) if n != "bob"]


def test_expunge_rechecks_the_size_under_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that ignores the locks appends during the rewrite: nothing is lost."""
    f = folder(tmp_path)
    for i, m in enumerate(MSGS):
        deliver(f.path, m, arrival=ARRIVAL + i)
    f.sync()
    real = mbox_folder.try_fcntl_lock
    calls = {"n": 0}

    def rogue(fd: int, *, shared: bool = False) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:  # the first rewrite's temp file is being locked
            with open(f.path, "ab") as out:
                out.write(b"From rogue Sat Nov 21 17:27:16 2026\nSubject: rogue\n\nx\n\n")
        return real(fd, shared=shared)

    monkeypatch.setattr(mbox_folder, "try_fcntl_lock", rogue)
    assert f.expunge([1]) == [1]
    monkeypatch.undo()
    assert calls["n"] == 2  # the first try was abandoned
    assert b"Subject: rogue" in Path(f.path).read_bytes()
    assert [m.uid for m in f.sync().messages] == [2, 3, 4]


def test_duplicates_are_matched_in_order(tmp_path: Path) -> None:
    f = folder(tmp_path)
    for _ in range(3):
        deliver(f.path, b"Subject: same\r\n\r\nsame\r\n")  # same sender, time, content
    state = f.sync()
    assert [m.uid for m in state.messages] == [1, 2, 3]
    assert len({m.key for m in state.messages}) == 1
    f.store_flags([3], frozenset({FLAGGED}), "add")
    assert f.expunge([1]) == [1]
    state = folder(tmp_path).sync()
    assert [(m.uid, m.flags) for m in state.messages] == [
        (2, frozenset()),
        (3, frozenset({FLAGGED})),
    ]


def test_append(tmp_path: Path) -> None:
    f = folder(tmp_path)
    deliver(f.path, MSGS[0])
    f.sync()
    msg = b"Subject: sent\r\n\r\nFrom me\r\n>From you\r\n"
    uid = f.append(io.BytesIO(msg), flags=frozenset({SEEN, "\\answered"}), internaldate=ARRIVAL)
    assert uid == 2
    state = f.sync()
    info = state.messages[-1]
    assert (info.uid, info.flags, info.internaldate) == (2, frozenset({SEEN, ANSWERED}), ARRIVAL)
    assert read(f, 2) == msg
    assert info.size == len(msg)
    data = Path(f.path).read_bytes()
    assert b"\n\nFrom MAILER-DAEMON " in data and b"Status: RO\nX-Status: A\n" in data
    os.unlink(f.index_path)  # a rebuild finds the flags in the headers
    assert folder(tmp_path).sync().messages[-1].flags == frozenset({SEEN, ANSWERED})
    # Into a missing mbox, with the time now.
    g = MboxFolder(str(tmp_path / "new" / "mbox"), index_path=str(tmp_path / "i2"))
    assert g.append(io.BytesIO(b"x"), flags=frozenset(), internaldate=None) == 1
    assert abs(g.sync().messages[0].internaldate - time.time()) < 5


def test_pseudo_message_is_hidden_and_kept(tmp_path: Path) -> None:
    f = folder(tmp_path)
    os.makedirs(os.path.dirname(f.path))
    pseudo = (
        b"From MAILER_DAEMON Sat Nov 21 17:27:16 2026\n"
        b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
        b"X-IMAP: 1234 0000000002\n\nThis text is part of the internal format.\n\n"
    )
    Path(f.path).write_bytes(pseudo + FOREIGN)
    state = f.sync()
    assert len(state.messages) == 4
    assert f.expunge([1]) == [1]
    assert Path(f.path).read_bytes().startswith(pseudo)


def test_foreign_mboxo_crlf_and_missing_blank_lines(tmp_path: Path) -> None:
    f = folder(tmp_path)
    os.makedirs(os.path.dirname(f.path))
    data = (
        b"From a Sat Nov 21 17:27:16 2026\r\nSubject: crlf\r\n\r\nline\r\n\r\n"
        b"From b Sat Nov  1 07:07 2026\nSubject: no seconds\n\n"
        b"From here, an unquoted body line without a date\nend\n"
        b"From c Sun Nov 22 00:00:00 CET 2026\nSubject: no blank line before me\n\nz"
    )
    Path(f.path).write_bytes(data)
    state = f.sync()
    assert [read(f, m.uid) for m in state.messages] == [
        b"Subject: crlf\r\n\r\nline\r\n",
        b"Subject: no seconds\r\n\r\nFrom here, an unquoted body line without a date\r\nend\r\n",
        b"Subject: no blank line before me\r\n\r\nz",
    ]
    check_sizes(f, state)
    assert state.messages[1].internaldate == time.mktime((2026, 11, 1, 7, 7, 0, 0, 0, -1))
    # A delivery after a file that does not end in an empty line keeps the key.
    deliver(f.path, b"Subject: next\r\n\r\n")
    assert [m.uid for m in f.sync().messages] == [1, 2, 3, 4]


def test_not_a_file_is_tempfail(tmp_path: Path) -> None:
    f = folder(tmp_path)
    os.makedirs(f.path)
    with pytest.raises(TempFail):
        f.sync()
    g = MboxFolder(str(tmp_path / "link"), index_path=str(tmp_path / "i"))
    (tmp_path / "target").write_bytes(FOREIGN)
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(TempFail):
        g.sync()
    with pytest.raises(TempFail):
        g.try_lock("pop3")


# --- locking ---------------------------------------------------------------------


def test_session_lock_makes_deliveries_defer(tmp_path: Path) -> None:
    f = folder(tmp_path)
    deliver(f.path, MSGS[0])
    lock = f.try_lock("pop3")
    assert lock is not None
    assert f.try_lock("pop3") is None  # the same maildrop, another session
    assert os.path.exists(f.path + ".lock")
    sleep = FakeSleep()
    with pytest.raises(TempFail) as ei:
        deliver(f.path, b"x", attempts=4, retry_delay=0.25, sleep=sleep)
    assert ei.value.reply == replies.MAILBOX_BUSY
    assert sleep.calls == [0.25, 0.25, 0.25]
    assert os.path.exists(f.path + ".lock")  # the session's dot-lock stays
    # The session reads and expunges through its own lock.
    assert [m.uid for m in f.sync().messages] == [1]
    assert read(f, 1) == wire(MSGS[0])
    lock.release()
    lock.release()  # idempotent
    assert not os.path.exists(f.path + ".lock")
    deliver(f.path, b"y")
    assert len(f.sync().messages) == 2
    again = f.try_lock("pop3")
    assert again is not None
    again.release()


def test_fcntl_lock_holds_when_the_dotlock_is_taken_for_stale(tmp_path: Path) -> None:
    f = folder(tmp_path)
    deliver(f.path, MSGS[0])
    lock = f.try_lock("pop3")
    assert lock is not None
    old = time.time() - 3600
    os.utime(f.path + ".lock", (old, old))  # an idle session, an impatient writer
    sleep = FakeSleep()
    with pytest.raises(TempFail) as ei:
        deliver(f.path, b"x", attempts=3, sleep=sleep)
    assert ei.value.reply == replies.MAILBOX_BUSY  # the fcntl lock, in this very process
    assert len(sleep.calls) == 2
    assert not os.path.exists(f.path + ".lock")  # the writer removed it as stale
    f.sync()
    assert f.expunge([1]) == [1]  # the session takes its dot-lock again first
    assert os.path.exists(f.path + ".lock")
    lock.release()
    assert not os.path.exists(f.path + ".lock")


def test_another_folder_object_cannot_lock(tmp_path: Path) -> None:
    f = folder(tmp_path)
    deliver(f.path, MSGS[0])
    lock = f.try_lock("pop3")
    assert lock is not None
    sleep = FakeSleep()
    other = folder(tmp_path, attempts=3, sleep=sleep)
    assert other.try_lock("pop3") is None
    assert len(sleep.calls) == 2
    with pytest.raises(TempFail) as ei:
        other.sync()  # the shared read lock waits for the exclusive one, then gives up
    assert ei.value.reply == replies.MAILBOX_BUSY
    lock.release()
    assert len(other.sync().messages) == 1


CHILD = """
import errno, fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    print("free")
except OSError as e:
    print("busy" if e.errno in (errno.EACCES, errno.EAGAIN) else "error")
"""


def child_sees(path: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, path], capture_output=True, check=True, timeout=60
    )
    return out.stdout.decode().strip()


def test_session_lock_is_a_posix_lock_for_other_processes(tmp_path: Path) -> None:
    f = folder(tmp_path)
    deliver(f.path, MSGS[0])
    lock = f.try_lock("pop3")
    assert lock is not None
    assert child_sees(f.path) == "busy"
    f.expunge([1])  # the lock moves to the rewritten file
    assert child_sees(f.path) == "busy"
    lock.release()
    assert child_sees(f.path) == "free"


def test_reads_wait_for_a_writer(tmp_path: Path) -> None:
    f = folder(tmp_path, attempts=3)
    deliver(f.path, MSGS[0])
    fd = os.open(f.path, os.O_RDWR)
    try:
        assert try_fcntl_lock(fd)  # a delivery in the middle of writing
        with pytest.raises(TempFail) as ei:
            f.sync()
        assert ei.value.reply == replies.MAILBOX_BUSY
    finally:
        os.close(fd)
    assert len(f.sync().messages) == 1


def test_writer_waiting_during_expunge_appends_to_the_new_file(tmp_path: Path) -> None:
    f = folder(tmp_path)
    for m in MSGS:
        deliver(f.path, m)
    f.sync()
    lock = f.try_lock("pop3")
    assert lock is not None
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        # The writer has opened the old file and waits for the dot-lock: the
        # session expunges (a new file is renamed over the path) and quits.
        waited.append(seconds)
        if len(waited) == 1:
            assert f.expunge([1]) == [1]
            lock.release()

    deliver(f.path, b"Subject: waited\r\n\r\n", sleep=sleep)
    assert len(waited) == 1
    state = f.sync()
    assert [m.uid for m in state.messages] == [2, 3, 4]
    assert read(f, 4) == wire(b"Subject: waited\r\n\r\n")


# --- parsing ---------------------------------------------------------------------

LINES = st.lists(
    st.sampled_from(
        [b"", b"From x", b"From me Sat Nov 21 17:27:16 2026", b">From a", b">>From b", b"text",
         b"Status: RO", b"X-Status: AF", b" cont", b"\r", b"a\r", b">", b"From"]
    ),
    max_size=12,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(LINES, min_size=1, max_size=4))
def test_writer_reader_round_trip(bodies: list[list[bytes]]) -> None:
    """MboxWriter's quoting, undone by the reader, gives each message back."""
    out = []
    originals = []
    for i, lines in enumerate(bodies):
        msg = b"Subject: %d\r\n\r\n" % i + b"\r\n".join(lines)
        q = MboxQuoter()
        quoted = q.feed(msg) + q.finish()
        lead = b"" if not out or out[-1].endswith(b"\n\n") else b"\n"
        out.append(lead + from_line("a@b", ARRIVAL + i) + quoted + b"\n")
        originals.append(msg)
    data = b"".join(out)
    messages = parse_mbox(data)
    assert len(messages) == len(bodies)
    for m, msg in zip(messages, originals, strict=True):
        got = render(data[m.start : m.start + m.stop], m)
        text = msg.replace(b"\r\n", b"\n")
        if not text.endswith(b"\n"):
            text += b"\n"
        assert got == text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        assert m.size == len(got)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(LINES.map(b"\n".join), st.binary(max_size=40)), max_size=8))
def test_parse_any_bytes(parts: list[bytes]) -> None:
    data = b"\n".join(parts)
    messages = parse_mbox(data)
    at = messages[0].start if messages else len(data)
    for m in messages:
        assert m.start == at  # messages tile the file from the first From line
        assert 0 < m.body <= m.stop and m.body <= m.end <= m.stop
        region = data[m.start : m.start + m.stop]
        assert len(render(region, m)) == m.size
        assert [x.key for x in parse_mbox(region)] == [m.key]
        at += m.stop
    assert at == len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parse_index_rejects_or_accepts(data: bytes) -> None:
    try:
        index = parse_index(b"version: 1\nuidvalidity: 5\nuidnext: 9\nhighestmodseq: 9\n" + data)
    except (ValueError, KeyError):
        return
    assert parse_index(index.render()) == index


def test_index_render_round_trip() -> None:
    text = (
        b"version: 1\nuidvalidity: 1795281136\nuidnext: 4\nhighestmodseq: 9\n"
        b"1 5 q2mV0Ow7cm1o0IRbJ3zU $Label \\Answered \\Seen\n3 9 d1H8x_3R3yLZr3yzG5fD\n"
    )
    index = parse_index(text)
    assert [(e.uid, e.modseq, e.flags) for e in index.entries] == [
        (1, 5, frozenset({SEEN, ANSWERED, "$Label"})),
        (3, 9, frozenset()),
    ]
    assert index.render() == text
    for bad in [
        text.replace(b"version: 1", b"version: 2"),
        text.replace(b"\n3 9", b"\n1 9"),  # UIDs must ascend
        text.replace(b"uidnext: 4", b"uidnext: 3"),
        text[:-1],  # truncated
        text.replace(b"3 9 d1", b"3 10 d1"),  # modseq above highestmodseq
    ]:
        with pytest.raises((ValueError, KeyError)):
            parse_index(bad)
    assert MboxIndex(uidvalidity=7).render().startswith(b"version: 1\nuidvalidity: 7\n")


def test_sync_timing_10000_messages(tmp_path: Path) -> None:
    """10,000 messages of 5 KiB: the time of a first sync (printed, not asserted)."""
    body = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\n" * 66
    parts = []
    for i in range(10_000):
        head = b"Return-Path: <a@b>\nFrom: a@b\nSubject: %d\nMessage-ID: <%d@x>\n\n" % (i, i)
        parts.append(from_line("a@b", ARRIVAL + i) + head + body + b"\n")
    f = folder(tmp_path)
    os.makedirs(os.path.dirname(f.path))
    Path(f.path).write_bytes(b"".join(parts))
    size = os.path.getsize(f.path)
    t0 = time.perf_counter()
    state = f.sync()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    folder(tmp_path).sync()
    second = time.perf_counter() - t0
    assert len(state.messages) == 10_000
    assert state.messages[-1].uid == 10_000
    print(
        f"\nmbox sync: 10,000 messages, {size / 10_000:.0f} octets each: first sync "
        f"{first:.3f} s (UIDs given, index written), another instance {second:.3f} s"
    )
