"""The POP3 session: answers the engine's events with the user database and the maildrop.

Description:
    One Pop3Session per connection. It never touches sockets: the adapter
    (pop3/server.py) hands it the engine's events with `handle(events)`
    and passes the answers back to the engine, one per event that needs
    one, in order. `handle` returns the answers at once when no I/O is
    needed (USER, STAT, LIST, DELE, ...) or a coroutine when it is:

    AUTHORIZATION (RFC 1939 §4, §7; RFC 5034)
        USER name        remembered; +OK (the same for any name: RFC 1939
                         §7 lets the server refuse unknown names, which
                         would tell a guesser which names exist)
        PASS password    verified against the users file (then /etc/shadow
                         with [auth] system_accounts) in a worker thread
        APOP name digest MD5(timestamp + secret) compared with the digest
                         (RFC 1939 §7); only users whose stored password is
                         {PLAIN} have a secret APOP can use
        AUTH mech        the shared sasl/ mechanisms; VerifyPassword steps
                         are checked in a worker thread; SCRAM's final
                         server message goes out as one more challenge,
                         answered with an empty line (RFC 5034 §4)
        A failure waits FailureThrottle's delay (the same throttle object
        as SMTP AUTH: guesses over POP3 and SMTP count together) and
        answers "-ERR [AUTH] Authentication failed." whatever went wrong.
        A success opens the maildrop: `open_inbox(login)` then
        `Folder.try_lock("pop3")` (RFC 1939 §8's exclusive lock; held
        elsewhere: "-ERR [IN-USE] maildrop already locked", RFC 2449 §8.1.1)
        then `Folder.sync()`: the snapshot the message numbers refer to for
        the whole session.

    TRANSACTION (RFC 1939 §5, §7)
        STAT, LIST, UIDL, DELE, RSET and NOOP are answered from the
        snapshot and the session's marks; messages marked deleted are
        invisible to every command ("-ERR message 2 already deleted").
        UIDL is store.interfaces.pop3_uidl(uidvalidity, uid): the same
        value in every session for as long as the folder's UIDVALIDITY
        holds, and the UID IMAP shows. RETR and TOP read the message
        (`Folder.open_message`) in a worker thread; a batch of pipelined
        commands is answered by one thread call, so a pipelining client
        pays the thread hand-off once per batch, not once per message.

    UPDATE (RFC 1939 §6), only after QUIT in TRANSACTION
        Messages retrieved with RETR get \\Seen (`store_flags(..., add)`),
        messages marked with DELE — and with [pop3] delete_on_retr every
        message retrieved — are expunged, the lock is released, then
        "+OK <hostname> POP3 server signing off". A failure there answers
        "-ERR [SYS/TEMP] some deleted messages not removed". A connection
        that ends any other way (dropped, autologout) changes nothing and
        releases the lock.

Logging (Dovecot's lines, so existing log tools read them):
    pop3-login: Login: user=<alice@example.test>, method=PLAIN, rip=..., lip=..., TLS
    pop3-login: Aborted login (auth failed, 2 attempts): user=<x>, rip=..., lip=...
    pop3(alice@example.test): Disconnected: Logged out top=0/0, retr=1/5120, del=0/1, size=5120
    (top=TOP commands/octets, retr=RETR commands/octets, del=deleted/messages
    at login, size=maildrop octets at login; "Connection closed" or
    "Disconnected for inactivity" instead of "Logged out" when there was no QUIT.)

Security:
    Passwords never reach the log. Replies never tell an unknown user from
    a wrong password. The maildrop is opened only after authentication.
    Reply texts carry no paths or exception text.

Config:
    hostname; [pop3] delete_on_retr; [auth] (through AuthBackend).

See also:
    pop3/protocol.py, pop3/server.py, store/interfaces.py, sasl/,
    auth/throttle.py, smtp/auth_session.py (AuthBackend), RFC 1939,
    RFC 2449 §8, RFC 3206, RFC 5034.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from postoffice import sasl
from postoffice.auth.backend import AuthBackend
from postoffice.auth.credentials import UserDBCredentials
from postoffice.auth.passwd_file import normalise_name
from postoffice.config.schema import Config
from postoffice.errors import TempFail
from postoffice.pop3 import events as ev
from postoffice.pop3 import replies
from postoffice.pop3.replies import Answer, Challenge, Reply
from postoffice.store.interfaces import (
    SEEN,
    Folder,
    FolderLock,
    MessageGone,
    MessageInfo,
    pop3_uidl,
)

log = logging.getLogger("postoffice.pop3")

# The answers at once, or groups of them as the work behind them is done.
Answers = list[Answer] | AsyncIterator[list[Answer]]

# A pipelined batch is read in groups of about this many octets (at least one
# message each): the adapter writes each group before the next is read.
GROUP_OCTETS = 1024 * 1024

# Reasons a connection ends (Pop3Protocol.close_reason) as Dovecot logs them.
_DISCONNECT_TEXT = {
    "quit": "Logged out",
    "eof": "Connection closed",
    "timeout": "Disconnected for inactivity",
    "errors": "Disconnected: Too many invalid commands",
    "overflow": "Disconnected: Too much input",
    "shutdown": "Server shutting down",
    "refused": "Connection refused",
}

MESSAGE_GONE = Reply(ok=False, code="SYS/PERM", text="Message was removed by another session.")
NOT_REMOVED = Reply(ok=False, code="SYS/TEMP", text="Some deleted messages not removed.")


class TimestampSource:
    """APOP banner timestamps `<pid.clock@hostname>` (RFC 1939 §7): `clock`
    is microseconds since the epoch, strictly increasing within a process,
    so no two banners repeat one."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self, hostname: str) -> str:
        with self._lock:
            self._last = max(self._last + 1, self._clock() // 1000)
            stamp = self._last
        return f"<{os.getpid()}.{stamp}@{hostname}>"


_TIMESTAMPS = TimestampSource()


@dataclass(frozen=True, slots=True, kw_only=True)
class Pop3Deps:
    """What every POP3 session shares; built once by app.py."""

    config: Config
    auth: AuthBackend  # users, the failure throttle (shared with SMTP), /etc/shadow
    # The authenticated login's INBOX (store/opener.py: StoreOpener.inbox). Blocking:
    # called in a worker thread. May raise TempFail or OSError.
    open_inbox: Callable[[str], Folder]
    # STLS (RFC 2595) and, on a [pop3s] listener, implicit TLS (RFC 8314).
    tls_context: ssl.SSLContext | None = None
    # The APOP timestamp for a banner (tests pass RFC 1939's fixed one).
    timestamp: Callable[[str], str] = _TIMESTAMPS


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """Both ends of the connection."""

    ip: str
    port: int = 0
    local_ip: str = ""
    local_port: int = 0

    @property
    def loopback(self) -> bool:
        return self.ip == "::1" or self.ip.startswith("127.")


class Pop3Session:
    """Decisions for one POP3 connection (see the module docstring)."""

    def __init__(self, deps: Pop3Deps, client: Client) -> None:
        self.deps = deps
        self.client = client
        self.tls = False  # set by the adapter after a handshake
        self.stamp = deps.timestamp(deps.config.hostname)
        self.login: str | None = None
        self.method = ""
        self._user: str | None = None  # the USER argument
        self._exchange: sasl.Exchange | None = None
        self._failures = 0
        self._last_name = ""
        # the maildrop (TRANSACTION)
        self._folder: Folder | None = None
        self._lock: FolderLock | None = None
        self._uidvalidity = 0
        self._messages: tuple[MessageInfo, ...] = ()
        self._deleted: set[int] = set()  # 0-based indexes into _messages
        self._retrieved: set[int] = set()
        self._live_count = 0
        self._live_size = 0
        self._login_count = 0
        self._login_size = 0
        self._expunged = 0
        self.counts = {"top": 0, "top_bytes": 0, "retr": 0, "retr_bytes": 0}
        self._busy = False
        self._cached: dict[int, bytes] = {}  # uid → message read by _prefetch
        self._closed = False
        self._close_reason = ""
        self._updated = False  # QUIT's update ran (even if the client left before the reply)

    # -- the adapter's entry points ---------------------------------------------

    def greeting(self) -> Reply:
        # RFC 1939 §4 banner, with the APOP timestamp (§7).
        return Reply(ok=True, text=f"POP3 server ready {self.stamp}")

    @property
    def logged_in(self) -> bool:
        return self._folder is not None

    def handle(self, events: Sequence[ev.Event]) -> Answers:
        """The answers to the events that need one, in order, now or later."""
        asks = [e for e in events if e.needs_answer]
        if not asks:
            return []
        if self._folder is not None:
            reads = any(isinstance(e, ev.Retr | ev.Top) for e in asks)
            quits = any(isinstance(e, ev.Quit) for e in asks)
            if quits or (reads and not self._prefetch(asks)):
                return self._in_thread(asks)
            try:
                return [self._transaction(e) for e in asks]
            finally:
                self._cached.clear()
        answers: list[Answer] = []
        for event in asks:  # the engine stops after each: one event, in practice
            now = self._authorization_now(event)
            if now is None:
                return self._authorize_later(answers, asks[len(answers) :])
            answers.append(now)
        return answers

    def close(self, reason: str) -> None:
        """The connection is over (reason: Pop3Protocol.close_reason). No
        update happens unless QUIT already did it; the lock is released."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        if not self._busy:
            self._finish()

    # -- AUTHORIZATION ------------------------------------------------------------

    def _authorization_now(self, event: ev.Event) -> Answer | None:
        """The answer when it needs no waiting, else None."""
        if isinstance(event, ev.User):
            self._user = event.name
            return Reply(ok=True, text="send PASS")
        if isinstance(event, ev.Stls):
            return replies.TLS_GO_AHEAD
        if isinstance(event, ev.Quit):
            return Reply(ok=True, text=f"{self.deps.config.hostname} POP3 server signing off")
        if isinstance(event, ev.Pass | ev.Apop | ev.AuthStart | ev.AuthResponse):
            return None
        return replies.BAD_COMMAND_STATE  # pragma: no cover - the engine keeps order

    async def _authorize_later(
        self, done: list[Answer], rest: Sequence[ev.Event]
    ) -> AsyncIterator[list[Answer]]:
        answers = list(done)
        self._busy = True
        try:
            for event in rest:
                answer = self._authorization_now(event)
                answers.append(answer if answer is not None else await self._authorize(event))
        finally:
            self._busy = False
            if self._closed:
                self._finish()
        yield answers

    async def _authorize(self, event: ev.Event) -> Answer:
        if isinstance(event, ev.Pass):
            name = self._user or ""
            self._user = None
            ok = await asyncio.to_thread(
                self.deps.auth.verify, self.deps.auth.users(), name, event.password
            )
            if ok is None:
                return replies.TEMP_FAILURE
            if not ok:
                return await self._failed(name, "PLAIN", "password mismatch")
            return await self._open(name, "PLAIN")
        if isinstance(event, ev.Apop):
            return await self._apop(event)
        if isinstance(event, ev.AuthStart):
            users = self.deps.auth.users()
            try:
                self._exchange = sasl.start(
                    event.mechanism,
                    event.initial,
                    credentials=UserDBCredentials(users),
                    hostname=self.deps.config.hostname,
                )
            except sasl.UnknownMechanismError:
                return replies.UNKNOWN_MECHANISM
            return await self._sasl_step(self._exchange.step)
        if isinstance(event, ev.AuthResponse):
            exchange = self._exchange
            if exchange is None:
                return replies.AUTH_CANCELLED
            return await self._sasl_step(exchange.respond(event.data))
        return replies.BAD_COMMAND_STATE  # pragma: no cover

    async def _apop(self, event: ev.Apop) -> Answer:
        # RFC 1939 §7: digest = MD5(timestamp + shared secret), lower-case hex.
        secret = UserDBCredentials(self.deps.auth.users()).plaintext(event.name)
        if secret is None:
            return await self._failed(event.name, "APOP", "no secret APOP can use")
        expected = hashlib.md5((self.stamp + secret).encode("utf-8"), usedforsecurity=False)
        if not hmac.compare_digest(expected.hexdigest(), event.digest):
            return await self._failed(event.name, "APOP", "digest mismatch")
        return await self._open(event.name, "APOP")

    async def _sasl_step(self, step: sasl.Step) -> Answer:
        exchange = self._exchange
        mechanism = exchange.mechanism if exchange is not None else "?"
        users = self.deps.auth.users()
        while isinstance(step, sasl.VerifyPassword) and exchange is not None:
            ok = await asyncio.to_thread(self.deps.auth.verify, users, step.authcid, step.password)
            step = exchange.verified(ok)
        if isinstance(step, sasl.Challenge):
            return Challenge(data=step.data)
        self._exchange = None
        if isinstance(step, sasl.Success):
            return await self._open(step.authcid, mechanism)
        if not isinstance(step, sasl.Failure):  # VerifyPassword without an exchange
            return replies.TEMP_FAILURE
        if step.kind == "cancelled":  # RFC 5034 §4
            return replies.AUTH_CANCELLED
        if step.kind == "temporary":
            return replies.TEMP_FAILURE
        return await self._failed(step.authcid, mechanism, step.reason)

    async def _failed(self, name: str, method: str, reason: str) -> Reply:
        self._failures += 1
        self._last_name = name
        delay = self.deps.auth.throttle.failed(self.client.ip)
        log.info(
            "pop3-login: Authentication failed (%s): user=<%s>, method=%s, %s",
            reason, _printable(name), method, self._where(),
        )  # fmt: skip
        await asyncio.sleep(delay)  # Dovecot's auth_failure_delay: slow down guessing
        return replies.AUTH_FAILED

    async def _open(self, name: str, method: str) -> Reply:
        """Credentials are good: lock and scan the maildrop (RFC 1939 §4)."""
        self.deps.auth.throttle.succeeded(self.client.ip)
        login = normalise_name(name)
        try:
            opened = await asyncio.to_thread(self._open_maildrop, login)
        except LookupError as e:  # no mailbox (store/opener.py): as a failed login
            log.warning("pop3-login: no mailbox: user=<%s>, %s: %s", login, self._where(), e)
            return replies.AUTH_FAILED
        except (TempFail, OSError) as e:
            log.error("pop3(%s): cannot open the maildrop: %s", login, e)
            return replies.TEMP_FAILURE
        if opened is None:
            log.info("pop3-login: maildrop in use: user=<%s>, %s", login, self._where())
            return replies.IN_USE
        folder, lock, state = opened
        self._folder, self._lock = folder, lock
        if self._closed:  # gone while the maildrop was opened
            return replies.TEMP_FAILURE
        self.login, self.method = login, method
        self._uidvalidity = state.uidvalidity
        self._messages = state.messages
        self._live_count = self._login_count = len(state.messages)
        self._live_size = self._login_size = sum(m.size for m in state.messages)
        log.info("pop3-login: Login: user=<%s>, method=%s, %s%s",
                 login, method, self._where(), self._security())  # fmt: skip
        return Reply(ok=True, text=f"{name}'s {self._drop_summary()}")

    def _open_maildrop(self, login: str) -> tuple[Folder, FolderLock, Any] | None:
        folder = self.deps.open_inbox(login)
        lock = folder.try_lock("pop3")  # RFC 1939 §8
        if lock is None:
            return None
        try:
            state = folder.sync()
        except BaseException:
            lock.release()
            raise
        return folder, lock, state

    # -- TRANSACTION ----------------------------------------------------------------

    def _prefetch(self, asks: list[ev.Event]) -> bool:
        """Read the messages RETR/TOP want from the page cache, on the loop
        (Folder.read_cached): True when all were there, so the batch needs
        no worker thread — a thread hand-off costs more than reading a small
        cached file, and a client that sends one RETR at a time waits for it."""
        folder = self._folder
        assert folder is not None
        count, octets = len(self._messages), 0
        for event in asks:
            if isinstance(event, ev.Retr | ev.Top) and 1 <= event.msg <= count:
                uid = self._messages[event.msg - 1].uid
                if uid in self._cached:
                    continue
                data = folder.read_cached(uid)
                if data is None:
                    return False
                self._cached[uid] = data
                octets += len(data)
                if octets > GROUP_OCTETS:
                    return False
        return True

    async def _in_thread(self, asks: list[ev.Event]) -> AsyncIterator[list[Answer]]:
        self._busy = True
        try:
            for group in self._groups(asks):
                yield await asyncio.to_thread(self._batch, group)
        finally:
            self._busy = False
            self._cached.clear()
            if self._closed:
                self._finish()

    def _groups(self, asks: list[ev.Event]) -> list[list[ev.Event]]:
        """Split a batch so that each group reads about GROUP_OCTETS (by the
        snapshot's sizes), at least one message a group."""
        groups: list[list[ev.Event]] = [[]]
        octets = 0
        count = len(self._messages)
        for event in asks:
            if isinstance(event, ev.Retr | ev.Top) and 1 <= event.msg <= count:
                size = self._messages[event.msg - 1].size
                if octets and octets + size > GROUP_OCTETS:
                    groups.append([])
                    octets = 0
                octets += size
            groups[-1].append(event)
        return groups

    def _batch(self, asks: list[ev.Event]) -> list[Answer]:
        return [self._transaction(e) for e in asks]

    def _transaction(self, event: ev.Event) -> Answer:
        if isinstance(event, ev.Retr):
            return self._retr(event.msg)
        if isinstance(event, ev.Stat):  # RFC 1939 §5: "+OK nn mm"
            return Reply(ok=True, text=f"{self._live_count} {self._live_size}")
        if isinstance(event, ev.List):
            return self._listing(event.msg, lambda n, m: f"{n} {m.size}", octets=True)
        if isinstance(event, ev.Uidl):
            uidvalidity = self._uidvalidity
            return self._listing(event.msg, lambda n, m: f"{n} {pop3_uidl(uidvalidity, m.uid)}")
        if isinstance(event, ev.Dele):
            return self._dele(event.msg)
        if isinstance(event, ev.Top):
            return self._top(event.msg, event.lines)
        if isinstance(event, ev.Rset):  # RFC 1939 §5
            self._deleted.clear()
            self._live_count = len(self._messages)
            self._live_size = sum(m.size for m in self._messages)
            return Reply(ok=True, text=self._drop_summary())
        if isinstance(event, ev.Noop):
            return Reply(ok=True)
        if isinstance(event, ev.Quit):
            return self._update()
        return replies.BAD_COMMAND_STATE  # pragma: no cover - the engine keeps order

    def _drop_summary(self) -> str:
        return f"maildrop has {self._count_text()}"

    def _count_text(self) -> str:
        """ "2 messages (320 octets)", as RFC 1939's examples write it."""
        n = self._live_count
        return f"{n} message{'' if n == 1 else 's'} ({self._live_size} octets)"

    def _message(self, msg: int) -> tuple[int, MessageInfo] | Reply:
        """The message numbered `msg`, or the -ERR for it (RFC 1939 §5)."""
        count = len(self._messages)
        if not 1 <= msg <= count:
            return Reply(ok=False, text=f"no such message, only {count} messages in maildrop")
        index = msg - 1
        if index in self._deleted:
            return Reply(ok=False, text=f"message {msg} already deleted")
        return index, self._messages[index]

    def _listing(
        self, msg: int | None, line: Callable[[int, MessageInfo], str], *, octets: bool = False
    ) -> Reply:
        if msg is not None:  # RFC 1939 §5: one scan listing / unique-id listing
            found = self._message(msg)
            if isinstance(found, Reply):
                return found
            return Reply(ok=True, text=line(msg, found[1]))
        deleted = self._deleted
        lines = tuple(
            line(n, m) for n, m in enumerate(self._messages, start=1) if n - 1 not in deleted
        )
        text = self._count_text() if octets else ""
        return Reply(ok=True, text=text, lines=lines)

    def _dele(self, msg: int) -> Reply:
        found = self._message(msg)
        if isinstance(found, Reply):
            return found
        index, info = found
        self._deleted.add(index)
        self._live_count -= 1
        self._live_size -= info.size
        return Reply(ok=True, text=f"message {msg} deleted")

    def _read(self, uid: int) -> bytes | Reply:
        folder = self._folder
        assert folder is not None
        cached = self._cached.pop(uid, None)
        if cached is not None:
            return cached
        try:
            with folder.open_message(uid) as f:
                return f.read()
        except MessageGone:
            return MESSAGE_GONE
        except (TempFail, OSError) as e:
            log.error("pop3(%s): cannot read message uid %d: %s", self.login, uid, e)
            return replies.TEMP_FAILURE

    def _retr(self, msg: int) -> Reply:
        found = self._message(msg)
        if isinstance(found, Reply):
            return found
        index, info = found
        data = self._read(info.uid)
        if isinstance(data, Reply):
            return data
        self._retrieved.add(index)
        self.counts["retr"] += 1
        self.counts["retr_bytes"] += len(data)
        return Reply(ok=True, text=f"{info.size} octets", body=data)

    def _top(self, msg: int, count: int) -> Reply:
        found = self._message(msg)
        if isinstance(found, Reply):
            return found
        data = self._read(found[1].uid)
        if isinstance(data, Reply):
            return data
        part = top_of(data, count)
        self.counts["top"] += 1
        self.counts["top_bytes"] += len(part)
        return Reply(ok=True, body=part)

    def _update(self) -> Reply:
        """RFC 1939 §6: the UPDATE state. Runs in a worker thread."""
        folder = self._folder
        assert folder is not None
        messages = self._messages
        deleted = set(self._deleted)
        if self.deps.config.pop3.delete_on_retr:
            deleted |= self._retrieved
        seen = [
            messages[i].uid
            for i in sorted(self._retrieved - deleted)
            if SEEN not in messages[i].flags
        ]
        doomed = [messages[i].uid for i in sorted(deleted)]
        answer: Reply
        try:
            if seen:
                folder.store_flags(seen, frozenset({SEEN}), "add")
            if doomed:
                self._expunged = len(folder.expunge(doomed))
            remaining = len(messages) - len(deleted)
            text = f"{self.deps.config.hostname} POP3 server signing off"
            answer = Reply(ok=True, text=text + (" (maildrop empty)" if not remaining else ""))
        except (TempFail, OSError) as e:
            log.error("pop3(%s): update failed: %s", self.login, e)
            answer = NOT_REMOVED
        self._updated = True
        self._release()
        return answer

    # -- the end ----------------------------------------------------------------------

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _finish(self) -> None:
        self._release()
        key = "quit" if self._updated else self._close_reason
        reason = _DISCONNECT_TEXT.get(key, key or "Disconnected")
        if self.login is not None:
            c = self.counts
            log.info(
                "pop3(%s): Disconnected: %s top=%d/%d, retr=%d/%d, del=%d/%d, size=%d",
                self.login, reason, c["top"], c["top_bytes"], c["retr"], c["retr_bytes"],
                self._expunged, self._login_count, self._login_size,
            )  # fmt: skip
        elif self._failures:
            log.info(
                "pop3-login: Aborted login (auth failed, %d attempts): user=<%s>, %s",
                self._failures, _printable(self._last_name), self._where(),
            )  # fmt: skip

    def _where(self) -> str:
        return f"rip={self.client.ip}, lip={self.client.local_ip}"

    def _security(self) -> str:
        if self.tls:
            return ", TLS"
        return ", secured" if self.client.loopback else ""


def top_of(message: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the blank line, then `lines` lines of the
    body (the whole body when it has fewer)."""
    if message.startswith(b"\r\n"):
        start = 2  # no header fields at all
    else:
        blank = message.find(b"\r\n\r\n")
        if blank < 0:
            return message  # a header without a body
        start = blank + 4
    if lines == 0:
        return message[:start]
    body = message[start:].split(b"\r\n", lines)
    if len(body) <= lines:  # fewer lines than asked for: everything
        return message
    return message[: len(message) - len(body[-1])]


def _printable(name: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in name)[:100]
