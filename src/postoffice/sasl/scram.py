"""sasl.scram — SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, and its key derivation.

Description:
    Salted Challenge Response Authentication Mechanism with SHA-256. The
    client proves that it knows the password without sending it, and the
    server proves that it knows the stored keys; the server stores only
    keys derived from the password (RFC 5802 §3):

        SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, i)
        ClientKey      = HMAC(SaltedPassword, "Client Key")
        StoredKey      = SHA-256(ClientKey)
        ServerKey      = HMAC(SaltedPassword, "Server Key")
        AuthMessage    = client-first-bare "," server-first "," client-final-without-proof
        ClientProof    = ClientKey XOR HMAC(StoredKey, AuthMessage)
        ServerSignature = HMAC(ServerKey, AuthMessage)

    The keys come from `CredentialSource.scram_secrets(user)`: a stored
    `{SCRAM-SHA-256}` password (Dovecot's form), or keys derived from a
    stored PLAIN password (auth/credentials.py). `secrets_from_password()`
    does the derivation for both.

    The exchange (RFC 5802 §5, §7):
        C: n,[a=authzid],n=user,r=cnonce[,ext]             client-first
        S: r=cnonce+snonce,s=salt,i=iterations              server-first
        C: c=biws,r=cnonce+snonce[,ext],p=proof             client-final
        S: v=ServerSignature                                server-final
    SMTP cannot carry data with its success reply (RFC 4954 §4), so the
    server-final message is a Challenge(final=True): the client answers it
    with an empty response and then gets 235.

    Channel binding (SCRAM-SHA-256-PLUS) is not offered, so a gs2 flag of
    "n" or "y" is accepted and "p=" fails (RFC 5802 §6). The reserved
    "m=" attribute fails (RFC 5802 §5.1). Unknown extension attributes are
    ignored. Names are saslnames (",", "=" escaped as =2C, =3D).

States:
    [challenge ""] → client-first → server-first → client-final →
    server-final (final) → "" → Success; any fault → Failure

Security:
    For an unknown user, or one without SCRAM keys, the server answers
    with a salt derived from the name under a per-process secret and
    4096 iterations, and fails at the proof, so the exchange looks the same
    as for a real user with a wrong password (RFC 5802 §5.1 leaves this
    to the server). The proof is checked in constant time. The server's
    nonce is 18 random octets (base64url), unless a caller injects one.

See also:
    RFC 5802, RFC 7677, RFC 4013 (sasl/saslprep.py), RFC 2898 (PBKDF2),
    auth/schemes.py ({SCRAM-SHA-256}), auth/credentials.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from postoffice.sasl.exchange import Authorize, BaseExchange, utf8
from postoffice.sasl.interfaces import (
    Challenge,
    CredentialSource,
    Failure,
    ScramSecrets,
    Step,
    Success,
)
from postoffice.sasl.saslprep import SaslPrepError, saslprep

__all__ = [
    "DEFAULT_ITERATIONS",
    "ScramExchange",
    "client_proof",
    "decode_saslname",
    "encode_saslname",
    "salted_password",
    "secrets_from_password",
]

DEFAULT_ITERATIONS = 4096  # RFC 7677 §4: at least 4096
SALT_LEN = 16
_HASH = "sha256"
_KEY_LEN = hashlib.sha256().digest_size
_FAKE_KEY = secrets.token_bytes(32)  # salts for unknown users (see Security)


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, _HASH).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5802 §3 SaltedPassword := Hi(Normalize(password), salt, i)."""
    try:
        normal = saslprep(password)
    except SaslPrepError:
        normal = password  # see sasl/saslprep.py
    return hashlib.pbkdf2_hmac(_HASH, normal.encode("utf-8"), salt, iterations)


def secrets_from_password(password: str, salt: bytes, iterations: int) -> ScramSecrets:
    """The keys a server stores for `password` (RFC 5802 §3)."""
    salted = salted_password(password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramSecrets(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=_hmac(salted, b"Server Key"),
    )


def client_proof(password: str, salt: bytes, iterations: int, auth_message: bytes) -> bytes:
    """The client's proof (RFC 5802 §3), for tests and for a client."""
    salted = salted_password(password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
    return bytes(a ^ b for a, b in zip(client_key, signature, strict=True))


def encode_saslname(name: str) -> str:
    """RFC 5802 §5.1: "," as =2C and "=" as =3D."""
    return name.replace("=", "=3D").replace(",", "=2C")


def decode_saslname(text: str) -> str | None:
    """The inverse of encode_saslname; None for an empty name or a stray "="."""
    if not text:
        return None
    out, pos = [], 0
    while True:
        eq = text.find("=", pos)
        if eq < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:eq])
        code = text[eq + 1 : eq + 3]
        if code == "2C":
            out.append(",")
        elif code == "3D":
            out.append("=")
        else:
            return None
        pos = eq + 3


def _attributes(text: str) -> list[tuple[str, str]] | None:
    """`a=v,b=w,...` → [(a, v), ...]; None when any part is not `letter=value`."""
    out = []
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or not ("a" <= part[0].lower() <= "z"):
            return None
        out.append((part[0], part[2:]))
    return out


def _valid_nonce(nonce: str) -> bool:
    # RFC 5802 §7: printable = %x21-2B / %x2D-7E (no comma).
    return bool(nonce) and all("!" <= c <= "~" and c != "," for c in nonce)


class ScramExchange(BaseExchange):
    """SCRAM-SHA-256, server side (RFC 5802, RFC 7677)."""

    mechanism_name = "SCRAM-SHA-256"

    def __init__(
        self,
        initial: bytes | None,
        *,
        credentials: CredentialSource,
        token: str,
        authorize: Authorize | None = None,
    ) -> None:
        super().__init__(authorize)
        self._credentials = credentials
        self._server_nonce = token
        self._stage = "first"
        self._gs2_header = b""
        self._authz = ""
        self._nonce = ""
        self._first_bare = ""
        self._server_first = ""
        self._secrets: ScramSecrets | None = None
        self._server_final = b""
        if initial is not None:  # RFC 5802 §5: SCRAM is client-first
            self._set(self._on_response(initial))

    def _on_response(self, data: bytes) -> Step:
        text = utf8(data)
        if self._stage == "first":
            return self._client_first(text)
        if self._stage == "final":
            return self._client_final(text)
        # The client's (empty) answer to the server-final message.
        if data:
            return self._fail("malformed", "non-empty response after the server signature")
        return Success(authcid=self._authcid, authzid=self._authz)

    def _client_first(self, text: str | None) -> Step:
        if text is None:
            return self._fail("malformed", "client-first-message is not UTF-8")
        flag, comma1, rest = text.partition(",")
        authz, comma2, bare = rest.partition(",")
        if not comma1 or not comma2:
            return self._fail("malformed", "no gs2 header")
        if flag.startswith("p="):
            return self._fail("malformed", "channel binding requested, not offered")
        if flag not in ("n", "y"):
            return self._fail("malformed", "bad gs2-cbind-flag")
        authzid = ""
        if authz:
            if not authz.startswith("a="):
                return self._fail("malformed", "bad authzid in gs2 header")
            decoded = decode_saslname(authz[2:])
            if decoded is None:
                return self._fail("malformed", "bad saslname in authzid")
            authzid = decoded
        attrs = _attributes(bare)
        if attrs is None or len(attrs) < 2:
            return self._fail("malformed", "client-first-message-bare is not n=...,r=...")
        if attrs[0][0] == "m":  # RFC 5802 §5.1: reserved; the server MUST fail
            return self._fail("malformed", "mandatory extension m= not supported")
        (k1, user_text), (k2, nonce) = attrs[0], attrs[1]
        user = decode_saslname(user_text) if k1 == "n" else None
        if user is None or k2 != "r" or not _valid_nonce(nonce):
            return self._fail("malformed", "bad username or nonce")
        self._authcid = user
        self._gs2_header = f"{flag},{authz},".encode()
        self._authz = authzid
        self._first_bare = bare
        self._nonce = nonce + self._server_nonce
        found = self._credentials.scram_secrets(user)
        self._secrets = found
        if found is None:
            salt = _hmac(_FAKE_KEY, user.encode("utf-8"))[:SALT_LEN]
            found = ScramSecrets(
                salt=salt, iterations=DEFAULT_ITERATIONS, stored_key=b"", server_key=b""
            )
        self._server_first = f"r={self._nonce},s={_b64(found.salt)},i={found.iterations}"
        self._stage = "final"
        return Challenge(data=self._server_first.encode("utf-8"))

    def _client_final(self, text: str | None) -> Step:
        if text is None:
            return self._fail("malformed", "client-final-message is not UTF-8")
        attrs = _attributes(text)
        cut = text.rfind(",p=")
        if attrs is None or len(attrs) < 3 or cut < 0 or attrs[-1][0] != "p":
            return self._fail("malformed", "client-final-message is not c=...,r=...,p=...")
        (kc, binding), (kr, nonce) = attrs[0], attrs[1]
        proof = _unb64(attrs[-1][1])
        if kc != "c" or _unb64(binding) != self._gs2_header:
            return self._fail("malformed", "channel binding data does not match the gs2 header")
        if kr != "r" or nonce != self._nonce:
            return self._fail("malformed", "nonce does not match")
        if proof is None or len(proof) != _KEY_LEN:
            return self._fail("malformed", "bad proof encoding")
        stored = self._secrets
        auth_message = f"{self._first_bare},{self._server_first},{text[:cut]}".encode()
        key = stored.stored_key if stored is not None else b"\0" * _KEY_LEN
        signature = _hmac(key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        good = hmac.compare_digest(hashlib.sha256(client_key).digest(), key)
        if stored is None or not good:
            why = "no SCRAM secret for the user" if stored is None else "wrong proof"
            return self._fail("credentials", why)
        effective = self._authzid(self._authcid, self._authz)
        if isinstance(effective, Failure):
            return effective
        self._authz = effective
        self._stage = "done"
        verifier = _b64(_hmac(stored.server_key, auth_message))
        return Challenge(data=f"v={verifier}".encode("ascii"), final=True)
