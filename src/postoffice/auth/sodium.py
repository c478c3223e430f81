"""auth/sodium — Argon2id and Argon2i through the system's libsodium (ctypes), when it is there.

Description:
    Verifying an ARGON2ID password (m = 64 MiB, t = 3, p = 1) costs about
    140 ms of CPU with argon2-cffi (its bundled libargon2) and about
    80 ms with libsodium, whose Argon2 picks SSSE3/AVX2/AVX-512 code at
    run time; Dovecot uses libsodium. This module reaches the system's
    libsodium (libsodium23 on Debian, a Dovecot dependency) through
    ctypes: nothing is compiled and nothing is installed. When there is
    none, system_sodium() is None and auth/schemes.py keeps using
    argon2-cffi, which computes the same function and reads and writes
    the same strings.

        lib = system_sodium()                 # Sodium | None (loaded once)
        verifies(encoded) -> bool             # libsodium is here and can check it
        verify(encoded, password) -> bool     # never raises; False when it cannot
        hash_password(password, "argon2id", time_cost=3, memory_kib=65536) -> str | None
        parse(encoded) -> Argon2Params | None # the PHC string's fields
        set_loader(loader)                    # another loader (tests); forgets the loaded one

    The strings are the PHC form `$argon2id$v=19$m=65536,t=3,p=1$salt$tag`
    (RFC 9106 §4 parameters; salt and tag in unpadded standard base 64).
    libsodium verifies any number of lanes (p) but writes only p = 1, a
    16-octet salt and a 32-octet tag: exactly the strings auth/schemes.py
    writes with argon2-cffi. It refuses tags shorter than 16 octets, which
    the reference code accepts (4 and up): verifies() is False for them
    and auth/schemes.py checks those with argon2-cffi.

    The calls go through ctypes.CDLL, which releases the GIL for the
    length of a call: verifications in worker threads run in parallel.
    libsodium's functions are thread-safe once sodium_init() has run,
    which load() does.

Security:
    The stored string chooses the cost, so verify() parses it first and
    refuses memory above 1 GiB (MAX_MEMORY_KIB), more than 64 passes or
    more than 64 lanes, the bounds auth/schemes.py applies to argon2-cffi:
    a corrupt or hostile user database cannot make a login allocate
    gigabytes or run for minutes. A string that does not parse, a
    password that is not UTF-8 encodable and any libsodium failure
    (decoding, allocation) are False, never an exception. libsodium
    compares the tags in constant time (sodium_memcmp). The password is
    passed with its length, so a NUL inside it is hashed, not a stop.

See also:
    auth/schemes.py (ARGON2ID, ARGON2I), auth/libcrypt.py (the same
    approach for yescrypt); libsodium's crypto_pwhash_argon2id(3)
    documentation ("Password hashing"); RFC 9106.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_MEMORY_KIB",
    "MAX_PARALLELISM",
    "MAX_TIME",
    "MIN_TAG_BYTES",
    "VARIANTS",
    "Argon2Params",
    "Sodium",
    "cost_ok",
    "hash_password",
    "parse",
    "set_loader",
    "system_sodium",
    "verifies",
    "verify",
]

VARIANTS: Final = ("argon2id", "argon2i")
MAX_MEMORY_KIB: Final = 1024 * 1024  # 1 GiB (see Security)
MAX_TIME: Final = 64
MAX_PARALLELISM: Final = 64
MIN_TAG_BYTES: Final = 16  # libsodium's ARGON2_MIN_OUTLEN; the reference code's is 4
_STR_BYTES: Final = 128  # crypto_pwhash_argon2id_STRBYTES: the encoded string and its NUL
_SALT_BYTES: Final = 16  # crypto_pwhash_argon2id_SALTBYTES: what hashing writes

_PHC_RE: Final = re.compile(
    r"\$(argon2id|argon2i)\$v=19\$m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,10})"
    r"\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)\Z"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Argon2Params:
    """The fields of a PHC Argon2 string (octet counts from the base-64 lengths)."""

    variant: str  # "argon2id" or "argon2i"
    memory_kib: int
    time_cost: int
    parallelism: int
    salt_bytes: int
    tag_bytes: int


def _b64_octets(text: str) -> int | None:
    """Octets in unpadded base 64 of this length; None for an impossible length."""
    whole, rest = divmod(len(text), 4)
    return None if rest == 1 else whole * 3 + max(rest - 1, 0)


def parse(encoded: str) -> Argon2Params | None:
    """The fields of `$argon2id$v=19$m=..,t=..,p=..$salt$tag` (or argon2i); None if malformed."""
    m = _PHC_RE.match(encoded)
    if m is None:
        return None
    salt, tag = _b64_octets(m.group(5)), _b64_octets(m.group(6))
    if salt is None or tag is None:
        return None
    return Argon2Params(
        variant=m.group(1),
        memory_kib=int(m.group(2)),
        time_cost=int(m.group(3)),
        parallelism=int(m.group(4)),
        salt_bytes=salt,
        tag_bytes=tag,
    )


def cost_ok(params: Argon2Params) -> bool:
    """Memory, passes and lanes within the bounds of Security."""
    return (
        params.memory_kib <= MAX_MEMORY_KIB
        and 1 <= params.time_cost <= MAX_TIME
        and 1 <= params.parallelism <= MAX_PARALLELISM
    )


def _password_bytes(password: str | bytes) -> bytes | None:
    if isinstance(password, bytes):
        return password
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:
        return None


class Sodium:
    """The Argon2 functions of one loaded libsodium (sodium_init() done)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        init = lib.sodium_init
        init.restype = ctypes.c_int
        init.argtypes = []
        if init() < 0:  # 0: initialised now, 1: already
            raise OSError("sodium_init failed")
        self._verify: dict[str, Callable[[bytes, bytes, int], int]] = {}
        self._hash: dict[str, Callable[[ctypes.Array[ctypes.c_char], bytes, int, int, int], int]]
        self._hash = {}
        for variant in VARIANTS:
            check = getattr(lib, f"crypto_pwhash_{variant}_str_verify")
            check.restype = ctypes.c_int
            check.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong]
            make = getattr(lib, f"crypto_pwhash_{variant}_str")
            make.restype = ctypes.c_int
            make.argtypes = [
                ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong,
                ctypes.c_ulonglong, ctypes.c_size_t,
            ]  # fmt: skip
            size = getattr(lib, f"crypto_pwhash_{variant}_strbytes")
            size.restype = ctypes.c_size_t
            size.argtypes = []
            salt = getattr(lib, f"crypto_pwhash_{variant}_saltbytes")
            salt.restype = ctypes.c_size_t
            salt.argtypes = []
            if size() != _STR_BYTES or salt() != _SALT_BYTES:
                raise OSError("libsodium's Argon2 string sizes are not the documented ones")
            self._verify[variant] = check
            self._hash[variant] = make

    @classmethod
    def load(
        cls,
        name: str | None = None,
        *,
        find: Callable[[str], str | None] = ctypes.util.find_library,
        opener: Callable[[str], ctypes.CDLL] = ctypes.CDLL,
    ) -> Sodium | None:
        """The system's libsodium (or the library `name`); None when there is none usable."""
        path = name or find("sodium")
        if not path:
            return None
        try:
            return cls(opener(path))
        except (OSError, AttributeError):  # not loadable, or a symbol missing (< 1.0.13)
            return None

    def verify(self, encoded: str, password: str | bytes) -> bool:
        """libsodium's verdict, no bounds checked (use the module's verify())."""
        key = _password_bytes(password)
        variant = encoded[1:].split("$", 1)[0]
        check = self._verify.get(variant)
        if key is None or check is None or "\0" in encoded:
            return False
        try:
            stored = encoded.encode("ascii")
        except UnicodeEncodeError:
            return False
        return check(stored, key, len(key)) == 0

    def hash(
        self, password: str | bytes, variant: str, *, time_cost: int, memory_kib: int
    ) -> str | None:
        """A new `$<variant>$v=19$m=<memory_kib>,t=<time_cost>,p=1$...` string; None on failure.

        libsodium refuses Argon2i with fewer than 3 passes and memory
        below 8 KiB; those, and a failed allocation, are None.
        """
        key = _password_bytes(password)
        make = self._hash.get(variant)
        if key is None or make is None or time_cost < 1 or memory_kib < 1:
            return None
        out = ctypes.create_string_buffer(_STR_BYTES)
        if make(out, key, len(key), time_cost, memory_kib * 1024) != 0:
            return None
        return out.value.decode("ascii")


_lock = threading.Lock()
_loader: list[Callable[[], Sodium | None]] = [Sodium.load]
_loaded: list[Sodium | None] = []


def system_sodium() -> Sodium | None:
    """The system's libsodium, loaded on first use; None when there is none."""
    with _lock:
        if not _loaded:
            _loaded.append(_loader[0]())
        return _loaded[0]


def set_loader(loader: Callable[[], Sodium | None]) -> None:
    """Load with `loader` from now on (`Sodium.load` is the default); forget what was loaded."""
    with _lock:
        _loader[0] = loader
        _loaded.clear()


def verifies(encoded: str) -> bool:
    """libsodium is here and can check this string: well formed, in bounds, tag >= 16 octets."""
    params = parse(encoded)
    return (
        params is not None
        and cost_ok(params)
        and params.tag_bytes >= MIN_TAG_BYTES
        and system_sodium() is not None
    )


def verify(encoded: str, password: str | bytes) -> bool:
    """True when `password` matches the Argon2 string `encoded`. Never raises.

    False also when there is no libsodium, or the string is malformed,
    out of bounds or one libsodium cannot check (see verifies()).
    """
    try:
        if not verifies(encoded):
            return False
        lib = system_sodium()
        return lib is not None and lib.verify(encoded, password)
    except (ValueError, TypeError, UnicodeError, OSError, ctypes.ArgumentError):
        return False


def hash_password(
    password: str | bytes, variant: str = "argon2id", *, time_cost: int, memory_kib: int
) -> str | None:
    """A new PHC string (16-octet salt, 32-octet tag, p = 1); None without libsodium, on failure."""
    if variant not in VARIANTS or memory_kib > MAX_MEMORY_KIB or time_cost > MAX_TIME:
        return None
    lib = system_sodium()
    if lib is None:
        return None
    return lib.hash(password, variant, time_cost=time_cost, memory_kib=memory_kib)
