"""Tests for store/mbox.py: From line, mboxrd quoting, locking, truncation on failure."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.errors import PermFail, TempFail
from postoffice.smtp import replies
from postoffice.store.maildir import CHUNK
from postoffice.store.mbox import MboxQuoter, MboxWriter, from_line

PREFIX = b"Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.net\r\n"
ARRIVAL = 1795281136.0


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def writer(path: Path, **kw: Any) -> MboxWriter:
    kw.setdefault("sleep", FakeSleep())
    return MboxWriter(str(path), **kw)


def deliver(w: MboxWriter, msg: bytes, sender: str = "alice@example.org") -> str:
    return w.deliver(io.BytesIO(msg), prefix=PREFIX, sender=sender, arrival=ARRIVAL)


def unquote_mboxrd(data: bytes) -> list[bytes]:
    """A reference mboxrd reader: split messages, remove one '>' from quoted From lines."""
    messages: list[list[bytes]] = []
    for line in data.split(b"\n")[:-1]:
        if line.startswith(b"From "):
            messages.append([])
            continue
        if re.match(rb">+From ", line):
            line = line[1:]
        messages[-1].append(line)
    out = []
    for lines in messages:
        assert lines[-1] == b""  # the empty line after each message
        out.append(b"\n".join(lines[:-1]) + b"\n")
    return out


def test_from_line_format() -> None:
    line = from_line("alice@example.org", ARRIVAL).decode()
    assert line == f"From alice@example.org {time.asctime(time.localtime(ARRIVAL))}\n"
    assert re.fullmatch(
        r"From alice@example\.org [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\n", line
    )
    assert from_line("", ARRIVAL).startswith(b"From MAILER-DAEMON ")
    assert from_line('"a b"@x', ARRIVAL).startswith(b'From "a_b"@x ')


def test_deliver_format_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "bob"
    msg = b"Subject: hi\r\n\r\nFrom here on\r\n>From there\r\nnot From\r\nlast"
    assert deliver(writer(path), msg) == str(path)
    data = path.read_bytes()
    expected = (
        from_line("alice@example.org", ARRIVAL)
        + b"Return-Path: <alice@example.org>\nDelivered-To: bob@example.net\n"
        + b"Subject: hi\n\n>From here on\n>>From there\nnot From\nlast\n\n"
    )
    assert data == expected
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not os.path.exists(str(path) + ".lock")


def test_round_trip_several_messages(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    msgs = [
        b"Subject: 1\r\n\r\nFrom the start\r\n",
        b"Subject: 2\r\n\r\n>>>From deep\r\n\r\nFrom \r\n",
        b"Subject: 3\r\n\r\nno final newline",
        b"",
    ]
    w = writer(path)
    for m in msgs:
        deliver(w, m, sender="")
    got = unquote_mboxrd(path.read_bytes())
    want = []
    for m in msgs:
        text = (PREFIX + m).replace(b"\r\n", b"\n")
        want.append(text if text.endswith(b"\n") else text + b"\n")
    assert got == want


@given(st.binary(max_size=400), st.integers(min_value=1, max_value=7))
def test_quoter_matches_reference(data: bytes, step: int) -> None:
    q = MboxQuoter()
    out = b"".join(q.feed(data[i : i + step]) for i in range(0, len(data), step)) + q.finish()
    ref = re.sub(rb"(?m)^(>*From )", rb">\1", data.replace(b"\r\n", b"\n"))
    if ref and not ref.endswith(b"\n"):
        ref += b"\n"
    assert out == ref


def test_appends_separator_after_foreign_writer(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(b"From x Sat Nov 21 17:27:16 2026\nSubject: old\n\nno blank line after")
    deliver(writer(path), b"Subject: new\r\n\r\nbody\r\n")
    data = path.read_bytes()
    assert b"no blank line after\n\nFrom alice@example.org " in data
    path.write_bytes(b"From x Sat Nov 21 17:27:16 2026\n\nbody\n")
    deliver(writer(path), b"x")
    assert b"body\n\nFrom alice" in path.read_bytes()


def test_failed_write_truncates_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mbox"
    w = writer(path)
    deliver(w, b"Subject: first\r\n\r\nbody\r\n")
    before = path.read_bytes()
    real_write = os.write
    calls = {"n": 0}

    def flaky(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[:7])  # half a message reaches the file
        raise OSError(errno.ENOSPC, "No space left on device")

    big = b"Subject: big\r\n\r\n" + b"y" * (3 * CHUNK)
    monkeypatch.setattr(os, "write", flaky)
    with pytest.raises(TempFail) as ei:
        deliver(w, big)
    monkeypatch.undo()
    assert ei.value.reply == replies.INSUFFICIENT_STORAGE
    assert path.read_bytes() == before
    assert not os.path.exists(str(path) + ".lock")
    deliver(w, b"Subject: after\r\n\r\n")  # the mailbox still works
    assert len(unquote_mboxrd(path.read_bytes())) == 2


def test_fsync_failure_truncates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mbox"
    w = writer(path)
    deliver(w, b"one")
    before = path.read_bytes()
    real_fsync = os.fsync
    calls = {"n": 0}

    def flaky(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", flaky)
    with pytest.raises(TempFail) as ei:
        deliver(w, b"two")
    assert ei.value.reply == replies.LOCAL_ERROR
    assert path.read_bytes() == before


def test_dotlock_busy(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    lock = tmp_path / "mbox.lock"
    lock.write_bytes(b"12345\n")
    sleep = FakeSleep()
    w = writer(path, attempts=4, retry_delay=0.5, sleep=sleep)
    with pytest.raises(TempFail) as ei:
        deliver(w, b"x")
    assert ei.value.reply == replies.MAILBOX_BUSY
    assert sleep.calls == [0.5, 0.5, 0.5]
    assert lock.exists()  # someone else's lock is never removed
    assert path.read_bytes() == b""


def test_dotlock_released_while_waiting(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    lock = tmp_path / "mbox.lock"
    lock.write_bytes(b"")

    def sleep(_: float) -> None:
        lock.unlink()  # the other writer finishes

    deliver(writer(path, sleep=sleep), b"x")
    assert b"\nx\n\n" in path.read_bytes()


def test_stale_dotlock_removed(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    lock = tmp_path / "mbox.lock"
    lock.write_bytes(b"")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    sleep = FakeSleep()
    deliver(writer(path, sleep=sleep, stale_after=300), b"x")
    assert sleep.calls == []
    assert not lock.exists()
    # With a clock that says the lock is fresh, it is respected.
    lock.write_bytes(b"")
    with pytest.raises(TempFail):
        deliver(writer(path, attempts=2, clock=lambda: os.stat(lock).st_mtime + 10), b"y")


LOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def test_fcntl_lock_contention(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    with subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as child:
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == b"locked\n"
            sleep = FakeSleep()
            with pytest.raises(TempFail) as ei:
                deliver(writer(path, attempts=3, sleep=sleep), b"x")
            assert ei.value.reply == replies.MAILBOX_BUSY
            assert len(sleep.calls) == 2
            assert not os.path.exists(str(path) + ".lock")  # our dot-lock is released
            child.stdin.write(b"\n")
            child.stdin.flush()
            assert child.wait(timeout=30) == 0
        finally:
            if child.poll() is None:
                child.kill()
    deliver(writer(path), b"x")  # free again
    assert path.read_bytes().startswith(b"From alice@example.org ")


def test_directory_or_symlink_is_permfail(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(PermFail) as ei:
        deliver(writer(d), b"x")
    assert ei.value.reply.code == 550
    target = tmp_path / "target"
    target.write_bytes(b"")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(PermFail):
        deliver(writer(link), b"x")
    assert target.read_bytes() == b""


def test_crlf_straddling_chunks(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    msg = b"S: x\r\n\r\n" + b"a" * (CHUNK - 9) + b"\r\nFrom " + b"b" * CHUNK + b"\r\n"
    deliver(writer(path), msg)
    (got,) = unquote_mboxrd(path.read_bytes())
    assert got == (PREFIX + msg).replace(b"\r\n", b"\n")
    assert b"\n>From bbb" in path.read_bytes()


def test_failed_truncate_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mbox"
    w = writer(path)

    def broken(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    monkeypatch.setattr(os, "ftruncate", broken)
    with pytest.raises(TempFail):
        deliver(w, b"Subject: x\r\n\r\nbody\r\n")
    monkeypatch.undo()
    assert "cannot truncate back" in caplog.text and str(path) in caplog.text
