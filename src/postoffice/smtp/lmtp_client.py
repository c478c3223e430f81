"""smtp.lmtp_client — the LMTP client (RFC 2033): hands queued mail to Dovecot, Cyrus and the like.

Description:
    LMTP is SMTP for the last hop into a mail store: the client greets with
    LHLO instead of EHLO (RFC 2033 §4.1), and after the message's final "."
    the server answers once per accepted recipient, in RCPT order (§4.2),
    so that each mailbox succeeds or fails on its own. The transport is TCP
    (no standard port; Postfix and Dovecot use 24) or a unix socket.

    Sans I/O (tested alone):

      ReplyReader().feed(data) -> [Reply]   replies, multi-line ones joined
                                (RFC 5321 §4.2.1); a leading RFC 3463 code
                                whose class matches goes to Reply.enhanced
      DotStuffer(): feed(chunk) -> bytes, end() -> bytes
                                RFC 5321 §4.5.2 transparency across chunk
                                boundaries, then CRLF "." CRLF
      xtext(text) -> str        RFC 3461 §4 (ENVID=, ORCPT=)
      mail_command(envelope, extensions), rcpt_command(recipient, extensions)

    asyncio:

      client = await LmtpClient.connect(host="h", port=24 | path="/run/lmtp",
                                        lhlo="mail.example.org", timeout=300)
          reads the 220 greeting and sends LHLO; raises TempFail (with a
          451/4.4.x reply and a reason for the log) when the server cannot
          be reached or refuses the session — never PermFail: a mail store
          that is down must not bounce mail.
      results = await client.send(envelope, recipients, body, size=...)
          one RecipientReply (recipient, reply, stage) per recipient, in
          order. With PIPELINING (RFC 2920; RFC 2033 §5 requires LMTP
          servers to offer it) MAIL, every RCPT and DATA go in one write.
          A refused MAIL answers every recipient with its reply; a refused
          RCPT answers that recipient; a refused DATA answers the accepted
          ones; then the content, and the per-recipient replies. A lost
          connection or a timeout answers the recipients still waiting
          with 451 4.4.2, keeping the replies already received: a
          recipient whose 250 arrived before the loss was delivered. A
          transaction that ends before the content (every RCPT or DATA
          refused) is closed with RSET, so `send` may be called again on
          the same connection.
          Refused before anything is sent: a message larger than the
          server's SIZE (552 5.3.4), non-ASCII addresses without SMTPUTF8
          (553 5.6.7, RFC 6531 §3.5), BINARYMIME content (554 5.6.1: it
          needs BDAT, which this client does not send).
      await client.quit()

    Parameters sent only when the server offers them: SIZE= (RFC 1870),
    BODY=8BITMIME (RFC 6152; 8-bit content goes as is otherwise, as every
    LMTP store takes it), SMTPUTF8 (RFC 6531), RET= ENVID= NOTIFY= ORCPT=
    (RFC 3461 DSN).

Security:
    Trusts the server no more than any SMTP peer: reply lines are limited
    to MAX_LINE octets (longer ones end the connection), texts are kept
    for the log and DSNs only. Runs as the mail system's user.

See also:
    RFC 2033 (LMTP), RFC 5321, RFC 2920, RFC 3461, RFC 6531, RFC 1870,
    delivery/lmtp.py (the delivery agent), smtp/protocol.py (our own
    LMTP server side: EngineConfig(lmtp=True)).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from postoffice.errors import TempFail
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.smtp.replies import Reply

__all__ = [
    "MAX_LINE",
    "DotStuffer",
    "LmtpClient",
    "RecipientReply",
    "ReplyReader",
    "mail_command",
    "rcpt_command",
    "xtext",
]

log = logging.getLogger("postoffice.lmtp")

MAX_LINE = 8192  # octets of one reply line; RFC 5321 §4.5.3.1.5 says 512, be lenient
_CHUNK = 64 * 1024
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")

TOO_BIG = Reply(code=552, enhanced="5.3.4", text="Message size exceeds the server's limit")
NEEDS_SMTPUTF8 = Reply(
    code=553, enhanced="5.6.7", text="SMTPUTF8 is required, but was not offered by the host"
)
NO_BINARY = Reply(code=554, enhanced="5.6.1", text="Binary content cannot be sent without CHUNKING")


class ReplyError(ValueError):
    """The server sent something that is not an SMTP reply."""


class ReplyReader:
    """Incremental SMTP reply parser: `feed(bytes)` returns the complete replies."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code = 0

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        out: list[Reply] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    raise ReplyError("reply line too long")
                return out
            if end > MAX_LINE:
                raise ReplyError("reply line too long")
            raw = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            line = raw.decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise ReplyError(f"not a reply line: {line[:40]!r}")
            code = int(line[:3])
            if not 200 <= code <= 599 or (self._lines and code != self._code):
                raise ReplyError(f"bad reply code in {line[:40]!r}")
            self._code = code
            self._lines.append(line[4:])
            if line[3:4] != "-":
                out.append(_reply(code, self._lines))
                self._lines = []


def _reply(code: int, lines: list[str]) -> Reply:
    m = _ENHANCED.match(lines[0])
    enhanced = ""
    if m and m.group(1) == str(code)[0]:
        enhanced = ".".join(m.groups())
        prefix = enhanced + " "
        lines = [ln[len(prefix) :] if ln.startswith(prefix) else ln for ln in lines]
        lines[0] = lines[0].removeprefix(enhanced)
    return Reply(code=code, enhanced=enhanced, text="\n".join(lines))


class DotStuffer:
    """RFC 5321 §4.5.2: a "." starting a line is doubled; `end()` closes the message."""

    def __init__(self) -> None:
        self._carry = b""  # a final CR held back: it may be half of a CRLF
        self._at_line_start = True

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk
        self._carry = b""
        if data.endswith(b"\r"):
            self._carry, data = b"\r", data[:-1]
        if not data:
            return b""
        if self._at_line_start and data[:1] == b".":
            data = b"." + data
        if b"\r\n." in data:
            data = data.replace(b"\r\n.", b"\r\n..")
        self._at_line_start = data.endswith(b"\r\n")
        return data

    def end(self) -> bytes:
        """What is left, a line end if the content lacked one, and the final "."."""
        tail = self._carry
        self._carry = b""
        if tail or not self._at_line_start:
            tail += b"\r\n"
        self._at_line_start = True
        return tail + b".\r\n"


def xtext(text: str) -> str:
    """RFC 3461 §4: "!".."~" except "+" and "=" as themselves, other octets as +HH."""
    out = []
    for b in text.encode("utf-8"):
        if 33 <= b <= 126 and b not in (0x2B, 0x3D):
            out.append(chr(b))
        else:
            out.append(f"+{b:02X}")
    return "".join(out)


def mail_command(envelope: Envelope, extensions: dict[str, str]) -> bytes:
    """MAIL FROM with the parameters the server offers (see the module docstring)."""
    words = [f"MAIL FROM:<{envelope.sender}>"]
    if "SIZE" in extensions and envelope.size:
        words.append(f"SIZE={envelope.size}")  # RFC 1870 §6
    if envelope.body_type.upper() == "8BITMIME" and "8BITMIME" in extensions:
        words.append("BODY=8BITMIME")  # RFC 6152
    if envelope.smtputf8 and "SMTPUTF8" in extensions:
        words.append("SMTPUTF8")  # RFC 6531 §3.4
    if "DSN" in extensions:  # RFC 3461 §4.3, §4.4
        if envelope.ret:
            words.append(f"RET={envelope.ret.upper()}")
        if envelope.envid:
            words.append(f"ENVID={xtext(envelope.envid)}")
    return (" ".join(words) + "\r\n").encode("utf-8")


def rcpt_command(rcpt: EnvelopeRecipient, extensions: dict[str, str]) -> bytes:
    """RCPT TO with NOTIFY= and ORCPT= when the server offers DSN (RFC 3461 §4.1, §4.2)."""
    words = [f"RCPT TO:<{rcpt.address}>"]
    if "DSN" in extensions:
        if rcpt.notify:
            words.append("NOTIFY=" + ",".join(sorted(n.upper() for n in rcpt.notify)))
        if rcpt.orcpt:
            kind, sep, addr = rcpt.orcpt.partition(";")
            if sep and kind:
                words.append(f"ORCPT={kind};{xtext(addr)}")
    return (" ".join(words) + "\r\n").encode("utf-8")


def _parse_extensions(reply: Reply) -> dict[str, str]:
    """The LHLO reply's keywords (upper-cased) and their parameters."""
    out: dict[str, str] = {}
    for line in reply.text.split("\n")[1:]:
        word, _, params = line.strip().partition(" ")
        if word:
            out[word.upper()] = params.strip()
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientReply:
    """The server's last word on one recipient, and the command it answered."""

    recipient: EnvelopeRecipient
    reply: Reply
    stage: str  # "MAIL FROM", "RCPT TO", "DATA", "end of DATA", "" (refused before sending)


class _Lost(Exception):
    """The connection failed; `what` names the step, for the reply."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class LmtpClient:
    """One LMTP connection (after the greeting and LHLO)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: str,
        timeout: float,
        data_timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._replies = ReplyReader()
        self._pending: list[Reply] = []
        self.peer = peer  # "host[ip]:port" or the socket path, for relay= in the log
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.extensions: dict[str, str] = {}
        self.broken = False

    # -- connecting ----------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        *,
        host: str = "",
        port: int = 24,
        path: str = "",
        lhlo: str,
        timeout: float = 300.0,
        connect_timeout: float = 30.0,
        data_timeout: float = 600.0,
    ) -> LmtpClient:
        """Connect, read the greeting, send LHLO. TempFail when any of it fails."""
        where = path or f"{host}:{port}"
        try:
            if path:
                opened = asyncio.open_unix_connection(path)
            else:
                opened = asyncio.open_connection(host, port)
            reader, writer = await asyncio.wait_for(opened, connect_timeout)
        except (OSError, TimeoutError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else "timed out"
            raise TempFail(
                reply=Reply(code=451, enhanced="4.4.1", text="Cannot connect to the LMTP server"),
                reason=f"connect to {where}: {why}",
            ) from e
        label = path
        if not path:
            name = writer.get_extra_info("peername")
            label = f"{host}[{name[0]}]:{name[1]}" if isinstance(name, tuple) else where
        client = cls(reader, writer, peer=label, timeout=timeout, data_timeout=data_timeout)
        try:
            greeting = await client._read_reply(timeout, "the greeting")
            if greeting.code != 220:
                raise client._refused(greeting, "the initial greeting")
            client._writer.write(f"LHLO {lhlo}\r\n".encode())
            hello = await client._read_reply(timeout, "LHLO")
            if hello.code != 250:
                raise client._refused(hello, "LHLO")
        except _Lost as e:
            client._abort()
            raise TempFail(
                reply=Reply(
                    code=451, enhanced="4.4.2", text="Lost connection with the LMTP server"
                ),
                reason=f"lost connection with {label} while waiting for {e.what}",
            ) from None
        except TempFail:
            client._abort()
            raise
        client.extensions = _parse_extensions(hello)
        return client

    def _refused(self, reply: Reply, stage: str) -> TempFail:
        return TempFail(
            reply=Reply(code=451, enhanced="4.4.2", text="The LMTP server refused the session"),
            reason=f"host {self.peer} said: {reply} (in reply to {stage})",
        )

    # -- I/O -------------------------------------------------------------------

    async def _read_reply(self, timeout: float, what: str) -> Reply:
        while not self._pending:
            try:
                await asyncio.wait_for(self._writer.drain(), timeout)
                data = await asyncio.wait_for(self._reader.read(_CHUNK), timeout)
            except (OSError, TimeoutError) as e:
                self.broken = True
                raise _Lost(what + (" (timeout)" if isinstance(e, TimeoutError) else "")) from e
            if not data:
                self.broken = True
                raise _Lost(what)
            try:
                self._pending += self._replies.feed(data)
            except ReplyError as e:
                self.broken = True
                log.info("LMTP %s: %s", self.peer, e)
                raise _Lost(what) from e
        return self._pending.pop(0)

    def _abort(self) -> None:
        self.broken = True
        self._writer.close()

    # -- one transaction -----------------------------------------------------------

    async def send(
        self,
        envelope: Envelope,
        recipients: Sequence[EnvelopeRecipient],
        body: BinaryIO | bytes,
        *,
        size: int | None = None,
    ) -> list[RecipientReply]:
        """Deliver `body` to `recipients`; one RecipientReply each, in order."""
        refusal = self._precheck(envelope, recipients)
        if refusal is not None:
            return [RecipientReply(recipient=r, reply=refusal, stage="") for r in recipients]
        results: dict[int, RecipientReply] = {}
        stage = "MAIL FROM"
        try:
            accepted = await self._envelope(envelope, recipients, results)
            if accepted:
                stage = "end of DATA"
                await self._content(body, size)
                for i in accepted:
                    reply = await self._read_reply(self.data_timeout, "the end of DATA")
                    results[i] = RecipientReply(
                        recipient=recipients[i], reply=reply, stage="end of DATA"
                    )
        except _Lost as e:
            self._abort()
            lost = Reply(
                code=451, enhanced="4.4.2", text=f"lost connection with {self.peer} while {e.what}"
            )
            log.info("LMTP %s: %s", self.peer, lost.text)
            for i, r in enumerate(recipients):
                results.setdefault(i, RecipientReply(recipient=r, reply=lost, stage=stage))
        return [results[i] for i in range(len(recipients))]

    def _precheck(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> Reply | None:
        if envelope.body_type.upper() == "BINARYMIME":
            return NO_BINARY
        limit = self.extensions.get("SIZE", "")
        if limit.isdigit() and 0 < int(limit) < envelope.size:  # RFC 1870 §6
            return TOO_BIG
        addresses = [envelope.sender, *(r.address for r in recipients)]
        if "SMTPUTF8" not in self.extensions and not all(a.isascii() for a in addresses):
            return NEEDS_SMTPUTF8  # RFC 6531 §3.5
        return None

    async def _envelope(
        self,
        envelope: Envelope,
        recipients: Sequence[EnvelopeRecipient],
        results: dict[int, RecipientReply],
    ) -> list[int]:
        """MAIL, RCPT..., DATA; the indexes of the recipients accepted (354 given)."""
        ext = self.extensions
        mail_cmd = mail_command(envelope, ext)
        rcpt_cmds = [rcpt_command(r, ext) for r in recipients]
        if "PIPELINING" in ext:  # RFC 2920 §3.1: DATA may end the batch
            self._writer.write(b"".join([mail_cmd, *rcpt_cmds, b"DATA\r\n"]))
            mail = await self._read_reply(self.timeout, "MAIL FROM")
            rcpt = [await self._read_reply(self.timeout, "RCPT TO") for _ in recipients]
            data: Reply | None = await self._read_reply(self.timeout, "DATA")
        else:
            self._writer.write(mail_cmd)
            mail = await self._read_reply(self.timeout, "MAIL FROM")
            rcpt, data = [], None
            if mail.is_positive:
                for cmd in rcpt_cmds:
                    self._writer.write(cmd)
                    rcpt.append(await self._read_reply(self.timeout, "RCPT TO"))
        accepted: list[int] = []
        for i, r in enumerate(recipients):
            if not mail.is_positive:  # every recipient gets the refusal of MAIL
                results[i] = RecipientReply(recipient=r, reply=mail, stage="MAIL FROM")
            elif rcpt[i].code in (250, 251):
                accepted.append(i)
            else:
                results[i] = RecipientReply(recipient=r, reply=rcpt[i], stage="RCPT TO")
        if data is None and accepted:
            self._writer.write(b"DATA\r\n")
            data = await self._read_reply(self.timeout, "DATA")
        if data is not None and data.code == 354:
            if accepted:
                return accepted
            self._abort()  # RFC 2033 §4.2 wants 503 here: do not feed it an empty message
            return []
        if data is not None:
            for i in accepted:
                results[i] = RecipientReply(recipient=recipients[i], reply=data, stage="DATA")
        if mail.is_positive:  # the transaction is still open: end it for the next one
            self._writer.write(b"RSET\r\n")
            await self._read_reply(self.timeout, "RSET")
        return []

    async def _content(self, body: BinaryIO | bytes, size: int | None) -> None:
        stuffer = DotStuffer()
        w = self._writer
        try:
            if isinstance(body, bytes | bytearray):
                w.write(stuffer.feed(bytes(body)))
            else:
                loop = asyncio.get_running_loop()
                left = -1 if size is None else size  # -1: to the end of the file
                while left:
                    want = _CHUNK if left < 0 else min(_CHUNK, left)
                    chunk = await loop.run_in_executor(None, body.read, want)
                    if not chunk:
                        break
                    left = left - len(chunk) if left > 0 else left
                    w.write(stuffer.feed(chunk))
                    await asyncio.wait_for(w.drain(), self.data_timeout)
            w.write(stuffer.end())
            await asyncio.wait_for(w.drain(), self.data_timeout)
        except (OSError, TimeoutError) as e:
            self.broken = True
            raise _Lost("sending the message") from e

    async def quit(self) -> None:
        """QUIT, then close; problems at this point change nothing."""
        if not self.broken:
            self._writer.write(b"QUIT\r\n")
            try:
                await self._read_reply(min(self.timeout, 30.0), "QUIT")
            except _Lost:
                pass
        self._abort()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), min(self.timeout, 30.0))
        except (OSError, TimeoutError):
            pass
