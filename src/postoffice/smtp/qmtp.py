"""smtp.qmtp — QMTP, qmail's Quick Mail Transfer Protocol: netstrings, a client and a server.

Description:
    QMTP (D. J. Bernstein, cr.yp.to/proto/qmtp.txt, 1997; port 209) moves
    mail between hosts without SMTP's dialogue: the client sends a
    *package* and the server answers with one *response* per recipient.

        package  = netstring(message) netstring(sender)
                   netstring(netstring(rcpt1) netstring(rcpt2) ...)     §4
        message  = <0d> line <0d 0a> line ... (encoding #1, "DOS")
                 | <0a> line <0a> line ...     (encoding #2, "UNIX")      §4
        response = netstring("K" text)  accepted (like SMTP's 250 to DATA)
                 | netstring("Z" text)  temporary failure
                 | netstring("D" text)  permanent failure                  §5
        netstring = [len] ":" [string] ","  (len in decimal, no leading 0) §6

    The server answers only after the last byte of a package (§2); a client
    may send the next package before the answers arrive; a response that
    never arrives is a temporary failure.

    Sans-I/O parts (no sockets; tested alone):

      netstring(data) -> bytes; NetstringReader(max_length).feed(data) -> [bytes]
      format_response(reply) -> bytes          a Reply as a K/Z/D netstring:
                                2xx K, 4xx Z, 5xx D; the RFC 3463 code goes
                                last as an HCMSSC "(#5.1.1)", as qmail writes it
      parse_response(data) -> Reply            K 250, Z 451, D 554; the code
                                from a "#x.y.z" in the text when there is one
      package_head(size), package_tail(sender, recipients),
      encode_package(message, sender, recipients)
                                the client's package, always in encoding #1
                                (the spool keeps CRLF lines: "\\r" + the
                                message as stored is the whole encoding)
      QmtpServerProtocol(max_message_size=...).receive_data(data)
                                -> [MessageStart | MessageData | PackageEnd];
                                QmtpError on a framing violation (close)

    Message content reaches the server's callback as CRLF lines whichever
    encoding the client used: a lone LF is a line end (encoding #2, or an
    unsafe message in #1, which §5 lets the server change), and a final
    partial line gets its CRLF, as SMTP would have carried it. A lone CR
    cannot travel in SMTP and is refused (550 5.6.0, like smtp/protocol.py)
    — §5 forbids storing a message changed, so refusing is the only choice.

    asyncio parts:

      client = await QmtpClient.connect(host, port=209, timeout=60)
      replies = await client.send(sender, recipients, message)  # one per rcpt
      await client.close()

        `send` never raises for what the peer does: a connection lost or a
        timeout answers the recipients still waiting with 451 4.4.2 (the
        responses received before it stand); a malformed response with
        451 4.5.0. Connecting raises OSError/TimeoutError.

      server = await start_qmtp_server(handler, host, port, ...)
      server.addresses; await server.stop()

        `handler(peer)` is called when a package's message starts and
        returns a QmtpSink: `write(data)` takes the content (CRLF lines),
        `await finish(sender, recipients)` returns one Reply per recipient
        (it would commit to the spool: QMTP's K is SMTP's 250), `abort()`
        forgets a package cut short. Any of them may raise TempFail or
        PermFail: every recipient of the package then gets that reply. The
        server itself answers recipients that are not UTF-8 (D 5.1.3), a
        sender that is not (D 5.1.7), recipients past max_recipients
        (Z 4.5.3) and messages over max_message_size (D 5.3.4), without
        troubling the handler. The listener knows nothing of the spool,
        the policy or the configuration: app.py wires a sink to them.

        `gate` (optional, a QmtpGate) decides on each connection before
        its first package: `await gate.open(peer)` returns None (serve it),
        a 4xx Reply (close at once: a client that gets no response retries,
        §2) or a 5xx Reply (every recipient of every package gets it, the
        handler is never called); `gate.close(peer)` once when it ends.
        app.py's gate is the QMTP intake (smtp/qmtp_session.py): tcprules,
        limits, access Connect: and blocklists, as for SMTP.

States (server, per connection):
    length -> first byte (encoding) -> content -> "," -> sender ->
    recipients -> (responses) -> length ...; EOF or a violation in the
    middle of a package throws that package away (§2), never one already
    answered.

Security:
    Every length is checked before anything is buffered: the message
    streams through (never held whole), the sender netstring is limited to
    MAX_SENDER octets and the recipient list to max_envelope; a longer one
    closes the connection. A session lasts at most session_timeout (§2: an
    hour) and each read at most `timeout`. Response texts are cleaned of
    control characters and of "#" outside the HCMSSC code (§5).

Config:
    None read here; the caller passes max_message_size, max_recipients and
    the timeouts (app.py: [limits], a [qmtp] section when it exists).

See also:
    cr.yp.to/proto/qmtp.txt, qmail-qmtpd(8), RFC 1123 §5.3.3 (what K
    promises), RFC 3463, delivery/qmtp.py (the delivery agent),
    smtp/protocol.py (the same refusals in SMTP).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from postoffice.errors import PermFail, TempFail
from postoffice.smtp import replies
from postoffice.smtp.replies import Reply

__all__ = [
    "MAX_SENDER", "QMTP_PORT", "MessageData", "MessageStart", "NetstringError",
    "NetstringReader", "PackageEnd", "QmtpClient", "QmtpError", "QmtpGate", "QmtpHandler",
    "QmtpPeer", "QmtpServer", "QmtpServerProtocol", "QmtpSink", "encode_package", "format_response",
    "netstring", "package_head", "package_tail", "parse_response", "start_qmtp_server",
]  # fmt: skip

log = logging.getLogger("postoffice.qmtp")

QMTP_PORT = 209  # QMTP §7
MAX_SENDER = 4096  # octets of the sender netstring's content
MAX_ENVELOPE = 1024 * 1024  # octets of the recipient list netstring's content
_MAX_DIGITS = 20
_CHUNK = 64 * 1024

# Replies of our own (the text goes to the peer: no paths, no exception text).
LOST = Reply(code=451, enhanced="4.4.2", text="Lost connection with the QMTP server")
BAD_RESPONSE = Reply(code=451, enhanced="4.5.0", text="Malformed QMTP response")
NO_RESPONSE = Reply(code=451, enhanced="4.4.2", text="No QMTP response")


class NetstringError(ValueError):
    """Bytes that are not a netstring (QMTP §6)."""


class QmtpError(ValueError):
    """A framing violation by the peer: the connection is closed."""


# --- netstrings (QMTP §6) -----------------------------------------------------------


def netstring(data: bytes) -> bytes:
    """`len:data,`."""
    return b"%d:%s," % (len(data), data)


def _parse_length(digits: bytes) -> int:
    # §6: a nonempty sequence of ASCII digits; "0" begins it only for the empty string.
    if not digits or len(digits) > _MAX_DIGITS or not (digits.isdigit() and digits.isascii()):
        raise NetstringError(f"bad netstring length {digits[:_MAX_DIGITS]!r}")
    if digits[0] == 0x30 and len(digits) > 1:
        raise NetstringError("netstring length with a leading zero")
    return int(digits)


def _check_digits(digits: bytes | bytearray) -> None:
    """The start of a length: digits only, not too many."""
    if len(digits) > _MAX_DIGITS or not (bytes(digits).isdigit() and bytes(digits).isascii()):
        raise NetstringError(f"bad netstring length {bytes(digits[:_MAX_DIGITS])!r}")


class NetstringReader:
    """Incremental netstring decoder, at most `max_length` octets a string."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buf = bytearray()
        self._want = -1  # length of the string being read; -1 while reading the length

    @property
    def pending(self) -> bool:
        """True when part of a netstring has been read."""
        return bool(self._buf) or self._want >= 0

    def feed_one(self, data: bytes | memoryview) -> tuple[bytes | None, int]:
        """Read at most one netstring: (the string or None, how many octets were used)."""
        view = memoryview(data)
        used = 0
        if self._want < 0:
            room = _MAX_DIGITS + 1 - len(self._buf)
            colon = bytes(view[:room]).find(b":")
            if colon < 0:
                self._buf += view[:room]
                _check_digits(self._buf)
                return None, min(room, len(view))
            self._buf += view[:colon]
            n = _parse_length(bytes(self._buf))
            if n > self.max_length:
                raise NetstringError(f"netstring of {n} octets (limit {self.max_length})")
            self._buf.clear()
            self._want = n
            used = colon + 1
        take = min(self._want + 1 - len(self._buf), len(view) - used)
        self._buf += view[used : used + take]
        used += take
        if len(self._buf) < self._want + 1:
            return None, used
        if self._buf[-1] != 0x2C:  # ","
            raise NetstringError("netstring without its ','")
        item = bytes(self._buf[:-1])
        self._buf.clear()
        self._want = -1
        return item, used

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Read every netstring `data` completes."""
        view = memoryview(data)
        out: list[bytes] = []
        pos = 0
        while pos < len(view):
            item, used = self.feed_one(view[pos:])
            pos += used
            if item is not None:
                out.append(item)
        return out


def split_netstrings(data: bytes, max_length: int) -> list[bytes]:
    """A string made of whole netstrings, split (the recipient list, §4)."""
    reader = NetstringReader(max_length)
    items = reader.feed(data)
    if reader.pending:
        raise NetstringError("truncated netstring")
    return items


# --- responses (QMTP §5) ------------------------------------------------------------

_HCMSSC = re.compile(r"\(?#([245])\.(\d{1,3})\.(\d{1,3})\)?")
_CLEAN_CONTROLS = str.maketrans({i: " " for i in (*range(32), 127)})
_CLEAN = str.maketrans({**{i: " " for i in (*range(32), 127)}, ord("#"): " "})


def format_response(reply: Reply) -> bytes:
    """The response netstring for a Reply: K (2xx), Z (4xx, and 3xx), D (5xx)."""
    kind = "K" if reply.code < 300 else "D" if reply.code >= 500 else "Z"
    text = " ".join(reply.text.translate(_CLEAN).split())  # one line, no "#"
    code = reply.enhanced
    if code and re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", code) and code[0] == str(reply.code)[0]:
        text = f"{text} (#{code})" if text else f"(#{code})"
    return netstring((kind + (text or "ok")).encode("utf-8", "replace"))


def parse_response(data: bytes) -> Reply:
    """A response's interpretation as a Reply; ValueError when it is not K/Z/D."""
    if not data or data[:1] not in (b"K", b"Z", b"D"):
        raise ValueError("not a QMTP response")
    text = data[1:].decode("utf-8", "replace").translate(_CLEAN_CONTROLS).strip()
    code, default = {"K": (250, "2.0.0"), "Z": (451, "4.0.0"), "D": (554, "5.0.0")}[chr(data[0])]
    enhanced = default
    m = _HCMSSC.search(text)
    if m and m.group(1) == default[0]:
        enhanced = ".".join(m.groups())
        text = (text[: m.start()] + text[m.end() :]).strip()
    return Reply(code=code, enhanced=enhanced, text=text)


# --- the client's package (QMTP §4) ----------------------------------------------------


def package_head(size: int) -> bytes:
    """The message netstring's start for `size` octets of CRLF-line content (encoding #1)."""
    return b"%d:\r" % (size + 1)


def package_tail(sender: str, recipients: Sequence[str]) -> bytes:
    """The message netstring's ",", the sender and the recipient list."""
    rcpts = b"".join(netstring(r.encode("utf-8")) for r in recipients)
    return b"," + netstring(sender.encode("utf-8")) + netstring(rcpts)


def encode_package(message: bytes, sender: str, recipients: Sequence[str]) -> bytes:
    """A whole package; `message` has CRLF line ends, as the spool stores it."""
    return package_head(len(message)) + message + package_tail(sender, recipients)


# --- the server's side (sans I/O) --------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStart:
    """A package's message begins; `size` is its encoded length."""

    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageData:
    """Message content, CRLF lines, in order (none after a fault)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageEnd:
    """The package is complete: answer one response per recipient, in order.

    `fault` is set when the message was refused while it arrived (too big,
    a lone CR): every recipient gets it."""

    sender: bytes
    recipients: tuple[bytes, ...]
    size: int  # octets of content passed on
    fault: Reply | None = None


QmtpEvent = MessageStart | MessageData | PackageEnd


class _LengthReader:
    """The message netstring's `len:` (its content streams, so it is read apart)."""

    def __init__(self) -> None:
        self._digits = bytearray()

    @property
    def pending(self) -> bool:
        return bool(self._digits)

    def feed_one(self, view: memoryview) -> tuple[int | None, int]:
        room = _MAX_DIGITS + 1 - len(self._digits)
        colon = bytes(view[:room]).find(b":")
        if colon < 0:
            self._digits += view[:room]
            _check_digits(self._digits)
            return None, min(room, len(view))
        self._digits += view[:colon]
        n = _parse_length(bytes(self._digits))
        self._digits.clear()
        return n, colon + 1


class QmtpServerProtocol:
    """The QMTP server's parser for one connection (sans I/O)."""

    def __init__(self, *, max_message_size: int = 0, max_envelope: int = MAX_ENVELOPE) -> None:
        self.max_message_size = max_message_size  # 0: no limit
        self._state = "length"  # length, first, content, comma, sender, recipients
        self._left = 0
        self._carry = b""  # a CR that may be half of a CRLF
        self._size = 0
        self._ends_crlf = True
        self._fault: Reply | None = None
        self._sender = b""
        self._length = _LengthReader()
        self._sender_reader = NetstringReader(MAX_SENDER)
        self._rcpt_reader = NetstringReader(max_envelope)
        self._max_envelope = max_envelope

    @property
    def idle(self) -> bool:
        """True between packages (nothing of a package read yet)."""
        return self._state == "length" and not self._length.pending

    def receive_data(self, data: bytes) -> list[QmtpEvent]:
        """Feed bytes; the events they complete. Raises QmtpError on a violation."""
        events: list[QmtpEvent] = []
        try:
            self._run(data, events)
        except NetstringError as e:
            raise QmtpError(str(e)) from e
        return events

    def _run(self, data: bytes, events: list[QmtpEvent]) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            state = self._state
            if state == "content":
                take = min(self._left, len(view) - pos)
                self._content(bytes(view[pos : pos + take]), events)
                pos += take
                self._left -= take
                if self._left == 0:
                    self._end_content(events)
                    self._state = "comma"
            elif state == "length":
                size, used = self._length.feed_one(view[pos:])
                pos += used
                if size is not None:
                    self._start(size, events)
            elif state == "first":
                if view[pos] not in (0x0D, 0x0A):  # §4: encoding #1 or #2
                    raise QmtpError("message in neither encoding")
                pos += 1
                self._left -= 1
                if self._left:
                    self._state = "content"
                else:
                    self._end_content(events)
                    self._state = "comma"
            elif state == "comma":
                if view[pos] != 0x2C:
                    raise QmtpError("message netstring without its ','")
                pos += 1
                self._state = "sender"
            elif state == "sender":
                sender, used = self._sender_reader.feed_one(view[pos:])
                pos += used
                if sender is not None:
                    self._sender = sender
                    self._state = "recipients"
            else:  # recipients
                rcpts, used = self._rcpt_reader.feed_one(view[pos:])
                pos += used
                if rcpts is not None:
                    events.append(
                        PackageEnd(
                            sender=self._sender,
                            recipients=tuple(split_netstrings(rcpts, self._max_envelope)),
                            size=self._size,
                            fault=self._fault,
                        )
                    )
                    self._state = "length"
                    self._sender = b""
                    self._fault = None

    def _start(self, size: int, events: list[QmtpEvent]) -> None:
        self._left = size
        self._size = 0
        self._carry = b""
        self._ends_crlf = True
        self._fault = None
        if self.max_message_size and size - 1 > self.max_message_size:
            self._fault = replies.MESSAGE_TOO_BIG  # RFC 1870's reply: read on, refuse at the end
        events.append(MessageStart(size=size))
        self._state = "first" if size else "comma"

    def _content(self, chunk: bytes, events: list[QmtpEvent]) -> None:
        if self._fault is not None:
            return
        data = self._carry + chunk
        self._carry = b""
        if data.endswith(b"\r"):
            self._carry, data = b"\r", data[:-1]
        if b"\r\n" in data:
            data = data.replace(b"\r\n", b"\n")
        if b"\r" in data:
            self._fault = replies.DATA_BARE_LINE_ENDING
            return
        data = data.replace(b"\n", b"\r\n")
        if not data:
            return
        self._size += len(data)
        if self.max_message_size and self._size > self.max_message_size:
            self._fault = replies.MESSAGE_TOO_BIG
            return
        self._ends_crlf = data.endswith(b"\r\n")
        events.append(MessageData(data=data))

    def _end_content(self, events: list[QmtpEvent]) -> None:
        if self._fault is None and self._carry:
            self._fault = replies.DATA_BARE_LINE_ENDING  # the message ended in a lone CR
        if self._fault is None and not self._ends_crlf:
            self._size += 2  # the partial last line gets its line end
            events.append(MessageData(data=b"\r\n"))
        self._carry = b""


# --- asyncio: the client ----------------------------------------------------------------


def _peer_label(writer: asyncio.StreamWriter, fallback: str) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = fallback.strip("[]")
        return f"{host}[{peer[0]}]:{peer[1]}"
    return fallback


def _remaining(f: BinaryIO) -> int:
    """Octets from the file position to the end."""
    try:
        return os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, ValueError):  # not a real file (io.BytesIO)
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
        return end - here


class QmtpClient:
    """One QMTP connection; packages are sent one after the other."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: str,
        timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.peer = peer  # "host[ip]:port", for the log's relay=
        self.timeout = timeout
        self._broken = False

    @classmethod
    async def connect(
        cls, host: str, port: int = QMTP_PORT, *, timeout: float = 60.0, path: str = ""
    ) -> QmtpClient:
        """Connect over TCP (or to a unix socket `path`); OSError/TimeoutError on failure."""
        opened = asyncio.open_unix_connection(path) if path else asyncio.open_connection(host, port)
        reader, writer = await asyncio.wait_for(opened, timeout)
        label = path if path else _peer_label(writer, host)
        return cls(reader, writer, peer=label, timeout=timeout)

    @property
    def usable(self) -> bool:
        """False after a lost connection or a protocol error."""
        return not self._broken

    async def send(
        self,
        sender: str,
        recipients: Sequence[str],
        message: bytes | BinaryIO,
        *,
        size: int | None = None,
    ) -> list[Reply]:
        """Send one package; one Reply per recipient, in order (see the module docstring)."""
        if not recipients:
            return []
        if self._broken:
            return [LOST] * len(recipients)
        got: list[Reply] = []
        try:
            await self._write_package(sender, recipients, message, size)
            reader = NetstringReader(64 * 1024)
            while len(got) < len(recipients):
                data = await asyncio.wait_for(self._reader.read(_CHUNK), self.timeout)
                if not data:
                    raise ConnectionResetError("closed by the server")
                for item in reader.feed(data):
                    got.append(parse_response(item))
            if len(got) > len(recipients):
                raise ValueError("more responses than recipients")
        except (OSError, TimeoutError, EOFError) as e:
            self._broken = True
            log.info("QMTP %s: %s", self.peer, e or type(e).__name__)
            return got + [LOST] * (len(recipients) - len(got))
        except ValueError as e:  # a bad netstring or response
            self._broken = True
            log.info("QMTP %s: protocol error: %s", self.peer, e)
            return got[: len(recipients)] + [BAD_RESPONSE] * (len(recipients) - len(got))
        return got

    async def _write_package(
        self, sender: str, recipients: Sequence[str], message: bytes | BinaryIO, size: int | None
    ) -> None:
        w = self._writer
        if isinstance(message, bytes | bytearray):
            w.write(encode_package(bytes(message), sender, recipients))
            await asyncio.wait_for(w.drain(), self.timeout)
            return
        if size is None:
            size = _remaining(message)
        w.write(package_head(size))
        loop = asyncio.get_running_loop()
        left = size
        while left > 0:
            chunk = await loop.run_in_executor(None, message.read, min(_CHUNK, left))
            if not chunk:
                raise EOFError("the message is shorter than its size")
            left -= len(chunk)
            w.write(chunk)
            await asyncio.wait_for(w.drain(), self.timeout)
        w.write(package_tail(sender, recipients))
        await asyncio.wait_for(w.drain(), self.timeout)

    async def close(self) -> None:
        """Close the connection (QMTP has no QUIT: the client just closes, §8)."""
        self._broken = True
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), self.timeout)
        except (OSError, TimeoutError):
            pass


# --- asyncio: the server ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QmtpPeer:
    """The client of a QMTP connection."""

    ip: str
    port: int = 0

    @property
    def label(self) -> str:
        return f"[{self.ip}]:{self.port}"


class QmtpSink(Protocol):
    """Where one package's message goes (see the module docstring)."""

    def write(self, data: bytes) -> None:
        """Content, CRLF lines. May raise TempFail/PermFail (the package is then refused)."""

    async def finish(self, sender: str, recipients: Sequence[str]) -> Sequence[Reply]:
        """The package is complete: one Reply per recipient (2xx only once stored)."""

    def abort(self) -> None:
        """Forget the package (cut short, refused, or every recipient invalid)."""


QmtpHandler = Callable[[QmtpPeer], QmtpSink]


class QmtpGate(Protocol):
    """Connection-level decisions (see the module docstring: `gate`)."""

    async def open(self, peer: QmtpPeer) -> Reply | None:
        """None: serve the connection; a 4xx: close it; a 5xx: refuse every recipient."""

    def close(self, peer: QmtpPeer) -> None:
        """The connection is over (called once after open(), even one cut short)."""


_BAD_SENDER = replies.BAD_SENDER_SYNTAX
_BAD_RCPT = replies.BAD_RCPT_SYNTAX


class QmtpServer:
    """The listening sockets of start_qmtp_server() and their connections."""

    def __init__(
        self,
        handler: QmtpHandler,
        *,
        max_message_size: int,
        max_recipients: int,
        timeout: float,
        session_timeout: float,
        gate: QmtpGate | None = None,
    ) -> None:
        self.handler = handler
        self.gate = gate
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.timeout = timeout
        self.session_timeout = session_timeout
        self.addresses: list[tuple[str, int]] = []
        self.packages = 0  # packages answered
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        """Stop listening and close every connection (a package cut short is dropped)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peername = writer.get_extra_info("peername")
        if isinstance(peername, tuple) and len(peername) >= 2:
            peer = QmtpPeer(ip=str(peername[0]), port=int(peername[1]))
        else:
            peer = QmtpPeer(ip="unix")
        log.info("QMTP connect from %s", peer.label)
        gate, opened = self.gate, False
        try:
            refusal = None
            if gate is not None:
                opened = True  # close() follows even when open() is cut short
                refusal = await gate.open(peer)
            if refusal is not None and refusal.is_transient:
                log.info("QMTP %s: refused at connect: %s", peer.label, refusal)
                return
            await self._serve(peer, reader, writer, refusal)
        except (OSError, asyncio.IncompleteReadError) as e:
            log.info("QMTP %s: %s", peer.label, e)
        finally:
            if gate is not None and opened:
                gate.close(peer)
            self._tasks.discard(task)
            writer.close()
            log.info("QMTP disconnect from %s", peer.label)

    async def _serve(
        self,
        peer: QmtpPeer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        refusal: Reply | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        engine = QmtpServerProtocol(max_message_size=self.max_message_size)
        deadline = loop.time() + self.session_timeout  # QMTP §2: at most an hour
        sink: QmtpSink | None = None
        failed: Reply | None = None
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    log.info("QMTP %s: session time limit", peer.label)
                    return
                try:
                    data = await asyncio.wait_for(reader.read(_CHUNK), min(self.timeout, left))
                except TimeoutError:
                    log.info("QMTP %s: timeout", peer.label)
                    return
                if not data:
                    if not engine.idle:
                        log.info("QMTP %s: package cut short: thrown away", peer.label)
                    return
                try:
                    events = engine.receive_data(data)
                except QmtpError as e:
                    log.info("QMTP %s: protocol violation: %s", peer.label, e)
                    return
                for event in events:
                    if isinstance(event, MessageStart):
                        # refused at connect: no sink, every recipient gets the refusal
                        sink, failed = (None, refusal) if refusal else self._open(peer, event)
                    elif isinstance(event, MessageData):
                        if sink is not None and failed is None:
                            try:
                                sink.write(event.data)
                            except (TempFail, PermFail) as e:
                                failed = e.reply
                                log.warning("QMTP %s: %s", peer.label, e.reason)
                    else:
                        answers = await self._finish(peer, sink, failed, event)
                        sink, failed = None, None
                        self.packages += 1
                        writer.write(b"".join(format_response(r) for r in answers))
                        await asyncio.wait_for(writer.drain(), self.timeout)
        finally:
            if sink is not None:
                sink.abort()

    def _open(self, peer: QmtpPeer, event: MessageStart) -> tuple[QmtpSink | None, Reply | None]:
        try:
            return self.handler(peer), None
        except (TempFail, PermFail) as e:
            log.warning("QMTP %s: cannot take a message: %s", peer.label, e.reason)
            return None, e.reply

    async def _finish(
        self, peer: QmtpPeer, sink: QmtpSink | None, failed: Reply | None, event: PackageEnd
    ) -> list[Reply]:
        n = len(event.recipients)
        refusal = event.fault or failed
        try:
            sender = event.sender.decode("utf-8")
        except UnicodeDecodeError:
            refusal = refusal or _BAD_SENDER
            sender = ""
        if refusal is not None or sink is None or n == 0:
            if sink is not None:
                sink.abort()
            return [refusal or replies.LOCAL_ERROR] * n
        answers: list[Reply | None] = [None] * n
        wanted: list[tuple[int, str]] = []
        for i, raw in enumerate(event.recipients):
            try:
                address = raw.decode("utf-8")
            except UnicodeDecodeError:
                answers[i] = _BAD_RCPT
                continue
            if not address or len(wanted) >= self.max_recipients:
                answers[i] = _BAD_RCPT if not address else replies.TOO_MANY_RECIPIENTS
                continue
            wanted.append((i, address))
        if not wanted:
            sink.abort()
            return [a or _BAD_RCPT for a in answers]
        try:
            got = list(await sink.finish(sender, [a for _, a in wanted]))
        except (TempFail, PermFail) as e:
            log.warning("QMTP %s: package refused: %s", peer.label, e.reason)
            got = [e.reply] * len(wanted)
        except Exception:  # a bug below us: the client retries later (Z), we log it
            log.exception("QMTP %s: the package handler failed", peer.label)
            got = [replies.LOCAL_ERROR] * len(wanted)
        if len(got) != len(wanted):
            log.error("QMTP %s: %d replies for %d recipients", peer.label, len(got), len(wanted))
            got = [replies.LOCAL_ERROR] * len(wanted)
        for (i, _), reply in zip(wanted, got, strict=True):
            answers[i] = reply
        log.info(
            "QMTP %s: from=<%s>, nrcpt=%d, size=%d", peer.label, sender, len(wanted), event.size
        )
        return [a or replies.LOCAL_ERROR for a in answers]


async def start_qmtp_server(
    handler: QmtpHandler,
    host: str | None = "127.0.0.1",
    port: int = QMTP_PORT,
    *,
    max_message_size: int = 35 * 1024 * 1024,
    max_recipients: int = 1000,
    timeout: float = 300.0,
    session_timeout: float = 3600.0,
    path: str = "",
    gate: QmtpGate | None = None,
) -> QmtpServer:
    """Listen for QMTP on host:port (port 0: any; or a unix socket `path`)."""
    server = QmtpServer(
        handler,
        max_message_size=max_message_size,
        max_recipients=max_recipients,
        timeout=timeout,
        session_timeout=session_timeout,
        gate=gate,
    )
    if path:
        srv = await asyncio.start_unix_server(server._connection, path)
        server.addresses.append((path, 0))
    else:
        srv = await asyncio.start_server(server._connection, host, port, reuse_address=True)
        for sock in srv.sockets:
            name = sock.getsockname()
            server.addresses.append((str(name[0]), int(name[1])))
    server._server = srv
    return server
