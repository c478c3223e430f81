"""Crash consistency of FileSpool: die at every system call, recover, check the invariants.

The spool module's `os` is replaced by a proxy that counts the calls that
change files (open, write, fsync, rename, unlink, ...) and, at call k,
raises Crash: a BaseException no cleanup code catches, after which every
further call fails too, as if the process had died there. The files it
had open are then closed (the kernel does that for a dead process and so
drops its flocks), and a fresh FileSpool on the same directory runs
recover(). For every k until the operation completes:

    * a committed message (commit() returned) is never lost;
    * no message is ever half there: every envelope recovery keeps has its
      complete content, and nothing is left in incoming/;
    * a state change leaves exactly one envelope, old or new.

This simulates dying between system calls; it does not simulate the
kernel losing writes that were not fsynced (the order of fsyncs and
renames in spool.py is what covers that, see its manual page).
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import postoffice.queue.spool as spool_mod
from postoffice.queue.envelope import Envelope, EnvelopeRecipient, RcptState
from postoffice.queue.spool import FileSpool

BODY = b"Subject: crash\r\n\r\n" + bytes(range(256)) * 400  # > 64 KiB: writes while receiving
MUTATING = {"open", "write", "fsync", "rename", "replace", "unlink", "link", "mkdir", "mkfifo"}


class Crash(BaseException):
    """The process died here."""


class CrashingOS:
    """The process dies at call k: that call and every later one raise Crash."""

    def __init__(self, k: int, root: Path) -> None:
        self.k = k
        self.root = root
        self.calls = 0
        self.dead = False
        self.open_fds: dict[int, str] = {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name == "close":
            return self._close
        if name not in MUTATING:
            return real

        def call(*a: Any, **kw: Any) -> Any:
            if self.dead:
                raise Crash(name)
            if self.calls == self.k:
                self.dead = True
                raise Crash(name)
            self.calls += 1
            return self._do(name, real, *a, **kw)

        return call

    def _do(self, name: str, real: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        result = real(*a, **kw)
        if name == "open":
            self.open_fds[result] = os.path.normpath(a[0])
        return result

    def _close(self, fd: int) -> None:
        self.open_fds.pop(fd, None)
        os.close(fd)

    def die(self) -> None:
        """The kernel closes a dead process's files (and so releases its locks)."""
        for fd in self.open_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.open_fds.clear()


class PowerCutOS(CrashingOS):
    """As CrashingOS, and then the power fails: what was not fsynced is lost.

    The worst case POSIX allows: every directory change (create, rename in
    or out, unlink) not followed by an fsync of *that* directory is undone,
    each directory on its own, and every file written since its last fsync
    is emptied. Removed names are kept as hard links in _bk/ so they can
    come back.
    """

    def __init__(self, k: int, root: Path) -> None:
        super().__init__(k, root)
        self.backup = root / "_bk"
        self.backup.mkdir(exist_ok=True)
        self.log: list[tuple[int, str, str, str, str | None]] = []  # seq, dir, op, name, backup
        self.synced_upto: dict[str, int] = {}
        self.dirty: set[int] = set()

    def _keep(self, path: str) -> str:
        b = str(self.backup / str(len(self.log) * 2 + len(os.listdir(self.backup))))
        os.link(path, b)
        return b

    def _record(self, path: str, op: str, backup: str | None) -> None:
        d, name = os.path.split(os.path.normpath(path))
        self.log.append((len(self.log) + 1, d, op, name, backup))

    def _do(self, name: str, real: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        if name == "open":
            existed = os.path.lexists(a[0])
            fd = super()._do(name, real, *a, **kw)
            if a[1] & os.O_CREAT and not existed:
                self._record(a[0], "add", None)
            return fd
        if name == "write":
            self.dirty.add(os.fstat(a[0]).st_ino)
        elif name == "fsync":
            st = os.fstat(a[0])
            if stat.S_ISDIR(st.st_mode):
                self.synced_upto[self.open_fds[a[0]]] = len(self.log)
            else:
                self.dirty.discard(st.st_ino)
        elif name == "rename":
            src, dst = a[0], a[1]
            kept_src = self._keep(src)
            kept_dst = self._keep(dst) if os.path.lexists(dst) else None
            real(*a, **kw)
            self._record(src, "del", kept_src)
            self._record(dst, "add", kept_dst)
            return None
        elif name == "unlink":
            kept = self._keep(a[0])
            real(*a, **kw)
            self._record(a[0], "del", kept)
            return None
        return super()._do(name, real, *a, **kw)

    def die(self) -> None:
        super().die()
        for seq, d, op, name, kept in reversed(self.log):
            if seq <= self.synced_upto.get(d, 0):
                continue  # that directory was fsynced after this change
            path = os.path.join(d, name)
            if op == "add":
                if os.path.lexists(path):
                    os.unlink(path)
                if kept is not None:
                    os.link(kept, path)
            elif not os.path.lexists(path) and kept is not None:
                os.link(kept, path)
        for dirpath, _, names in os.walk(self.root / "queue"):
            for n in names:
                p = os.path.join(dirpath, n)
                if os.lstat(p).st_ino in self.dirty and stat.S_ISREG(os.lstat(p).st_mode):
                    os.truncate(p, 0)
        shutil.rmtree(self.backup)


def make_env(qid: str) -> Envelope:
    return Envelope(
        queue_id=qid,
        sender="alice@example.org",
        recipients=(EnvelopeRecipient(address="bob@example.net"),),
        arrival_time=1_800_000_000.0,
        size=len(BODY),
    )


def check_sound(root: Path) -> list[Envelope]:
    """Recover with a fresh spool; check that nothing is half there. The queued envelopes."""
    spool = FileSpool(root)
    try:
        spool.recover()
        q = root / "queue"
        assert not list((q / "incoming").iterdir())
        entries = spool.entries()
        for e in entries:
            with spool.open_body(e.envelope.queue_id) as f:
                assert f.read() == BODY
        names = [p.name for d in ("active", "deferred", "hold") for p in (q / d).iterdir()]
        assert len(names) == len(set(names)) == len(entries)  # one envelope per message
        return [e.envelope for e in entries]
    finally:
        spool.close()


@pytest.fixture(params=[CrashingOS, PowerCutOS], ids=["crash", "power-cut"])
def model(request: pytest.FixtureRequest) -> type[CrashingOS]:
    return request.param  # type: ignore[no-any-return]


async def crash_at_every_step(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model: type[CrashingOS],
    setup: Callable[[FileSpool], Awaitable[Any]],
    operation: Callable[[FileSpool, Any], Awaitable[None]],
    check: Callable[[list[Envelope], Any, bool], None],
    *,
    debris: bool = False,
) -> int:
    """Run `operation` crashing at call k = 0, 1, ... until it completes; the number of steps."""
    for k in itertools.count():
        root = tmp_path / f"k{k}"
        spool = FileSpool(root)
        state = await setup(spool)
        proxy = model(k, root)
        monkeypatch.setattr(spool_mod, "os", proxy)
        completed = False
        try:
            await operation(spool, state)
            completed = True
        except Crash:
            pass
        finally:
            monkeypatch.setattr(spool_mod, "os", os)
            proxy.die()
            spool.close()
        check(check_sound(root), state, completed)
        if not debris:  # only content can be orphaned, never an envelope
            corrupt = [p.name for p in (root / "queue" / "corrupt").iterdir()]
            assert all(n.startswith("body-") for n in corrupt), (k, corrupt)
        if completed:
            return k
    raise AssertionError("unreachable")


async def test_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: type[CrashingOS]
) -> None:
    async def setup(spool: FileSpool) -> dict[str, str]:
        return {}

    async def operation(spool: FileSpool, state: dict[str, str]) -> None:
        msg = spool.begin()
        state["qid"] = msg.queue_id
        msg.write(BODY[:70_000])
        msg.write(BODY[70_000:])
        await spool.commit(msg, make_env(msg.queue_id))

    outcomes: list[bool] = []

    def check(queued: list[Envelope], state: dict[str, str], completed: bool) -> None:
        ids = [e.queue_id for e in queued]
        assert len(ids) <= 1
        if completed:
            assert ids == [state["qid"]] and queued[0] == make_env(state["qid"])
        outcomes.append(bool(ids))

    steps = await crash_at_every_step(tmp_path, monkeypatch, model, setup, operation, check)
    assert steps >= 10  # open, 2 writes, 2 fsyncs, open, write, rename, rename, dir fsyncs
    # Early crashes leave no message; once the envelope is renamed in, it stays.
    assert outcomes == sorted(outcomes) and outcomes[0] is False and outcomes[-1] is True


async def committed(spool: FileSpool) -> Envelope:
    msg = spool.begin()
    msg.write(BODY)
    env = make_env(msg.queue_id)
    await spool.commit(msg, env)
    return env


async def test_update_to_deferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: type[CrashingOS]
) -> None:
    def newer(env: Envelope) -> Envelope:
        rcpt = replace(env.recipients[0], reason="451 4.4.1 try later")
        return replace(env, recipients=(rcpt,), attempts=1, next_attempt=2e9, last_reason="x")

    async def operation(spool: FileSpool, env: Envelope) -> None:
        await spool.update(newer(env), deferred=True)

    def check(queued: list[Envelope], env: Envelope, completed: bool) -> None:
        assert queued in ([env], [newer(env)])  # never lost, one version or the other
        if completed:
            assert queued == [newer(env)]

    await crash_at_every_step(tmp_path, monkeypatch, model, committed, operation, check)


async def test_update_to_done_recipient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: type[CrashingOS]
) -> None:
    def delivered(env: Envelope) -> Envelope:
        r = replace(env.recipients[0], state=RcptState.DELIVERED, reason="250 ok")
        return replace(env, recipients=(r, EnvelopeRecipient(address="c@d")), attempts=1)

    async def operation(spool: FileSpool, env: Envelope) -> None:
        await spool.update(delivered(env), deferred=False)

    def check(queued: list[Envelope], env: Envelope, completed: bool) -> None:
        assert queued in ([env], [delivered(env)])
        if completed:
            assert queued == [delivered(env)]

    await crash_at_every_step(tmp_path, monkeypatch, model, committed, operation, check)


async def test_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: type[CrashingOS]
) -> None:
    async def operation(spool: FileSpool, env: Envelope) -> None:
        await spool.remove(env.queue_id)

    def check(queued: list[Envelope], env: Envelope, completed: bool) -> None:
        assert queued in ([env], [])  # still complete, or gone (an orphan body -> corrupt/)
        if completed:
            assert queued == []

    await crash_at_every_step(tmp_path, monkeypatch, model, committed, operation, check)


async def test_hold_and_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: type[CrashingOS]
) -> None:
    async def operation(spool: FileSpool, env: Envelope) -> None:
        assert await spool.hold(env.queue_id)
        assert await spool.release(env.queue_id)

    def check(queued: list[Envelope], env: Envelope, completed: bool) -> None:
        assert queued == [env]

    await crash_at_every_step(tmp_path, monkeypatch, model, committed, operation, check)


async def test_recovery_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: type[CrashingOS]
) -> None:
    """Recovery can crash too (moving debris to corrupt/) and is simply run again."""

    async def setup(spool: FileSpool) -> Envelope:
        env = await committed(spool)
        q = Path(spool.root)
        (q / "body" / "junk").write_bytes(b"?")
        (q / "active" / "junk").write_bytes(b"?")
        dead = spool.begin()
        dead.write(b"partial")
        dead.abort()
        (q / "incoming" / "leftover.body").write_bytes(b"partial")
        return env

    async def operation(spool: FileSpool, env: Envelope) -> None:
        spool.recover()

    def check(queued: list[Envelope], env: Envelope, completed: bool) -> None:
        assert queued == [env]

    await crash_at_every_step(tmp_path, monkeypatch, model, setup, operation, check, debris=True)
