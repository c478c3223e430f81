"""MemorySpool: the spool in memory, for tests, with fault injection.

Description:
    Implements queue/interfaces.ManagedSpool (and so Spool) like
    queue/spool.FileSpool, without files: begin/write/commit, open_body,
    update, remove, envelopes, entries, load, recover, hold, release and
    the trigger. Commits, updates and removals yield to the event loop
    once, so concurrent callers interleave as they would on a disk.

    Fault injection: `fail_next_commit()`, `fail_next_write()`,
    `fail_next_update()` and `fail_next_remove()` make the next such call
    raise TempFail (452 4.3.1 by default) and, like FileSpool, leave
    nothing behind.

    Inspection: `body(qid)`, `state(qid)`, `messages` (queue id ->
    QueueEntry), `commits` (queue ids in commit order), `pulls`;
    `put(envelope, body, state)` seeds a message without a commit.

See also:
    queue/spool.py, queue/interfaces.py, testing/clock.py.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Collection
from typing import BinaryIO

from postoffice.errors import TempFail
from postoffice.queue.envelope import Envelope
from postoffice.queue.ids import new_queue_id
from postoffice.queue.interfaces import QUEUE_STATES, IncomingMessage, QueueEntry, QueueState
from postoffice.smtp import replies
from postoffice.smtp.replies import Reply


class _MemoryIncoming:
    def __init__(self, spool: MemorySpool, queue_id: str) -> None:
        self._spool = spool
        self._queue_id = queue_id
        self.data = bytearray()
        self.state = "open"

    @property
    def queue_id(self) -> str:
        return self._queue_id

    @property
    def size(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> None:
        if self.state != "open":
            raise RuntimeError(f"{self._queue_id}: write to a message that is {self.state}")
        fault = self._spool._take_fault("write")
        if fault is not None:
            self.abort()
            raise fault
        self.data += data

    def abort(self) -> None:
        if self.state == "open":
            self.state = "aborted"
            self._spool.aborts += 1


class MemorySpool:
    """A ManagedSpool that keeps everything in dictionaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # entries() and recover() may run in a thread
        self._envelopes: dict[str, QueueEntry] = {}
        self._bodies: dict[str, bytes] = {}
        self._faults: dict[str, TempFail] = {}
        self._watchers: list[Callable[[], None]] = []
        self.commits: list[str] = []
        self.aborts = 0
        self.pulls = 0

    # --- fault injection ---------------------------------------------------------

    def _fault(self, op: str, reply: Reply, reason: str) -> None:
        self._faults[op] = TempFail(reply=reply, reason=reason)

    def fail_next_commit(
        self, reply: Reply = replies.INSUFFICIENT_STORAGE, reason: str = "injected: disk full"
    ) -> None:
        self._fault("commit", reply, reason)

    def fail_next_write(
        self, reply: Reply = replies.INSUFFICIENT_STORAGE, reason: str = "injected: disk full"
    ) -> None:
        self._fault("write", reply, reason)

    def fail_next_update(
        self, reply: Reply = replies.LOCAL_ERROR, reason: str = "injected: I/O error"
    ) -> None:
        self._fault("update", reply, reason)

    def fail_next_remove(
        self, reply: Reply = replies.LOCAL_ERROR, reason: str = "injected: I/O error"
    ) -> None:
        self._fault("remove", reply, reason)

    def _take_fault(self, op: str) -> TempFail | None:
        return self._faults.pop(op, None)

    # --- Spool -------------------------------------------------------------------

    def begin(self) -> _MemoryIncoming:
        return _MemoryIncoming(self, new_queue_id())

    async def commit(self, msg: IncomingMessage, envelope: Envelope) -> None:
        if not isinstance(msg, _MemoryIncoming) or msg._spool is not self:
            raise TypeError("message was not begun by this spool")
        if envelope.queue_id != msg.queue_id:
            raise ValueError(f"envelope {envelope.queue_id} for message {msg.queue_id}")
        if msg.state != "open":
            raise RuntimeError(f"{msg.queue_id}: commit of a message that is {msg.state}")
        msg.state = "committing"
        await asyncio.sleep(0)
        fault = self._take_fault("commit")
        if fault is not None:
            msg.state = "aborted"
            raise fault
        self.put(envelope, bytes(msg.data))
        msg.state = "committed"
        self.commits.append(msg.queue_id)

    def open_body(self, queue_id: str) -> BinaryIO:
        try:
            return io.BytesIO(self._bodies[queue_id])
        except KeyError:
            raise FileNotFoundError(queue_id) from None

    async def update(self, envelope: Envelope, *, deferred: bool) -> None:
        await asyncio.sleep(0)
        fault = self._take_fault("update")
        if fault is not None:
            raise fault
        qid = envelope.queue_id
        with self._lock:
            cur = self._envelopes.get(qid)
            if cur is None:
                return
            state: QueueState = "hold" if cur.state == "hold" else (
                "deferred" if deferred else "active"
            )  # fmt: skip
            self._envelopes[qid] = QueueEntry(envelope=envelope, state=state)

    async def remove(self, queue_id: str) -> None:
        await asyncio.sleep(0)
        fault = self._take_fault("remove")
        if fault is not None:
            raise fault
        with self._lock:
            self._envelopes.pop(queue_id, None)
            self._bodies.pop(queue_id, None)

    def envelopes(self) -> list[Envelope]:
        return [e.envelope for e in self.entries()]

    # --- ManagedSpool ---------------------------------------------------------------

    def recover(self) -> list[Envelope]:
        return [e.envelope for e in self.entries(("active", "deferred"))]

    def entries(self, states: Collection[QueueState] = QUEUE_STATES) -> list[QueueEntry]:
        with self._lock:
            return [self._envelopes[k] for k in sorted(self._envelopes)
                    if self._envelopes[k].state in states]  # fmt: skip

    def load(self, queue_id: str) -> QueueEntry | None:
        with self._lock:
            return self._envelopes.get(queue_id)

    def _move(self, queue_id: str, sources: tuple[QueueState, ...], dest: QueueState) -> bool:
        with self._lock:
            cur = self._envelopes.get(queue_id)
            if cur is None or cur.state not in sources:
                return False
            self._envelopes[queue_id] = QueueEntry(envelope=cur.envelope, state=dest)
            return True

    async def hold(self, queue_id: str) -> bool:
        return self._move(queue_id, ("active", "deferred"), "hold")

    async def release(self, queue_id: str) -> bool:
        moved = self._move(queue_id, ("hold",), "active")
        if moved:
            self.pull_trigger()
        return moved

    def pull_trigger(self) -> None:
        self.pulls += 1
        for callback in list(self._watchers):
            callback()

    def watch_trigger(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._watchers.append(callback)

        def stop() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return stop

    # --- inspection ---------------------------------------------------------------------

    def put(self, envelope: Envelope, body: bytes = b"", state: QueueState = "active") -> None:
        """Store a message as if committed (tests seed queues with it)."""
        with self._lock:
            self._envelopes[envelope.queue_id] = QueueEntry(envelope=envelope, state=state)
            self._bodies[envelope.queue_id] = body

    def body(self, queue_id: str) -> bytes:
        return self._bodies[queue_id]

    def state(self, queue_id: str) -> QueueState | None:
        entry = self._envelopes.get(queue_id)
        return entry.state if entry else None

    @property
    def messages(self) -> dict[str, QueueEntry]:
        with self._lock:
            return dict(self._envelopes)
