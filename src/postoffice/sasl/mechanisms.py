"""sasl.mechanisms — the registry of SASL mechanisms and start(), the one way in.

Description:
    start(mechanism, initial, *, credentials, hostname="localhost",
          token=None, authorize=None) -> Exchange
        Begin a server-side exchange. `mechanism` is matched without regard
        to case; `initial` is the client's initial response, already
        base64-decoded (b"" for a zero-length one, None when absent: RFC
        4954 §4, RFC 4422 §3.3). `exchange.step` then says what to do first:
        a Challenge to send, a VerifyPassword to check, or already a
        Success or Failure. `hostname` goes into CRAM-MD5's challenge;
        `token()` returns a fresh unique printable word (no "," "@" ">" or
        space) for CRAM-MD5's challenge and SCRAM's server nonce — inject
        it for reproducible tests; the default is 18 random octets in
        base64url. `authorize(authcid, authzid)` replaces the default
        "only oneself" rule. Raises UnknownMechanismError for a mechanism
        not in MECHANISMS.

    MECHANISMS: name → Mechanism(name, plaintext, secret)
        `plaintext`: the password crosses the wire in clear (PLAIN, LOGIN):
        offer only under TLS. `secret`: what the server must hold —
        "password" (any stored scheme: verified by the caller),
        "plaintext" (CRAM-MD5: a stored PLAIN password) or "scram" (a
        stored {SCRAM-SHA-256} or PLAIN password).

    The package is shared by SMTP (RFC 4954), POP3 (RFC 5034) and IMAP
    (RFC 9051 §6.2.2); each protocol only moves the base64 text and maps
    Success/Failure to its replies (smtp/auth_exchange.py for SMTP).

See also:
    sasl/interfaces.py (the steps), sasl/plain.py (PLAIN RFC 4616, LOGIN
    draft-murchison-sasl-login-00), sasl/cram_md5.py (RFC 2195),
    sasl/scram.py (RFC 5802, RFC 7677), RFC 4422.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from postoffice.sasl.cram_md5 import CramMd5Exchange
from postoffice.sasl.exchange import Authorize
from postoffice.sasl.interfaces import CredentialSource, Exchange, UnknownMechanismError
from postoffice.sasl.plain import LoginExchange, PlainExchange
from postoffice.sasl.scram import ScramExchange

__all__ = ["MECHANISMS", "Mechanism", "default_token", "start"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Mechanism:
    """What a mechanism is like (see the module docstring)."""

    name: str
    plaintext: bool
    secret: Literal["password", "plaintext", "scram"]


MECHANISMS = MappingProxyType(
    {
        "PLAIN": Mechanism(name="PLAIN", plaintext=True, secret="password"),
        "LOGIN": Mechanism(name="LOGIN", plaintext=True, secret="password"),
        "CRAM-MD5": Mechanism(name="CRAM-MD5", plaintext=False, secret="plaintext"),
        "SCRAM-SHA-256": Mechanism(name="SCRAM-SHA-256", plaintext=False, secret="scram"),
    }
)


def default_token() -> str:
    """18 random octets, base64url: no "," "@" ">" or space."""
    return secrets.token_urlsafe(18)


def start(
    mechanism: str,
    initial: bytes | None,
    *,
    credentials: CredentialSource,
    hostname: str = "localhost",
    token: Callable[[], str] | None = None,
    authorize: Authorize | None = None,
) -> Exchange:
    """Begin an exchange; see the module docstring."""
    name = mechanism.upper()
    if name == "PLAIN":
        return PlainExchange(initial, authorize=authorize)
    if name == "LOGIN":
        return LoginExchange(initial, authorize=authorize)
    fresh = token or default_token
    if name == "CRAM-MD5":
        host = hostname if hostname.isascii() and hostname.isprintable() else "localhost"
        return CramMd5Exchange(
            initial,
            credentials=credentials,
            hostname=host.replace(" ", "") or "localhost",
            token=fresh(),
            authorize=authorize,
        )
    if name == "SCRAM-SHA-256":
        return ScramExchange(initial, credentials=credentials, token=fresh(), authorize=authorize)
    raise UnknownMechanismError(f"unknown SASL mechanism {mechanism!r}")
