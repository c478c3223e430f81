"""`postoffice queue`: look at and manage the mail queue.

Description:
    queue list            the queue in sendmail's `mailq` layout (also `mailq`,
                          `sendmail -bp`): id, size, time, sender, reason, recipients
    queue cat ID          the envelope file and the message as queued
    queue hold ID...      keep messages from delivery (hold/)
    queue release ID...   back to active/; the running server picks them up
    queue flush           ask the running server for a queue run now (`sendmail -q`)

    These read the spool directly and need no running server. They exit
    non-zero with one line when an id is unknown.

See also:
    queue/spool.py, queue/mailq.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from postoffice.cli.main import load_config_from_args
from postoffice.errors import PostofficeError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("queue", help="look at and manage the mail queue")
    qsub = p.add_subparsers(dest="queue_command", metavar="COMMAND", required=True)
    ls = qsub.add_parser("list", help="list the queue (mailq)")
    ls.set_defaults(func=run_list)
    cat = qsub.add_parser("cat", help="print a queued message's envelope and content")
    cat.add_argument("queue_id")
    cat.add_argument("--envelope-only", action="store_true", help="only the envelope file")
    cat.set_defaults(func=run_cat)
    hold = qsub.add_parser("hold", help="hold messages (no delivery until released)")
    hold.add_argument("queue_ids", nargs="+", metavar="ID")
    hold.set_defaults(func=run_hold)
    rel = qsub.add_parser("release", help="release held messages")
    rel.add_argument("queue_ids", nargs="+", metavar="ID")
    rel.set_defaults(func=run_release)
    fl = qsub.add_parser("flush", help="ask the running server to deliver the queue now")
    fl.set_defaults(func=run_flush)


def _spool(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from postoffice.queue.spool import FileSpool

    config = load_config_from_args(args)
    return FileSpool(config.state_dir), config


def run_list(args: argparse.Namespace) -> int:
    from postoffice.queue.mailq import format_mailq

    spool, _ = _spool(args)
    try:
        sys.stdout.write(format_mailq(spool.entries(), queue_dir=spool.root))
    finally:
        spool.close()
    return 0


def run_cat(args: argparse.Namespace) -> int:
    spool, _ = _spool(args)
    try:
        entry = spool.load(args.queue_id)
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


def _move(args: argparse.Namespace, hold: bool) -> int:
    spool, _ = _spool(args)
    failed = 0
    try:
        for qid in args.queue_ids:
            ok = asyncio.run(spool.hold(qid) if hold else spool.release(qid))
            if ok:
                print(f"{qid}: {'held' if hold else 'released'}")
            else:
                what = "in the queue" if hold else "on hold"
                print(f"postoffice: {qid}: no such message {what}", file=sys.stderr)
                failed += 1
    finally:
        spool.close()
    return 1 if failed else 0


def run_hold(args: argparse.Namespace) -> int:
    return _move(args, True)


def run_release(args: argparse.Namespace) -> int:
    return _move(args, False)


def run_flush(args: argparse.Namespace) -> int:
    spool, _ = _spool(args)
    try:
        spool.pull_trigger()
    finally:
        spool.close()
    print("queue run requested")
    return 0
