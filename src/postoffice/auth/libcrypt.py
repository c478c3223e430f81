"""auth/libcrypt — the system's crypt(3) through ctypes, for yescrypt, gost-yescrypt and scrypt.

Description:
    Debian (since 11), Ubuntu (since 22.04) and Fedora write new
    /etc/shadow passwords with yescrypt (`$y$`). Python has no yescrypt
    (the `crypt` module is gone from 3.13 and never offered one), but the
    system's libcrypt is libxcrypt on those systems, and it computes
    yescrypt, gost-yescrypt (`$gy$`) and scrypt (`$7$`) hashes. This module
    reaches it through ctypes; nothing is compiled and nothing is
    installed. When there is no libcrypt, or one without these methods
    (glibc's own before 2.38, musl), `supports()` is False and callers
    refuse such hashes with a log line (auth/shadow.py).

        sc = system_crypt()                 # SystemCrypt | None (loaded once)
        sc.supports("$y$") -> bool          # crypt_gensalt can make a setting
        sc.crypt(password, setting) -> str | None
        sc.gensalt("$y$", cost=0) -> str | None     # 0: libxcrypt's default
        verify(password, stored) -> bool    # constant-time; never raises

    Calls go to `crypt_rn` (libxcrypt: the caller's buffer, its size given:
    thread-safe), else `crypt_r` with a buffer larger than any libc's
    struct crypt_data; never the static-buffer crypt(). A failed call
    returns NULL (crypt_rn) or a string starting with "*" (the failure
    token): both are None here.

Security:
    The stored hash chooses the cost, so verify() first checks it: a
    yescrypt or gost-yescrypt setting must be libxcrypt's short form
    (`$y$j` + N + r, as crypt_gensalt writes it for costs 1 to 11), with
    at most 1 GiB of memory (128 * r * N octets); scrypt (`$7$`) N, r and
    p are decoded and held to the same 1 GiB and p <= 16. Anything else
    does not match: a corrupt or hostile user database cannot make a
    login allocate gigabytes or run for minutes. Hashing is slow on
    purpose: callers on an event loop use a worker thread.

See also:
    crypt(5), crypt(3), crypt_gensalt(3) (libxcrypt); auth/schemes.py (the
    CRYPT family uses verify()), auth/shadow.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hmac
import threading
from typing import Final

__all__ = [
    "ITOA64",
    "MAX_MEMORY",
    "PREFIXES",
    "SystemCrypt",
    "cost_ok",
    "system_crypt",
    "verify",
]

PREFIXES: Final = {"$y$": "yescrypt", "$gy$": "gost-yescrypt", "$7$": "scrypt"}
MAX_MEMORY: Final = 1 << 30  # octets a stored hash may ask for (see Security)
_MAX_SCRYPT_P: Final = 16
_BUFFER: Final = 256 * 1024  # > sizeof(struct crypt_data): 32 KiB libxcrypt, 128 KiB glibc
ITOA64: Final = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class SystemCrypt:
    """The crypt functions of one loaded libcrypt."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._rn = getattr(lib, "crypt_rn", None)
        self._r = getattr(lib, "crypt_r", None)
        if self._rn is None and self._r is None:
            raise OSError("libcrypt has neither crypt_rn nor crypt_r")
        for fn in (self._rn, self._r):
            if fn is not None:
                fn.restype = ctypes.c_char_p
        if self._rn is not None:
            self._rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        if self._r is not None:
            self._r.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
        self._gensalt = getattr(lib, "crypt_gensalt_rn", None)
        if self._gensalt is not None:
            self._gensalt.restype = ctypes.c_char_p
            self._gensalt.argtypes = [
                ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int,
                ctypes.c_char_p, ctypes.c_int,
            ]  # fmt: skip
        self._supported: dict[str, bool] = {}

    @classmethod
    def load(cls, name: str | None = None) -> SystemCrypt | None:
        """The system's libcrypt (or the library `name`); None when there is none."""
        path = name or ctypes.util.find_library("crypt")
        if not path:
            return None
        try:
            return cls(ctypes.CDLL(path))
        except OSError:
            return None

    def crypt(self, password: str | bytes, setting: str) -> str | None:
        """crypt(3) of `password` with `setting` (a full hash works as its own setting)."""
        key = password.encode("utf-8") if isinstance(password, str) else password
        if b"\0" in key:
            return None  # a C string ends there: never verify a prefix of the password
        try:
            salt = setting.encode("ascii")
        except UnicodeEncodeError:
            return None
        data = ctypes.create_string_buffer(_BUFFER)
        if self._rn is not None:
            out = self._rn(key, salt, data, _BUFFER)
        else:
            assert self._r is not None
            out = self._r(key, salt, data)
        if not isinstance(out, bytes) or not out or out.startswith(b"*"):
            return None
        return out.decode("ascii", "replace")

    def gensalt(self, prefix: str, cost: int = 0) -> str | None:
        """A new random setting for the method `prefix` ("$y$" ...); None when unknown."""
        if self._gensalt is None:
            return None
        out = ctypes.create_string_buffer(256)
        made = self._gensalt(prefix.encode("ascii"), cost, None, 0, out, len(out))
        return made.decode("ascii") if made else None

    def supports(self, prefix: str) -> bool:
        """This libcrypt hashes with the method `prefix` (asked once, then remembered)."""
        known = self._supported.get(prefix)
        if known is None:
            setting = self.gensalt(prefix)
            known = setting is not None and self.crypt("probe", setting) is not None
            self._supported[prefix] = known
        return known


_lock = threading.Lock()
_loaded: list[SystemCrypt | None] = []


def system_crypt() -> SystemCrypt | None:
    """The system's libcrypt, loaded on first use; None when there is none."""
    with _lock:
        if not _loaded:
            _loaded.append(SystemCrypt.load())
        return _loaded[0]


def _decode(text: str) -> int | None:
    """crypt's base-64 digits, least significant first (scrypt's N, r, p fields)."""
    value = 0
    for i, ch in enumerate(text):
        digit = ITOA64.find(ch)
        if digit < 0:
            return None
        value |= digit << (6 * i)
    return value


def cost_ok(stored: str) -> bool:
    """The stored hash's parameters are within MAX_MEMORY (see Security)."""
    if stored.startswith(("$y$", "$gy$")):
        params = stored.split("$")[2] if stored.count("$") >= 4 else ""
        # libxcrypt's short form: flavour "j", then N and r, one digit each.
        if len(params) != 3 or params[0] != "j":
            return False
        n_log2, r = ITOA64.find(params[1]) + 1, ITOA64.find(params[2]) + 1
        if n_log2 < 2 or r < 1 or n_log2 > 30:
            return False
        return 128 * r * (1 << n_log2) <= MAX_MEMORY
    if stored.startswith("$7$"):
        # $7$ N(1) r(5) p(5) salt $ hash
        if len(stored) < 14:
            return False
        scrypt_n = ITOA64.find(stored[3])
        block, lanes = _decode(stored[4:9]), _decode(stored[9:14])
        if not 1 <= scrypt_n <= 30 or not block or not lanes:
            return False
        return 128 * block * (1 << scrypt_n) <= MAX_MEMORY and lanes <= _MAX_SCRYPT_P
    return False


def verify(password: str, stored: str) -> bool:
    """True when `password` matches a yescrypt, gost-yescrypt or scrypt hash. Never raises."""
    if not stored.startswith(tuple(PREFIXES)) or not cost_ok(stored):
        return False
    sc = system_crypt()
    if sc is None:
        return False
    try:
        computed = sc.crypt(password, stored)
    except (ValueError, TypeError, UnicodeError, OSError):
        return False
    if computed is None:
        return False
    return hmac.compare_digest(
        computed.encode("ascii", "replace"), stored.encode("ascii", "replace")
    )
