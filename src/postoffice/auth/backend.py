"""auth.backend — what every login needs, built once by app.py, shared by SMTP, POP3 and IMAP.

Description:
    `AuthBackend` bundles the current users file (a callable: a SIGHUP or a
    changed file gives a new UserDB), the per-client failure throttle
    (auth/throttle.py: one object, so failures on SMTP, POP3 and IMAP add
    up for a client), this host's name (CRAM-MD5 and APOP challenges) and,
    when `[auth] system_accounts` is on, a verifier for /etc/shadow.

See also:
    smtp/auth_session.py, pop3/session.py, imap/login.py, auth/throttle.py,
    auth/passwd_file.py, auth/shadow.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.auth.passwd_file import UserDB
from postoffice.auth.throttle import FailureThrottle

log = logging.getLogger("postoffice.auth")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthBackend:
    """What AUTH needs; built once by app.py and shared by every session."""

    users: Callable[[], UserDB]
    throttle: FailureThrottle
    hostname: str
    system_verify: Callable[[str, str], bool] | None = None  # /etc/shadow

    def verify(self, users: UserDB, user: str, password: str) -> bool | None:
        """The users file, then (when configured) the system accounts: True,
        False, or None when the user database cannot be read (a temporary
        failure, logged here). Blocks (hashing): call it in a worker thread."""
        try:
            if users.verify(user, password):
                return True
            system = self.system_verify
            return bool(system is not None and system(user, password))
        except OSError as e:
            log.error("user database unavailable: %s", e)
            return None
