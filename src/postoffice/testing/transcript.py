"""Dialogue transcripts: `C:`/`S:` scripts run against the engine and against a live server.

Description:
    A transcript is a text file of turns, one line each:

        S: 220 *                 expected reply line (fnmatch pattern: * and ?)
        C: EHLO client.example   sent with CRLF appended
        C! MAIL FROM:<a@b>\\n     sent as a Python-escaped byte string, no CRLF added
        # comment, blank lines ignored

    Consecutive `C` lines form one write (so a block of them is a pipelined
    batch); the `S` lines after them are the replies expected, in order.
    The same transcript runs two ways, and must pass both:

    * `run_engine(text, deps)`: the adapter (smtp/server.py), the sans-I/O
      engine and a real SmtpSession, fed through an in-memory transport, no
      sockets;
    * `run_socket(text, host, port)`: over TCP against `postoffice serve`.

    A mismatch raises TranscriptError naming the transcript line.

See also:
    tests/transcripts/, smtp/server.py (the pump this mirrors).
"""

from __future__ import annotations

import ast
import asyncio
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.smtp.events import EngineConfig
from postoffice.smtp.server import SmtpConnection, SmtpServer
from postoffice.smtp.session import Peer, SessionDeps


class TranscriptError(AssertionError):
    pass


@dataclass(frozen=True, slots=True)
class Turn:
    send: bytes
    expect: tuple[tuple[int, str], ...]  # (transcript line number, pattern)


def parse(text: str) -> list[Turn]:
    turns: list[Turn] = []
    send = bytearray()
    expect: list[tuple[int, str]] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        kind, body = line[:2], line[3:] if len(line) > 2 else ""
        if kind == "S:":
            expect.append((n, body))
            continue
        if kind not in ("C:", "C!"):
            raise TranscriptError(f"line {n}: expected 'C:', 'C!' or 'S:'")
        if expect:
            turns.append(Turn(bytes(send), tuple(expect)))
            send, expect = bytearray(), []
        if kind == "C:":
            send += body.encode("utf-8") + b"\r\n"
        else:
            value = ast.literal_eval("b'" + body.replace("'", "\\'") + "'")
            assert isinstance(value, bytes)
            send += value
    if send or expect:
        turns.append(Turn(bytes(send), tuple(expect)))
    return turns


Match = Callable[[int, str, str], None]


def _match(n: int, pattern: str, got: str) -> None:
    if not fnmatch.fnmatchcase(got, pattern):
        raise TranscriptError(f"line {n}: expected {pattern!r}, got {got!r}")


class MemoryTransport(asyncio.Transport):
    """An in-memory transport: what the server writes is collected in `out`.

    Shared by the SMTP, POP3 and IMAP runners: `peername` (and `sockname`
    when given) are what get_extra_info reports; `reading` follows
    pause_reading/resume_reading."""

    def __init__(self, peername: tuple[str, int], sockname: tuple[str, int] | None = None) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.reading = True
        self._names = {"peername": peername, "sockname": sockname}

    def get_extra_info(self, name: str, default: object = None) -> object:
        value = self._names.get(name)
        return default if value is None else value

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0


def take_turn(out: bytearray, turn: Turn, match: Match = _match) -> list[str]:
    """Check the complete lines in `out` against `turn`'s expected lines,
    remove them from `out` and return them."""
    raw = bytes(out).split(b"\r\n")[:-1]
    complete = [line.decode("utf-8", "replace") for line in raw]
    if len(complete) < len(turn.expect):
        n = turn.expect[len(complete)][0]
        raise TranscriptError(f"line {n}: no reply (got {complete!r})")
    for (n, pattern), got in zip(turn.expect, complete, strict=False):
        match(n, pattern, got)
    del out[: sum(len(line) + 2 for line in raw[: len(turn.expect)])]
    return complete[: len(turn.expect)]


def check_end(out: bytearray) -> None:
    if out:
        raise TranscriptError(f"unexpected replies at the end: {bytes(out)!r}")


async def run_engine(
    text: str,
    deps: SessionDeps,
    *,
    peer: Peer | None = None,
    engine_config: EngineConfig | None = None,
) -> list[str]:
    """Run the transcript through the real adapter, engine and session, no sockets.

    The bytes go to `SmtpConnection.data_received` exactly as the event loop
    would deliver them; returns every reply line."""
    server = SmtpServer(deps, engine_config=(lambda: engine_config) if engine_config else None)
    conn = SmtpConnection(server)
    peer = peer or Peer(ip="127.0.0.1", port=40000, name="localhost")
    transport = MemoryTransport((peer.ip, peer.port))
    conn.connection_made(transport)
    all_lines: list[str] = []
    try:
        for turn in parse(text):
            if turn.send:
                conn.data_received(turn.send)
                while conn.answer_task is not None and not conn.answer_task.done():
                    await asyncio.wait([conn.answer_task])
                    await asyncio.sleep(0)  # let the done-callback answer and go on
            all_lines += take_turn(transport.out, turn)
        check_end(transport.out)
    finally:
        conn.connection_lost(None)
    return all_lines


async def run_socket(
    text: str, host: str, port: int, *, timeout: float = 10.0, match: Match = _match
) -> list[str]:
    """Run the transcript over TCP against a live server; returns every reply line."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    all_lines: list[str] = []
    try:
        for turn in parse(text):
            if turn.send:
                writer.write(turn.send)
                await writer.drain()
            for n, pattern in turn.expect:
                raw = await asyncio.wait_for(reader.readline(), timeout)
                if not raw:
                    raise TranscriptError(f"line {n}: connection closed, expected {pattern!r}")
                got = raw.decode("utf-8", "replace").removesuffix("\r\n")
                match(n, pattern, got)
                all_lines.append(got)
    finally:
        writer.close()
    return all_lines
