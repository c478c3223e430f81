"""`sendmail` and `mailq`: the sendmail-compatible local submission commands.

Description:
    `sendmail [flags] [recipient ...] < message` queues one message without
    the network: it writes straight into the spool (the same commit as
    SMTP: fsync, rename, directory fsync) and pulls the spool's trigger so a
    running `postoffice serve` delivers at once (qmail-inject/qmail-queue's
    role; a server that is not running picks it up at its next start).

    Flags (the original tool's):
      -t            take recipients from To:, Cc:, Bcc: (Bcc: is removed)
      -f ADDR, -r ADDR  envelope sender (default: login name @ hostname)
      -F NAME       full name for a From: that has to be added
      -i, -oi       a line with a single "." does not end the message
      -N DSN        NOTIFY for every recipient (never | success,failure,delay)
      -R RET        full | hdrs (RFC 3461 RET); -V ENVID
      -B TYPE       7BIT | 8BITMIME
      -bm           deliver mail (the default); -bp  list the queue (= mailq)
      -bv ADDR...   verify addresses: sendmail's one-line verdicts (cli/addrtest.py)
      -bt           address test mode on stdin (cli/addrtest.py)
      -C FILE       another configuration file (sendmail's -C)
      -q            one queue run: every deferred message is requeued (due
                    now) and the running `postoffice serve` delivers the
                    queue; without a running server: one line, exit 75
      -qR S, -qS S, -qI S   the same for the messages with a pending
                    recipient / sender / queue id containing S (case-
                    insensitive; -qRS attached works too, -q!R S negates;
                    several of a kind are or-ed, kinds and-ed: sendmail(8))
      -q20m, -q1h30m   a queue-run interval (units s m h d w, bare numbers
                    are minutes): the interval is the running server's
                    `[queue] run_interval`; the command says so and exits 0
      -odi -odb -odq -oem -oep -om -v  accepted for compatibility; no effect yet
    Missing Date:, Message-ID: and From: are added (local submissions only,
    RFC 6409 §8); a leading Unix "From " line is dropped; line endings are
    normalised to CRLF. Unknown local users are refused before queueing.

    Exit codes follow sysexits.h: 0 queued, 64 usage, 67 no such user,
    73/74/75 cannot write the queue (temporary), 78 configuration.

Security:
    Needs write access to the spool: run it as the server's user (a
    privilege-free pickup directory comes with the administration issue).

See also:
    message/submission.py, queue/spool.py, RFC 6409 §8, RFC 3461 §4.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import sys
import time
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Literal

from postoffice.errors import ConfigError, PostofficeError, TempFail

EX_OK, EX_USAGE, EX_NOUSER, EX_SOFTWARE, EX_CANTCREAT, EX_TEMPFAIL, EX_CONFIG = (
    0, 64, 67, 70, 73, 75, 78,
)  # fmt: skip

_IGNORED = {"-odi", "-odb", "-odq", "-odd", "-oem", "-oep", "-oeq", "-oew", "-om", "-v", "-U"}


class UsageError(Exception):
    pass


@dataclass(slots=True)
class Options:
    mode: str = "bm"
    from_headers: bool = False
    dot_ends: bool = True
    sender: str | None = None
    full_name: str | None = None
    notify: frozenset[str] | None = None
    ret: str | None = None
    envid: str | None = None
    body: str = "7BIT"
    config: str | None = None
    recipients: list[str] = field(default_factory=list)
    queue_run: bool = False  # -q, -qR, -qS, -qI
    queue_interval: float | None = None  # -q20m (seconds)
    queue_filters: list[tuple[str, str, bool]] = field(default_factory=list)  # (R|S|I, text, !)


def parse_args(argv: list[str]) -> Options:
    """sendmail's flag syntax: `-fADDR` or `-f ADDR`, `-oi`, `--` ends flags."""
    opts = Options()
    i = 0

    def value(flag: str, arg: str) -> str:
        nonlocal i
        if len(arg) > len(flag):
            return arg[len(flag) :]
        i += 1
        if i >= len(argv):
            raise UsageError(f"option {flag} needs a value")
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            opts.recipients.extend(argv[i + 1 :])
            break
        if not arg.startswith("-") or arg == "-":
            opts.recipients.append(arg)
        elif arg in ("-t",):
            opts.from_headers = True
        elif arg in ("-i", "-oi"):
            opts.dot_ends = False
        elif arg.startswith("-b"):
            mode = arg[2:]
            if mode not in ("m", "p", "v", "t"):
                raise UsageError(f"mode {arg} is not supported (only -bm, -bp, -bv and -bt)")
            opts.mode = "b" + mode
        elif arg.startswith(("-f", "-r")):
            opts.sender = value(arg[:2], arg)
        elif arg.startswith("-F"):
            opts.full_name = value("-F", arg)
        elif arg.startswith("-C"):
            opts.config = value("-C", arg)
        elif arg.startswith("-N"):
            words = {w.strip().upper() for w in value("-N", arg).split(",") if w.strip()}
            if (
                not words
                or not words <= {"NEVER", "SUCCESS", "FAILURE", "DELAY"}
                or ("NEVER" in words and len(words) > 1)
            ):
                raise UsageError("-N takes never or a list of success,failure,delay")
            opts.notify = frozenset(words)
        elif arg.startswith("-R"):
            ret = value("-R", arg).upper()
            if ret not in ("FULL", "HDRS"):
                raise UsageError("-R takes full or hdrs")
            opts.ret = ret
        elif arg.startswith("-V"):
            opts.envid = value("-V", arg)
        elif arg.startswith("-B"):
            body = value("-B", arg).upper()
            if body not in ("7BIT", "8BITMIME"):
                raise UsageError("-B takes 7BIT or 8BITMIME")
            opts.body = body
        elif arg.startswith("-q"):
            if _queue_flag(opts, arg, argv[i + 1] if i + 1 < len(argv) else None):
                i += 1  # -qR substr: the substring was the next argument
        elif arg in _IGNORED or arg.startswith(("-o", "-L", "-X", "-h")):
            pass  # sendmail options with no meaning here; accepted like sendmail does
        else:
            raise UsageError(f"unknown option {arg}")
        i += 1
    return opts


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INTERVAL = re.compile(r"(?:\d{1,9}[smhdw]?)+")


def _queue_flag(opts: Options, arg: str, following: str | None) -> bool:
    """-q, -q[!]R|S|I substr, -qINTERVAL (sendmail(8)); True when it took `following`."""
    rest = arg[2:]
    negate = rest.startswith("!")
    if negate:
        rest = rest[1:]
    if rest[:1] in ("R", "S", "I") and rest:
        text = rest[1:] or following
        if not text:
            raise UsageError(f"option {arg} needs a substring")
        opts.queue_filters.append((rest[0], text, negate))
        opts.queue_run = True
        return len(rest) == 1
    if negate:
        raise UsageError("-q! takes R, S or I")
    if not rest:
        opts.queue_run = True
    elif _INTERVAL.fullmatch(rest):
        seconds = 0
        for number, unit in re.findall(r"(\d+)([smhdw]?)", rest):
            seconds += int(number) * _UNITS[unit or "m"]  # sendmail: minutes by default
        opts.queue_interval = float(seconds)
    else:
        raise UsageError(f"option {arg} is not supported (-q, -qR, -qS, -qI, -qINTERVAL)")
    return False


def read_message(stream: object, *, dot_ends: bool) -> bytes:
    """Read the message from stdin; without -i a lone "." line ends it."""
    assert hasattr(stream, "readline")
    chunks: list[bytes] = []
    while True:
        line = stream.readline()
        if not line:
            break
        if dot_ends and line.rstrip(b"\r\n") == b".":
            break
        chunks.append(line)
    return b"".join(chunks)


def _addresses(values: list[str]) -> list[str]:
    return [a.strip() for _, a in getaddresses(values) if a.strip()]


def submit(opts: Options, data: bytes) -> tuple[str, list[str]]:
    """Queue the message; returns (queue id, refused recipients). Raises on failure."""
    from postoffice.auth.passwd_file import UserDB
    from postoffice.config.load import load_config
    from postoffice.message import submission
    from postoffice.policy.relay import RecipientPolicy
    from postoffice.queue.envelope import Envelope, EnvelopeRecipient
    from postoffice.queue.spool import FileSpool
    from postoffice.routing.local import LocalRouter
    from postoffice.routing.resolve import Router
    from postoffice.routing.targets import envelope_recipients

    config = load_config(opts.config)
    router = LocalRouter(local_domains=config.local_domains, hostname=config.hostname)
    users = UserDB.load(config.users_file)
    resolver = Router.from_config(config, user_exists=users.exists)
    policy = RecipientPolicy(
        local_domains=config.local_domains,
        user_exists=users.exists,
        trusted_networks=("127.0.0.0/8",),
        resolve=resolver.resolve,
    )
    login = _login_name()
    sender = opts.sender if opts.sender is not None else f"{login}@{config.hostname}"
    sender = "" if sender in ("<>", "") else router.qualify(sender.strip("<>"))
    wanted = _addresses(opts.recipients)
    if opts.from_headers:
        wanted += submission.recipients_from_headers(submission.normalize_line_endings(data))
    if not wanted:
        raise UsageError("no recipients given (name them, or use -t)")
    accepted: list[str] = []
    refused: list[str] = []
    recipients: list[EnvelopeRecipient] = []
    for raw in wanted:
        rcpt = router.qualify(raw)
        if rcpt in accepted:
            continue
        decision = policy.check_rcpt(rcpt, client_ip="127.0.0.1")
        (accepted if decision.accepted else refused).append(rcpt)
        if not decision.accepted:
            continue
        if decision.resolution is None:
            recipients.append(EnvelopeRecipient(address=rcpt, notify=opts.notify))
        else:  # aliases, virtusertable ...: queue what routing resolved
            recipients += envelope_recipients(decision.resolution, rcpt, notify=opts.notify)
    if not accepted:
        return "", refused
    spool = FileSpool(config.state_dir)
    try:
        msg = spool.begin()
        now = time.time()
        author = sender
        if opts.full_name and sender:
            author = f'"{opts.full_name}" <{sender}>'
        body = submission.complete_headers(
            data, sender=author, hostname=config.hostname, now=now, queue_id=msg.queue_id
        )
        if opts.from_headers:
            body = submission.remove_bcc(body)
        msg.write(_received(config.hostname, login, msg.queue_id, now))
        msg.write(body)
        envelope = Envelope(
            queue_id=msg.queue_id,
            sender=sender,
            recipients=tuple(recipients),
            arrival_time=now,
            size=msg.size,
            body_type=opts.body,
            ret=opts.ret,
            envid=opts.envid,
            client_address="127.0.0.1",
            client_name="localhost",
            helo="",
            protocol="local",
            local_submission=True,
        )
        try:
            asyncio.run(spool.commit(msg, envelope))
        except BaseException:
            msg.abort()
            raise
        spool.pull_trigger()
    finally:
        spool.close()
    return msg.queue_id, refused


def _queue_run(opts: Options) -> int:
    from postoffice.cli.queue import Filter, run_sendmail_q

    kinds: dict[str, Literal["recipient", "sender", "queue_id"]] = {
        "R": "recipient", "S": "sender", "I": "queue_id",
    }  # fmt: skip
    filters = [Filter(kind=kinds[k], text=t, negate=n) for k, t, n in opts.queue_filters]
    return run_sendmail_q(opts.config, filters, opts.queue_interval)


def _received(hostname: str, login: str, queue_id: str, now: float) -> bytes:
    from postoffice.message.headers import format_date

    # RFC 5321 §4.4 does not cover local submission; sendmail writes this shape.
    user = "".join(c for c in login if c.isalnum() or c in "._-") or "unknown"
    return (
        f"Received: (from {user}@localhost)\r\n\tby {hostname} (postoffice)"
        f" id {queue_id};\r\n\t{format_date(now)}\r\n"
    ).encode()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
        if opts.queue_run or opts.queue_interval is not None:
            return _queue_run(opts)
        if opts.mode == "bp":
            return mailq_main(["-C", opts.config] if opts.config else [])
        if opts.mode in ("bv", "bt"):
            from postoffice.cli import addrtest

            return addrtest.run(opts.mode, opts.config, opts.recipients)
        data = read_message(sys.stdin.buffer, dot_ends=opts.dot_ends)
        qid, refused = submit(opts, data)
    except UsageError as e:
        print(f"sendmail: {e}", file=sys.stderr)
        return EX_USAGE
    except ConfigError as e:
        print(f"sendmail: {e}", file=sys.stderr)
        return EX_CONFIG
    except TempFail as e:
        print(f"sendmail: cannot queue the message: {e.reason}", file=sys.stderr)
        return EX_TEMPFAIL
    except (PostofficeError, OSError) as e:
        print(f"sendmail: cannot queue the message: {e}", file=sys.stderr)
        return EX_CANTCREAT
    except KeyboardInterrupt:
        return 130
    for rcpt in refused:
        print(f"sendmail: {rcpt}... User unknown", file=sys.stderr)
    if not qid:
        return EX_NOUSER
    return EX_OK


def mailq_main(argv: list[str] | None = None) -> int:
    """`mailq` (= `sendmail -bp`, `postoffice queue list`)."""
    from postoffice.cli.main import main as postoffice_main

    argv = sys.argv[1:] if argv is None else argv
    config: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i].startswith("-C"):
            v = argv[i][2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            i += 0 if argv[i][2:] else 1
            config = ["-c", v]
        else:
            rest.append(argv[i])
        i += 1
    if rest and rest != ["-v"]:
        print(f"mailq: unknown option {rest[0]}", file=sys.stderr)
        return EX_USAGE
    return postoffice_main([*config, "queue", "list"])
