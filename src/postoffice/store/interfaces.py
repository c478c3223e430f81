"""Store interfaces: what delivery writes into and (later) what POP3 and IMAP read.

Description:
    A MailboxWriter appends one message to one mailbox. It is blocking
    (file I/O and fsync) and is called from a worker thread. It either
    stores the whole message durably (fsync before returning) or stores
    nothing and raises `errors.TempFail` (disk full, I/O error, lock busy)
    or `errors.PermFail` (the mailbox cannot exist: a path that is a file,
    a quota later). Never a half-written message.

See also:
    store/maildir.py, store/mbox.py, delivery/local.py.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol


class MailboxWriter(Protocol):
    def deliver(self, source: BinaryIO, *, prefix: bytes, sender: str, arrival: float) -> str:
        """Store `prefix` (header lines ending in CRLF, e.g. Return-Path and
        Delivered-To) followed by the content of `source` (read to EOF; CRLF
        line endings as received). `sender` and `arrival` are the envelope
        sender and time, for mbox's `From ` line. Returns where the message
        went (a file name), for the log."""
