"""The queue's interfaces: the Spool that stores messages and the agents that deliver them.

Description:
    `Spool` is the only writer of queue files (DESIGN.md "The spool"). A
    session calls `begin()`, streams the message with `IncomingMessage.write`,
    then `await spool.commit(msg, envelope)`; only when commit returns is the
    message on stable storage and may `250` be sent. Failures raise
    `errors.TempFail` (disk full, I/O error) and leave nothing behind.

    `ManagedSpool` is what the queue manager and the admin commands need
    on top of that: start-up recovery, a listing with each message's queue
    (active, deferred, hold), hold/release, and the trigger another process
    pulls after a commit so that the running manager looks at once.

    A `DeliveryAgent` takes one envelope and some of its recipients and
    returns one Outcome per recipient (CONVENTIONS.md §8): expected failures
    are values, exceptions are bugs.

See also:
    queue/spool.py, queue/manager.py, delivery/.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal, Protocol

from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.smtp.replies import Reply


class IncomingMessage(Protocol):
    """A message being received; not yet durable."""

    @property
    def queue_id(self) -> str: ...

    @property
    def size(self) -> int: ...

    def write(self, data: bytes) -> None:
        """Append content. Raises TempFail on an I/O error (the message is then aborted)."""

    def abort(self) -> None:
        """Forget the message and remove its files. Safe to call twice."""


class Spool(Protocol):
    def begin(self) -> IncomingMessage:
        """Start a message: allocates a queue id and an incoming file."""

    async def commit(self, msg: IncomingMessage, envelope: Envelope) -> None:
        """Make the message durable (body, envelope, rename, directory fsync)."""

    def open_body(self, queue_id: str) -> BinaryIO:
        """The committed message content, for reading."""

    async def update(self, envelope: Envelope, *, deferred: bool) -> None:
        """Replace the envelope (atomically); `deferred` moves it to deferred/."""

    async def remove(self, queue_id: str) -> None:
        """Delete a message whose recipients are all done."""

    def envelopes(self) -> list[Envelope]:
        """Every readable committed envelope (active, deferred and hold)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    recipient: EnvelopeRecipient
    reply: Reply
    relay: str = "local"  # for the log: relay=local, relay=mx.example[1.2.3.4]:25
    detail: str = ""  # e.g. "delivered to maildir"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deferred:
    recipient: EnvelopeRecipient
    reply: Reply
    relay: str = "none"
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounced:
    recipient: EnvelopeRecipient
    reply: Reply
    relay: str = "none"
    detail: str = ""


Outcome = Delivered | Deferred | Bounced


class DeliveryAgent(Protocol):
    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        """Deliver `recipients` of `envelope`; one Outcome per recipient, same order."""


# The queue a committed message is in (DESIGN.md "The spool").
QueueState = Literal["active", "deferred", "hold"]
QUEUE_STATES: tuple[QueueState, ...] = ("active", "deferred", "hold")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEntry:
    envelope: Envelope
    state: QueueState


class ManagedSpool(Spool, Protocol):
    """A Spool as the queue manager and `mailq`/`postoffice queue` see it."""

    def recover(self) -> list[Envelope]:
        """Start-up: clean up what a crash left; the active and deferred envelopes."""

    def entries(self, states: Collection[QueueState] = QUEUE_STATES) -> list[QueueEntry]:
        """Every readable committed message in `states`, with the queue it is in."""

    def load(self, queue_id: str) -> QueueEntry | None:
        """The current envelope and queue of one message; None when it is gone."""

    async def hold(self, queue_id: str) -> bool:
        """Move a message to hold/ (no delivery until released); False if not found."""

    async def release(self, queue_id: str) -> bool:
        """Move a held message back to active/ and pull the trigger; False if not held."""

    def pull_trigger(self) -> None:
        """Tell the running queue manager to look for new messages (never blocks)."""

    def watch_trigger(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on the running loop whenever the trigger is pulled.

        Returns a function that stops watching.
        """
