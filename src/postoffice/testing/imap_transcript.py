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
from postoffice.testing import transcript
from postoffice.testing.transcript import TranscriptError, parse


def _match(n: int, pattern: str, got: str) -> None:
    """`*` matches any characters; everything else literally."""
    rx = ".*".join(re.escape(part) for part in pattern.split("*"))
    if re.fullmatch(rx, got, re.DOTALL) is None:
        raise TranscriptError(f"line {n}: expected {pattern!r}, got {got!r}")


class _Transport(transcript.MemoryTransport):
    """The shared in-memory transport, from `ip`."""

    def __init__(self, ip: str) -> None:
        super().__init__((ip, 40143))


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
            lines_seen += transcript.take_turn(transport.out, turn, _match)
        transcript.check_end(transport.out)
    finally:
        conn.connection_lost(None)
    return lines_seen


async def run_socket(text: str, host: str, port: int, *, timeout: float = 10.0) -> list[str]:
    """Run the transcript over TCP against a live server."""
    return await transcript.run_socket(text, host, port, timeout=timeout, match=_match)
