"""auth/shadow — system accounts from /etc/shadow: look up a user, verify a password.

Description:
    ShadowDB.load(path="/etc/shadow", clock=time.time) reads shadow(5) lines,

        name:password:lastchg:min:max:warn:inactive:expire:reserved

    and keeps them in memory; reload_if_changed() re-reads the file when its
    inode, size or mtime changed. Lines that do not have nine fields, and
    NIS `+`/`-` lines, are skipped. Names are matched exactly (system
    account names are case-sensitive).

    verify(name, password) -> bool is True when the account exists, is
    usable and the password matches its hash:
      $6$  SHA512-CRYPT and $5$ SHA256-CRYPT (auth/schemes.sha_crypt),
      $1$  MD5-CRYPT (auth/schemes.md5_crypt),
      $2b$/$2y$/$2a$ bcrypt, as some BSD-derived systems write;
      $y$  yescrypt (Debian's default since 11), $gy$ gost-yescrypt and
           $7$ scrypt through the system's libcrypt (libxcrypt, via ctypes:
           auth/libcrypt.py) when it computes them. Where it does not
           (no libxcrypt, an old glibc libcrypt, musl), and for the old
           13-character DES crypt, the account cannot log in: False, with
           one warning per ShadowDB and kind in the log ("... not
           supported by this system's libcrypt") and a count in
           statistics(); such users log in through the passwd-file
           (`postoffice user add`).
    An account is not usable when its password field is empty (no password
    is no mail login), starts with "!" or "*" (locked, or no password),
    when its expiry date (field 8, days since 1970-01-01) has passed, or
    when its password expired (lastchg + max) longer ago than the
    inactivity period (field 7) allows (shadow(5)).

    lookup(name) -> ShadowEntry | None gives the parsed line.

Security:
    /etc/shadow is readable by root (and group shadow) only: load() raises
    PermissionError otherwise, and [auth] system_accounts is off by
    default. verify() costs about the same whether or not the user exists
    or can log in: every path that does not check a real hash checks a
    dummy SHA512-CRYPT hash instead. Hashing is slow on purpose: callers on
    the event loop use a worker thread.

Config:
    [auth] system_accounts (whether app.py uses this at all).

See also:
    shadow(5), crypt(5); auth/schemes.py, auth/libcrypt.py;
    auth/passwd_file.py (UserDB, the same verify() contract).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.auth import libcrypt, schemes

__all__ = ["SHADOW_PATH", "ShadowDB", "ShadowEntry", "parse_shadow"]

SHADOW_PATH = "/etc/shadow"
_DAY = 86400
log = logging.getLogger("postoffice.auth.shadow")

_SUPPORTED = ("$6$", "$5$", "$1$", "$2a$", "$2b$", "$2y$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowEntry:
    """One shadow(5) line; day counts are days since 1970-01-01, None when empty."""

    name: str
    password: str
    last_change: int | None = None
    max_days: int | None = None
    inactive_days: int | None = None
    expire: int | None = None


def _days(text: str) -> int | None:
    return int(text) if text.isdigit() and text.isascii() else None


def parse_shadow(text: str) -> dict[str, ShadowEntry]:
    """The accounts of a shadow file's text; broken and NIS lines are skipped."""
    entries: dict[str, ShadowEntry] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) != 9 or not fields[0] or fields[0][0] in "+-#":
            continue
        entries.setdefault(
            fields[0],
            ShadowEntry(
                name=fields[0],
                password=fields[1],
                last_change=_days(fields[2]),
                max_days=_days(fields[4]),
                inactive_days=_days(fields[6]),
                expire=_days(fields[7]),
            ),
        )
    return entries


_Signature = tuple[int, int, int, int]


class ShadowDB:
    """System accounts from a shadow file (see the module docstring)."""

    def __init__(
        self,
        path: str,
        entries: dict[str, ShadowEntry],
        signature: _Signature | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self._entries = entries
        self._signature = signature
        self._clock = clock
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._stats = {"verified": 0, "failed": 0, "unsupported": 0, "loads": 1}
        self._dummy = schemes.sha_crypt(secrets.token_urlsafe(12), "$6$" + secrets.token_hex(8))

    @classmethod
    def load(cls, path: str = SHADOW_PATH, *, clock: Callable[[], float] = time.time) -> ShadowDB:
        """Read `path`; OSError (PermissionError when not root) when it cannot be read."""
        entries, signature = cls._read(path)
        return cls(path, entries, signature, clock=clock)

    @staticmethod
    def _read(path: str) -> tuple[dict[str, ShadowEntry], _Signature]:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        return parse_shadow(raw.decode("utf-8", "replace")), signature

    @property
    def path(self) -> str:
        return self._path

    def reload_if_changed(self) -> bool:
        """Re-read the file when it changed; True when it did. OSError when unreadable."""
        st = os.stat(self._path)
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == self._signature:
            return False
        entries, signature = self._read(self._path)
        with self._lock:
            self._entries, self._signature = entries, signature
            self._stats["loads"] += 1
        return True

    def lookup(self, name: str) -> ShadowEntry | None:
        return self._entries.get(name)

    def usable(self, entry: ShadowEntry) -> bool:
        """Not locked, not passwordless, not expired (shadow(5))."""
        if not entry.password or entry.password[0] in "!*":
            return False
        today = int(self._clock() // _DAY)
        if entry.expire is not None and today >= entry.expire:
            return False
        last, most, grace = entry.last_change, entry.max_days, entry.inactive_days
        # lastchg 0 means "change at next login": not an expiry of its own here.
        return not (
            last and most is not None and grace is not None and today >= last + most + grace
        )

    def _supported(self, hashed: str) -> bool:
        if hashed.startswith(_SUPPORTED):
            return True
        system = schemes.system_scheme_available(hashed)  # $y$, $gy$, $7$: libcrypt
        if system:
            return True
        kind = next((v for k, v in libcrypt.PREFIXES.items() if hashed.startswith(k)), None)
        if kind is not None:
            why = "not supported by this system's libcrypt"
        else:
            kind = "DES crypt" if len(hashed) == 13 and "$" not in hashed else "unknown"
            why = "not supported"
        with self._lock:
            self._stats["unsupported"] += 1
            first = kind not in self._warned
            self._warned.add(kind)
        if first:
            log.warning(
                "%s: %s password hashes are %s; those accounts cannot log in "
                "(use the passwd-file)",
                self._path, kind, why,
            )  # fmt: skip
        return False

    def verify(self, name: str, password: str) -> bool:
        """True when the account exists, is usable and `password` matches."""
        entry = self._entries.get(name)
        real = entry is not None and self.usable(entry) and self._supported(entry.password)
        stored = entry.password if real and entry is not None else self._dummy
        ok = schemes.verify_password(password, "{CRYPT}" + stored) and real
        with self._lock:
            self._stats["verified" if ok else "failed"] += 1
        return ok

    def statistics(self) -> dict[str, int]:
        """Counters: users, loads, verified, failed, unsupported (hashes met)."""
        with self._lock:
            return {"users": len(self._entries), **self._stats}
