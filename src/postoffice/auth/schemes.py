"""auth/schemes — Dovecot-compatible password schemes: hash new passwords, verify stored ones.

Description:
    A stored password is `{SCHEME}data`, as in Dovecot's passwd-file and
    `doveadm pw` output. Scheme names are case-insensitive. Supported:

    ARGON2ID (the default for new passwords) and ARGON2I
        `{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$salt$hash` — the PHC
        encoded form that Dovecot (libsodium) writes and reads. New hashes
        use parallelism 1, a 16-octet salt and a 32-octet tag, the only
        form libsodium writes. Both hashing and verifying go through the
        system's libsodium when it is there (auth/sodium.py, ctypes:
        about half the CPU of argon2-cffi per verification), and through
        argon2-cffi otherwise, or for a stored tag shorter than the 16
        octets libsodium accepts. The two compute the same function.
    BLF-CRYPT
        bcrypt, `$2y$`, `$2b$` or `$2a$`. New hashes are written as `$2y$`
        like `doveadm pw`. bcrypt reads at most 72 octets of a password: a
        longer password is refused when hashing and truncated when
        verifying, as every other bcrypt implementation does.
    SHA512-CRYPT and SHA256-CRYPT
        `$6$` and `$5$`, implemented here from Ulrich Drepper's
        specification "Unix crypt using SHA-256 and SHA-512" (the `crypt`
        module is gone from Python 3.13), `rounds=N` supported.
    PLAIN, CLEAR, CLEARTEXT
        the password itself. For tests and migrations only.
    SHA256, SHA512, SSHA256, SSHA512 (verify only)
        Dovecot's salted and unsalted digests, base64 or hex encoded, so
        that an imported user database keeps working until the user's
        next password change.
    CRYPT, or no `{SCHEME}` prefix at all
        the scheme is recognised by the hash's own prefix: `$6$`, `$5$`,
        `$2y$`/`$2b$`/`$2a$`, `$argon2id$`, `$argon2i$`, `$1$`, and
        `$y$` (yescrypt), `$gy$` (gost-yescrypt) and `$7$` (scrypt) when
        the system's libcrypt computes them (auth/libcrypt.py; also as
        `{YESCRYPT}`, `{GOST-YESCRYPT}`, `{SCRYPT}`). Without it those
        hashes do not match and identify_scheme() says None.

    `verify_password` never raises: an unknown scheme, a malformed hash or
    parameters outside sane bounds (see Security) simply do not match.

Security:
    Comparisons of computed and stored hashes are constant-time
    (`hmac.compare_digest`). Hash parameters come from the stored hash;
    to keep a corrupt or hostile user database from pinning a CPU or
    allocating gigabytes, verification refuses SHA-crypt rounds above
    1,000,000, bcrypt costs above 18, and Argon2 memory above 1 GiB, time
    cost above 64 or parallelism above 64. Hashing is CPU-bound and slow on
    purpose; callers on an event loop run it in a worker thread.

See also:
    auth/passwd_file.py; https://www.akkadia.org/drepper/SHA-crypt.txt;
    Dovecot "Password Schemes"; RFC 9106 (Argon2).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

import argon2
import argon2.exceptions
import argon2.low_level
import bcrypt

from postoffice.auth import libcrypt, sodium

DEFAULT_SCHEME = "ARGON2ID"

# Argon2 parameters for new hashes: RFC 9106's second recommended option
# (64 MiB, 3 passes), parallelism 1 for libsodium (and so Dovecot).
ARGON2_TIME_COST = 3
ARGON2_MEMORY_COST = 65536  # KiB
ARGON2_PARALLELISM = 1
ARGON2_SALT_LEN = 16
ARGON2_HASH_LEN = 32

BCRYPT_COST = 12
SHA_CRYPT_ROUNDS = 5000  # the specification's default; not written into the hash

# Bounds on parameters read from stored hashes (see Security).
MAX_SHA_CRYPT_ROUNDS = 1_000_000
MAX_BCRYPT_COST = 18
MAX_ARGON2_MEMORY = 1024 * 1024  # KiB
MAX_ARGON2_TIME = 64
MAX_ARGON2_PARALLELISM = 64

_PLAIN_NAMES = ("PLAIN", "CLEAR", "CLEARTEXT")


class UnknownSchemeError(ValueError):
    """hash_password was asked for a scheme it cannot produce."""


# --- SHA-crypt (Drepper) ----------------------------------------------------

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHA_CRYPT_MIN_ROUNDS = 1000
_SHA_CRYPT_MAX_ROUNDS = 999_999_999
_SHA_CRYPT_SALT_MAX = 16

# The order in which the final digest's bytes are fed, three at a time, to
# the base-64 encoder (the specification's step 22). The last group is short.
_SHA256_ORDER: tuple[tuple[int, ...], ...] = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14),
    (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
    (31, 30),
)  # fmt: skip
_SHA512_ORDER: tuple[tuple[int, ...], ...] = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4),
    (47, 5, 26), (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51),
    (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13), (56, 14, 35),
    (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
    (62, 20, 41), (63,),
)  # fmt: skip


def _crypt_b64(digest: bytes, order: tuple[tuple[int, ...], ...]) -> str:
    """Encode `digest` in crypt's little-endian base 64, groups in `order`."""
    out: list[str] = []
    for group in order:
        value = 0
        for index in group:
            value = (value << 8) | digest[index]
        # A full group of 3 bytes gives 4 characters, 2 bytes 3, 1 byte 2.
        for _ in range(len(group) + 1):
            out.append(_CRYPT_ALPHABET[value & 0x3F])
            value >>= 6
    return "".join(out)


def _repeat_to(block: bytes, length: int) -> bytes:
    """`block` repeated and cut to exactly `length` bytes."""
    whole, rest = divmod(length, len(block))
    return block * whole + block[:rest]


def _sha_crypt_raw(name: str, key: bytes, salt: bytes, rounds: int) -> bytes:
    """The specification's steps 1-21: the final digest C."""
    new = functools.partial(hashlib.new, name)
    # Steps 4-8: digest B = key, salt, key.
    b = new()
    b.update(key + salt + key)
    digest_b = b.digest()
    # Steps 1-3, 9-12: digest A.
    a = new()
    a.update(key + salt)
    a.update(_repeat_to(digest_b, len(key)))
    n = len(key)
    while n > 0:
        a.update(digest_b if n & 1 else key)
        n >>= 1
    digest_a = a.digest()
    # Steps 13-16: byte sequence P from digest DP (key repeated len(key) times).
    dp = new()
    dp.update(key * len(key))
    p_bytes = _repeat_to(dp.digest(), len(key))
    # Steps 17-20: byte sequence S from digest DS (salt repeated 16 + A[0] times).
    ds = new()
    ds.update(salt * (16 + digest_a[0]))
    s_bytes = _repeat_to(ds.digest(), len(salt))
    # Step 21: the rounds.
    c = digest_a
    for i in range(rounds):
        h = new()
        h.update(p_bytes if i & 1 else c)
        if i % 3:
            h.update(s_bytes)
        if i % 7:
            h.update(p_bytes)
        h.update(c if i & 1 else p_bytes)
        c = h.digest()
    return c


_SHA_CRYPT = {"5": ("sha256", _SHA256_ORDER), "6": ("sha512", _SHA512_ORDER)}


def sha_crypt(password: str | bytes, setting: str) -> str:
    """Drepper's SHA-crypt of `password` with `setting` (`$6$[rounds=N$]salt[$...]`).

    Returns the full hash string. The salt is cut to 16 characters and the
    rounds clamped to 1000..999999999, as the specification says; an
    explicit `rounds=` is kept in the output even when it is 5000.
    Raises ValueError on a malformed setting.
    """
    key = password.encode("utf-8") if isinstance(password, str) else password
    parts = setting.split("$")
    if len(parts) < 3 or parts[0] != "" or parts[1] not in _SHA_CRYPT:
        raise ValueError("not a SHA-crypt setting")
    ident = parts[1]
    rest = parts[2:]
    rounds = SHA_CRYPT_ROUNDS
    rounds_given = False
    if rest[0].startswith("rounds="):
        digits = rest[0][len("rounds=") :]
        if not digits.isdigit() or not digits.isascii() or len(rest) < 2:
            raise ValueError("bad rounds= in SHA-crypt setting")
        rounds = min(max(int(digits), _SHA_CRYPT_MIN_ROUNDS), _SHA_CRYPT_MAX_ROUNDS)
        rounds_given = True
        rest = rest[1:]
    salt = rest[0][:_SHA_CRYPT_SALT_MAX]
    name, order = _SHA_CRYPT[ident]
    digest = _sha_crypt_raw(name, key, salt.encode("utf-8"), rounds)
    prefix = f"${ident}$rounds={rounds}$" if rounds_given else f"${ident}$"
    return f"{prefix}{salt}${_crypt_b64(digest, order)}"


def _sha_crypt_hash(password: str, ident: str, rounds: int | None) -> str:
    salt = "".join(secrets.choice(_CRYPT_ALPHABET) for _ in range(_SHA_CRYPT_SALT_MAX))
    if rounds is None:
        return sha_crypt(password, f"${ident}${salt}")
    return sha_crypt(password, f"${ident}$rounds={rounds}${salt}")


_SHA_CRYPT_RE = re.compile(r"\$([56])\$(?:rounds=([0-9]{1,9})\$)?([^$]{0,16})\$([./0-9A-Za-z]+)\Z")


def _sha_crypt_verify(password: str, stored: str) -> bool:
    m = _SHA_CRYPT_RE.match(stored)
    if m is None:
        return False
    ident, rounds, _salt, encoded = m.groups()
    if len(encoded) != (43 if ident == "5" else 86):
        return False
    if rounds is not None and int(rounds) > MAX_SHA_CRYPT_ROUNDS:
        return False
    computed = sha_crypt(password, stored)
    return hmac.compare_digest(computed.encode("utf-8"), stored.encode("utf-8"))


# --- bcrypt -------------------------------------------------------------------

_BCRYPT_RE = re.compile(r"\$(2[aby])\$([0-9]{2})\$[./0-9A-Za-z]{53}\Z")


def _bcrypt_hash(password: str, cost: int | None) -> str:
    key = password.encode("utf-8")
    if len(key) > 72:
        raise ValueError("BLF-CRYPT passwords are limited to 72 octets")
    hashed = bcrypt.hashpw(key, bcrypt.gensalt(rounds=cost or BCRYPT_COST)).decode("ascii")
    # $2b$ and $2y$ compute the same function; $2y$ is what doveadm writes.
    return "$2y$" + hashed[4:]


def _bcrypt_verify(password: str, stored: str) -> bool:
    m = _BCRYPT_RE.match(stored)
    if m is None or not 4 <= int(m.group(2)) <= MAX_BCRYPT_COST:
        return False
    key = password.encode("utf-8")[:72]
    try:
        return bcrypt.checkpw(key, stored.encode("ascii"))
    except ValueError:
        return False


# --- Argon2 -------------------------------------------------------------------

_ARGON2_RE = re.compile(
    r"\$(argon2id|argon2i)\$v=19\$m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,10})"
    r"\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+\Z"
)
_ARGON2_TYPES = {"argon2id": argon2.low_level.Type.ID, "argon2i": argon2.low_level.Type.I}


def _argon2_hash(password: str, type_name: str) -> str:
    if (ARGON2_PARALLELISM, ARGON2_SALT_LEN, ARGON2_HASH_LEN) == (1, 16, 32):
        # libsodium writes exactly this form; None (no libsodium, Argon2i
        # with fewer than 3 passes) leaves it to argon2-cffi.
        made = sodium.hash_password(
            password, type_name, time_cost=ARGON2_TIME_COST, memory_kib=ARGON2_MEMORY_COST
        )
        if made is not None:
            return made
    encoded = argon2.low_level.hash_secret(
        password.encode("utf-8"),
        secrets.token_bytes(ARGON2_SALT_LEN),
        time_cost=ARGON2_TIME_COST,
        memory_cost=ARGON2_MEMORY_COST,
        parallelism=ARGON2_PARALLELISM,
        hash_len=ARGON2_HASH_LEN,
        type=_ARGON2_TYPES[type_name],
    )
    return encoded.decode("ascii")


def _argon2_verify(password: str, stored: str, only: str | None = None) -> bool:
    m = _ARGON2_RE.match(stored)
    if m is None or (only is not None and m.group(1) != only):
        return False
    memory, time_cost, parallelism = (int(m.group(i)) for i in (2, 3, 4))
    if (
        memory > MAX_ARGON2_MEMORY
        or not 1 <= time_cost <= MAX_ARGON2_TIME
        or not 1 <= parallelism <= MAX_ARGON2_PARALLELISM
    ):
        return False
    if sodium.verifies(stored):
        return sodium.verify(stored, password)
    try:
        return argon2.low_level.verify_secret(
            stored.encode("ascii"), password.encode("utf-8"), _ARGON2_TYPES[m.group(1)]
        )
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError, ValueError):
        return False


# --- Dovecot's plain digests (verify only) ------------------------------------

_DIGESTS = {"SHA256": ("sha256", False), "SHA512": ("sha512", False)}
_DIGESTS |= {"SSHA256": ("sha256", True), "SSHA512": ("sha512", True)}


def _decode_digest_data(data: str, size: int) -> bytes | None:
    """Dovecot's default encoding is base64; hex is accepted when the length says so."""
    if len(data) == 2 * size and re.fullmatch(r"[0-9a-fA-F]+", data):
        return bytes.fromhex(data)
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def _digest_verify(password: str, data: str, *, algorithm: str, salted: bool) -> bool:
    size = hashlib.new(algorithm).digest_size
    raw = _decode_digest_data(data, size)
    if raw is None or len(raw) < size or (not salted and len(raw) != size):
        return False
    expected, salt = raw[:size], raw[size:]
    computed = hashlib.new(algorithm, password.encode("utf-8") + salt).digest()
    return hmac.compare_digest(computed, expected)


# --- The public face ----------------------------------------------------------


def _crypt_family_verify(password: str, stored: str) -> bool:
    """CRYPT: recognise the hash by its own `$id$` prefix."""
    if stored.startswith(("$5$", "$6$")):
        return _sha_crypt_verify(password, stored)
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        return _bcrypt_verify(password, stored)
    if stored.startswith(("$argon2id$", "$argon2i$")):
        return _argon2_verify(password, stored)
    return False


_VERIFIERS: dict[str, Callable[[str, str], bool]] = {
    "ARGON2ID": lambda pw, data: _argon2_verify(pw, data, "argon2id"),
    "ARGON2I": lambda pw, data: _argon2_verify(pw, data, "argon2i"),
    "BLF-CRYPT": _bcrypt_verify,
    "SHA512-CRYPT": lambda pw, data: data.startswith("$6$") and _sha_crypt_verify(pw, data),
    "SHA256-CRYPT": lambda pw, data: data.startswith("$5$") and _sha_crypt_verify(pw, data),
    "CRYPT": _crypt_family_verify,
    **{
        name: lambda pw, data: hmac.compare_digest(pw.encode("utf-8"), data.encode("utf-8"))
        for name in _PLAIN_NAMES
    },
    **{
        name: functools.partial(_digest_verify, algorithm=algo, salted=salted)
        for name, (algo, salted) in _DIGESTS.items()
    },
}

HASH_SCHEMES = ("ARGON2ID", "ARGON2I", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "PLAIN")
"""Schemes hash_password can produce (PLAIN only for tests and migrations)."""

VERIFY_SCHEMES = tuple(sorted(_VERIFIERS))
"""Schemes verify_password understands."""


def split_scheme(stored: str) -> tuple[str, str]:
    """`{SCHEME}data` → ("SCHEME", "data"); without a prefix → ("CRYPT", stored).

    The scheme comes back upper-cased; an unterminated `{` gives ("", stored).
    """
    if stored.startswith("{"):
        end = stored.find("}")
        if end < 0:
            return "", stored
        return stored[1:end].upper(), stored[end + 1 :]
    return "CRYPT", stored


def identify_scheme(stored: str) -> str | None:
    """The scheme a stored password uses, or None when verify_password cannot check it."""
    scheme, data = split_scheme(stored)
    if scheme not in _VERIFIERS:
        return None
    if scheme == "CRYPT":
        for prefix, name in (
            ("$6$", "SHA512-CRYPT"),
            ("$5$", "SHA256-CRYPT"),
            ("$2", "BLF-CRYPT"),
            ("$argon2id$", "ARGON2ID"),
            ("$argon2i$", "ARGON2I"),
        ):
            if data.startswith(prefix):
                return name
        return None
    return scheme


def hash_password(password: str, scheme: str = DEFAULT_SCHEME, *, rounds: int | None = None) -> str:
    """Hash `password` for storage as `{SCHEME}hash`.

    `rounds` is the SHA-crypt rounds or the bcrypt cost (default: 5000 and
    12); Argon2 takes its parameters from the module constants. Raises
    UnknownSchemeError for a scheme not in HASH_SCHEMES (or its aliases
    CLEAR/CLEARTEXT) and ValueError for a password bcrypt cannot take.
    """
    name = scheme.upper()
    if name == "ARGON2ID":
        data = _argon2_hash(password, "argon2id")
    elif name == "ARGON2I":
        data = _argon2_hash(password, "argon2i")
    elif name == "BLF-CRYPT":
        data = _bcrypt_hash(password, rounds)
    elif name == "SHA512-CRYPT":
        data = _sha_crypt_hash(password, "6", rounds)
    elif name == "SHA256-CRYPT":
        data = _sha_crypt_hash(password, "5", rounds)
    elif name in _PLAIN_NAMES:
        data = password
    else:
        raise UnknownSchemeError(f"unknown password scheme {scheme!r}")
    return f"{{{name}}}{data}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches the stored `{SCHEME}hash` (or bare `$id$` hash).

    Never raises: unknown schemes and malformed or out-of-bounds hashes are
    False. An empty stored value never matches (a disabled account).
    """
    if not isinstance(password, str) or not isinstance(stored, str) or not stored:
        return False
    scheme, data = split_scheme(stored)
    verifier = _VERIFIERS.get(scheme)
    if verifier is None:
        return False
    try:
        password.encode("utf-8")
        data.encode("utf-8")
        return verifier(password, data)
    except (ValueError, TypeError, OverflowError, UnicodeError):
        return False


# --- MD5-CRYPT and SCRAM-SHA-256 (added for SASL, issue 5) ---------------------
#
# MD5-CRYPT (`$1$`, verify only): Poul-Henning Kamp's FreeBSD MD5 crypt, as
# published with FreeBSD 2.0 and used by glibc and Dovecot; still found in
# old /etc/shadow files and imported user databases. Implemented here from
# the published algorithm (see md5_crypt).
#
# SCRAM-SHA-256: Dovecot's stored form `{SCRAM-SHA-256}i,salt,StoredKey,ServerKey`
# (iterations in decimal, the rest base64), RFC 5802 §3 keys. It lets SCRAM
# authenticate without a clear-text secret on disk, and PLAIN/LOGIN verify
# against it by deriving the keys again.

_MD5_CRYPT_ORDER: tuple[tuple[int, ...], ...] = (
    (0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5), (11,),
)  # fmt: skip
_MD5_CRYPT_MAGIC = b"$1$"
_MD5_CRYPT_RE = re.compile(r"\$1\$([^$]{0,8})\$([./0-9A-Za-z]{22})\Z")
MAX_SCRAM_ITERATIONS = 1_000_000


def md5_crypt(password: str | bytes, setting: str) -> str:
    """MD5-crypt of `password` with `setting` (`$1$salt[$...]`); the full hash string.

    The salt is cut at the first "$" and to 8 characters. Raises ValueError
    when the setting does not start with `$1$`.
    """
    key = password.encode("utf-8") if isinstance(password, str) else password
    if not setting.startswith("$1$"):
        raise ValueError("not an MD5-crypt setting")
    salt_text = setting[3:].split("$", 1)[0][:8]
    salt = salt_text.encode("utf-8")
    # The alternate sum: key, salt, key.
    alternate = hashlib.md5(key + salt + key).digest()
    ctx = hashlib.md5(key + _MD5_CRYPT_MAGIC + salt)
    ctx.update(_repeat_to(alternate, len(key)))
    # One octet per bit of the key's length, low bit first: NUL for a set bit,
    # the key's first octet for a clear one (the original's "weird" step).
    n = len(key)
    while n:
        ctx.update(b"\0" if n & 1 else key[:1])
        n >>= 1
    digest = ctx.digest()
    # 1000 rounds to slow down guessing.
    for i in range(1000):
        h = hashlib.md5(key if i & 1 else digest)
        if i % 3:
            h.update(salt)
        if i % 7:
            h.update(key)
        h.update(digest if i & 1 else key)
        digest = h.digest()
    return f"$1${salt_text}${_crypt_b64(digest, _MD5_CRYPT_ORDER)}"


def _md5_crypt_verify(password: str, stored: str) -> bool:
    if _MD5_CRYPT_RE.match(stored) is None:
        return False
    computed = md5_crypt(password, stored)
    return hmac.compare_digest(computed.encode("utf-8"), stored.encode("utf-8"))


def parse_scram_sha256(data: str) -> tuple[bytes, int, bytes, bytes] | None:
    """`i,salt,StoredKey,ServerKey` → (salt, iterations, stored_key, server_key), or None."""
    parts = data.split(",")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[0].isascii():
        return None
    iterations = int(parts[0])
    if not 1 <= iterations <= MAX_SCRAM_ITERATIONS:
        return None
    decoded = []
    for text in parts[1:]:
        try:
            decoded.append(base64.b64decode(text.encode("ascii"), validate=True))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
    salt, stored_key, server_key = decoded
    if not salt or len(stored_key) != 32 or len(server_key) != 32:
        return None
    return salt, iterations, stored_key, server_key


def scram_sha256_hash(password: str, *, iterations: int | None = None) -> str:
    """`{SCRAM-SHA-256}i,salt,StoredKey,ServerKey` for `password` (16-octet random salt)."""
    from postoffice.sasl.scram import DEFAULT_ITERATIONS, secrets_from_password

    keys = secrets_from_password(
        password, secrets.token_bytes(16), iterations or DEFAULT_ITERATIONS
    )
    fields = (keys.salt, keys.stored_key, keys.server_key)
    encoded = ",".join(base64.b64encode(x).decode("ascii") for x in fields)
    return f"{{SCRAM-SHA-256}}{keys.iterations},{encoded}"


def _scram_verify(password: str, data: str) -> bool:
    from postoffice.sasl.scram import secrets_from_password

    parsed = parse_scram_sha256(data)
    if parsed is None:
        return False
    salt, iterations, stored_key, _server_key = parsed
    keys = secrets_from_password(password, salt, iterations)
    return hmac.compare_digest(keys.stored_key, stored_key)


def _crypt_family_verify_md5(password: str, stored: str) -> bool:
    """CRYPT with `$1$` and the system's libcrypt methods added to the family."""
    if stored.startswith("$1$"):
        return _md5_crypt_verify(password, stored)
    if stored.startswith(tuple(libcrypt.PREFIXES)):
        return libcrypt.verify(password, stored)
    return _crypt_family_verify(password, stored)


# yescrypt and friends through the system's libcrypt (auth/libcrypt.py), by name.
_SYSTEM_SCHEMES = {"$y$": "YESCRYPT", "$gy$": "GOST-YESCRYPT", "$7$": "SCRYPT"}


def _system_verifier(prefix: str) -> Callable[[str, str], bool]:
    return lambda pw, data: data.startswith(prefix) and libcrypt.verify(pw, data)


def system_scheme_available(stored: str) -> bool | None:
    """For a `$y$`/`$gy$`/`$7$` hash (CRYPT data): whether this system's libcrypt
    computes it; None for any other hash."""
    prefix = next((p for p in _SYSTEM_SCHEMES if stored.startswith(p)), None)
    if prefix is None:
        return None
    sc = libcrypt.system_crypt()
    return sc is not None and sc.supports(prefix)


_VERIFIERS["MD5-CRYPT"] = lambda pw, data: data.startswith("$1$") and _md5_crypt_verify(pw, data)
_VERIFIERS["SCRAM-SHA-256"] = _scram_verify
_VERIFIERS["CRYPT"] = _crypt_family_verify_md5
_VERIFIERS.update({name: _system_verifier(prefix) for prefix, name in _SYSTEM_SCHEMES.items()})
VERIFY_SCHEMES = tuple(sorted(_VERIFIERS))
_identify_scheme_without_md5 = identify_scheme


def identify_scheme(stored: str) -> str | None:  # type: ignore[no-redef]
    """The scheme a stored password uses, or None when verify_password cannot check it."""
    scheme, data = split_scheme(stored)
    if scheme == "CRYPT" and data.startswith("$1$"):
        return "MD5-CRYPT"
    if scheme == "CRYPT" or scheme in _SYSTEM_SCHEMES.values():
        available = system_scheme_available(data)
        if available is not None:
            name = next(n for p, n in _SYSTEM_SCHEMES.items() if data.startswith(p))
            return name if available and scheme in ("CRYPT", name) else None
    return _identify_scheme_without_md5(stored)
