"""imap.login — LOGIN and AUTHENTICATE for an IMAP session: SASL, throttle, the users file.

Description:
    One `ImapLogin` per connection, built on the AuthBackend app.py shares
    with SMTP AUTH (smtp/auth_session.py): the users file, /etc/shadow when
    configured, and the failure throttle.

        login(userid, password)        LOGIN (RFC 9051 §6.2.3): a PLAIN
                                       exchange with no authzid, so both
                                       commands check passwords alike
        start(mechanism, initial)      AUTHENTICATE (RFC 9051 §6.2.2),
                                       with SASL-IR's initial response
                                       (RFC 4959)
        respond(data)                  the client's next line (None: "*")

    Each returns an Outcome:
        Continue(data)      send `+ <base64 data>` and read one more line
                            (SCRAM's final server message is sent this way
                            too: IMAP has no "additional data with success",
                            RFC 9051 §6.2.2, so the client answers it with
                            an empty line)
        LoggedIn(user)      authenticated as `user` (the authcid)
        Refused(status, code, text)
                            NO [AUTHENTICATIONFAILED] for bad credentials,
                            NO [UNAVAILABLE] when the users file cannot be
                            read, BAD for a cancelled ("*", RFC 9051
                            §6.2.2) or malformed exchange, NO for an
                            unknown mechanism.

    Whether LOGIN is allowed at all (LOGINDISABLED before TLS) is the
    session's decision; this module only authenticates.

Security:
    The reply never says why an authentication failed (RFC 9051 §6.2.3:
    no hint whether the user exists); the log line does. Every failure
    (except a cancel) waits the throttle's delay first (auth/throttle.py),
    password checks run in a worker thread, passwords never reach a log.

Config:
    [auth] mechanisms, system_accounts, failure_delay, max_failure_delay.

See also:
    RFC 9051 §6.2.2, §6.2.3, RFC 4959 (SASL-IR), RFC 5530 (response
    codes), sasl/, smtp/auth_session.py (AuthBackend), auth/throttle.py.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from postoffice import sasl
from postoffice.auth.backend import AuthBackend
from postoffice.auth.credentials import UserDBCredentials
from postoffice.auth.passwd_file import UserDB

log = logging.getLogger("postoffice.imap")

__all__ = ["Continue", "ImapLogin", "LoggedIn", "Outcome", "Refused"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Continue:
    """Send `+ base64(data)` and pass the client's answer to respond()."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedIn:
    user: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    status: str  # "NO" or "BAD"
    code: str | None
    text: str


Outcome = Continue | LoggedIn | Refused

FAILED = Refused(status="NO", code="AUTHENTICATIONFAILED", text="Authentication failed")
UNAVAILABLE = Refused(
    status="NO", code="UNAVAILABLE", text="Authentication is temporarily unavailable"
)
CANCELLED = Refused(status="BAD", code=None, text="Authentication cancelled")
MALFORMED = Refused(status="BAD", code=None, text="Invalid SASL response")
UNKNOWN_MECHANISM = Refused(status="NO", code="CANNOT", text="Unsupported authentication mechanism")


class ImapLogin:
    """The authentication exchanges of one connection (see the module manual)."""

    def __init__(self, backend: AuthBackend, client_ip: str, label: str) -> None:
        self.backend = backend
        self.client_ip = client_ip
        self.label = label
        self._exchange: sasl.Exchange | None = None

    @property
    def in_progress(self) -> bool:
        return self._exchange is not None

    async def login(self, userid: str, password: str) -> Outcome:
        """LOGIN userid password: PLAIN with an empty authzid."""
        initial = b"\0" + userid.encode("utf-8") + b"\0" + password.encode("utf-8")
        return await self.start("PLAIN", initial, command="LOGIN")

    async def start(self, mechanism: str, initial: bytes | None, *, command: str = "") -> Outcome:
        users = self.backend.users()
        try:
            self._exchange = sasl.start(
                mechanism,
                initial,
                credentials=UserDBCredentials(users),
                hostname=self.backend.hostname,
            )
        except sasl.UnknownMechanismError:
            return UNKNOWN_MECHANISM
        return await self._resolve(self._exchange.step, users, command or mechanism)

    async def respond(self, data: bytes | None) -> Outcome:
        exchange = self._exchange
        if exchange is None:
            return CANCELLED
        step = exchange.respond(data)
        return await self._resolve(step, self.backend.users(), exchange.mechanism)

    def abort(self) -> None:
        self._exchange = None

    async def _resolve(self, step: sasl.Step, users: UserDB, mechanism: str) -> Outcome:
        exchange = self._exchange
        while isinstance(step, sasl.VerifyPassword) and exchange is not None:
            ok = await asyncio.to_thread(self.backend.verify, users, step.authcid, step.password)
            step = exchange.verified(ok)
        if isinstance(step, sasl.Challenge):
            return Continue(data=step.data)
        self._exchange = None
        if isinstance(step, sasl.VerifyPassword):  # the exchange was aborted meanwhile
            return CANCELLED
        if isinstance(step, sasl.Success):
            self.backend.throttle.succeeded(self.client_ip)
            # Dovecot's shape, so log tools written for it read ours.
            log.info("imap-login: Login: user=<%s>, method=%s, rip=%s, %s",
                     step.authcid, mechanism, self.client_ip, self.label)  # fmt: skip
            return LoggedIn(user=step.authcid)
        if step.kind == "cancelled":
            return CANCELLED
        delay = self.backend.throttle.failed(self.client_ip)
        log.warning(
            "%s: %s authentication failed: %s%s",
            self.label, mechanism, step.reason,
            f" (user={step.authcid})" if step.authcid else "",
        )  # fmt: skip
        await asyncio.sleep(delay)  # slow down guessing (Dovecot's auth_failure_delay)
        if step.kind == "temporary":
            return UNAVAILABLE
        if step.kind == "malformed":
            return MALFORMED
        return FAILED
