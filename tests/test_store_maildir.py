"""Tests for store/maildir.py: names, layout, CRLF→LF, sizes, fault injection."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from postoffice.errors import PermFail, TempFail
from postoffice.smtp import replies
from postoffice.store import maildir
from postoffice.store.maildir import MaildirWriter, make_maildir, unique_name

PREFIX = b"Return-Path: <a@b>\r\nDelivered-To: c@d\r\n"
MSG = b"Subject: hi\r\nFrom: a@b\r\n\r\nline one\r\nline two\r\n"

NAME_RE = re.compile(
    r"(?P<sec>\d+)\.M(?P<usec>\d+)P(?P<pid>\d+)Q(?P<q>\d+)R(?P<r>[0-9a-f]{16})\."
    r"(?P<host>[^,]+),S=(?P<s>\d+),W=(?P<w>\d+)"
)


def deliver(w: MaildirWriter, msg: bytes = MSG, prefix: bytes = PREFIX) -> str:
    return w.deliver(io.BytesIO(msg), prefix=prefix, sender="a@b", arrival=0.0)


def listing(root: Path) -> dict[str, list[str]]:
    return {sub: sorted(os.listdir(root / sub)) for sub in ("cur", "new", "tmp")}


def test_make_maildir(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "Maildir"
    make_maildir(str(root))
    make_maildir(str(root))  # idempotent
    for sub in ("cur", "new", "tmp"):
        mode = stat.S_IMODE(os.stat(root / sub).st_mode)
        assert mode & 0o077 == 0


def test_deliver_creates_maildir_and_converts_crlf(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    w = MaildirWriter(str(root), hostname="mx.example")
    where = deliver(w)
    assert os.path.dirname(where) == str(root / "new")
    data = Path(where).read_bytes()
    assert data == (PREFIX + MSG).replace(b"\r\n", b"\n")
    m = NAME_RE.fullmatch(os.path.basename(where))
    assert m is not None
    assert int(m["s"]) == len(data) == os.path.getsize(where)
    assert int(m["w"]) == len(PREFIX + MSG)  # the size with CRLF line endings
    assert m["host"] == "mx.example"
    assert int(m["pid"]) == os.getpid()
    assert listing(root)["tmp"] == []
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o600


def test_large_message_streams_and_crlf_across_chunk_boundary(tmp_path: Path) -> None:
    # A CRLF straddling the 64 KiB read boundary must still become LF.
    first = b"x" * (maildir.CHUNK - 1) + b"\r"
    msg = first + b"\n" + b"tail\r\n" * 50_000 + b"lone\rcr\r"
    where = deliver(MaildirWriter(str(tmp_path / "M"), hostname="h"), msg, prefix=b"")
    data = Path(where).read_bytes()
    assert data == msg.replace(b"\r\n", b"\n")
    assert b"\r\n" not in data


class ChunkyReader(io.RawIOBase):
    """Returns at most `n` bytes per read, to exercise chunk boundaries."""

    def __init__(self, data: bytes, n: int) -> None:
        self._data = data
        self._n = n

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        out, self._data = self._data[: self._n], self._data[self._n :]
        return out


def test_short_reads(tmp_path: Path) -> None:
    w = MaildirWriter(str(tmp_path / "M"), hostname="h")
    msg = b"a\r\nb\r\n\r\nc\r\r\n" * 3
    where = w.deliver(ChunkyReader(msg, 1), prefix=b"P: 1\r", sender="", arrival=0.0)  # type: ignore[arg-type]
    assert Path(where).read_bytes() == (b"P: 1\r" + msg).replace(b"\r\n", b"\n")


def test_unique_names_many_deliveries(tmp_path: Path) -> None:
    w = MaildirWriter(str(tmp_path / "M"), hostname="h")
    with ThreadPoolExecutor(8) as ex:
        names = list(ex.map(lambda _: deliver(w), range(400)))
    assert len(set(names)) == 400
    assert len(os.listdir(tmp_path / "M" / "new")) == 400
    qs = {NAME_RE.fullmatch(os.path.basename(n))["q"] for n in names}  # type: ignore[index]
    assert len(qs) == 400


def test_unique_name_across_simulated_pids() -> None:
    names = {
        unique_name(now_ns=1000_500_000_000, pid=pid, seq=1, host="h", rand=os.urandom(8).hex())
        for pid in range(1, 200)
    }
    assert len(names) == 199
    # Same time, same pid (pid namespaces), same counter: the random part still differs.
    same = {
        unique_name(now_ns=1000_500_000_000, pid=1, seq=1, host="h", rand=os.urandom(8).hex())
        for _ in range(200)
    }
    assert len(same) == 200
    assert unique_name(now_ns=12_000_250_999, pid=7, seq=3, host="h", rand="ab").startswith(
        "12.M250P7Q3Rab.h"
    )


def test_host_escaping() -> None:
    assert maildir.escape_host("a/b:c,d") == "a\\057b\\072c\\054d"
    name = unique_name(now_ns=1, pid=1, seq=1, host="x/y:z", rand="00")
    assert "/" not in name and ":" not in name


def test_path_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"")
    with pytest.raises(PermFail) as ei:
        deliver(MaildirWriter(str(target), hostname="h"))
    assert ei.value.reply.code == 550 and ei.value.reply.enhanced == "5.2.0"
    assert str(target) not in ei.value.reply.text


def test_subdir_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "M"
    root.mkdir()
    (root / "tmp").write_bytes(b"")
    with pytest.raises(PermFail):
        deliver(MaildirWriter(str(root), hostname="h"))


def fail_with(err: int) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(err, os.strerror(err))

    return fail


@pytest.fixture(params=["unnamed", "tmp"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways into new/: O_TMPFILE + linkat, and tmp/ + rename."""
    if request.param == "unnamed":
        assert maildir._tmpfile_ok or not hasattr(os, "O_TMPFILE")
    monkeypatch.setattr(maildir, "_tmpfile_ok", request.param == "unnamed")
    return str(request.param)


_FAULTS = {
    "unnamed": [("link", errno.EIO, replies.LOCAL_ERROR)],
    "tmp": [("rename", errno.EXDEV, replies.LOCAL_ERROR)],
}


@pytest.mark.parametrize(
    ("func", "err", "reply"),
    [
        ("write", errno.ENOSPC, replies.INSUFFICIENT_STORAGE),
        ("write", errno.EDQUOT, replies.INSUFFICIENT_STORAGE),
        ("write", errno.EIO, replies.LOCAL_ERROR),
        ("fsync", errno.EIO, replies.LOCAL_ERROR),
        ("naming", 0, None),  # the mode's own step: link or rename (see _FAULTS)
    ],
)
def test_faults_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, func: str, err: int, reply: Any
) -> None:
    if func == "naming":
        ((func, err, reply),) = _FAULTS[mode]
    root = tmp_path / "M"
    w = MaildirWriter(str(root), hostname="h")
    deliver(w)  # the Maildir exists and holds one message
    monkeypatch.setattr(os, func, fail_with(err))
    with pytest.raises(TempFail) as ei:
        deliver(w)
    monkeypatch.undo()
    assert ei.value.reply == reply
    assert str(root) not in ei.value.reply.text
    assert str(root) in ei.value.reason
    assert len(listing(root)["new"]) == 1
    assert listing(root)["tmp"] == []


def test_unnamed_falls_back_without_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maildir, "_tmpfile_ok", True)
    monkeypatch.setattr(os, "link", fail_with(errno.EXDEV))  # as with /proc missing
    root = tmp_path / "M"
    path = deliver(MaildirWriter(str(root), hostname="h"))
    assert maildir._tmpfile_ok is False  # the rest of the process uses tmp/ + rename
    assert listing(root)["new"] == [os.path.basename(path)]
    assert listing(root)["tmp"] == []


def test_partial_write_then_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "M"
    w = MaildirWriter(str(root), hostname="h")
    make_maildir(str(root))
    real_write = os.write
    calls = {"n": 0}

    def flaky(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", flaky)
    with pytest.raises(TempFail) as ei:
        deliver(w)
    assert ei.value.reply == replies.INSUFFICIENT_STORAGE
    monkeypatch.undo()
    assert listing(root) == {"cur": [], "new": [], "tmp": []}


def test_directory_fsync_failure_removes_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    root = tmp_path / "M"
    w = MaildirWriter(str(root), hostname="h")
    if mode == "tmp":
        monkeypatch.setattr(maildir, "fsync_dir", fail_with(errno.EIO))
    else:  # the second fsync is the directory's
        real_fsync = os.fsync
        calls = []

        def second_fails(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 2:
                raise OSError(errno.EIO, "I/O error")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", second_fails)
    with pytest.raises(TempFail):
        deliver(w)
    monkeypatch.undo()
    assert listing(root) == {"cur": [], "new": [], "tmp": []}


def test_source_read_error(tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError(errno.EIO, "I/O error")

    root = tmp_path / "M"
    with pytest.raises(TempFail):
        MaildirWriter(str(root), hostname="h").deliver(
            Broken(),  # type: ignore[arg-type]
            prefix=PREFIX,
            sender="",
            arrival=0.0,
        )
    assert listing(root)["tmp"] == [] and listing(root)["new"] == []


def test_create_failure_other_than_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "M"
    make_maildir(str(root))
    monkeypatch.setattr(os, "open", fail_with(errno.EMFILE))
    with pytest.raises(TempFail) as ei:
        deliver(MaildirWriter(str(root), hostname="h"))
    assert ei.value.reply == replies.LOCAL_ERROR


def test_default_hostname(tmp_path: Path) -> None:
    where = deliver(MaildirWriter(str(tmp_path / "M")))
    assert NAME_RE.fullmatch(os.path.basename(where))
