"""sasl.plain — the password mechanisms PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login).

Description:
    Both carry the user's clear-text password, so both end in
    `VerifyPassword`: the caller checks the password against the user
    database off the event loop and reports back with `verified(ok)`.
    Neither needs a stored clear-text secret, so they work with every
    password scheme. Over an unencrypted channel they expose the password;
    the protocol layers offer them only under TLS (or on loopback).

    PLAIN (RFC 4616 §2): one client message,
        message = [authzid] UTF8NUL authcid UTF8NUL passwd
    sent as the initial response or after an empty challenge. Each field is
    UTF-8 without NUL; authcid and passwd are not empty. The RFC asks that
    fields of up to 255 octets be accepted; longer ones are accepted up to
    MAX_FIELD octets. An authzid other than the authcid is refused unless
    the `authorize` rule allows it (sasl/exchange.py). Names and passwords
    are compared as given: no SASLprep (RFC 4616 §2 lets the server's
    verification decide; the user database compares names case-blind).

    LOGIN (draft-murchison-sasl-login-00, an obsolete but ubiquitous
    mechanism that Outlook and many devices still use): the server sends
    the challenges "Username:" and "Password:", the client answers each with
    the bare value. An initial response is taken as the user name, as
    Cyrus SASL and Dovecot do, and the exchange goes on with "Password:".

States:
    PLAIN:  [challenge ""] → message → VerifyPassword → Success | Failure
    LOGIN:  "Username:" → name → "Password:" → password → VerifyPassword → …

Security:
    Client input never raises: a malformed message is Failure("malformed").
    VerifyPassword's repr hides the password.

See also:
    RFC 4616, draft-murchison-sasl-login-00, RFC 4954 §4, sasl/exchange.py,
    auth/passwd_file.py (UserDB.verify).
"""

from __future__ import annotations

from postoffice.sasl.exchange import Authorize, BaseExchange, utf8
from postoffice.sasl.interfaces import Challenge, Step

__all__ = ["MAX_FIELD", "LoginExchange", "PlainExchange"]

MAX_FIELD = 1024  # octets in a user name, password or authzid (RFC 4616 §2: at least 255)

LOGIN_USERNAME = b"Username:"  # draft-murchison-sasl-login-00 §2
LOGIN_PASSWORD = b"Password:"


def _field(data: bytes, *, empty_ok: bool) -> str | None:
    if (not data and not empty_ok) or len(data) > MAX_FIELD or b"\0" in data:
        return None
    return utf8(data)


class PlainExchange(BaseExchange):
    """SASL PLAIN, server side (RFC 4616)."""

    mechanism_name = "PLAIN"

    def __init__(self, initial: bytes | None, *, authorize: Authorize | None = None) -> None:
        super().__init__(authorize)
        if initial is not None:  # RFC 4954 §4: the initial response
            self._set(self._on_response(initial))

    def _on_response(self, data: bytes) -> Step:
        parts = data.split(b"\0")
        if len(parts) != 3:
            return self._fail("malformed", f"{len(parts) - 1} NUL separators, not 2")
        authzid = _field(parts[0], empty_ok=True)
        authcid = _field(parts[1], empty_ok=False)
        password = _field(parts[2], empty_ok=False)
        if authzid is None or authcid is None or password is None:
            return self._fail("malformed", "empty, over-long or non-UTF-8 field")
        return self._password(authcid, authzid, password)


class LoginExchange(BaseExchange):
    """SASL LOGIN, server side (draft-murchison-sasl-login-00)."""

    mechanism_name = "LOGIN"

    def __init__(self, initial: bytes | None, *, authorize: Authorize | None = None) -> None:
        super().__init__(authorize)
        self._user: str | None = None
        self._set(Challenge(data=LOGIN_USERNAME))
        if initial is not None:  # the user name, as Cyrus SASL and Dovecot take it
            self._set(self._on_response(initial))

    def _on_response(self, data: bytes) -> Step:
        if self._user is None:
            user = _field(data, empty_ok=False)
            if user is None:
                return self._fail("malformed", "empty, over-long or non-UTF-8 user name")
            self._user = self._authcid = user
            return Challenge(data=LOGIN_PASSWORD)
        password = _field(data, empty_ok=False)
        if password is None:
            return self._fail("malformed", "empty, over-long or non-UTF-8 password")
        return self._password(self._user, "", password)
