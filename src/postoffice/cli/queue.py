"""`postoffice queue`: look at and manage the mail queue.

Description:
    queue list [-r S] [-s S]      the queue in sendmail's `mailq` layout (also
                                  `mailq`, `sendmail -bp`): id, size, time,
                                  sender, the delay reason, recipients
    queue show ID...              one message's envelope, readably: queue,
                                  arrival, sender, size, attempts, next
                                  attempt, last reason, client, DSN
                                  parameters, every recipient with its state
                                  and reason (and original address, target)
    queue cat ID                  the envelope file and the message as queued
    queue hold    [ID...|ALL] [-r S] [-s S]   keep from delivery (to hold/)
    queue release [ID...|ALL] [-r S] [-s S]   back from hold/ to active/
    queue delete  [ID...|ALL] [-r S] [-s S]   remove from the queue for good
    queue requeue [ID...|ALL] [-r S] [-s S]   deferred -> active, due now
    queue flush   [ID...] [-r S] [-s S]       requeue (all by default) and
                                  have the running server deliver now

    -r S / -s S select the messages with a pending recipient / the sender
    containing S (case-insensitive; repeat an option for "or"; both kinds
    together mean "and"). hold, release, delete and requeue need IDs, ALL
    or a filter; flush without any takes every deferred message.

    A requeue writes the envelope again with next_attempt = now and moves
    it from deferred/ to active/ (spool.update), then pulls the spool's
    trigger: the running server's queue manager looks into active/ and
    delivers (queue/manager.py must take an active/ message found by that
    scan as due now, even when its schedule still says later). Without a
    running server a requeued message goes out when `postoffice serve`
    starts. `flush` (and `sendmail -q`) insist on a running server: without
    one they change nothing, say so in one line and exit 75 (EX_TEMPFAIL),
    like Postfix's `postqueue -f`. A server is running when the trigger
    FIFO has a reader.

    These commands read and change the spool directly; every change is one
    of the spool's own operations (update, hold, release, remove), safe
    next to a running server. Unknown ids print one line each on stderr and
    make the exit status 1; a filter that matches nothing is not an error.

    For other modules: Filter, matches(), requeue_where() (what ETRN and
    `sendmail -qR` do), flush_for_etrn(spool) (app.py's
    SessionDeps.flush_domain), server_running(), format_entry(),
    run_sendmail_q().

Security:
    Needs the server's uid (the spool is 0700). Queue ids from the command
    line are checked by the spool before they name a file.

See also:
    queue/spool.py, queue/mailq.py, queue/manager.py, cli/sendmail.py
    (-q, -qR, -qS, -qI), smtp/session.py (ETRN), sendmail(8) -q,
    postsuper(1) -h -H -d -r, postqueue(1) -f.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import errno
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from postoffice.cli.main import load_config_from_args
from postoffice.errors import PostofficeError, TempFail
from postoffice.queue.envelope import Envelope, RcptState
from postoffice.queue.interfaces import QUEUE_STATES, ManagedSpool, QueueEntry, QueueState
from postoffice.smtp.events import Etrn

if TYPE_CHECKING:
    from postoffice.config.schema import Config
    from postoffice.queue.spool import FileSpool

EX_TEMPFAIL = 75

# --- selecting messages ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """One selection: a substring of a pending recipient, the sender or the queue id."""

    kind: Literal["recipient", "sender", "queue_id"]
    text: str
    negate: bool = False  # sendmail's -q!R: messages that do not match

    def hit(self, envelope: Envelope) -> bool:
        needle = self.text.casefold()
        if self.kind == "sender":
            found = needle in envelope.sender.casefold()
        elif self.kind == "queue_id":
            found = needle in envelope.queue_id.casefold()
        else:
            rcpts = envelope.pending or envelope.recipients
            found = any(
                needle in r.address.casefold() or (r.orig and needle in r.orig.casefold())
                for r in rcpts
            )
        return found != self.negate


def matches(envelope: Envelope, filters: Sequence[Filter]) -> bool:
    """sendmail's rule: filters of one kind are or-ed, the kinds and-ed; none: all."""
    kinds: dict[str, list[Filter]] = {}
    for f in filters:
        kinds.setdefault(f.kind, []).append(f)
    return all(any(f.hit(envelope) for f in group) for group in kinds.values())


async def requeue_where(
    spool: ManagedSpool,
    select: Callable[[QueueEntry], bool],
    *,
    now: float | None = None,
    trigger: bool = True,
) -> list[str]:
    """Move the selected deferred messages to active/, due `now`; their ids.

    Each envelope is read again just before it is rewritten, so a delivery
    attempt that finished meanwhile is not undone (a race of a few
    milliseconds remains: the spool has no compare-and-swap; at worst a
    recipient is delivered twice, never lost). Pulls the trigger when
    something moved (and `trigger`)."""
    now = time.time() if now is None else now
    deferred: tuple[QueueState, ...] = ("deferred",)
    entries = await asyncio.to_thread(spool.entries, deferred)
    moved: list[str] = []
    for entry in entries:
        if not select(entry):
            continue
        qid = entry.envelope.queue_id
        fresh = await asyncio.to_thread(spool.load, qid)
        if fresh is None or fresh.state != "deferred":
            continue
        await spool.update(replace(fresh.envelope, next_attempt=now), deferred=False)
        moved.append(qid)
    if moved and trigger:
        spool.pull_trigger()
    return moved


def flush_for_etrn(spool: ManagedSpool) -> Callable[[Etrn], Awaitable[int]]:
    """SessionDeps.flush_domain for app.py (RFC 1985): requeue the deferred messages
    with a pending recipient at the node's domain (or under it, for `ETRN @domain`)."""

    async def flush(node: Etrn) -> int:
        def select(entry: QueueEntry) -> bool:
            return any(node.selects(r.address.rpartition("@")[2]) for r in entry.envelope.pending)

        return len(await requeue_where(spool, select))

    return flush


def server_running(trigger_path: str) -> bool:
    """True when a process (the queue manager of `postoffice serve`) reads the trigger FIFO."""
    try:
        fd = os.open(trigger_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    os.close(fd)
    return True


# --- showing one message -------------------------------------------------------------


def _span(seconds: float) -> str:
    s = int(abs(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    if m:
        return f"{m}m {s % 60}s"
    return f"{s}s"


def _when(t: float, now: float, tz: datetime.tzinfo | None) -> str:
    d = datetime.datetime.fromtimestamp(t, tz) if tz else datetime.datetime.fromtimestamp(t)
    rel = f"in {_span(t - now)}" if t > now else f"{_span(now - t)} ago"
    return f"{d:%Y-%m-%d %H:%M:%S} ({rel})"


def _field(key: str, value: str) -> str:
    return f"{key + ':':<15}{value}"


def format_entry(entry: QueueEntry, *, now: float, tz: datetime.tzinfo | None = None) -> str:
    """`postoffice queue show`: the envelope as `Key: value` lines, recipients indented."""
    env = entry.envelope
    held = entry.state == "hold"
    lines = [
        _field("Queue ID", env.queue_id),
        _field("Queue", entry.state + (" (held by the administrator)" if held else "")),
        _field("Arrival", _when(env.arrival_time, now, tz)),
        _field("Sender", f"<{env.sender}>" + ("  (the null sender)" if not env.sender else "")),
        _field(
            "Size", f"{env.size} bytes, {env.body_type}" + (", SMTPUTF8" if env.smtputf8 else "")
        ),
        _field("Attempts", str(env.attempts)),
    ]
    if held:
        lines.append(_field("Next attempt", "none while held"))
    elif entry.state == "active":
        lines.append(_field("Next attempt", "now (active)"))
    elif env.next_attempt <= now:
        lines.append(_field("Next attempt", "due now"))
    else:
        lines.append(_field("Next attempt", _when(env.next_attempt, now, tz)))
    if env.last_reason:
        lines.append(_field("Last reason", env.last_reason))
    client = env.client_name or "unknown"
    if env.client_address:
        client += f"[{env.client_address}]"
    extra = ", ".join(p for p in (f"helo={env.helo}" if env.helo else "", env.protocol) if p)
    lines.append(_field("Client", client + (f" ({extra})" if extra else "")))
    dsn = [f"RET={env.ret}" if env.ret else "", f"ENVID={env.envid}" if env.envid else ""]
    if any(dsn):
        lines.append(_field("DSN", " ".join(d for d in dsn if d)))
    pending = len(env.pending)
    lines.append(_field("Recipients", f"{len(env.recipients)} ({pending} pending)"))
    for r in env.recipients:
        state = r.state.value if r.state is not RcptState.PENDING else "pending"
        lines.append(f"  <{r.address}>  {state}" + (f"  ({r.reason})" if r.reason else ""))
        notes = []
        if r.orig:
            notes.append(f"for <{r.orig}>")
        if r.notify is not None:
            notes.append("NOTIFY=" + ",".join(sorted(r.notify)))
        if r.orcpt:
            notes.append(f"ORCPT={r.orcpt}")
        if r.target:
            notes.append(f"target {r.target}")
        if notes:
            lines.append("      " + "; ".join(notes))
    return "\n".join(lines) + "\n"


# --- the command line ------------------------------------------------------------------


def _filters(args: argparse.Namespace) -> list[Filter]:
    out = [Filter(kind="recipient", text=t) for t in args.recipient or ()]
    out += [Filter(kind="sender", text=t) for t in args.sender or ()]
    return out


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-r", "--recipient", action="append", metavar="SUBSTR",
        help="only messages with a pending recipient containing SUBSTR",
    )  # fmt: skip
    p.add_argument(
        "-s", "--sender", action="append", metavar="SUBSTR",
        help="only messages whose sender contains SUBSTR",
    )  # fmt: skip


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("queue", help="look at and manage the mail queue")
    qsub = p.add_subparsers(dest="queue_command", metavar="COMMAND", required=True)
    ls = qsub.add_parser("list", help="list the queue (mailq)")
    _add_filters(ls)
    ls.set_defaults(func=run_list)
    show = qsub.add_parser("show", help="show queued messages' envelopes readably")
    show.add_argument("queue_ids", nargs="+", metavar="ID")
    show.set_defaults(func=run_show)
    cat = qsub.add_parser("cat", help="print a queued message's envelope and content")
    cat.add_argument("queue_id")
    cat.add_argument("--envelope-only", action="store_true", help="only the envelope file")
    cat.set_defaults(func=run_cat)
    actions = (
        ("hold", "hold messages (no delivery until released)", run_hold),
        ("release", "release held messages", run_release),
        ("delete", "delete messages from the queue", run_delete),
        ("requeue", "make deferred messages due now (deferred -> active)", run_requeue),
        ("flush", "deliver the queue now (requeue, then wake the running server)", run_flush),
    )
    for name, text, func in actions:
        a = qsub.add_parser(name, help=text)
        a.add_argument("queue_ids", nargs="*", metavar="ID", help="queue ids, or ALL")
        _add_filters(a)
        a.set_defaults(func=func)


def _spool(args: argparse.Namespace) -> FileSpool:
    from postoffice.queue.spool import FileSpool

    config: Config = load_config_from_args(args)
    return FileSpool(config.state_dir)


def run_list(args: argparse.Namespace) -> int:
    from postoffice.queue.mailq import format_mailq

    spool = _spool(args)
    try:
        filters = _filters(args)
        entries = [e for e in spool.entries() if matches(e.envelope, filters)]
        sys.stdout.write(format_mailq(entries, queue_dir=spool.root))
    finally:
        spool.close()
    return 0


def run_show(args: argparse.Namespace) -> int:
    spool = _spool(args)
    failed = 0
    try:
        now = time.time()
        for i, qid in enumerate(args.queue_ids):
            entry = _load(spool, qid)
            if entry is None:
                failed += 1
                continue
            sys.stdout.write(("\n" if i else "") + format_entry(entry, now=now))
    finally:
        spool.close()
    return 1 if failed else 0


def _load(spool: FileSpool, qid: str) -> QueueEntry | None:
    try:
        entry = spool.load(qid)
    except ValueError:  # not a queue id
        entry = None
    if entry is None:
        print(f"postoffice: {qid}: no such message in the queue", file=sys.stderr)
    return entry


def run_cat(args: argparse.Namespace) -> int:
    spool = _spool(args)
    try:
        entry = spool.load(args.queue_id) if _is_id(args.queue_id) else None
        if entry is None:
            raise PostofficeError(f"{args.queue_id}: no such message in the queue")
        out = sys.stdout.buffer
        out.write(f"*** ENVELOPE ({entry.state}) ***\n".encode())
        out.write(entry.envelope.to_bytes())
        if not args.envelope_only:
            out.write(b"*** MESSAGE CONTENTS ***\n")
            with spool.open_body(args.queue_id) as body:
                while chunk := body.read(65536):
                    out.write(chunk)
        out.flush()
    finally:
        spool.close()
    return 0


def _is_id(text: str) -> bool:
    from postoffice.queue.ids import is_queue_id

    return is_queue_id(text)


def _selected(
    spool: FileSpool, args: argparse.Namespace, states: Iterable[QueueState], *, default_all: bool
) -> tuple[list[QueueEntry], int]:
    """The messages the arguments name, in `states`; and how many named ids are unknown."""
    ids: list[str] = args.queue_ids
    filters = _filters(args)
    wanted = set(states)
    if not ids and not filters and not default_all:
        raise PostofficeError("name the messages: queue ids, ALL, or -r/-s filters")
    missing = 0
    if not ids or "ALL" in ids:
        entries = spool.entries(tuple(s for s in QUEUE_STATES if s in wanted))
    else:
        entries = []
        for qid in dict.fromkeys(ids):
            entry = _load(spool, qid)
            if entry is None:
                missing += 1
            elif entry.state in wanted:
                entries.append(entry)
            else:
                print(f"postoffice: {qid}: not {' or '.join(sorted(wanted))}", file=sys.stderr)
                missing += 1
    return [e for e in entries if matches(e.envelope, filters)], missing


def _move(args: argparse.Namespace, verb: str) -> int:
    spool = _spool(args)
    try:
        sources: tuple[QueueState, ...] = ("hold",) if verb == "release" else ("active", "deferred")
        if verb == "delete":
            sources = QUEUE_STATES
        entries, failed = _selected(spool, args, sources, default_all=False)
        for entry in entries:
            qid = entry.envelope.queue_id
            if verb == "delete":
                asyncio.run(spool.remove(qid))
                ok = True
            else:
                ok = asyncio.run(spool.hold(qid) if verb == "hold" else spool.release(qid))
            if ok:
                print(f"{qid}: {_PAST[verb]}")
            else:
                print(f"postoffice: {qid}: no longer {' or '.join(sources)}", file=sys.stderr)
                failed += 1
    finally:
        spool.close()
    return 1 if failed else 0


_PAST = {"hold": "held", "release": "released", "delete": "deleted"}


def run_hold(args: argparse.Namespace) -> int:
    return _move(args, "hold")


def run_release(args: argparse.Namespace) -> int:
    return _move(args, "release")


def run_delete(args: argparse.Namespace) -> int:
    return _move(args, "delete")


def _requeue(spool: FileSpool, entries: list[QueueEntry]) -> list[str]:
    chosen = {e.envelope.queue_id for e in entries if e.state == "deferred"}
    return asyncio.run(requeue_where(spool, lambda e: e.envelope.queue_id in chosen))


def run_requeue(args: argparse.Namespace) -> int:
    spool = _spool(args)
    try:
        entries, failed = _selected(spool, args, ("active", "deferred"), default_all=False)
        for qid in _requeue(spool, entries):
            print(f"{qid}: requeued")
        if entries and not server_running(spool.trigger_path):
            print(
                "postoffice: no server is running: requeued mail goes out when "
                "`postoffice serve` starts",
                file=sys.stderr,
            )
    finally:
        spool.close()
    return 1 if failed else 0


def run_flush(args: argparse.Namespace) -> int:
    spool = _spool(args)
    try:
        if not server_running(spool.trigger_path):
            print("postoffice: cannot flush the queue: no server is running", file=sys.stderr)
            return EX_TEMPFAIL
        entries, failed = _selected(spool, args, ("active", "deferred"), default_all=True)
        moved = _requeue(spool, entries)
        spool.pull_trigger()
    finally:
        spool.close()
    n = len(moved)
    print(f"queue run requested ({n} deferred message{'s' if n != 1 else ''} requeued)")
    return 1 if failed else 0


# --- sendmail -q ---------------------------------------------------------------------------


def run_sendmail_q(
    config_path: str | None, filters: Sequence[Filter], interval: float | None
) -> int:
    """`sendmail -q[R|S|I substr]` and `-qINTERVAL` (see cli/sendmail.py); the exit status."""
    from postoffice.config.load import load_config
    from postoffice.queue.spool import FileSpool

    config = load_config(config_path)
    if interval is not None:
        print(
            f"sendmail: the running server runs the queue every "
            f"{config.queue.run_interval:g}s ([queue] run_interval); "
            f"-q{interval:g}s changes nothing (and runs nothing now)"
        )
        return 0
    spool = FileSpool(config.state_dir)
    try:
        if not server_running(spool.trigger_path):
            print(
                "sendmail: no postoffice server is running to deliver the queue "
                "(start `postoffice serve`)",
                file=sys.stderr,
            )
            return EX_TEMPFAIL
        try:
            asyncio.run(requeue_where(spool, lambda e: matches(e.envelope, filters)))
        except TempFail as e:
            print(f"sendmail: cannot requeue: {e.reason}", file=sys.stderr)
            return EX_TEMPFAIL
        spool.pull_trigger()
    finally:
        spool.close()
    return 0
