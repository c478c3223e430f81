"""IMAP dialogue transcripts: `C:`/`S:` scripts run in-process and against a live server.

Description:
    The transcript format of testing/transcript.py (`C:` lines sent with
    CRLF, `C!` escaped bytes, turns of client lines followed by the
    expected `S:` lines), except that in an `S:` pattern only `*` is a
    wildcard: IMAP responses are full of brackets, which fnmatch would
    read as character classes. A literal in a response is matched line by
    line like any other text.

    * `run_engine(text, deps)`: the real adapter (imap/server.py), engine
      and session over an in-memory transport, no sockets; each turn
      waits until the connection has answered everything it can;
    * `run_socket(text, host, port)`: over TCP against `postoffice serve`.

    Both raise TranscriptError naming the transcript line on a mismatch,
    and fail when the server sends more than the transcript expects.

See also:
    tests/transcripts/imap_*.txt, tests/test_imap_transcripts.py,
    testing/transcript.py.
"""

from __future__ import annotations

import asyncio
import re

from postoffice.imap.server import ImapConnection, ImapServer
from postoffice.imap.session import ImapDeps
from postoffice.testing.transcript import TranscriptError, parse


def _match(n: int, pattern: str, got: str) -> None:
    """`*` matches any characters; everything else literally."""
    rx = ".*".join(re.escape(part) for part in pattern.split("*"))
    if re.fullmatch(rx, got, re.DOTALL) is None:
        raise TranscriptError(f"line {n}: expected {pattern!r}, got {got!r}")


class _Transport(asyncio.Transport):
    """An in-memory transport: what the server writes is collected."""

    def __init__(self, ip: str) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self._ip = ip

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self._ip, 40143) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0


async def settle(conn: ImapConnection) -> None:
    """Wait until the connection has answered all it can."""
    while True:
        task = conn.answer_task
        if task is not None and not task.done():
            await asyncio.wait([task])
        await asyncio.sleep(0)  # the done-callback runs and may start the next answer
        await asyncio.sleep(0)
        if conn.answer_task is task:
            return


async def run_engine(text: str, deps: ImapDeps, *, ip: str = "127.0.0.1") -> list[str]:
    """Run the transcript through the real adapter, engine and session; every
    response line is returned."""
    server = ImapServer(deps)
    conn = ImapConnection(server)
    transport = _Transport(ip)
    conn.connection_made(transport)
    lines_seen: list[str] = []
    try:
        for turn in parse(text):
            if turn.send:
                conn.data_received(turn.send)
            await settle(conn)
            raw_lines = bytes(transport.out).split(b"\r\n")[:-1]
            complete = [x.decode("utf-8", "replace") for x in raw_lines]
            if len(complete) < len(turn.expect):
                n = turn.expect[len(complete)][0]
                raise TranscriptError(f"line {n}: no response (got {complete!r})")
            for (n, pattern), got in zip(turn.expect, complete, strict=False):
                _match(n, pattern, got)
            lines_seen += complete[: len(turn.expect)]
            used = sum(len(x) + 2 for x in raw_lines[: len(turn.expect)])
            del transport.out[:used]
        if transport.out:
            raise TranscriptError(f"unexpected responses at the end: {bytes(transport.out)!r}")
    finally:
        conn.connection_lost(None)
    return lines_seen


async def run_socket(text: str, host: str, port: int, *, timeout: float = 10.0) -> list[str]:
    """Run the transcript over TCP against a live server."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    lines_seen: list[str] = []
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
                _match(n, pattern, got)
                lines_seen.append(got)
    finally:
        writer.close()
    return lines_seen
