"""auth/credentials — the user database as a SASL CredentialSource (CRAM-MD5, SCRAM secrets).

Description:
    UserDBCredentials(db) answers the two questions sasl/ mechanisms may ask:

    plaintext(user) -> str | None
        The clear-text password when the stored scheme is PLAIN, CLEAR or
        CLEARTEXT (CRAM-MD5 needs it, Dovecot's rule); None otherwise and
        for unknown users.

    scram_secrets(user) -> ScramSecrets | None
        SCRAM-SHA-256 keys: parsed from a stored `{SCRAM-SHA-256}` password,
        or derived from a PLAIN one (RFC 5802 §3, 4096 iterations, a salt
        that is an HMAC of the name under a per-process key, so a client
        sees the same salt on every attempt within one process). Derived
        keys are cached (LRU, cache_size entries, keyed by name and stored
        value, so a password change is seen at once). None for any other
        scheme and for unknown users.

    Both are in-memory lookups (UserDB keeps the file in memory); the one
    cost is a PBKDF2 of 4096 rounds (about a millisecond) the first time a
    PLAIN user is asked for SCRAM keys.

Security:
    Holds no secrets beyond the cache of derived SCRAM keys, which are
    password equivalents for SCRAM only (RFC 5802 §9) and never leave the
    process.

See also:
    sasl/interfaces.py (CredentialSource), sasl/scram.py, auth/schemes.py,
    auth/passwd_file.py (UserDB).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict

from postoffice.auth import schemes
from postoffice.auth.passwd_file import UserDB, normalise_name
from postoffice.sasl.interfaces import ScramSecrets
from postoffice.sasl.scram import DEFAULT_ITERATIONS, SALT_LEN, secrets_from_password

__all__ = ["UserDBCredentials"]

_PLAIN = ("PLAIN", "CLEAR", "CLEARTEXT")


class UserDBCredentials:
    """A sasl CredentialSource over a UserDB (see the module docstring)."""

    def __init__(self, db: UserDB, *, cache_size: int = 1024) -> None:
        self._db = db
        self._cache: OrderedDict[tuple[str, str], ScramSecrets] = OrderedDict()
        self._cache_size = cache_size
        self._salt_key = secrets.token_bytes(32)
        self._lock = threading.Lock()

    def _stored(self, user: str) -> tuple[str, str] | None:
        found = self._db.lookup(user)
        if found is None or not found.password:
            return None
        return schemes.split_scheme(found.password)

    def plaintext(self, user: str) -> str | None:
        stored = self._stored(user)
        if stored is None or stored[0] not in _PLAIN or not stored[1]:
            return None
        return stored[1]

    def scram_secrets(self, user: str) -> ScramSecrets | None:
        stored = self._stored(user)
        if stored is None:
            return None
        scheme, data = stored
        if scheme == "SCRAM-SHA-256":
            parsed = schemes.parse_scram_sha256(data)
            if parsed is None:
                return None
            salt, iterations, stored_key, server_key = parsed
            return ScramSecrets(
                salt=salt, iterations=iterations, stored_key=stored_key, server_key=server_key
            )
        if scheme not in _PLAIN or not data:
            return None
        key = (normalise_name(user), data)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        salt = hmac.new(self._salt_key, key[0].encode("utf-8"), hashlib.sha256).digest()
        derived = secrets_from_password(data, salt[:SALT_LEN], DEFAULT_ITERATIONS)
        with self._lock:
            self._cache[key] = derived
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return derived
