"""SMTP AUTH for the session: drives a SASL exchange, verifies passwords off the loop.

Description:
    One `AuthDriver` per connection. The session hands it the engine's
    AuthStart / AuthResponse events; it returns the reply (a coroutine,
    since verifying a password runs argon2/bcrypt in a thread):

        AuthStart(mech, initial)  → sasl.start(...)   → resolve(step)
        AuthResponse(data)        → exchange.respond  → resolve(step)
        resolve: VerifyPassword   → UserDB.verify (then /etc/shadow when
                                    [auth] system_accounts) in a thread
                 Failure          → wait throttle.failed(ip) seconds, 535/454/501
                 Success          → throttle.succeeded(ip); 235 2.7.0

    The reply never tells why an authentication failed (RFC 4954 §6: no
    hint whether the user exists); the log line does.

Security:
    Failed attempts from one client wait longer and longer before the
    reply (auth/throttle.py, Dovecot's 2 s doubling to 15 s); passwords
    never appear in logs; unknown users cost the same hash work.

Config:
    [auth] mechanisms, system_accounts, failure_delay, max_failure_delay.

See also:
    RFC 4954, sasl/, smtp/auth_exchange.py, auth/credentials.py, auth/throttle.py.
"""

from __future__ import annotations

import asyncio
import logging

from postoffice import sasl
from postoffice.auth.backend import AuthBackend
from postoffice.auth.credentials import UserDBCredentials
from postoffice.auth.passwd_file import UserDB
from postoffice.smtp import auth_exchange as ax
from postoffice.smtp import events as ev
from postoffice.smtp.replies import Reply

log = logging.getLogger("postoffice.smtp")


class AuthDriver:
    """The SASL exchange of one connection."""

    def __init__(self, backend: AuthBackend, client_ip: str, label: str) -> None:
        self.backend = backend
        self.client_ip = client_ip
        self.label = label
        self.exchange: sasl.Exchange | None = None
        self.user: str | None = None  # the authenticated login (authcid)

    async def start(self, event: ev.AuthStart) -> Reply:
        users = self.backend.users()
        try:
            self.exchange = sasl.start(
                event.mechanism,
                event.initial,
                credentials=UserDBCredentials(users),
                hostname=self.backend.hostname,
            )
        except sasl.UnknownMechanismError:
            return ax.AUTH_UNKNOWN_MECHANISM
        return await self._resolve(self.exchange.step, users, event.mechanism)

    async def respond(self, event: ev.AuthResponse) -> Reply:
        exchange = self.exchange
        if exchange is None:
            return ax.AUTH_CANCELLED
        step = exchange.respond(event.data)
        return await self._resolve(step, self.backend.users(), exchange.mechanism)

    def abort(self) -> None:
        self.exchange = None

    async def _resolve(self, step: sasl.Step, users: UserDB, mechanism: str) -> Reply:
        exchange = self.exchange
        while isinstance(step, sasl.VerifyPassword) and exchange is not None:
            ok = await asyncio.to_thread(self.backend.verify, users, step.authcid, step.password)
            step = exchange.verified(ok)
        if isinstance(step, sasl.Failure):
            self.exchange = None
            if step.kind != "cancelled":
                delay = self.backend.throttle.failed(self.client_ip)
                log.warning(
                    "%s: SASL %s authentication failed: %s",
                    self.label, mechanism, step.reason,
                )  # fmt: skip
                await asyncio.sleep(delay)  # RFC 4954 §6 / Dovecot: slow down guessing
        elif isinstance(step, sasl.Success):
            self.exchange = None
            self.backend.throttle.succeeded(self.client_ip)
            self.user = step.authcid
            log.info("%s: sasl_method=%s, sasl_username=%s", self.label, mechanism, step.authcid)
        return ax.reply_for(step)
