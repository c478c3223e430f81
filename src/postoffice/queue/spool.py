"""The durable spool: FileSpool, the only writer of queue files.

Description:
    Layout under `<state_dir>/queue/` (every directory mode 0700):

        incoming/QID.body      content being received, once past a 64 KiB buffer
                               (created by the commit otherwise; flock-ed by its writer)
        incoming/QID.env       envelope being committed (flock-ed)
        incoming/QID.*.tmp     a new envelope version being written (flock-ed)
        body/QID               committed content; written once, never moved
        active/QID             envelope: committed, waiting for or under delivery
        deferred/QID           envelope: waiting for its retry time
        hold/QID               envelope: held by the administrator
        corrupt/STATE-NAME     unreadable or orphaned files, kept for inspection
        trigger                a FIFO: poked after a commit by other processes

    The envelope file's presence in active/, deferred/ or hold/ *is* the
    message being queued; the body lives in body/ whichever queue the
    envelope is in, as qmail's mess/ does, so that every state change
    (defer, hold, release) renames one small file and never the content.

    Commit (RFC 5321 §6.1: a 250 is a promise not to lose the message):

        1. content written to incoming/QID.body while it arrives (past 64 KiB)
        2. write incoming/QID.env; rename incoming/QID.body -> body/QID;
           fsync the body, fsync the envelope                 (thread pool)
        3. fsync body/                                        (group commit)
        4. rename incoming/QID.env -> active/QID              (commit point)
        5. fsync active/                                      (group commit)
        6. commit() returns: the caller may answer 250

    A crash before 4 leaves only incoming/ files (removed at start-up) and
    perhaps a body/ file without an envelope (moved to corrupt/ at
    start-up); a crash after 4 leaves a complete message, because the body
    and its directory entry were made durable in 2-3, before the envelope
    could be seen. Either no message or a complete one, never half of one.

    Every later change writes a fresh envelope in incoming/, fsyncs it and
    renames it over the old one (one atomic rename), then, when the queue
    changes, renames it into the new queue directory (one more atomic
    rename; a crash between the two leaves the new content in the old
    queue, which only makes a retry come early). Removal unlinks the
    envelope first (the message is gone), then the body.

    Group commit: fsync calls run in a bounded thread pool (`io_threads`),
    never on the event loop. A directory fsync covers every rename made before it
    started, so concurrent commits that renamed while one fsync ran share
    the next one: 20 sessions committing together cost a few directory
    fsyncs, not 20 serial ones (`statistics()` counts both).

    Several processes may share one spool (a listener, `sendmail`, the
    admin commands): renames are atomic, nothing is true only in memory,
    and every change of a message's envelope takes an flock on its body
    file, which never moves; a committer holds that lock until its commit
    is complete, so start-up recovery in another process never mistakes a
    commit in progress for debris.

    FileSpool(state_dir, *, durable=True, io_threads=8)   durable=False: no fsync (tests)
      begin() -> IncomingMessage                 .write(data), .abort(), .queue_id, .size
      await commit(msg, envelope)                returns once durable; TempFail on I/O error
      open_body(qid) -> BinaryIO                 FileNotFoundError when gone
      await update(envelope, *, deferred)        fresh envelope; moves to deferred/ or active/
      await remove(qid)                          envelope first, then the content
      await hold(qid) / await release(qid) -> bool
      envelopes() / entries(states) / load(qid)  read-only views (blocking: small reads)
      recover() -> list[Envelope]                start-up clean-up (blocking)
      pull_trigger(); watch_trigger(callback) -> stop
      statistics() -> SpoolStatistics; close()

States:
    incoming -> active -> (deferred <-> active) -> removed; active or
    deferred -> hold -> active (release); anything unreadable -> corrupt.

Security:
    Runs as the mail system's user; files 0600, directories 0700. Queue ids
    from the command line are checked (is_queue_id) before they name a file.
    Error replies never contain paths; the reason (for the log) may.

Config:
    state_dir (the spool is `<state_dir>/queue`).

See also:
    queue/interfaces.py (Spool, ManagedSpool), queue/envelope.py (file
    format), queue/manager.py, DESIGN.md "The spool", RFC 5321 §6.1.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import stat
from collections.abc import Callable, Collection, Coroutine, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, TypeVar

from postoffice.errors import TempFail
from postoffice.queue.envelope import Envelope, EnvelopeError
from postoffice.queue.ids import is_queue_id, new_queue_id
from postoffice.queue.interfaces import QUEUE_STATES, IncomingMessage, QueueEntry, QueueState
from postoffice.smtp import replies

log = logging.getLogger("postoffice.queue")

T = TypeVar("T")

_BUFFER = 64 * 1024  # bytes collected before one write(2)
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_DIRS = ("incoming", "body", "active", "deferred", "hold", "corrupt")
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _tempfail(e: OSError, what: str) -> TempFail:
    """An I/O error as a TempFail: 452 4.3.1 when the disk is full, else 451 4.3.0."""
    reply = replies.INSUFFICIENT_STORAGE if e.errno in _STORAGE_ERRNOS else replies.LOCAL_ERROR
    return TempFail(reply=reply, reason=f"{what}: {e.strerror or e}")


def _write_all(fd: int, data: bytes | bytearray) -> None:
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # recovery finds what is left
        log.warning("cannot remove %s: %s", path, e.strerror)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on `path`; None when another holds it or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolStatistics:
    commits: int
    commit_errors: int
    aborts: int
    updates: int
    removes: int
    file_fsyncs: int
    dir_fsyncs: int  # directory fsyncs actually done
    dir_fsync_requests: int  # directory fsyncs asked for (without group commit: done)
    triggers_pulled: int


class _DirSync:
    """Group commit for one directory: one fsync covers every rename made before it started."""

    def __init__(self, path: str, executor: Executor) -> None:
        self.path = path
        self._executor = executor
        self._issued = 0  # tickets handed out (each after its caller's rename)
        self._current: tuple[asyncio.Future[None], int] | None = None  # (fsync, last ticket)
        self.fsyncs = 0
        self.requests = 0

    async def sync(self) -> None:
        self.requests += 1
        self._issued += 1
        ticket = self._issued
        while True:
            cur = self._current
            # A finished fsync whose done-callback has not run yet covers nothing new:
            # waiting on it would not yield, and this loop would spin.
            if cur is None or (ticket > cur[1] and cur[0].done()):
                cur = self._start()
            fut, covers = cur
            if ticket <= covers:
                await asyncio.shield(fut)  # raises the fsync's error for everyone it covered
                return
            # This fsync started before our rename: wait for it, then join the next one.
            try:
                await asyncio.shield(fut)
            except OSError:
                pass

    def _start(self) -> tuple[asyncio.Future[None], int]:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, _fsync_dir, self.path)
        self._current = (fut, self._issued)
        self.fsyncs += 1
        fut.add_done_callback(self._done)
        return self._current

    def _done(self, fut: asyncio.Future[None]) -> None:
        if self._current is not None and self._current[0] is fut:
            self._current = None
        if not fut.cancelled():
            fut.exception()  # retrieved: the waiters see it


class _Incoming:
    """A message being received into incoming/ (IncomingMessage).

    The file is created only when the content outgrows the buffer, or by the
    commit in an I/O thread: creating a file can wait on the filesystem's
    journal, and most messages fit the buffer, so the event loop rarely waits.
    """

    def __init__(self, spool: FileSpool, queue_id: str) -> None:
        self._spool = spool
        self._queue_id = queue_id
        self.path = spool._path("incoming", queue_id + ".body")
        self.fd = -1
        self.env_fd = -1
        self.body_moved = False  # renamed into body/
        self.state = "open"  # open, committing, committed, aborted
        self._buf = bytearray()
        self._size = 0

    @property
    def queue_id(self) -> str:
        return self._queue_id

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        if self.state != "open":
            raise RuntimeError(f"{self._queue_id}: write to a message that is {self.state}")
        self._buf += data
        self._size += len(data)
        if len(self._buf) >= _BUFFER:
            try:
                self.flush()
            except OSError as e:
                self.abort()
                raise _tempfail(e, f"{self._queue_id}: cannot write queue file") from e

    def flush(self) -> None:
        """Write the buffer out, creating (and locking) the file first if need be."""
        if self.fd < 0:
            self.fd = os.open(self.path, _OPEN_NEW, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: ours alone
        if self._buf:
            _write_all(self.fd, self._buf)
            self._buf.clear()

    def close_fds(self) -> None:
        """Close the files (and so drop their locks)."""
        for fd in (self.fd, self.env_fd):
            if fd >= 0:
                _close_quietly(fd)
        self.fd = self.env_fd = -1

    def abort(self) -> None:
        self._spool._abort(self)


class FileSpool:
    """The spool in `<state_dir>/queue/` (ManagedSpool)."""

    def __init__(
        self, state_dir: str | os.PathLike[str], *, durable: bool = True, io_threads: int = 8
    ) -> None:
        self.root = os.path.join(os.fspath(state_dir), "queue")
        self.trigger_path = os.path.join(self.root, "trigger")
        self._durable = durable
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, io_threads), thread_name_prefix="postoffice-spool"
        )
        self._dir = {name: os.path.join(self.root, name) for name in _DIRS}
        self._sync = {name: _DirSync(path, self._pool) for name, path in self._dir.items()}
        # Commits in progress in this process: a state change of the same message waits
        # for it here, not on its flock in an I/O thread (the commit may need that thread).
        self._commits: dict[str, asyncio.Future[None]] = {}
        self._counts = dict.fromkeys(
            ("commits", "commit_errors", "aborts", "updates", "removes", "file_fsyncs", "pulls"), 0
        )
        self._make_dirs()

    # --- set-up ------------------------------------------------------------

    def _make_dirs(self) -> None:
        created = False
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        for path in self._dir.values():
            try:
                os.mkdir(path, 0o700)
                created = True
            except FileExistsError:
                pass
            if stat.S_IMODE(os.stat(path).st_mode) != 0o700:
                os.chmod(path, 0o700)
        try:
            st = os.lstat(self.trigger_path)
            if not stat.S_ISFIFO(st.st_mode):
                log.warning("%s is not a FIFO: replacing it", self.trigger_path)
                os.unlink(self.trigger_path)
                raise FileNotFoundError
        except FileNotFoundError:
            try:
                os.mkfifo(self.trigger_path, 0o600)
                created = True
            except FileExistsError:
                pass
        if created and self._durable:
            _fsync_dir(self.root)

    def close(self) -> None:
        """Stop the I/O threads (after the running operations finish)."""
        self._pool.shutdown(wait=True)

    def _path(self, where: str, name: str) -> str:
        return os.path.join(self._dir[where], name)

    def _check(self, queue_id: str) -> str:
        if not is_queue_id(queue_id):
            raise ValueError(f"not a queue id: {queue_id!r}")
        return queue_id

    async def _dir_sync(self, *names: str) -> None:
        if self._durable:
            for name in names:
                await self._sync[name].sync()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @staticmethod
    async def _shielded(coro: Coroutine[Any, Any, T] | asyncio.Future[T]) -> T:
        """Run `coro` to its end even if the caller is cancelled half way."""
        task = asyncio.ensure_future(coro)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_late_failure)
            raise

    # --- receiving and committing --------------------------------------------

    def begin(self) -> _Incoming:
        return _Incoming(self, new_queue_id())

    def _own(self, msg: IncomingMessage) -> _Incoming:
        if not isinstance(msg, _Incoming) or msg._spool is not self:
            raise TypeError("message was not begun by this spool")
        return msg

    async def commit(self, msg: IncomingMessage, envelope: Envelope) -> None:
        inc = self._own(msg)
        if envelope.queue_id != inc.queue_id:
            raise ValueError(f"envelope {envelope.queue_id} for message {inc.queue_id}")
        if inc.state != "open":
            raise RuntimeError(f"{inc.queue_id}: commit of a message that is {inc.state}")
        if envelope.size == 0:
            envelope = replace(envelope, size=inc.size)
        inc.state = "committing"
        task = asyncio.ensure_future(self._commit(inc, envelope.to_bytes()))
        self._commits[inc.queue_id] = task
        task.add_done_callback(lambda _: self._commits.pop(inc.queue_id, None))
        await self._shielded(task)

    def _commit_files(self, inc: _Incoming, data: bytes) -> None:
        """Steps 2 and 3a of the commit, in an I/O thread."""
        qid = inc.queue_id
        inc.flush()
        inc.env_fd = os.open(self._path("incoming", qid + ".env"), _OPEN_NEW, 0o600)
        fcntl.flock(inc.env_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _write_all(inc.env_fd, data)
        os.rename(self._path("incoming", qid + ".body"), self._path("body", qid))
        inc.body_moved = True
        # Every change first, then the fsyncs: on a journalling filesystem the first
        # fsync commits them all in one transaction and the others find little to do.
        if self._durable:
            os.fsync(inc.fd)
            os.fsync(inc.env_fd)

    async def _commit(self, inc: _Incoming, data: bytes) -> None:
        qid = inc.queue_id
        visible = False
        try:
            await self._run(self._commit_files, inc, data)
            if self._durable:
                self._counts["file_fsyncs"] += 2
            await self._dir_sync("body")
            os.rename(self._path("incoming", qid + ".env"), self._path("active", qid))
            visible = True
            await self._dir_sync("active")
        except OSError as e:
            self._counts["commit_errors"] += 1
            self._undo_commit(inc, visible)
            raise _tempfail(e, f"{qid}: cannot commit queue file") from e
        finally:
            inc.close_fds()  # drops the locks; after a crash the kernel does this
        inc.state = "committed"
        self._counts["commits"] += 1

    def _undo_commit(self, inc: _Incoming, visible: bool) -> None:
        qid = inc.queue_id
        if visible:
            _unlink_quietly(self._path("active", qid))
        _unlink_quietly(self._path("incoming", qid + ".env"))
        if inc.body_moved:
            _unlink_quietly(self._path("body", qid))
        else:
            _unlink_quietly(self._path("incoming", qid + ".body"))
        inc.state = "aborted"

    def _abort(self, inc: _Incoming) -> None:
        if inc.state != "open":  # committed, aborted, or a commit decides
            return
        inc.state = "aborted"
        if inc.fd >= 0:
            inc.close_fds()
            _unlink_quietly(inc.path)
        self._counts["aborts"] += 1

    # --- reading -------------------------------------------------------------

    def open_body(self, queue_id: str) -> BinaryIO:
        """The message content. Raises FileNotFoundError when the message is gone."""
        return open(self._path("body", self._check(queue_id)), "rb")

    def _read_envelope(self, where: str, name: str) -> Envelope:
        """Raises FileNotFoundError or EnvelopeError."""
        with open(self._path(where, name), "rb") as f:
            env = Envelope.from_bytes(f.read())
        if env.queue_id != name:
            raise EnvelopeError(f"file {name} holds envelope {env.queue_id!r}")
        return env

    def _locate(self, queue_id: str) -> QueueState | None:
        for state in QUEUE_STATES:
            if os.path.lexists(self._path(state, queue_id)):
                return state
        return None

    def load(self, queue_id: str) -> QueueEntry | None:
        self._check(queue_id)
        for _ in range(3):  # a message may move between two directory looks
            for state in QUEUE_STATES:
                try:
                    return QueueEntry(envelope=self._read_envelope(state, queue_id), state=state)
                except FileNotFoundError:
                    continue
                except (EnvelopeError, OSError) as e:
                    log.warning("%s: unreadable queue file in %s/: %s", queue_id, state, e)
                    return None
            if not os.path.lexists(self._path("body", queue_id)):
                return None
        return None

    def entries(self, states: Collection[QueueState] = QUEUE_STATES) -> list[QueueEntry]:
        found: dict[str, QueueEntry] = {}
        for state in QUEUE_STATES:
            if state not in states:
                continue
            for name in os.listdir(self._dir[state]):
                if not is_queue_id(name) or name in self._commits:
                    continue  # (a commit in progress here is listed once it is complete)
                try:
                    found[name] = QueueEntry(envelope=self._read_envelope(state, name), state=state)
                except FileNotFoundError:
                    continue  # moved or removed while we looked
                except (EnvelopeError, OSError) as e:
                    log.warning("%s: unreadable queue file in %s/: %s", name, state, e)
        return [found[k] for k in sorted(found)]

    def envelopes(self) -> list[Envelope]:
        return [e.envelope for e in self.entries()]

    # --- state changes ---------------------------------------------------------

    @contextmanager
    def _locked(self, queue_id: str) -> Iterator[None]:
        """Hold the message's lock (an flock on its body file) while changing its envelope."""
        try:
            fd = os.open(self._path("body", queue_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield  # no body: nothing to serialise with; recovery will judge the envelope
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # in an I/O thread: may wait for another process
            yield
        finally:
            os.close(fd)

    def _replace_envelope(self, envelope: Envelope, where: QueueState) -> None:
        """Write a fresh envelope file and rename it over `where`/QID."""
        qid = envelope.queue_id
        tmp = self._path("incoming", f"{qid}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, _OPEN_NEW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_all(fd, envelope.to_bytes())
            if self._durable:
                os.fsync(fd)
            os.rename(tmp, self._path(where, qid))
        except OSError:
            _unlink_quietly(tmp)
            raise
        finally:
            os.close(fd)

    def _update_files(self, envelope: Envelope, want: QueueState) -> tuple[str, ...]:
        qid = envelope.queue_id
        with self._locked(qid):
            cur = self._locate(qid)
            if cur is None:
                return ()
            dest = "hold" if cur == "hold" else want  # an update never releases a hold
            self._replace_envelope(envelope, cur)
            if dest == cur:
                return (cur,)
            os.rename(self._path(cur, qid), self._path(dest, qid))
            return (dest, cur)

    async def update(self, envelope: Envelope, *, deferred: bool) -> None:
        self._check(envelope.queue_id)
        await self._shielded(self._update(envelope, "deferred" if deferred else "active"))

    async def _after_commit(self, queue_id: str) -> None:
        commit = self._commits.get(queue_id)
        if commit is not None:
            await asyncio.wait([commit])

    async def _update(self, envelope: Envelope, want: QueueState) -> None:
        await self._after_commit(envelope.queue_id)
        try:
            dirs = await self._run(self._update_files, envelope, want)
            if not dirs:
                log.warning("%s: update of a message that is no longer queued", envelope.queue_id)
                return
            if self._durable:
                self._counts["file_fsyncs"] += 1
            await self._dir_sync(*dirs)
        except OSError as e:
            raise _tempfail(e, f"{envelope.queue_id}: cannot update queue file") from e
        self._counts["updates"] += 1

    def _move_files(self, queue_id: str, sources: tuple[QueueState, ...], dest: QueueState) -> str:
        with self._locked(queue_id):
            cur = self._locate(queue_id)
            if cur is None or cur not in sources:
                return ""
            os.rename(self._path(cur, queue_id), self._path(dest, queue_id))
            return cur

    async def _move(self, queue_id: str, sources: tuple[QueueState, ...], dest: QueueState) -> bool:
        self._check(queue_id)
        await self._after_commit(queue_id)
        try:
            cur = await self._run(self._move_files, queue_id, sources, dest)
            if cur:
                await self._dir_sync(dest, cur)
        except OSError as e:
            raise _tempfail(e, f"{queue_id}: cannot move queue file to {dest}/") from e
        return bool(cur)

    async def hold(self, queue_id: str) -> bool:
        return await self._shielded(self._move(queue_id, ("active", "deferred"), "hold"))

    async def release(self, queue_id: str) -> bool:
        moved = await self._shielded(self._move(queue_id, ("hold",), "active"))
        if moved:
            self.pull_trigger()
        return moved

    def _remove_files(self, queue_id: str) -> str:
        with self._locked(queue_id):
            cur = self._locate(queue_id)
            if cur is None:
                return ""
            os.unlink(self._path(cur, queue_id))  # from here on the message is gone
            _unlink_quietly(self._path("body", queue_id))
            return cur

    async def remove(self, queue_id: str) -> None:
        self._check(queue_id)
        await self._shielded(self._remove(queue_id))

    async def _remove(self, queue_id: str) -> None:
        await self._after_commit(queue_id)
        try:
            cur = await self._run(self._remove_files, queue_id)
            if cur:
                await self._dir_sync(cur, "body")
        except OSError as e:
            raise _tempfail(e, f"{queue_id}: cannot remove queue file") from e
        self._counts["removes"] += 1

    # --- start-up recovery -----------------------------------------------------

    def recover(self) -> list[Envelope]:
        """Clean up after a crash; the active and deferred envelopes, for scheduling.

        Blocking (reads every envelope): call it in a thread or before the loop runs.
        """
        changed: set[str] = set()
        for name in sorted(os.listdir(self._dir["incoming"])):
            path = self._path("incoming", name)
            fd = _try_lock(path)
            if fd is None:
                continue  # in use by a live process, or gone already
            try:
                os.unlink(path)
                changed.add("incoming")
                log.info("removed %s/%s: never committed", "incoming", name)
            finally:
                os.close(fd)
        seen: dict[str, tuple[QueueState, Envelope]] = {}
        for state in ("hold", "deferred", "active"):  # on a tie the admin's hold wins
            for name in sorted(os.listdir(self._dir[state])):
                env, why = self._judge(state, name)
                if why:
                    self._to_corrupt(state, name, why)
                    changed.update((state, "corrupt"))
                elif env is not None and name in seen:
                    seen[name] = self._deduplicate(name, seen[name], (state, env))
                    changed.update((state, seen[name][0]))
                elif env is not None:
                    seen[name] = (state, env)
        result = {k: env for k, (state, env) in seen.items() if state != "hold"}
        for name in sorted(os.listdir(self._dir["body"])):
            if name in seen:
                continue
            if is_queue_id(name):
                fd = _try_lock(self._path("body", name))
                if fd is None:
                    continue  # a commit in progress elsewhere, or removed
                try:
                    if self._locate(name) is not None:
                        continue  # committed since we listed
                    self._to_corrupt("body", name, "content without an envelope")
                finally:
                    os.close(fd)
            else:
                self._to_corrupt("body", name, "not a queue file name")
            changed.update(("body", "corrupt"))
        if self._durable:
            for name in sorted(changed):
                _fsync_dir(self._dir[name])
        return [result[k] for k in sorted(result)]

    def _judge(self, state: QueueState, name: str) -> tuple[Envelope | None, str]:
        """The envelope in `state`/`name` if it is a sound committed one, else why not."""
        if not is_queue_id(name):
            return None, "not a queue file name"
        try:
            env = self._read_envelope(state, name)
        except FileNotFoundError:
            return None, ""  # moved or removed by another process while we looked
        except (EnvelopeError, OSError) as e:
            return None, f"unreadable envelope: {e}"
        if not os.path.lexists(self._path("body", name)):
            return None, "envelope without content"
        return env, ""

    def _deduplicate(
        self, name: str, first: tuple[QueueState, Envelope], second: tuple[QueueState, Envelope]
    ) -> tuple[QueueState, Envelope]:
        """One message in two queues: a move cut short. Keep the newest copy, drop the other.

        With a journal a rename is atomic; without one (or in POSIX's worst case after
        a power failure) an update's move can leave the old copy behind. States only go
        forward, so the copy with more attempts, then more recipients done, then the
        later mtime is the newer one.
        """

        def age(item: tuple[QueueState, Envelope]) -> tuple[int, int, int]:
            state, env = item
            try:
                mtime = os.stat(self._path(state, name)).st_mtime_ns
            except FileNotFoundError:
                mtime = -1
            return env.attempts, len(env.recipients) - len(env.pending), mtime

        same = False
        try:
            same = os.path.samefile(self._path(first[0], name), self._path(second[0], name))
        except FileNotFoundError:
            pass
        keep, drop = (second, first) if not same and age(second) > age(first) else (first, second)
        _unlink_quietly(self._path(drop[0], name))
        log.warning("%s: queued in %s/ and %s/: kept %s/", name, first[0], second[0], keep[0])
        return keep

    def _to_corrupt(self, where: str, name: str, why: str) -> None:
        base = self._path("corrupt", f"{where}-{name}")
        dest, n = base, 0
        while os.path.lexists(dest):
            n += 1
            dest = f"{base}.{n}"
        try:
            os.rename(self._path(where, name), dest)
        except FileNotFoundError:
            return
        log.warning("moved %s/%s to corrupt/%s: %s", where, name, os.path.basename(dest), why)

    # --- trigger ---------------------------------------------------------------

    def pull_trigger(self) -> None:
        """Wake the queue manager (of any process) watching the trigger. Never blocks."""
        try:
            fd = os.open(self.trigger_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # ENXIO: nobody is watching; the next queue scan finds the message
            return
        try:
            os.write(fd, b"\0")
            self._counts["pulls"] += 1
        except OSError:  # EAGAIN: the FIFO is full, so a wake-up is pending anyway
            pass
        finally:
            os.close(fd)

    def watch_trigger(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on this loop whenever the trigger is pulled; returns `stop()`."""
        loop = asyncio.get_running_loop()
        rfd = os.open(self.trigger_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # Our own writer keeps the FIFO from reading as EOF (readable forever) when the
        # last outside writer closes it.
        wfd = os.open(self.trigger_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)

        def readable() -> None:
            try:
                while os.read(rfd, 512):
                    pass
            except BlockingIOError:
                pass
            callback()

        loop.add_reader(rfd, readable)
        stopped = False

        def stop() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                loop.remove_reader(rfd)
                os.close(rfd)
                os.close(wfd)

        return stop

    def statistics(self) -> SpoolStatistics:
        c = self._counts
        return SpoolStatistics(
            commits=c["commits"],
            commit_errors=c["commit_errors"],
            aborts=c["aborts"],
            updates=c["updates"],
            removes=c["removes"],
            file_fsyncs=c["file_fsyncs"],
            dir_fsyncs=sum(s.fsyncs for s in self._sync.values()),
            dir_fsync_requests=sum(s.requests for s in self._sync.values()),
            triggers_pulled=c["pulls"],
        )


def _log_late_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("queue file operation failed after its caller left: %s", task.exception())
