"""sasl — server-side SASL mechanisms as sans-I/O objects, shared by SMTP, POP3 and IMAP.

Description:
    exchange = sasl.start("PLAIN", initial, credentials=source)
    step = exchange.step
    loop:
        Challenge(data)        → send data (base64 on the wire) and
                                 step = exchange.respond(client_bytes or None for "*")
        VerifyPassword(...)    → ok = UserDB.verify(authcid, password) in a worker
                                 thread; step = exchange.verified(ok)
        Success(authcid, authzid) → authenticated
        Failure(kind, reason)  → refused; `reason` goes to the log only

    Mechanisms: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login-00),
    CRAM-MD5 (RFC 2195), SCRAM-SHA-256 (RFC 5802, RFC 7677). Everything
    here is pure: no I/O, no logging, no clock; password hashing happens
    in the caller (VerifyPassword), so nothing slow runs inside an
    exchange apart from SCRAM's HMACs.

Security:
    Client input never raises (Failure("malformed")); SaslError means the
    caller misused an exchange. See each mechanism's module.

See also:
    RFC 4422 (SASL), RFC 4954 (SMTP AUTH, smtp/auth_exchange.py), RFC 5034
    (POP3 AUTH), RFC 9051 §6.2.2 (IMAP AUTHENTICATE), auth/credentials.py.
"""

from __future__ import annotations

from postoffice.sasl.interfaces import (
    Challenge,
    CredentialSource,
    Exchange,
    Failure,
    FailureKind,
    SaslError,
    ScramSecrets,
    Step,
    Success,
    UnknownMechanismError,
    VerifyPassword,
)
from postoffice.sasl.mechanisms import MECHANISMS, Mechanism, start

__all__ = [
    "MECHANISMS",
    "Challenge",
    "CredentialSource",
    "Exchange",
    "Failure",
    "FailureKind",
    "Mechanism",
    "SaslError",
    "ScramSecrets",
    "Step",
    "Success",
    "UnknownMechanismError",
    "VerifyPassword",
    "start",
]
