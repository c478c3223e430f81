"""sasl.cram_md5 — the CRAM-MD5 mechanism (RFC 2195), server side.

Description:
    The server sends a unique challenge in msg-id form,
    `<token@hostname>`; the client answers `user SP digest`, where digest
    is HMAC-MD5 (RFC 2104) keyed with the password over the challenge,
    as 32 lower-case hex digits. The password never crosses the wire, but
    the server must hold it in clear text to compute the same digest: the
    mechanism works only for users whose stored scheme is PLAIN (Dovecot's
    rule), through `CredentialSource.plaintext(user)`. For every other user
    it fails exactly like a wrong password does.

    It is a server-first mechanism: an initial response is a protocol
    error (RFC 4422 §3.3; RFC 4954 §4) and fails the exchange.

    RFC 8314 and the IETF's move of CRAM-MD5 to Historic (draft-ietf-sasl-
    crammd5-to-historic) advise against it; it is offered for old clients
    only when configured.

States:
    challenge → "user digest" → Success | Failure

Security:
    The digest is compared in constant time; a user without a clear-text
    secret still costs one HMAC, so timing does not tell the cases apart.
    The user name is everything before the last space, so a name with
    spaces works.

See also:
    RFC 2195, RFC 2104, sasl/interfaces.py (CredentialSource).
"""

from __future__ import annotations

import hashlib
import hmac

from postoffice.sasl.exchange import Authorize, BaseExchange, utf8
from postoffice.sasl.interfaces import Challenge, CredentialSource, Failure, Step, Success

__all__ = ["CramMd5Exchange", "cram_md5_digest"]

_HEX = frozenset(b"0123456789abcdef")


def cram_md5_digest(password: str, challenge: bytes) -> bytes:
    """RFC 2195 §2: hex(HMAC-MD5(password, challenge)), lower case, as bytes."""
    mac = hmac.new(password.encode("utf-8"), challenge, hashlib.md5)
    return mac.hexdigest().encode("ascii")


class CramMd5Exchange(BaseExchange):
    """CRAM-MD5, server side (RFC 2195)."""

    mechanism_name = "CRAM-MD5"

    def __init__(
        self,
        initial: bytes | None,
        *,
        credentials: CredentialSource,
        hostname: str,
        token: str,
        authorize: Authorize | None = None,
    ) -> None:
        super().__init__(authorize)
        self._credentials = credentials
        # RFC 2195 §2: the challenge has the form of a msg-id (RFC 5322 §3.6.4).
        self._challenge = f"<{token}@{hostname}>".encode("ascii", "replace")
        self._set(Challenge(data=self._challenge))
        if initial is not None:
            self._set(self._fail("malformed", "initial response to a server-first mechanism"))

    def _on_response(self, data: bytes) -> Step:
        user_bytes, space, digest = data.rpartition(b" ")
        user = utf8(user_bytes) if space and user_bytes else None
        if user is None or b"\0" in user_bytes or len(digest) != 32:
            return self._fail("malformed", "response is not `user SP 32-hex-digest`")
        digest = digest.lower()
        if not set(digest) <= _HEX:
            return self._fail("malformed", "digest is not hexadecimal")
        self._authcid = user
        secret = self._credentials.plaintext(user)
        expected = cram_md5_digest(secret if secret is not None else "", self._challenge)
        if not hmac.compare_digest(expected, digest) or secret is None:
            why = "no clear-text secret for the user" if secret is None else "wrong digest"
            return self._fail("credentials", why)
        effective = self._authzid(user, "")
        if isinstance(effective, Failure):
            return effective
        return Success(authcid=user, authzid=effective)
