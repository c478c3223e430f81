"""sasl.interfaces — the values and protocols every SASL mechanism speaks (pure).

Description:
    A server-side SASL exchange (RFC 4422 §3) is a conversation of
    challenges and responses that ends in success or failure. Here it is a
    sans-I/O object, an `Exchange`, whose every move is one of four `Step`
    values:

    Challenge(data)
        Send `data` to the client (SMTP: `334 <base64>`, IMAP: `+ <base64>`)
        and pass the client's next response to `Exchange.respond()`.
        `final=True` marks the server's "additional data with success"
        (SCRAM's `v=` message, RFC 4422 §3.6): a protocol that cannot carry
        data with its success reply (SMTP, RFC 4954 §4) sends it as a
        challenge and expects an empty response; one that can may send it
        with the success and call `respond(b"")` itself.

    VerifyPassword(authcid, authzid, password)
        The mechanism carried a clear-text password (PLAIN, LOGIN). Checking
        it is slow on purpose (Argon2, bcrypt), so the mechanism does not:
        the caller checks it against the user database in a worker thread
        and reports the outcome with `Exchange.verified(ok)`.

    Success(authcid, authzid)
        Authenticated as `authcid`, acting as `authzid` (the same name: an
        authorization identity other than the authentication identity is
        refused unless the caller's `authorize` rule allows it).

    Failure(kind, reason)
        Over, unsuccessfully. `kind` is for the reply code, `reason` for the
        log only (it names what went wrong; never show it to the client):
          "credentials"    unknown user, wrong password or proof, or no
                           stored secret this mechanism can use (the
                           client cannot tell which: RFC 4954 §6, 535 5.7.8)
          "authorization"  the authzid was refused
          "malformed"      the client's message broke the mechanism's syntax
          "cancelled"      the client sent "*" (RFC 4954 §4: 501)
          "temporary"      the user database could not answer (454 4.7.0)

    CredentialSource is what a mechanism may ask of the user database, and
    only mechanisms that need a stored secret ask: CRAM-MD5 needs the
    clear-text password (`plaintext(user)`), SCRAM-SHA-256 the stored
    SCRAM keys (`scram_secrets(user)`). Both are quick in-memory lookups;
    None means "no such user, or no usable secret" and the two cases look
    the same to the client.

Security:
    Errors in client input are Failure values, never exceptions. SaslError
    is raised only for misuse by the caller (responding to a finished
    exchange, starting an unknown mechanism).

See also:
    RFC 4422 (SASL), RFC 4954 (SMTP AUTH), sasl/mechanisms.py, sasl/plain.py,
    sasl/cram_md5.py, sasl/scram.py, auth/credentials.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "Challenge",
    "CredentialSource",
    "Exchange",
    "Failure",
    "FailureKind",
    "SaslError",
    "ScramSecrets",
    "Step",
    "Success",
    "UnknownMechanismError",
    "VerifyPassword",
]


class SaslError(Exception):
    """The caller misused an exchange (never raised for client input)."""


class UnknownMechanismError(SaslError):
    """start() was asked for a mechanism this package does not implement."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """Send `data` to the client; its answer goes to Exchange.respond()."""

    data: bytes
    final: bool = False  # the server's additional data with success (RFC 4422 §3.6)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyPassword:
    """Check `password` for `authcid` off the event loop, then call verified()."""

    authcid: str
    authzid: str
    password: str

    def __repr__(self) -> str:  # never log a password by accident
        return f"VerifyPassword(authcid={self.authcid!r}, authzid={self.authzid!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Success:
    """Authenticated: `authcid` proved its identity and acts as `authzid`."""

    authcid: str
    authzid: str


FailureKind = Literal["credentials", "authorization", "malformed", "cancelled", "temporary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """The exchange failed; `reason` is for the log only."""

    kind: FailureKind
    reason: str
    authcid: str = ""  # the user name the client gave, when it got that far (for the log)


Step = Challenge | VerifyPassword | Success | Failure


@dataclass(frozen=True, slots=True, kw_only=True)
class ScramSecrets:
    """What a server stores for SCRAM (RFC 5802 §3): never the password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


class CredentialSource(Protocol):
    """Stored secrets for the mechanisms that need them; quick lookups only."""

    def plaintext(self, user: str) -> str | None:
        """The clear-text password (stored scheme PLAIN), or None."""
        ...

    def scram_secrets(self, user: str) -> ScramSecrets | None:
        """SCRAM-SHA-256 keys (stored or derived from a PLAIN password), or None."""
        ...


class Exchange(Protocol):
    """One server-side authentication exchange (see the module docstring)."""

    @property
    def mechanism(self) -> str:
        """The mechanism name, upper case."""
        ...

    @property
    def step(self) -> Step:
        """The latest step: what the caller must do now."""
        ...

    @property
    def done(self) -> bool:
        """True once the step is a Success or a Failure."""
        ...

    def respond(self, data: bytes | None) -> Step:
        """The client's response to the last Challenge (None: cancelled, "*")."""
        ...

    def verified(self, ok: bool | None) -> Step:
        """The outcome of VerifyPassword: True, False, or None (database trouble)."""
        ...
