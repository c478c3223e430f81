"""observe.log — the mail log: Postfix-shaped syslog lines to stderr and a file; line formatters.

Description:
    `setup_logging(file=, level=, stderr=, program=, hostname=)` configures
    the standard library's root logger so that every record comes out as

        Nov 21 17:27:16 mx postoffice/smtpd[1234]: 01JD7Q4W2N: client=localhost[127.0.0.1]

    — the syslog line shape Postfix logs in, which pflogsumm, logwatch,
    fail2ban and friends read: local time "Mmm dd hh:mm:ss" (English month,
    day padded with a space), host name, program/component[pid], message.
    The component comes from the logger name through COMPONENTS (longest
    dotted prefix wins), in Postfix's process names:

        postoffice.smtp, .smtp.session, .smtp.server, .net, .policy → smtpd
        postoffice.smtp.client, .delivery.smtp                        → smtp
        postoffice.queue, .queue.manager, postoffice.mail             → qmgr
        postoffice.queue.spool                                        → cleanup
        postoffice.queue.bounce                                       → bounce
        postoffice.delivery.local                                     → local
        postoffice.delivery.pipe / .lmtp / .qmtp                      → pipe / lmtp / qmtp
        postoffice.cli.sendmail / postoffice.pickup                   → sendmail / pickup
        postoffice.pop3 / postoffice.imap / postoffice.auth           → pop3d / imapd / auth
        postoffice.app, postoffice.cli, postoffice (root)             → master

    Other postoffice.X loggers use X; foreign loggers (asyncio…) use their
    first name component. Records of level WARNING and above get Postfix's
    "warning: ", "error: ", "fatal: " prefix.

    Output goes to stderr (when `stderr`) and is appended to `file` (when
    given): parent directories are created and a new file gets mode 0640.
    After logrotate moves it away, `reopen()` closes and reopens it: the
    server calls it on SIGHUP (app.py owns signal handling), so rotate with
    `postrotate kill -HUP <pid>` as for syslogd. Calling `setup_logging` again
    (configuration reload) replaces the handlers it installed before and
    leaves other handlers (pytest's caplog) alone.

    The line formatters return the message text after the component prefix,
    queue id first, in Postfix's `key=value, key=value` shape:

        from_line       QID: from=<a@b>, size=N, nrcpt=N (queue active)
        delivery_line   QID: to=<c@d>, [orig_to=<e@f>, ]relay=local, delay=0.12,
                        delays=0.01/0/0/0.11, dsn=2.0.0, status=sent (delivered to maildir)
        client_line     QID: client=name[1.2.3.4][, sasl_method=PLAIN, sasl_username=u]
        message_id_line QID: message-id=<id@host>
        removed_line    QID: removed
        expired_line    QID: from=<a@b>, status=expired, returned to sender
        bounce_line     QID: sender non-delivery notification: NEWQID
        connect_line    connect from name[1.2.3.4]
        disconnect_line disconnect from name[1.2.3.4] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5
        reject_line     NOQUEUE: reject: RCPT from name[1.2.3.4]: 550 5.1.1 <x@y>: User unknown;
                        from=<a@b> to=<x@y> proto=ESMTP helo=<h>

    Delays are formatted as Postfix does with its default
    delay_logging_resolution_limit of 2: two significant digits, at most two
    decimals, trailing zeros dropped ("0", "0.01", "0.18", "2.4", "38",
    "1038").

Security:
    Every value interpolated into a line has CR, LF and other control
    characters replaced with "?" so a peer cannot forge log lines.

Config:
    [log] file, [log] level; hostname.

See also:
    Postfix qmgr(8), local(8), smtpd(8) logging; postconf(5)
    delay_logging_resolution_limit; pflogsumm(1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Logger name prefix → Postfix-style component name (the longest prefix wins).
COMPONENTS: dict[str, str] = {
    "postoffice": "master",
    "postoffice.app": "master",
    "postoffice.cli": "master",
    "postoffice.cli.sendmail": "sendmail",
    "postoffice.pickup": "pickup",
    "postoffice.cleanup": "cleanup",
    "postoffice.net": "smtpd",
    "postoffice.policy": "smtpd",
    "postoffice.smtp": "smtpd",
    "postoffice.smtp.client": "smtp",
    "postoffice.mail": "qmgr",
    "postoffice.queue": "qmgr",
    "postoffice.queue.spool": "cleanup",
    "postoffice.queue.bounce": "bounce",
    "postoffice.routing": "qmgr",
    "postoffice.delivery": "qmgr",
    "postoffice.delivery.local": "local",
    "postoffice.delivery.smtp": "smtp",
    "postoffice.delivery.pipe": "pipe",
    "postoffice.delivery.lmtp": "lmtp",
    "postoffice.delivery.qmtp": "qmtp",
    "postoffice.pop3": "pop3d",
    "postoffice.imap": "imapd",
    "postoffice.auth": "auth",
    "postoffice.sasl": "auth",
    "postoffice.maps": "postmap",
    "postoffice.dns": "dns",
    "postoffice.store": "local",
    "postoffice.observe": "master",
}
_SEVERITY = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "fatal: "}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def component_for(logger_name: str) -> str:
    """The component name for a logger (see COMPONENTS)."""
    name = logger_name
    while name and name != "postoffice":
        found = COMPONENTS.get(name)
        if found is not None:
            return found
        name = name.rpartition(".")[0]
    first, _, rest = logger_name.partition(".")
    if first == "postoffice" and rest:
        return rest.partition(".")[0]
    return COMPONENTS["postoffice"] if not logger_name or first == "postoffice" else first


def syslog_time(when: float) -> str:
    """`Nov 21 17:27:16` (local time, day padded with a space), locale-independent."""
    t = time.localtime(when)
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


class SyslogFormatter(logging.Formatter):
    """Formats records as `Mmm dd hh:mm:ss host program/component[pid]: message`."""

    def __init__(self, *, hostname: str, program: str) -> None:
        super().__init__()
        self.hostname = hostname
        self.program = program
        self._components: dict[str, str] = {}

    def format(self, record: logging.LogRecord) -> str:
        component = self._components.get(record.name)
        if component is None:
            component = self._components[record.name] = component_for(record.name)
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        prefix = (
            f"{syslog_time(record.created)} {self.hostname} "
            f"{self.program}/{component}[{record.process}]: "
        )
        severity = _SEVERITY.get(record.levelno, "")
        # One record may span lines (a traceback): prefix each, as syslog would.
        return "\n".join(prefix + severity + line for line in message.split("\n"))


class _Ours:
    """Marks the handlers setup_logging installed, so a second call replaces only them."""


class _Batching(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes a record into the stream's buffer and flushes once per loop iteration.

    On the event loop a flush per line cost a write(2) each and, measured
    under SMTP load, a sixth of the loop's time; now every line logged in
    one iteration goes out in one write. Off the loop (worker threads, the
    CLI) each record is flushed at once, as before. A kill -9 can lose the
    lines of the iteration it interrupts, as with syslog's own buffering.
    """

    _flush_pending = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.stream.flush()
                return
            if not self._flush_pending:
                self._flush_pending = True
                loop.call_soon(self._flush_soon)
        except Exception:
            self.handleError(record)

    def _flush_soon(self) -> None:
        self.acquire()
        try:
            self._flush_pending = False
            if self.stream is not None and not self.stream.closed:
                self.stream.flush()
        finally:
            self.release()


class _StderrHandler(_Batching, _Ours):
    def close(self) -> None:
        self.acquire()
        try:
            stream = self.stream
            if stream is not sys.stderr and stream is not None and not stream.closed:
                stream.flush()
                stream.close()
        finally:
            self.release()
        super().close()


class _FileHandler(_Batching, logging.FileHandler, _Ours):
    """Appends to the log file. Not WatchedFileHandler: its stat() per line cost
    measurable CPU under load; the server reopens the file on SIGHUP instead
    (newsyslog/logrotate's `postrotate` convention)."""


def _stderr_stream() -> Any:
    """A block-buffered stream on fd 2 (sys.stderr flushes every line), or
    sys.stderr itself when it is not a real file (a test's capture)."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return sys.stderr
    return open(fd, "w", buffering=65536, encoding="utf-8", errors="backslashreplace", closefd=True)


def _create_log_file(path: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o750, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    os.close(fd)


def setup_logging(
    *,
    file: str | None,
    level: str,
    stderr: bool = True,
    program: str = "postoffice",
    hostname: str | None = None,
) -> None:
    """Configure the root logger for the mail log (see the module manual).

    Raises ValueError for an unknown level and OSError when the file cannot
    be created."""
    try:
        numeric = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})") from None
    formatter = SyslogFormatter(hostname=hostname or socket.gethostname(), program=program)
    new: list[logging.Handler] = []
    if file:
        _create_log_file(file)
        new.append(_FileHandler(file, encoding="utf-8", errors="backslashreplace"))
    if stderr:
        new.append(_StderrHandler(_stderr_stream()))
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Ours):
            root.removeHandler(handler)
            handler.close()
    for handler in new:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(numeric)


def reopen() -> None:
    """Close and reopen the log file (on SIGHUP, after an external rotation)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _FileHandler):
            handler.acquire()
            try:
                handler.close()
                handler.stream = handler._open()
            finally:
                handler.release()


def shutdown_logging() -> None:
    """Remove and close the handlers setup_logging installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Ours):
            root.removeHandler(handler)
            handler.close()


# --- line formatters ---------------------------------------------------------------


def _clean(value: object) -> str:
    return _CONTROL.sub("?", str(value))


def format_delay(seconds: float) -> str:
    """A delay as Postfix logs it: two significant digits, at most two decimals."""
    if seconds <= 0:
        return "0"
    if seconds >= 10:
        return str(round(seconds))
    digits = 1 if seconds >= 1 else 2
    text = f"{seconds:.{digits}f}".rstrip("0").rstrip(".")
    return text


def from_line(qid: str, sender: str, size: int, nrcpt: int) -> str:
    """`QID: from=<a@b>, size=N, nrcpt=N (queue active)` (Postfix qmgr)."""
    return f"{_clean(qid)}: from=<{_clean(sender)}>, size={size}, nrcpt={nrcpt} (queue active)"


def delivery_line(
    qid: str,
    rcpt: str,
    relay: str,
    delay: float,
    delays: tuple[float, float, float, float],
    dsn: str,
    status: str,
    reply_text: str,
    *,
    orig_to: str | None = None,
) -> str:
    """`QID: to=<c@d>, relay=local, delay=0.12, delays=a/b/c/d, dsn=2.0.0, status=sent (text)`.

    `delays` are Postfix's a/b/c/d: before the queue manager, in it,
    connection setup, transmission. `status` is sent, deferred, bounced or
    expired. `orig_to` (the address before aliasing) follows `to` when it
    differs."""
    parts = [f"to=<{_clean(rcpt)}>"]
    if orig_to is not None and orig_to != rcpt:
        parts.append(f"orig_to=<{_clean(orig_to)}>")
    parts += [
        f"relay={_clean(relay)}",
        f"delay={format_delay(delay)}",
        "delays=" + "/".join(format_delay(d) for d in delays),
        f"dsn={_clean(dsn)}",
        f"status={_clean(status)} ({_clean(reply_text)})",
    ]
    return f"{_clean(qid)}: " + ", ".join(parts)


def client_line(
    qid: str,
    client_name: str,
    client_ip: str,
    *,
    sasl_method: str | None = None,
    sasl_username: str | None = None,
) -> str:
    """`QID: client=name[ip]` (Postfix smtpd), with the SASL login when there was one."""
    line = f"{_clean(qid)}: client={_clean(client_name or 'unknown')}[{_clean(client_ip)}]"
    if sasl_method:
        line += f", sasl_method={_clean(sasl_method)}"
    if sasl_username:
        line += f", sasl_username={_clean(sasl_username)}"
    return line


def message_id_line(qid: str, message_id: str) -> str:
    """`QID: message-id=<id@host>` (Postfix cleanup); message_id as in the header."""
    return f"{_clean(qid)}: message-id={_clean(message_id.strip())}"


def removed_line(qid: str) -> str:
    """`QID: removed` (Postfix qmgr: the message left the queue)."""
    return f"{_clean(qid)}: removed"


def expired_line(qid: str, sender: str) -> str:
    """`QID: from=<a@b>, status=expired, returned to sender` (Postfix qmgr)."""
    return f"{_clean(qid)}: from=<{_clean(sender)}>, status=expired, returned to sender"


def bounce_line(qid: str, new_qid: str, kind: str = "non-delivery") -> str:
    """`QID: sender non-delivery notification: NEWQID` (Postfix bounce; kind: delay, success)."""
    return f"{_clean(qid)}: sender {_clean(kind)} notification: {_clean(new_qid)}"


def connect_line(client_name: str, client_ip: str) -> str:
    """`connect from name[ip]` (Postfix smtpd)."""
    return f"connect from {_clean(client_name or 'unknown')}[{_clean(client_ip)}]"


def disconnect_line(
    client_name: str, client_ip: str, commands: Mapping[str, int] | None = None
) -> str:
    """`disconnect from name[ip] ehlo=1 mail=1 ... commands=N` (Postfix ≥ 3.0 smtpd)."""
    line = f"disconnect from {_clean(client_name or 'unknown')}[{_clean(client_ip)}]"
    if commands:
        line += "".join(f" {_clean(k)}={v}" for k, v in commands.items())
        line += f" commands={sum(commands.values())}"
    return line


def reject_line(
    *,
    qid: str | None,
    stage: str,
    client_name: str,
    client_ip: str,
    reply: str,
    sender: str | None = None,
    rcpt: str | None = None,
    proto: str | None = None,
    helo: str | None = None,
) -> str:
    """`NOQUEUE: reject: RCPT from name[ip]: REPLY; from=<a> to=<x> proto=ESMTP helo=<h>`.

    `stage` is the command (CONNECT, EHLO, MAIL, RCPT, DATA, END-OF-MESSAGE);
    `reply` the full reply as sent, e.g. "550 5.1.1 <x@y>: User unknown"."""
    line = (
        f"{_clean(qid) if qid else 'NOQUEUE'}: reject: {_clean(stage)} from "
        f"{_clean(client_name or 'unknown')}[{_clean(client_ip)}]: {_clean(reply)};"
    )
    if sender is not None:
        line += f" from=<{_clean(sender)}>"
    if rcpt is not None:
        line += f" to=<{_clean(rcpt)}>"
    if proto:
        line += f" proto={_clean(proto)}"
    if helo:
        line += f" helo=<{_clean(helo)}>"
    return line
