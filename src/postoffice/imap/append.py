"""imap.append — APPEND and MULTIAPPEND: messages streamed to temporary files, then into the folder.

Description:
    The engine (imap/protocol.py) announces each message of an APPEND
    (AppendBegin), streams its octets (AppendData) and says when the
    command is complete (AppendComplete); it never holds a message whole.
    The session's Appender:

        begin(event)   first message: find the target mailbox (NO
                       [TRYCREATE] when it does not exist, RFC 9051
                       §6.3.12), check the size against [imap] max_literal
                       (NO [TOOBIG], RFC 7889; the engine also refuses a
                       larger literal before reading it); then a
                       SpooledTemporaryFile per message: kept in memory
                       up to 1 MiB, on disk beyond, never whole in memory
        data(octets)   written to the current file
        end()          the message is complete (its size is checked)
        complete()     each message goes into the folder with its flags
                       and internal date (Folder.append, in a worker
                       thread, fsynced); APPENDUID with the new UIDs
                       (RFC 4315 §3). MULTIAPPEND is all or nothing
                       (RFC 3502 §6.3.11): when one message fails, those
                       already stored are expunged again.
        abort()        the engine refused the rest: drop everything

    When the target is the selected mailbox the session reports the new
    EXISTS before the tagged OK.

See also:
    RFC 9051 §6.3.12, RFC 3502 (MULTIAPPEND), RFC 4315 (APPENDUID),
    RFC 7889 (APPENDLIMIT), RFC 3516 §4.4 (literal8), imap/events.py,
    imap/session.py, store/folder.py.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

from postoffice.errors import TempFail
from postoffice.imap import commands as c
from postoffice.imap import response as r
from postoffice.imap.events import AppendBegin
from postoffice.store.interfaces import Folder

if TYPE_CHECKING:
    from postoffice.imap.session import ImapSession

log = logging.getLogger("postoffice.imap")

__all__ = ["Appender", "begin"]

_IN_MEMORY = 1024 * 1024


@dataclass(slots=True)
class _Message:
    head: c.AppendMessage
    file: BinaryIO
    received: int = 0


class Appender:
    """The messages of one APPEND command (see the module manual)."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self.messages: list[_Message] = []
        self.current: _Message | None = None

    def start(self, head: c.AppendMessage) -> None:
        spool = tempfile.SpooledTemporaryFile(_IN_MEMORY)  # noqa: SIM115 - closed by abort()
        self.current = _Message(head=head, file=cast(BinaryIO, spool))
        self.messages.append(self.current)

    def data(self, octets: bytes) -> None:
        current = self.current
        if current is not None:
            current.file.write(octets)
            current.received += len(octets)

    def end(self) -> None:
        self.current = None

    def abort(self) -> None:
        for m in self.messages:
            m.file.close()
        self.messages.clear()
        self.current = None

    def store(self) -> tuple[int, list[int]]:
        """In a worker thread: every message into the folder, or none.
        Returns (uidvalidity, uids)."""
        uids: list[int] = []
        try:
            for m in self.messages:
                if m.received != m.head.size:
                    raise ValueError("message shorter than announced")
                m.file.seek(0)
                when = m.head.internaldate.timestamp() if m.head.internaldate else None
                uids.append(self.folder.append(m.file, flags=m.head.flags, internaldate=when))
        except BaseException:
            if uids:
                self.folder.expunge(uids)
            raise
        finally:
            self.abort()
        return self.folder.sync().uidvalidity, uids


def no(text: str, code: str) -> r.Result:
    return r.Result(status="NO", text=text, code=r.Code(name=code))


async def begin(s: ImapSession, event: AppendBegin) -> r.Result | None:
    """A message is announced: None to receive it, or the refusal."""
    limit = s.config.imap.max_literal
    if event.message.size > limit:
        _drop(s)
        return no(f"Message too large (APPENDLIMIT={limit})", "TOOBIG")
    if event.index == 0 or s.appending is None:
        _drop(s)
        store = s.mailstore()
        try:
            folder = await s.run(store.folder, event.mailbox)
        except KeyError:
            return no("The target mailbox does not exist", "TRYCREATE")
        except ValueError:
            return no("Invalid mailbox name", "CANNOT")
        s.appending = Appender(folder)
    s.appending.start(event.message)
    return None


def _drop(s: ImapSession) -> None:
    if s.appending is not None:
        s.appending.abort()
        s.appending = None


async def complete(s: ImapSession) -> r.Result:
    appender, s.appending = s.appending, None
    if appender is None or not appender.messages:
        return r.Result(status="BAD", text="No message received")
    try:
        uidvalidity, uids = await s.run(appender.store)
    except TempFail as e:
        log.warning("%s: APPEND: %s", s.peer.label, e.reason)
        return no("Mailbox storage is not available; try again later", "UNAVAILABLE")
    except ValueError:
        return r.Result(status="BAD", text="Message shorter than announced")
    if s.selected is not None and s.folder is not None and s.folder.name == appender.folder.name:
        await s.report_updates(allow_expunge=True)
    code = r.Code.appenduid(uidvalidity, uids)
    return r.Result(status="OK", text="APPEND completed", code=code)
