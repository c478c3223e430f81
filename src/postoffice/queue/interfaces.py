"""The queue's interfaces: the Spool that stores messages and the agents that deliver them.

Description:
    `Spool` is the only writer of queue files (DESIGN.md "The spool"). A
    session calls `begin()`, streams the message with `IncomingMessage.write`,
    then `await spool.commit(msg, envelope)`; only when commit returns is the
    message on stable storage and may `250` be sent. Failures raise
    `errors.TempFail` (disk full, I/O error) and leave nothing behind.

    A `DeliveryAgent` takes one envelope and some of its recipients and
    returns one Outcome per recipient (CONVENTIONS.md §8): expected failures
    are values, exceptions are bugs.

See also:
    queue/spool.py, queue/manager.py, delivery/.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

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
