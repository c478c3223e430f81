"""delivery.pipe — the program delivery agent: a queued message → a |command, as its user.

Description:
    `ProgramAgent` implements queue.interfaces.DeliveryAgent for recipients
    that routing resolved to a Program target (`"|command"` in aliases,
    ~/.forward or .qmail; routing/targets.py). For each recipient it

    1. checks the command the way sendmail's smrsh(8) does (see Security)
       and splits it into words with shlex — there is never a shell;
    2. looks up the target's user (`Program.user`; `default_user` when
       empty) in the passwd database: uid 0 (or gid 0) is refused with
       550 5.7.1 "program delivery as root refused";
    3. starts the helper delivery/runas.py, which becomes that user (its
       primary and supplementary groups too), changes to its home directory
       (`Program.home`, else the passwd home, else /), sets umask 077 and
       execs the program with a clean environment (below). The helper is a
       session leader, so the program and anything it starts share one
       process group;
    4. writes the message to the program's stdin in the form Postfix
       local(8) gives external commands ("EXTERNAL COMMAND DELIVERY"): a
       `From sender time_stamp` line, `Return-Path: <sender>`,
       `Delivered-To: recipient`, then the message, all with LF line
       endings and no ">From" quoting, ending in LF, no empty line added.
       A program that exits without reading all of it is judged by its
       exit status alone (qmail-local does the same);
    5. captures stdout and stderr together (the first OUTPUT_LIMIT octets;
       the rest is read and dropped so the program never blocks on a full
       pipe), and waits at most `timeout` seconds for the program to exit
       and close its output; then the whole process group gets SIGKILL.

    Blocking work (passwd and group lookups, stat of the program, opening
    and reading the queued message) runs in `executor` (the loop's default
    when None); the process is driven with asyncio's subprocess API, so no
    thread waits for it. Recipients run concurrently, at most
    MAX_PARALLEL at a time per call.

Environment:
    The program gets only these variables (no variable of the server leaks
    through). Values that come from the envelope have every character
    outside `A-Za-z0-9!@%-_=+:,./` replaced by "_" (Postfix's default
    command_expansion_filter), so a shell script that uses them carelessly
    is not open to injection; variables with no value are left out.

        PATH=/usr/bin:/bin   SHELL=/bin/sh   HOME USER LOGNAME  (the account it runs as)
        SENDER               its copy's sender ("" for <>)     Postfix local(8), qmail-command(8)
        RECIPIENT            the recipient the target is for   Postfix local(8), qmail-command(8)
        ORIGINAL_RECIPIENT   the recipient before aliasing     Postfix local(8)
        LOCAL                its local part                    Postfix local(8), qmail-command(8)
        DOMAIN, HOST         its domain                        Postfix local(8); qmail-command(8)
        EXTENSION, EXT       the part after recipient_delimiter Postfix local(8); qmail-command(8)
        RPLINE               "Return-Path: <SENDER>\\n"         qmail-command(8)
        DTLINE               "Delivered-To: RECIPIENT\\n"       qmail-command(8)
        QUEUE_ID             the queue id                      Postfix pipe(8) ${queue_id}
        CLIENT_ADDRESS, CLIENT_HELO, CLIENT_HOSTNAME, CLIENT_PROTOCOL   Postfix local(8)

    USER and LOGNAME name the account the program runs as (qmail's USER;
    Postfix puts the recipient's local part there, which differs for alias
    targets run as default_user) so that they agree with HOME.

Arguments:
    Envelope data can also be passed as whole arguments with Postfix
    pipe(8)'s macros: ${sender} (MAILER-DAEMON for <>), ${recipient},
    ${original_recipient}, ${mailbox} (local part), ${user} (local part
    without extension), ${extension}, ${domain}, ${queue_id}, ${size},
    ${client_address}, ${client_helo}, ${client_hostname},
    ${client_protocol}. They are replaced after the command is split into
    words, so a value is never split or interpreted (control characters
    become "_"). A value that would start an argument with "-" (option
    injection, e.g. a sender "-oQ/tmp") makes the delivery bounce with
    550 5.7.1, as Postfix's allow_min_user = no keeps such addresses out.

Exit status:
    sysexits(3) codes as in Postfix's sys_exits.c (the enhanced codes) and
    its pipe_command.c (what is soft):

        0                    Delivered  250 2.0.0 delivered to command
        64 EX_USAGE          Bounced    554 5.3.0 command line usage error
        65 EX_DATAERR        Bounced    554 5.6.0 data format error
        66 EX_NOINPUT        Bounced    554 5.3.0 cannot open input
        67 EX_NOUSER         Bounced    550 5.1.1 user unknown
        68 EX_NOHOST         Bounced    550 5.1.2 host name unknown
        69 EX_UNAVAILABLE    Bounced    554 5.3.0 service unavailable
        70 EX_SOFTWARE       Bounced    554 5.3.0 internal software error
        71 EX_OSERR          Deferred   451 4.3.0 system resource problem
        72 EX_OSFILE         Bounced    554 5.3.0 critical OS file missing
        73 EX_CANTCREAT      Bounced    550 5.2.0 can't create user output file
        74 EX_IOERR          Bounced    554 5.3.0 input/output error
        75 EX_TEMPFAIL       Deferred   451 4.3.0 temporary failure
        76 EX_PROTOCOL       Bounced    554 5.5.0 remote error in protocol
        77 EX_NOPERM         Bounced    550 5.7.0 permission denied
        78 EX_CONFIG         Bounced    554 5.3.5 local configuration error
        99 (qmail)           Delivered  qmail-command(8): success; "ignore the
                             following lines" cannot apply here (the .qmail is
                             already expanded) and is logged
        100 (qmail)          Bounced    554 5.3.0 permanent failure
        111 (qmail)          Deferred   451 4.3.0 temporary failure
        any other            Bounced    554 5.3.0 command died with status N (Postfix)
        killed by a signal   Deferred   451 4.3.0 command died with signal N (Postfix)
        time limit           Deferred   451 4.3.0 command time limit exceeded

    On a non-zero exit, output that begins with an RFC 3463 enhanced
    status code (`5.2.2 mailbox full`) takes precedence, as in Postfix
    local(8): 4.X.Y defers, 5.X.Y bounces, with that code. The reply text
    is the table's text plus ". Command output: " and up to REPLY_OUTPUT
    characters of the output (printable ASCII; the log gets up to
    OUTPUT_LIMIT). Postfix bounces on its time limit; we defer, as
    sendmail does, so a slow program does not lose mail.

Security:
    The command comes from an aliases, .forward or .qmail file; envelope
    data never becomes part of it except through the macros above.

    smrsh(8) semantics (sendmail's restricted shell), unless any_program:
    the first word's directory part is stripped and the basename must
    name an executable regular file in program_dir (symbolic links there
    are followed: that is how an administrator allows /usr/bin/procmail);
    so `|/usr/bin/vacation`, `|../vacation` and `|vacation` all run
    program_dir/vacation, and nothing outside program_dir ever runs. A
    leading "exec " is dropped, as smrsh does. program_dir and the file
    must not be writable by group or others, and must be owned by root or
    the server's uid (whoever can put a program there can run code as
    every user whose .forward names it); otherwise 451 4.3.5 (deferred, so
    the administrator can fix it).

    No shell ever runs: a command with shell syntax — `` ` `` `;` `&` `|`
    `<` `>` `(` `)` `$` (except the macros), CR, LF — is refused with
    550 5.7.1 whatever any_program says; quotes and backslashes are
    honoured by the word splitting only. A pipeline belongs in a script in
    program_dir. With any_program the first word is used as given: an
    absolute path, or a bare name looked up in program_dir, /usr/bin,
    /bin.

    Privileges: the program runs as the target's user, never as uid or
    gid 0 (refused), with that user's groups, umask 077, and the
    environment above. A server not running as root can run programs only
    for its own uid (others: 451 4.3.5). The process group is killed on
    timeout; a program that leaves its process group (setsid) escapes that
    kill, as with Postfix. Reply texts carry no paths; the log detail does.

Config:
    [delivery] program_dir, any_program, program_timeout, default_user;
    [routing] recipient_delimiter.

See also:
    sendmail smrsh(8); Postfix local(8) "EXTERNAL COMMAND DELIVERY",
    pipe(8), sys_exits.c; qmail-command(8), qmail-local(8); sysexits(3);
    RFC 3463 (enhanced status codes); delivery/runas.py (the helper),
    delivery/file.py, routing/targets.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import BinaryIO, Literal

from postoffice.delivery.runas import ENV_VAR, Account, Request, Result
from postoffice.message.headers import build_delivered_to, build_return_path
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import Bounced, Deferred, Delivered, Outcome
from postoffice.routing.targets import Program, Target, from_spec
from postoffice.smtp import replies
from postoffice.smtp.replies import Reply
from postoffice.store.mbox import from_line

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 1024  # octets of program output kept for the log
REPLY_OUTPUT = 200  # characters of it in the reply (DSN) text
MAX_PARALLEL = 8
CHUNK = 64 * 1024
SAFE_PATH = "/usr/bin:/bin"
KILL_GRACE = 5.0  # seconds a file helper gets after SIGTERM (delivery/file.py)

Kind = Literal["delivered", "deferred", "bounced"]

DELIVERED_COMMAND = Reply.of(250, "2.0.0", "delivered to command")
ROOT_REFUSED = Reply.of(550, "5.7.1", "program delivery as root refused")
NOT_ALLOWED = Reply.of(550, "5.7.1", "program not available for mail delivery")
SHELL_SYNTAX = Reply.of(550, "5.7.1", "shell syntax not allowed in program delivery")
DASH_ARGUMENT = Reply.of(550, "5.7.1", "address starting with '-' refused as a program argument")
NOT_FOUND = Reply.of(554, "5.3.0", "program not found")
MISCONFIGURED = Reply.of(451, "4.3.5", "local delivery misconfigured")
TIME_LIMIT = Reply.of(451, "4.3.0", "command time limit exceeded")
LOCAL_ERROR = replies.LOCAL_ERROR

# sysexits(3) → (soft?, enhanced code, text): Postfix global/sys_exits.c.
SYSEXITS: dict[int, tuple[bool, str, str]] = {
    64: (False, "5.3.0", "command line usage error"),
    65: (False, "5.6.0", "data format error"),
    66: (False, "5.3.0", "cannot open input"),
    67: (False, "5.1.1", "user unknown"),
    68: (False, "5.1.2", "host name unknown"),
    69: (False, "5.3.0", "service unavailable"),
    70: (False, "5.3.0", "internal software error"),
    71: (True, "4.3.0", "system resource problem"),
    72: (False, "5.3.0", "critical OS file missing"),
    73: (False, "5.2.0", "can't create user output file"),
    74: (False, "5.3.0", "input/output error"),
    75: (True, "4.3.0", "temporary failure"),
    76: (False, "5.5.0", "remote error in protocol"),
    77: (False, "5.7.0", "permission denied"),
    78: (False, "5.3.5", "local configuration error"),
    # qmail-command(8): 100 hard, 111 soft (99 is handled as success).
    100: (False, "5.3.0", "permanent failure"),
    111: (True, "4.3.0", "temporary failure"),
}
QMAIL_SUCCESS_SKIP = 99

_SHELL_CHARS = re.compile(r"[`;&|<>()\r\n\0]")
_MACRO = re.compile(r"\$\{([a-z_]+)\}")
_ENHANCED = re.compile(r"\A\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9!@%\-_=+:,./]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MACROS = frozenset(
    {
        "sender", "recipient", "original_recipient", "mailbox", "user", "extension",
        "domain", "queue_id", "size", "client_address", "client_helo",
        "client_hostname", "client_protocol",
    }
)  # fmt: skip


class Stop(Exception):
    """A recipient's delivery ends before anything runs: the outcome kind and reply."""

    def __init__(self, kind: Kind, reply: Reply, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.reply = reply
        self.detail = detail


def outcome(kind: Kind, rcpt: EnvelopeRecipient, reply: Reply, detail: str) -> Outcome:
    """The Outcome value of `kind` (relay=local, as Postfix local(8) logs these)."""
    if kind == "delivered":
        return Delivered(recipient=rcpt, reply=reply, relay="local", detail=detail)
    if kind == "deferred":
        return Deferred(recipient=rcpt, reply=reply, relay="local", detail=detail)
    return Bounced(recipient=rcpt, reply=reply, relay="local", detail=detail)


# --- the pieces of an address ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressParts:
    local: str  # unquoted local part
    user: str  # local part without extension
    extension: str
    domain: str

    @classmethod
    def of(cls, address: str, delimiter: str) -> AddressParts:
        at = address.rfind("@")
        local, domain = (address[:at], address[at + 1 :]) if at >= 0 else (address, "")
        if len(local) >= 2 and local[0] == local[-1] == '"':
            local = re.sub(r"\\(.)", r"\1", local[1:-1])  # RFC 5321 §4.1.2 Quoted-string
        user, ext = local, ""
        cut = [i for i in (local.find(c) for c in delimiter) if i > 0]
        if cut:  # the first delimiter character, not at the start (Postfix)
            user, ext = local[: min(cut)], local[min(cut) + 1 :]
        return cls(local=local, user=user, extension=ext, domain=domain.lower())


def env_value(text: str) -> str:
    """Postfix command_expansion_filter: characters outside the safe set become "_"."""
    return _ENV_UNSAFE.sub("_", text)


def command_environment(
    envelope: Envelope, rcpt: EnvelopeRecipient, account: Account, home: str, delimiter: str
) -> dict[str, str]:
    """The whole environment of a program (see Environment in the manual)."""
    parts = AddressParts.of(rcpt.address, delimiter)
    sender = env_value(envelope.sender_for(rcpt))  # the list owner's, when it has one
    recipient = env_value(rcpt.address)
    env = {
        "PATH": SAFE_PATH,
        "SHELL": "/bin/sh",
        "HOME": home,
        "USER": account.name,
        "LOGNAME": account.name,
        "SENDER": sender,
        "RECIPIENT": recipient,
        "ORIGINAL_RECIPIENT": env_value(rcpt.orig or rcpt.address),
        "LOCAL": env_value(parts.local),
        "DOMAIN": env_value(parts.domain),
        "HOST": env_value(parts.domain),
        "EXTENSION": env_value(parts.extension),
        "EXT": env_value(parts.extension),
        "RPLINE": f"Return-Path: <{sender}>\n",
        "DTLINE": f"Delivered-To: {recipient}\n",
        "QUEUE_ID": env_value(envelope.queue_id),
        "CLIENT_ADDRESS": env_value(envelope.client_address),
        "CLIENT_HELO": env_value(envelope.helo),
        "CLIENT_HOSTNAME": env_value(envelope.client_name),
        "CLIENT_PROTOCOL": env_value(envelope.protocol) if envelope.client_address else "",
    }
    keep = {"SENDER", "RECIPIENT", "LOCAL"}  # Postfix exports these even when empty
    return {k: v for k, v in env.items() if v or k in keep}


def macro_values(envelope: Envelope, rcpt: EnvelopeRecipient, delimiter: str) -> dict[str, str]:
    """Postfix pipe(8) macro values for the arguments (control characters → "_")."""
    parts = AddressParts.of(rcpt.address, delimiter)
    values = {
        "sender": envelope.sender_for(rcpt) or "MAILER-DAEMON",
        "recipient": rcpt.address,
        "original_recipient": rcpt.orig or rcpt.address,
        "mailbox": parts.local,
        "user": parts.user,
        "extension": parts.extension,
        "domain": parts.domain,
        "queue_id": envelope.queue_id,
        "size": str(envelope.size),
        "client_address": envelope.client_address,
        "client_helo": envelope.helo,
        "client_hostname": envelope.client_name,
        "client_protocol": envelope.protocol,
    }
    return {k: _CONTROL.sub("_", v) for k, v in values.items()}


# --- the command ---------------------------------------------------------------------


def split_command(command: str) -> list[str]:
    """The words of a `|command` (Stop for shell syntax or an empty command)."""
    text = command.strip()
    if text.startswith("|"):
        text = text[1:].lstrip()
    if text.startswith("exec ") or text.startswith("exec\t"):
        text = text[5:].lstrip()  # smrsh(8) drops a leading "exec"
    bare = _MACRO.sub(lambda m: "" if m.group(1) in MACROS else m.group(0), text)
    if _SHELL_CHARS.search(bare) or "$" in bare:
        raise Stop("bounced", SHELL_SYNTAX, f"shell syntax in command {command!r}")
    try:
        words = shlex.split(text, posix=True)
    except ValueError as e:
        raise Stop("bounced", SHELL_SYNTAX, f"cannot split command {command!r}: {e}") from e
    if not words or not words[0]:
        raise Stop("bounced", NOT_FOUND, f"empty command {command!r}")
    return words


def expand_macros(words: Sequence[str], values: dict[str, str]) -> list[str]:
    """Replace ${name} in each argument; Stop when an expansion would start with "-"."""
    out = [words[0]]
    for word in words[1:]:
        new = _MACRO.sub(lambda m: values[m.group(1)], word)
        if new.startswith("-") and not word.startswith("-"):
            raise Stop("bounced", DASH_ARGUMENT, f"argument {word!r} expands to {new!r}")
        out.append(new)
    return out


def _safe_owner(st: os.stat_result) -> bool:
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def resolve_program(name: str, *, program_dir: str, any_program: bool) -> str:
    """The file to execute for the first word (smrsh(8) rules; blocking: stat)."""
    if any_program:
        if "/" in name:
            if not name.startswith("/"):
                raise Stop("bounced", NOT_FOUND, f"relative program path {name!r}")
            candidates = [name]
        else:
            candidates = [os.path.join(d, name) for d in (program_dir, "/usr/bin", "/bin") if d]
    else:
        base = os.path.basename(name)  # smrsh strips the directory part
        if base in ("", ".", ".."):
            raise Stop("bounced", NOT_ALLOWED, f"program {name!r} not in program_dir")
        candidates = [os.path.join(program_dir, base)]
    for path in candidates:
        try:
            st = os.stat(path)  # follows a symlink in program_dir: allowed
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
            continue
        if not any_program:
            try:
                dir_st = os.stat(program_dir)
            except OSError:
                dir_st = None
            if dir_st is None or not _safe_owner(dir_st) or not _safe_owner(st):
                raise Stop(
                    "deferred",
                    MISCONFIGURED,
                    f"program_dir {program_dir} or {path} is writable by others "
                    "or owned by another user",
                )
        return path
    if any_program:
        raise Stop("bounced", NOT_FOUND, f"program {name!r} not found")
    raise Stop(
        "bounced",
        NOT_ALLOWED,
        f"program {os.path.basename(name)!r} not in program_dir {program_dir}",
    )


def account_for(user: str, what: str) -> Account:
    """The account a target runs as (blocking: NSS); Stop for root or an unknown user."""
    account = Account.lookup(user) if user else None
    if account is None:
        raise Stop("deferred", MISCONFIGURED, f"unknown user {user!r} for {what} delivery")
    if account.uid == 0 or account.gid == 0:
        reply = (
            ROOT_REFUSED
            if what == "program"
            else ROOT_REFUSED.with_text(f"{what} delivery as root refused")
        )
        raise Stop("bounced", reply, f"{what} delivery as {user} (uid/gid 0) refused")
    if os.geteuid() != 0 and account.uid != os.geteuid():
        raise Stop(
            "deferred",
            MISCONFIGURED,
            f"server not running as root cannot run {what} delivery as {user}",
        )
    return account


# --- exit status → outcome ----------------------------------------------------------


def printable(output: bytes, limit: int) -> str:
    """Output for a log or reply: printable ASCII, whitespace runs as one space."""
    text = output.decode("ascii", "replace")
    text = re.sub(r"[^\x21-\x7e]+", " ", text).strip()
    return text[:limit]


def _smtp_code(enhanced: str) -> int:
    if enhanced.startswith("4"):
        return 451
    return 550 if enhanced.split(".")[1] in ("1", "2", "7") else 554


def status_outcome(status: int, output: bytes) -> tuple[Kind, Reply]:
    """Kind and reply for a program that exited with `status` (≥ 0) and printed `output`."""
    if status == 0 or status == QMAIL_SUCCESS_SKIP:
        return "delivered", DELIVERED_COMMAND
    shown = printable(output, REPLY_OUTPUT)
    m = _ENHANCED.match(output.decode("ascii", "replace"))
    if m and m.group(1) in "45":  # Postfix local(8): an enhanced code in the output wins
        enhanced = ".".join(m.groups())
        rest = printable(output[m.end() :], REPLY_OUTPUT) or "command failed"
        kind: Kind = "deferred" if enhanced[0] == "4" else "bounced"
        return kind, Reply.of(_smtp_code(enhanced), enhanced, rest)
    soft, enhanced, text = SYSEXITS.get(
        status, (False, "5.3.0", f"command died with status {status}")
    )
    if shown:
        text = f"{text}. Command output: {shown}"
    return ("deferred" if soft else "bounced"), Reply.of(_smtp_code(enhanced), enhanced, text)


# --- the helper process -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HelperRun:
    """How one run of delivery/runas.py ended."""

    returncode: int | None  # None: could not start; < 0: killed by that signal
    output: bytes  # the first OUTPUT_LIMIT octets of stdout + stderr
    result: Result | None  # the helper's status line, when it wrote one
    timed_out: bool = False
    source_error: str = ""  # reading the queued message failed
    spawn_error: str = ""


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _read_status(fd: int) -> Result | None:
    """The helper's status line; every writer is gone, so this never blocks."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            data += chunk
            if len(data) > 65536:
                break
    line = data.split(b"\n", 1)[0]
    return Result.from_json(line.decode("utf-8", "replace")) if line else None


async def run_helper(
    request: Request,
    source: AsyncIterator[bytes],
    *,
    timeout: float,
    graceful: bool = False,
) -> HelperRun:
    """Start the runas helper for `request`, feed it `source`, wait for its end.

    After `timeout` seconds the process group gets SIGKILL — or, with
    `graceful` (file delivery: the helper truncates what it wrote), SIGTERM
    and KILL_GRACE more seconds before SIGKILL. A failure to read `source`
    kills the same way (SIGTERM first when graceful), so a half-fed helper
    never reports success."""
    rfd, wfd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-m",
            "postoffice.delivery.runas",
            request.mode,
            str(wfd),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"PATH": SAFE_PATH, ENV_VAR: request.to_json()},
            cwd="/",
            pass_fds=(wfd,),
            start_new_session=True,
        )
    except OSError as e:
        os.close(rfd)
        return HelperRun(returncode=None, output=b"", result=None, spawn_error=str(e))
    finally:
        os.close(wfd)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    output = bytearray()
    source_error = ""

    def stop() -> None:
        _kill_group(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)

    async def feed() -> None:
        nonlocal source_error
        try:
            async for chunk in source:
                stdin.write(chunk)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the program stopped reading; its exit status decides
        except OSError as e:
            source_error = f"cannot read queued message: {e.strerror or e}"
            stop()
        finally:
            stdin.close()  # EOF for the helper (and the pipe's transport is released)

    async def drain() -> None:
        while chunk := await stdout.read(CHUNK):
            if len(output) < OUTPUT_LIMIT:
                output.extend(chunk[: OUTPUT_LIMIT - len(output)])

    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(feed(), drain(), proc.wait())
        except TimeoutError:
            timed_out = True
            stop()
            if graceful:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(KILL_GRACE):
                        await proc.wait()
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            # The group is dead, so EOF is near; a process that left the group
            # (setsid) may hold the pipe open: do not wait for it long.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_GRACE):
                    await drain()
        result = _read_status(rfd)
    except BaseException:  # cancelled: leave nothing running
        stop()
        stdin.close()
        raise
    finally:
        os.close(rfd)
    return HelperRun(
        returncode=proc.returncode,
        output=bytes(output),
        result=result,
        timed_out=timed_out,
        source_error=source_error,
    )


# --- the message stream ---------------------------------------------------------------


async def read_chunks(
    source: BinaryIO, executor: Executor | None, head: bytes = b"", *, to_lf: bool
) -> AsyncIterator[bytes]:
    """`head`, then `source` read in the executor; with to_lf CRLF → LF and a final LF."""
    loop = asyncio.get_running_loop()
    if head:
        yield head
    cr = False  # the last chunk ended in CR: maybe half a CRLF
    last = b"\n"
    while data := await loop.run_in_executor(executor, source.read, CHUNK):
        if to_lf:
            if cr:
                data = b"\r" + data
            cr = data.endswith(b"\r")
            data = (data[:-1] if cr else data).replace(b"\r\n", b"\n")
        if data:
            last = data[-1:]
            yield data
    if to_lf:
        tail = b"\r" if cr else b""
        if (tail[-1:] or last) != b"\n":
            tail += b"\n"
        if tail:
            yield tail


def open_queued(opener: Callable[[str], BinaryIO], queue_id: str) -> BinaryIO:
    try:
        return opener(queue_id)
    except OSError as e:
        raise Stop("deferred", LOCAL_ERROR, f"cannot open queued message: {e.strerror or e}") from e


# --- the agent ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    request: Request
    program: str  # for the log


class ProgramAgent:
    """Deliver to |command targets (see the module manual)."""

    def __init__(
        self,
        spool_open_body: Callable[[str], BinaryIO],
        *,
        hostname: str,
        program_dir: str,
        any_program: bool,
        timeout: float,
        default_user: str,
        recipient_delimiter: str = "+",
        executor: Executor | None = None,
    ) -> None:
        self._open_body = spool_open_body
        self.hostname = hostname
        self.program_dir = program_dir
        self.any_program = any_program
        self.timeout = timeout
        self.default_user = default_user
        self.recipient_delimiter = recipient_delimiter
        self._executor = executor
        self._stats = {"delivered": 0, "deferred": 0, "bounced": 0}

    def statistics(self) -> dict[str, int]:
        """Counts of recipient outcomes since start: delivered, deferred, bounced."""
        return dict(self._stats)

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        """One Outcome per recipient, in order (queue.interfaces.DeliveryAgent)."""
        return await deliver_each(recipients, lambda r: self._deliver_one(envelope, r), self._stats)

    async def _deliver_one(self, envelope: Envelope, rcpt: EnvelopeRecipient) -> Outcome:
        loop = asyncio.get_running_loop()
        try:
            target = _target(rcpt)
            if not isinstance(target, Program):
                raise Stop("deferred", MISCONFIGURED, f"not a program target: {rcpt.target!r}")
            plan = await loop.run_in_executor(self._executor, self._plan, envelope, rcpt, target)
            body = await loop.run_in_executor(
                self._executor, open_queued, self._open_body, envelope.queue_id
            )
        except Stop as e:
            log.debug("%s: to=<%s> %s", envelope.queue_id, rcpt.address, e.detail)
            return outcome(e.kind, rcpt, e.reply, e.detail)
        sender = envelope.sender_for(rcpt)
        head = from_line(sender, envelope.arrival_time) + (
            build_return_path(sender) + build_delivered_to(rcpt.address)
        ).replace(b"\r\n", b"\n")
        try:
            run = await run_helper(
                plan.request,
                read_chunks(body, self._executor, head, to_lf=True),
                timeout=self.timeout,
            )
        finally:
            body.close()
        return self._judge(rcpt, plan.program, run)

    def _plan(self, envelope: Envelope, rcpt: EnvelopeRecipient, target: Program) -> _Plan:
        """Blocking: check the command and the user; the helper's request."""
        words = split_command(target.command)
        path = resolve_program(words[0], program_dir=self.program_dir, any_program=self.any_program)
        argv = [
            path,
            *expand_macros(words, macro_values(envelope, rcpt, self.recipient_delimiter))[1:],
        ]
        account = account_for(target.user or self.default_user, "program")
        home = target.home or account.home
        if not os.path.isdir(home):
            home = "/"
        env = command_environment(envelope, rcpt, account, home, self.recipient_delimiter)
        request = Request(
            mode="program",
            uid=account.uid,
            gid=account.gid,
            groups=account.groups,
            cwd=home,
            program=path,
            argv=tuple(argv),
            env=env,
        )
        return _Plan(request=request, program=f"{path} as {account.name}")

    @staticmethod
    def _judge(rcpt: EnvelopeRecipient, program: str, run: HelperRun) -> Outcome:
        shown = printable(run.output, OUTPUT_LIMIT)
        said = f" (output: {shown})" if shown else ""
        if run.spawn_error:
            return outcome("deferred", rcpt, LOCAL_ERROR, f"cannot start helper: {run.spawn_error}")
        if run.source_error:
            return outcome("deferred", rcpt, LOCAL_ERROR, f"{program}: {run.source_error}")
        if run.result is not None:  # the helper failed before exec
            r = run.result
            reply = Reply.of(r.code, r.enhanced, r.text)
            return outcome(r.status, rcpt, reply, f"{program}: {r.reason or r.text}")
        if run.timed_out:
            return outcome("deferred", rcpt, TIME_LIMIT, f"{program}: time limit exceeded{said}")
        code = run.returncode if run.returncode is not None else -1
        if code < 0:
            reply = Reply.of(451, "4.3.0", f"command died with signal {-code}")
            return outcome("deferred", rcpt, reply, f"{program}: killed by signal {-code}{said}")
        kind, reply = status_outcome(code, run.output)
        detail = f"{program}: exit {code}{said}"
        if code == QMAIL_SUCCESS_SKIP:
            detail += " (qmail 99: later .qmail lines are not skipped here)"
        return outcome(kind, rcpt, reply, detail)


_KIND: dict[type, str] = {Delivered: "delivered", Deferred: "deferred", Bounced: "bounced"}


def _target(rcpt: EnvelopeRecipient) -> Target:
    try:
        return from_spec(rcpt.address, rcpt.target)
    except ValueError as e:
        raise Stop("deferred", MISCONFIGURED, f"bad target spec {rcpt.target!r}") from e


async def deliver_each(
    recipients: Sequence[EnvelopeRecipient],
    deliver_one: Callable[[EnvelopeRecipient], Awaitable[Outcome]],
    stats: dict[str, int],
) -> list[Outcome]:
    """Run `deliver_one` for every recipient, MAX_PARALLEL at a time; outcomes in
    order, counted into `stats` (the program and the file agent share this)."""
    limit = asyncio.Semaphore(MAX_PARALLEL)

    async def one(rcpt: EnvelopeRecipient) -> Outcome:
        async with limit:
            return await deliver_one(rcpt)

    outcomes = list(await asyncio.gather(*(one(r) for r in recipients)))
    for o in outcomes:
        stats[_KIND[type(o)]] += 1
    return outcomes
