"""imap.session — the IMAP session: answers the engine's commands with the store and SASL.

Description:
    One ImapSession per connection. It never touches sockets: the adapter
    (imap/server.py) hands it what the engine (imap/protocol.py) parsed and
    gives its answers back to the engine:

        command(cmd)          -> Result | Challenge | Idling
        auth_response(data)   -> Result | Challenge      (AUTHENTICATE lines)
        idle_done()           -> Result                  (DONE)
        append_begin(event)   -> Result | None           (None: accept it)
        append_data(data), append_end()                   (the octets)
        append_complete()     -> Result                  (APPENDUID)

    Untagged responses go out through `Output.write()` as they are made;
    `await Output.drain()` waits while the client is slow, so a FETCH of
    many messages never piles up in memory. The returned Result is the
    tagged response.

    The commands (RFC 9051 §6, RFC 3501 §6) are dispatched by type through
    one table (_HANDLERS); the mailbox commands live in imap/mailboxes.py,
    the message commands in imap/messages.py, APPEND in imap/append.py.

    IMAP4rev1 / IMAP4rev2: a session speaks IMAP4rev1 until the client
    sends ENABLE IMAP4rev2 (RFC 9051 §6.3.1); then there is no \\Recent,
    SEARCH answers with ESEARCH, and mailbox names are UTF-8, as they are
    with ENABLE UTF8=ACCEPT (RFC 6855); IMAP4rev1 names are modified
    UTF-7 (RFC 3501 §5.1.3).

    Selected state: after every command (and during IDLE) the session
    syncs its folder and sends what changed (imap/selected.py): EXISTS,
    RECENT, FETCH FLAGS of other sessions' changes, and EXPUNGE, except
    during FETCH, STORE and SEARCH, which must not be followed by EXPUNGE
    (RFC 9051 §7.5.1; their UID forms may).

States:
    not authenticated → (LOGIN, AUTHENTICATE) authenticated → (SELECT,
    EXAMINE) selected → (CLOSE, UNSELECT, failed SELECT) authenticated;
    LOGOUT from any. The engine enforces the table (imap/states.py); the
    session keeps its own copy for its decisions.

Security:
    LOGIN and AUTHENTICATE are refused before TLS (LOGINDISABLED,
    NO [PRIVACYREQUIRED]) unless the client is on loopback or
    `[imap] require_tls` is off (RFC 9051 §6.2.3, §11.1). Failures are
    throttled per client (imap/login.py). A user gets at most
    `[imap] max_connections_per_user` sessions per client address.
    Replies never carry paths or exception text.

Config:
    [imap] require_tls, max_literal, max_connections_per_user;
    [auth] mechanisms.

See also:
    imap/protocol.py, imap/events.py, imap/selected.py, imap/mailboxes.py,
    imap/messages.py, imap/append.py, imap/login.py, imap/watch.py,
    RFC 9051, RFC 3501, RFC 2177 (IDLE), RFC 2971 (ID), RFC 5161 (ENABLE),
    RFC 6855 (UTF8=ACCEPT), RFC 4959 (SASL-IR), RFC 7889 (APPENDLIMIT).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import postoffice
from postoffice.auth.backend import AuthBackend
from postoffice.auth.passwd_file import normalise_name
from postoffice.config.schema import Config
from postoffice.errors import TempFail
from postoffice.imap import append, mailboxes, messages
from postoffice.imap import commands as c
from postoffice.imap import response as r
from postoffice.imap.cache import SummaryCaches
from postoffice.imap.events import AppendBegin
from postoffice.imap.fetch import flag_list
from postoffice.imap.login import Continue, ImapLogin, LoggedIn, Refused
from postoffice.imap.selected import RecentClaims, SelectedMailbox
from postoffice.imap.states import State
from postoffice.imap.watch import FolderWatch, UserConnections
from postoffice.store.interfaces import Folder, FolderState, MailStore
from postoffice.store.mailstore import MaildirStore

log = logging.getLogger("postoffice.imap")

__all__ = ["IDLING", "Challenge", "ImapDeps", "ImapSession", "Output", "Peer"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapDeps:
    """What every session shares; built once by app.py (or a test)."""

    config: Config
    open_store: Callable[[str], MailStore]  # login → the user's folders; LookupError: none
    auth: AuthBackend | None
    tls_context: ssl.SSLContext | None = None
    claims: RecentClaims = field(default_factory=RecentClaims)
    caches: SummaryCaches = field(default_factory=SummaryCaches)
    watch: FolderWatch = field(default_factory=FolderWatch)
    users: UserConnections = field(default_factory=UserConnections)
    # Runs a blocking call off the loop: (fn, *args) -> awaitable result.
    run: Callable[..., Awaitable[Any]] = asyncio.to_thread
    clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    ip: str
    port: int = 0

    @property
    def loopback(self) -> bool:
        return self.ip in ("::1", "localhost") or self.ip.startswith("127.")

    @property
    def label(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


class Output(Protocol):
    def write(self, data: bytes) -> None:
        """Queue untagged response octets for the client."""

    async def drain(self) -> None:
        """Wait until the client has taken most of what was written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """AUTHENTICATE goes on: send `+ base64(data)`, read one line."""

    data: bytes


class _Idling:
    """IDLE accepted: send the continuation, wait for DONE (idle_done())."""


IDLING = _Idling()
Answer = r.Result | Challenge | _Idling


def ok(text: str, code: r.Code | None = None) -> r.Result:
    return r.Result(status="OK", text=text, code=code)


def no(text: str, code: str | None = None) -> r.Result:
    return r.Result(status="NO", text=text, code=r.Code(name=code) if code else None)


def bad(text: str) -> r.Result:
    return r.Result(status="BAD", text=text)


PRIVACY_REQUIRED = no("Use STARTTLS first: no plaintext authentication", "PRIVACYREQUIRED")
_ENABLEABLE = ("IMAP4REV2", "UTF8=ACCEPT")


class ImapSession:
    """One connection's IMAP session (see the module manual)."""

    def __init__(self, deps: ImapDeps, peer: Peer, out: Output, *, tls: bool = False) -> None:
        self.deps = deps
        self.peer = peer
        self.out = out
        self.tls = tls
        self.state = State.NOT_AUTHENTICATED
        self.user: str | None = None
        self.store: MailStore | None = None
        self.folder: Folder | None = None
        self.selected: SelectedMailbox | None = None
        self.rev2 = False  # ENABLE IMAP4rev2 (RFC 9051 §6.3.1)
        self.utf8_accept = False  # ENABLE UTF8=ACCEPT (RFC 6855 §3)
        self.login = ImapLogin(deps.auth, peer.ip, peer.label) if deps.auth is not None else None
        self.counts: dict[str, int] = {}
        self._idle_done: asyncio.Event | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._counted = False
        self.appending: append.Appender | None = None  # while APPEND runs

    # -- plumbing ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if data:
            self.out.write(data)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """A blocking store call, in a worker thread."""
        result: _T = await self.deps.run(fn, *args)
        return result

    def mailstore(self) -> MailStore:
        assert self.store is not None, "a mailbox command before login"
        return self.store

    @property
    def utf8(self) -> bool:
        """Mailbox names in UTF-8 (RFC 9051 §5.1, RFC 6855 §3), else modified UTF-7."""
        return self.rev2 or self.utf8_accept

    @property
    def config(self) -> Config:
        return self.deps.config

    # -- capabilities ------------------------------------------------------------------

    @property
    def login_allowed(self) -> bool:
        """RFC 9051 §6.2.3: no plaintext login before TLS, except on loopback."""
        return self.tls or self.peer.loopback or not self.config.imap.require_tls

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "IMAP4rev2"]
        if self.state is State.NOT_AUTHENTICATED:
            if self.deps.tls_context is not None and not self.tls:
                caps.append("STARTTLS")
            if not self.login_allowed or self.login is None:
                caps.append("LOGINDISABLED")
            else:
                caps += [f"AUTH={m}" for m in self.config.auth.mechanisms]
            caps += ["SASL-IR", "ID", "ENABLE", "IDLE", "LITERAL+"]
            return caps
        caps += [
            "ID", "ENABLE", "IDLE", "LITERAL+", "NAMESPACE", "UIDPLUS", "MOVE",
            "UNSELECT", "CHILDREN", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE",
            "CREATE-SPECIAL-USE", "ESEARCH", "SEARCHRES", "BINARY", "MULTIAPPEND",
            f"APPENDLIMIT={self.config.imap.max_literal}", "UTF8=ACCEPT", "STATUS=SIZE",
        ]  # fmt: skip
        return caps

    def greeting(self) -> bytes:
        code = r.Code.atoms("CAPABILITY", self.capabilities())
        return r.untagged(ok("postoffice IMAP ready", code))

    # -- the commands ------------------------------------------------------------------

    async def command(self, cmd: c.Command) -> Answer:
        """Run one command: untagged responses through the output, the tagged
        Result returned (or a Challenge / IDLING to go on)."""
        name = c.command_name(cmd)
        self.counts[name] = self.counts.get(name, 0) + 1
        handler = _HANDLERS.get(type(cmd))
        if handler is None:  # the engine only passes commands of commands.py
            return bad("Command not implemented")
        try:
            answer = await handler(self, cmd)
        except TempFail as e:
            log.warning("%s: %s: %s", self.peer.label, name, e.reason)
            answer = no("Mailbox storage is not available; try again later", "UNAVAILABLE")
        if (
            isinstance(answer, r.Result)
            and self.selected is not None
            and self.state is State.SELECTED
            and not isinstance(cmd, c.Logout)
        ):  # RFC 9051 §7.5.1: no EXPUNGE during FETCH, STORE, SEARCH
            await self.report_updates(allow_expunge=_allows_expunge(cmd))
        return answer

    async def report_updates(self, *, allow_expunge: bool) -> None:
        view, folder = self.selected, self.folder
        if view is None or folder is None:
            return
        try:
            state = await self.run(folder.sync)
        except TempFail as e:
            log.warning("%s: sync: %s", self.peer.label, e.reason)
            return
        self.send_updates(state, allow_expunge=allow_expunge)

    def send_updates(self, state: FolderState, *, allow_expunge: bool) -> None:
        view = self.selected
        if view is None:
            return
        updates = view.update(state, allow_expunge=allow_expunge)
        if updates.empty:
            return
        out: list[bytes] = [r.expunge(seq) for seq in updates.expunged]
        if updates.keywords is not None:
            out.append(r.flags(_flags(updates.keywords)))
            if not view.read_only:
                out.append(r.untagged(ok("Flags permitted", _permanent(updates.keywords))))
        if updates.exists is not None:
            out.append(r.exists(updates.exists))
        if updates.recent is not None and not self.rev2:
            out.append(r.recent(updates.recent))
        for seq, info in updates.fetches:
            recent = info.uid in view.recent and not self.rev2
            out.append(
                b"* %d FETCH (UID %d FLAGS %s)\r\n" % (seq, info.uid, flag_list(info.flags, recent))
            )
        self.write(b"".join(out))

    # -- any state (RFC 9051 §6.1) ------------------------------------------------------

    async def _capability(self, cmd: c.Capability) -> Answer:
        self.write(r.capability(self.capabilities()))
        return ok("CAPABILITY completed")

    async def _noop(self, cmd: c.Noop | c.Check) -> Answer:
        return ok(f"{cmd.name} completed")

    async def _logout(self, cmd: c.Logout) -> Answer:
        self.write(r.untagged(r.Result(status="BYE", text="postoffice logging out")))
        self.state = State.LOGOUT
        return ok("LOGOUT completed")

    async def _id(self, cmd: c.Id) -> Answer:
        # RFC 2971 §3.1: name and version only, nothing that helps an attacker more.
        if cmd.params:
            fields = " ".join(f"{k}={v}" for k, v in cmd.params[:8] if k and v)
            log.info("%s: ID %s", self.peer.label, fields[:300])
        self.write(
            b'* ID ("name" "postoffice" "version" "%s")\r\n' % postoffice.__version__.encode()
        )
        return ok("ID completed")

    # -- not authenticated (RFC 9051 §6.2) ------------------------------------------------

    async def _starttls(self, cmd: c.StartTls) -> Answer:
        if self.tls:
            return bad("TLS is already active")
        if self.deps.tls_context is None:
            return no("TLS is not available", "UNAVAILABLE")
        return ok("Begin TLS negotiation now")

    def tls_started(self) -> None:
        """The adapter finished the handshake (RFC 9051 §6.2.1: capabilities change)."""
        self.tls = True

    async def _login(self, cmd: c.Login) -> Answer:
        if self.login is None:
            return no("Authentication is not available", "UNAVAILABLE")
        if not self.login_allowed:
            return PRIVACY_REQUIRED
        outcome = await self.login.login(cmd.userid, cmd.password)
        return await self._auth_outcome(outcome)

    async def _authenticate(self, cmd: c.Authenticate) -> Answer:
        if self.login is None:
            return no("Authentication is not available", "UNAVAILABLE")
        if not self.login_allowed:
            return PRIVACY_REQUIRED
        if cmd.mechanism not in self.config.auth.mechanisms:
            return no("Unsupported authentication mechanism", "CANNOT")
        outcome = await self.login.start(cmd.mechanism, cmd.initial_response)
        return await self._auth_outcome(outcome)

    async def auth_response(self, data: bytes | None) -> r.Result | Challenge:
        """One client line of AUTHENTICATE (None: "*")."""
        if self.login is None:
            return bad("No authentication in progress")
        answer = await self._auth_outcome(await self.login.respond(data))
        assert not isinstance(answer, _Idling)
        return answer

    def auth_abort(self) -> None:
        if self.login is not None:
            self.login.abort()

    async def _auth_outcome(self, outcome: Continue | LoggedIn | Refused) -> Answer:
        if isinstance(outcome, Continue):
            return Challenge(data=outcome.data)
        if isinstance(outcome, Refused):
            code = r.Code(name=outcome.code) if outcome.code else None
            if outcome.status == "BAD":
                return r.Result(status="BAD", text=outcome.text, code=code)
            return r.Result(status="NO", text=outcome.text, code=code)
        return await self._logged_in(outcome.user)

    async def _logged_in(self, login: str) -> r.Result:
        user = normalise_name(login)  # the users file's key: the mailbox delivery writes
        limit = self.config.imap.max_connections_per_user
        if limit and self.deps.users.count(user, self.peer.ip) >= limit:
            log.warning("%s: user=%s: too many connections", self.peer.label, user)
            return no("Too many connections for this user from this address", "LIMIT")
        try:
            store = self.deps.open_store(user)
            if isinstance(store, MaildirStore):  # Sent, Drafts, Trash, Junk, Archive
                await self.run(store.ensure_defaults)
        except LookupError:
            log.warning("%s: user=%s: no mailbox", self.peer.label, user)
            return no("No mailbox for this user", "UNAVAILABLE")
        except (TempFail, OSError) as e:
            log.error("%s: user=%s: cannot open the mailbox: %s", self.peer.label, user, e)
            return no("Mailbox storage is not available; try again later", "UNAVAILABLE")
        self.user = user
        self.store = store
        self.state = State.AUTHENTICATED
        self.deps.users.add(user, self.peer.ip)
        self._counted = True
        code = r.Code.atoms("CAPABILITY", self.capabilities())
        return ok("Logged in", code)

    # -- authenticated (RFC 9051 §6.3) ----------------------------------------------------

    async def _enable(self, cmd: c.Enable) -> Answer:
        # RFC 5161 §3.1: only what was not enabled before is listed.
        enabled = []
        for cap in cmd.capabilities:
            if cap == "IMAP4REV2" and not self.rev2:
                self.rev2 = True
                enabled.append("IMAP4rev2")
            elif cap == "UTF8=ACCEPT" and not self.utf8_accept:
                self.utf8_accept = True
                enabled.append("UTF8=ACCEPT")
        self.write(r.enabled(enabled))
        return ok("ENABLE completed")

    async def _select(self, cmd: c.Select | c.Examine) -> Answer:
        read_only = isinstance(cmd, c.Examine)
        if self.selected is not None:
            self._deselect()
            self.write(r.untagged(ok("Previous mailbox closed", r.Code(name="CLOSED"))))
        self.state = State.AUTHENTICATED
        store = self.mailstore()
        try:
            folder = await self.run(store.folder, cmd.mailbox)
        except (KeyError, ValueError):
            return no("No such mailbox", "NONEXISTENT")
        state = await self.run(folder.sync)
        claims, key = self.deps.claims, (self.user, folder.name)
        recent = set() if self.rev2 else claims.claim(key, state.messages, read_only=read_only)
        view = SelectedMailbox(
            state,
            read_only=read_only,
            recent=recent,
            claim=None
            if self.rev2
            else (lambda added: claims.claim(key, added, read_only=read_only)),
        )
        self.folder, self.selected = folder, view
        self.state = State.SELECTED
        lines = [r.exists(view.exists)]
        if not self.rev2:
            lines.append(r.recent(len(recent)))
        lines.append(r.flags(_flags(view.keywords)))
        if read_only:
            lines.append(r.untagged(ok("No permanent flags", r.Code.listed("PERMANENTFLAGS", []))))
        else:
            lines.append(r.untagged(ok("Flags permitted", _permanent(view.keywords))))
        if not self.rev2:  # RFC 3501 §6.3.1; IMAP4rev2 dropped UNSEEN
            first = next((i for i, m in enumerate(view.infos, 1) if "\\Seen" not in m.flags), 0)
            if first:
                lines.append(r.untagged(ok("First unseen", r.Code.number("UNSEEN", first))))
        lines.append(r.untagged(ok("UIDs valid", r.Code.number("UIDVALIDITY", view.uidvalidity))))
        lines.append(r.untagged(ok("Predicted next UID", r.Code.number("UIDNEXT", view.uidnext))))
        if self.rev2:  # RFC 9051 §6.3.2: the mailbox's name as a LIST response
            lines.append(r.list_item([], ".", folder.name, utf8=True))
        self.write(b"".join(lines))
        code = "READ-ONLY" if read_only else "READ-WRITE"
        return ok(f"{cmd.name} completed", r.Code(name=code))

    def _deselect(self) -> None:
        self.folder = None
        self.selected = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    async def _close(self, cmd: c.Close | c.Unselect) -> Answer:
        view, folder = self.selected, self.folder
        if isinstance(cmd, c.Close) and view is not None and folder is not None:
            # RFC 9051 §6.4.1: expunge silently (not in a read-only mailbox)
            deleted = [m.uid for m in view.infos if "\\Deleted" in m.flags]
            if deleted and not view.read_only:
                await self.run(folder.expunge, deleted)
        self._deselect()
        return ok(f"{cmd.name} completed")

    # -- APPEND (imap/append.py) --------------------------------------------------------

    async def append_begin(self, event: AppendBegin) -> r.Result | None:
        """A message of APPEND is announced: None to receive it, or the refusal."""
        self.counts["APPEND"] = self.counts.get("APPEND", 0) + (event.index == 0)
        return await append.begin(self, event)

    def append_data(self, data: bytes) -> None:
        if self.appending is not None:
            self.appending.data(data)

    def append_end(self) -> None:
        if self.appending is not None:
            self.appending.end()

    def append_abort(self) -> None:
        if self.appending is not None:
            self.appending.abort()
            self.appending = None

    async def append_complete(self) -> r.Result:
        return await append.complete(self)

    # -- IDLE (RFC 2177, RFC 9051 §6.3.13) ------------------------------------------------

    async def _idle(self, cmd: c.Idle) -> Answer:
        self._idle_done = asyncio.Event()
        if self.selected is not None and self.folder is not None:
            self._idle_task = asyncio.create_task(self._idle_loop(self.folder, self._idle_done))
        return IDLING

    async def _idle_loop(self, folder: Folder, done: asyncio.Event) -> None:
        async with self.deps.watch.watching(folder) as watcher:
            while not done.is_set() and self.selected is not None:
                seen = self.selected.state
                waiter = asyncio.ensure_future(watcher.changed(seen))
                stop = asyncio.ensure_future(done.wait())
                try:
                    await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    if not waiter.done():
                        waiter.cancel()
                if waiter.done() and not waiter.cancelled() and not done.is_set():
                    self.send_updates(waiter.result(), allow_expunge=True)
                    await self.out.drain()

    async def idle_done(self) -> r.Result:
        """DONE: end IDLE (the tagged OK follows the last updates)."""
        self.stop_idle()
        task, self._idle_task = self._idle_task, None
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self.selected is not None:
            await self.report_updates(allow_expunge=True)
        return ok("IDLE terminated")

    def stop_idle(self) -> None:
        if self._idle_done is not None:
            self._idle_done.set()

    # -- the end ------------------------------------------------------------------------

    def close(self) -> None:
        """The connection is gone: forget the session, once."""
        self.stop_idle()
        if self._idle_task is not None:
            self._idle_task.cancel()
            self._idle_task = None
        if self.appending is not None:
            self.appending.abort()
            self.appending = None
        if self._counted and self.user is not None:
            self.deps.users.remove(self.user, self.peer.ip)
            self._counted = False
        self._deselect()
        self.state = State.LOGOUT


def _allows_expunge(cmd: c.Command) -> bool:
    if isinstance(cmd, c.Fetch | c.Store | c.Search):
        return cmd.uid
    return True


def _flags(keywords: frozenset[str]) -> list[str]:
    return ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", *sorted(keywords)]


def _permanent(keywords: frozenset[str]) -> r.Code:
    return r.Code.listed("PERMANENTFLAGS", [*_flags(keywords), "\\*"])


# The dispatch table: command type → handler (no dispatch by name).
Handler = Callable[[ImapSession, Any], Awaitable[Answer]]

_HANDLERS: dict[type[c.Command], Handler] = {
    c.Capability: ImapSession._capability,
    c.Noop: ImapSession._noop,
    c.Check: ImapSession._noop,
    c.Logout: ImapSession._logout,
    c.Id: ImapSession._id,
    c.StartTls: ImapSession._starttls,
    c.Login: ImapSession._login,
    c.Authenticate: ImapSession._authenticate,
    c.Enable: ImapSession._enable,
    c.Select: ImapSession._select,
    c.Examine: ImapSession._select,
    c.Create: mailboxes.create,
    c.Delete: mailboxes.delete,
    c.Rename: mailboxes.rename,
    c.Subscribe: mailboxes.subscribe,
    c.Unsubscribe: mailboxes.subscribe,
    c.List: mailboxes.list_mailboxes,
    c.Lsub: mailboxes.lsub,
    c.Namespace: mailboxes.namespace,
    c.Status: mailboxes.status,
    c.Idle: ImapSession._idle,
    c.Close: ImapSession._close,
    c.Unselect: ImapSession._close,
    c.Expunge: messages.expunge,
    c.Search: messages.search,
    c.Fetch: messages.fetch,
    c.Store: messages.store,
    c.Copy: messages.copy,
    c.Move: messages.copy,
}
