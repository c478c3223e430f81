"""POP3 dialogue transcripts: `C:`/`S:` scripts run against the engine and against a live server.

Description:
    The transcript format is testing/transcript.py's (S: fnmatch patterns,
    C: lines sent with CRLF, C! escaped bytes, consecutive C lines one
    write). Multi-line replies are simply more S: lines, byte-stuffing and
    the final "." included.

    * `run_engine(text, deps)`: the real adapter (pop3/server.py), engine
      and Pop3Session, fed through an in-memory transport, no sockets;
    * `run_socket(text, host, port)`: over TCP against `postoffice serve`.

    Patterns match with `*` and `?` only: a "[" stands for itself, since
    POP3 response codes are written in brackets (`-ERR [IN-USE] ...`).
    A mismatch raises TranscriptError naming the transcript line.

See also:
    tests/transcripts/pop3/, testing/transcript.py, pop3/server.py.
"""

from __future__ import annotations

import asyncio
import fnmatch

from postoffice.pop3.server import Pop3Connection, Pop3Server
from postoffice.pop3.session import Client, Pop3Deps
from postoffice.testing import transcript
from postoffice.testing.transcript import TranscriptError, parse

__all__ = ["MemoryTransport", "TranscriptError", "match", "run_engine", "run_socket", "settle"]


class MemoryTransport(transcript.MemoryTransport):
    """The shared in-memory transport, addressed as `client`."""

    def __init__(self, client: Client) -> None:
        super().__init__((client.ip, client.port), (client.local_ip, client.local_port))


def match(n: int, pattern: str, got: str) -> None:
    """`got` against an fnmatch pattern whose "[" is literal."""
    if not fnmatch.fnmatchcase(got, pattern.replace("[", "[[]")):
        raise TranscriptError(f"line {n}: expected {pattern!r}, got {got!r}")


async def settle(conn: Pop3Connection) -> None:
    """Until the connection has no answer being worked on."""
    while conn.answer_task is not None and not conn.answer_task.done():
        await asyncio.wait([conn.answer_task])
        await asyncio.sleep(0)  # let the done-callback answer and go on


async def run_engine(
    text: str,
    deps: Pop3Deps,
    *,
    client: Client | None = None,
) -> list[str]:
    """Run the transcript through the real adapter, engine and session; every reply line."""
    server = Pop3Server(deps)
    conn = Pop3Connection(server)
    transport = MemoryTransport(
        client or Client(ip="127.0.0.1", port=40000, local_ip="127.0.0.1", local_port=110)
    )
    conn.connection_made(transport)
    all_lines: list[str] = []
    try:
        for turn in parse(text):
            if turn.send:
                conn.data_received(turn.send)
                await settle(conn)
            all_lines += transcript.take_turn(transport.out, turn, match)
        transcript.check_end(transport.out)
    finally:
        conn.connection_lost(None)
        await settle(conn)
    return all_lines


async def run_socket(text: str, host: str, port: int, *, timeout: float = 10.0) -> list[str]:
    """Run the transcript over TCP against a live server; every reply line."""
    return await transcript.run_socket(text, host, port, timeout=timeout, match=match)
