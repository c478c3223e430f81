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

    * `run_engine(text, deps)`: the sans-I/O engine and a real SmtpSession,
      fed the bytes exactly as the asyncio adapter would, no sockets;
    * `run_socket(text, host, port)`: over TCP against `postoffice serve`.

    A mismatch raises TranscriptError naming the transcript line.

See also:
    tests/transcripts/, smtp/server.py (the pump this mirrors).
"""

from __future__ import annotations

import ast
import asyncio
import fnmatch
from dataclasses import dataclass

from postoffice.smtp.events import EngineConfig
from postoffice.smtp.protocol import ServerProtocol
from postoffice.smtp.replies import Reply
from postoffice.smtp.session import Peer, SessionDeps, SmtpSession


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


def _match(n: int, pattern: str, got: str) -> None:
    if not fnmatch.fnmatchcase(got, pattern):
        raise TranscriptError(f"line {n}: expected {pattern!r}, got {got!r}")


async def run_engine(
    text: str,
    deps: SessionDeps,
    *,
    peer: Peer | None = None,
    engine_config: EngineConfig | None = None,
) -> list[str]:
    """Run the transcript against engine + session; returns every reply line."""
    session = SmtpSession(deps, peer or Peer(ip="127.0.0.1", port=40000, name="localhost"))
    cfg = deps.config
    engine = ServerProtocol(
        engine_config
        or EngineConfig(
            hostname=cfg.hostname,
            max_message_size=cfg.limits.max_message_size,
            max_recipients=cfg.limits.max_recipients,
            max_errors=cfg.smtp.max_errors,
        )
    )
    engine.greeting(session.greeting())
    out = bytearray(engine.data_to_send())
    all_lines: list[str] = []
    for turn in parse(text):
        if turn.send:
            await _pump(engine, session, turn.send)
            out += engine.data_to_send()
        lines = out.decode("utf-8", "replace").split("\r\n")
        complete, rest = lines[:-1], lines[-1]
        if len(complete) < len(turn.expect):
            n = turn.expect[len(complete)][0]
            raise TranscriptError(f"line {n}: no reply (got {complete!r})")
        for (n, pattern), got in zip(turn.expect, complete, strict=False):
            _match(n, pattern, got)
        used = complete[: len(turn.expect)]
        all_lines += used
        remaining = complete[len(turn.expect) :]
        out = bytearray("".join(x + "\r\n" for x in remaining).encode() + rest.encode())
    if out:
        raise TranscriptError(f"unexpected replies at the end: {bytes(out)!r}")
    session.close()
    return all_lines


async def _pump(engine: ServerProtocol, session: SmtpSession, data: bytes) -> None:
    events = engine.receive_data(data)
    while events:
        answered = False
        for event in events:
            answer = session.handle(event)
            if not event.needs_answer:
                continue
            if answer is None:
                answer = Reply(code=451, enhanced="4.3.0", text="no answer")
            if not isinstance(answer, Reply):
                answer = await answer
            engine.answer(answer)
            answered = True
        events = engine.receive_data(b"") if answered else []


async def run_socket(text: str, host: str, port: int, *, timeout: float = 10.0) -> list[str]:
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
                _match(n, pattern, got)
                all_lines.append(got)
    finally:
        writer.close()
    return all_lines
