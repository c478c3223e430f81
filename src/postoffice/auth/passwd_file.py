"""auth/passwd_file — the user database: a Dovecot-compatible passwd-file.

Description:
    One user per line, in Dovecot's passwd-file format:

        user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields

    Only the first two fields are required; `extra_fields` is a
    space-separated list of `key=value` words (everything after the
    seventh colon). Blank lines and lines starting with `#` are ignored.
    The file can be shared with Dovecot as its passdb and userdb.

    Names. Lookups are case-insensitive in the domain *and* the local part:
    both sides are lower-cased before comparing. RFC 5321 lets a local part
    be case-sensitive, but no real mail system makes `Bob` and `bob`
    different people, and Dovecot's usual `auth_username_format = %Lu`
    does the same. add_user writes the address lower-cased so that Dovecot
    finds it too. Two lines for the same name are an error.

    Loading. UserDB.load(path) reads the whole file; a missing file is an
    empty database; a broken line is a ConfigError naming file and line.
    reload_if_changed() re-reads the file when its inode, size or mtime
    changed, so a running server sees `postoffice user add` at once; on a
    broken file it raises and keeps serving the previous contents.

    Changing. add_user, delete_user and set_password re-read the file
    under an exclusive flock on its directory, change only the line
    concerned (comments, order and the unknown fields of other lines stay
    as they were), write a temporary file with mode 0600, fsync it,
    rename it over the old file and fsync the directory. A missing
    directory is created with mode 0700.

Security:
    The file holds password hashes: it is refused (ConfigError) when it is
    writable by group or others, and rewritten with mode 0600 (keeping its
    owner when running as root). verify() costs the same for an unknown
    user as for a known one (it checks against a dummy hash), so timing
    does not tell which addresses exist. Hashing and verifying are slow on
    purpose; callers on the event loop use a worker thread.

Config:
    users_file.

See also:
    auth/schemes.py; Dovecot "Passwd-file" (doc.dovecot.org);
    cli/user.py (`postoffice user add|del|passwd|list`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from postoffice.auth import schemes
from postoffice.config.schema import Config
from postoffice.errors import ConfigError, PostofficeError

_FIELD_COUNT = 7  # user, password, uid, gid, gecos, home, shell; then extra_fields


class UserError(PostofficeError):
    """A user operation cannot be done: the user exists, does not exist, or a bad name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """One line of the passwd-file."""

    address: str  # the user field as written, usually local@domain
    password: str = ""  # {SCHEME}hash; "" means no password login
    uid: str = ""
    gid: str = ""
    gecos: str = ""
    home: str = ""
    shell: str = ""
    extra_fields: tuple[str, ...] = ()
    line: int = 0  # where it was read; 0 when not from a file

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0] if "@" in self.address else self.address

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] if "@" in self.address else ""


def normalise_name(address: str) -> str:
    """The lookup key of a user name: lower-cased, the domain's trailing dot removed."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower()
    return f"{local.lower()}@{domain.lower().removesuffix('.')}"


def _bad_char(text: str) -> bool:
    return any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in text)


def parse_line(line: str, *, file: str = "", number: int = 0) -> User | None:
    """One passwd-file line → User; None for blank and comment lines.

    Raises ConfigError naming file and line for a broken line.
    """
    text = line.rstrip("\r\n")
    if not text.strip() or text.lstrip().startswith("#"):
        return None

    def broken(message: str) -> ConfigError:
        return ConfigError(message, file=file, line=number)

    if ":" not in text:
        raise broken("expected user:password[:uid:gid:gecos:home:shell:extra_fields]")
    parts = text.split(":", _FIELD_COUNT)
    name = parts[0]
    if not name:
        raise broken("empty user name")
    if _bad_char(name):
        raise broken(f"user name {name!r} contains white space or control characters")
    parts += [""] * (_FIELD_COUNT + 1 - len(parts))
    for label, value in (("uid", parts[2]), ("gid", parts[3])):
        if _bad_char(value):
            raise broken(f"{label} {value!r} contains white space")
    return User(
        address=name,
        password=parts[1],
        uid=parts[2],
        gid=parts[3],
        gecos=parts[4],
        home=parts[5],
        shell=parts[6],
        extra_fields=tuple(parts[7].split()),
        line=number,
    )


def _lines(text: str) -> list[str]:
    """The lines of a file: split at LF only (a stray U+2028 in a gecos is no line break)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [x.removesuffix("\r") for x in lines]


def parse_text(text: str, *, file: str = "") -> dict[str, User]:
    """Every user of a passwd-file text, keyed by normalise_name, in file order."""
    users: dict[str, User] = {}
    for number, line in enumerate(_lines(text), start=1):
        user = parse_line(line, file=file, number=number)
        if user is None:
            continue
        key = normalise_name(user.address)
        if key in users:
            first = users[key].line
            raise ConfigError(
                f"duplicate user {user.address!r} (first at line {first})", file=file, line=number
            )
        users[key] = user
    return users


def check_new_address(address: str) -> str:
    """Check a name for add_user: `local@domain`, nothing that breaks the file. Lower-cases it."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise UserError(f"{address!r} is not an address of the form user@domain")
    if ":" in address or _bad_char(address) or address.startswith("#"):
        raise UserError(f"{address!r} contains a colon, white space or control characters")
    return normalise_name(address)


def _check_mode(st: os.stat_result, path: str) -> None:
    if st.st_mode & 0o022:
        raise ConfigError(
            f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            "run chmod 600 on it",
            file=path,
        )


Signature = tuple[int, int, int, int]


def _signature(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(path: str) -> tuple[str, Signature | None, os.stat_result | None]:
    """Text, change signature and stat of `path`; ("", None, None) when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return "", None, None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        _check_mode(st, path)
        raw = f.read()
    try:
        return raw.decode("utf-8"), _signature(st), st
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", file=path, line=line) from None


@contextlib.contextmanager
def _locked_dir(directory: str) -> Iterator[int]:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # also releases the lock


def _write_atomically(path: str, text: str, dir_fd: int, old: os.stat_result | None) -> None:
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            if old is not None and os.geteuid() == 0:
                os.fchown(f.fileno(), old.st_uid, old.st_gid)
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.fsync(dir_fd)


_dummy_hash: str | None = None


def _dummy() -> str:
    """A hash to verify against for unknown users, so they cost as much as known ones."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = schemes.hash_password(secrets.token_urlsafe(16))
    return _dummy_hash


@dataclass(slots=True)
class _Stats:
    loads: int = 0
    verified: int = 0
    failed: int = 0


class UserDB:
    """The users of one passwd-file; see the module documentation."""

    def __init__(self, path: str, users: dict[str, User], signature: Signature | None) -> None:
        self._path = path
        self._users = users
        self._signature = signature
        self._lock = threading.Lock()
        self._stats = _Stats(loads=1)

    @classmethod
    def load(cls, path: str) -> UserDB:
        """Read `path` (missing = empty); ConfigError with file:line on a broken line."""
        text, signature, _ = _read(path)
        return cls(path, parse_text(text, file=path), signature)

    @classmethod
    def from_text(cls, text: str, *, path: str = "<memory>") -> UserDB:
        """A database from text, for tests; reload_if_changed never fires and writes fail."""
        return cls(path, parse_text(text, file=path), None)

    @property
    def path(self) -> str:
        return self._path

    def lookup(self, address: str) -> User | None:
        """The user with this name (case-insensitive, see Description), or None."""
        return self._users.get(normalise_name(address))

    def exists(self, address: str) -> bool:
        return normalise_name(address) in self._users

    def verify(self, address: str, password: str) -> bool:
        """True when `address` exists and `password` matches its stored hash."""
        user = self.lookup(address)
        stored = user.password if user is not None else _dummy()
        ok = schemes.verify_password(password, stored) and user is not None
        with self._lock:
            if ok:
                self._stats.verified += 1
            else:
                self._stats.failed += 1
        return ok

    def users(self) -> list[User]:
        """Every user, in file order."""
        return list(self._users.values())

    def statistics(self) -> dict[str, int]:
        """Counters: users, loads, verified, failed."""
        with self._lock:
            return {
                "users": len(self._users),
                "loads": self._stats.loads,
                "verified": self._stats.verified,
                "failed": self._stats.failed,
            }

    def reload_if_changed(self) -> bool:
        """Re-read the file when it changed (inode, size, mtime); True when it did.

        Raises ConfigError for a broken file and keeps the previous users.
        """
        if self._path == "<memory>":
            return False
        try:
            st = os.stat(self._path)
            signature: Signature | None = _signature(st)
        except FileNotFoundError:
            signature = None
        if signature == self._signature:
            return False
        self._reload()
        return True

    def _reload(self) -> None:
        text, signature, _ = _read(self._path)
        users = parse_text(text, file=self._path)
        with self._lock:
            self._users, self._signature = users, signature
            self._stats.loads += 1

    # --- Changing the file -------------------------------------------------------

    def _rewrite(self, change: Callable[[list[str], dict[str, User]], list[str]]) -> None:
        if self._path == "<memory>":
            raise UserError("this user database has no file")
        directory = os.path.dirname(os.path.abspath(self._path))
        with _locked_dir(directory) as dir_fd:
            text, _, old = _read(self._path)
            current = parse_text(text, file=self._path)
            lines = change(_lines(text), current)
            _write_atomically(self._path, "".join(f"{x}\n" for x in lines), dir_fd, old)
        self._reload()

    def add_user(
        self,
        address: str,
        password: str,
        *,
        scheme: str = schemes.DEFAULT_SCHEME,
        fields: tuple[str, str, str, str, str] = ("", "", "", "", ""),
        extra_fields: tuple[str, ...] = (),
    ) -> User:
        """Append a user; `fields` are uid, gid, gecos, home, shell. UserError when it exists."""
        name = check_new_address(address)
        stored = _hash(password, scheme)
        for value in (*fields, *extra_fields):
            if ":" in value or "\n" in value or "\r" in value:
                raise UserError(f"field {value!r} contains a colon or a line break")
        if any(not word or _bad_char(word) for word in extra_fields):
            raise UserError("extra fields must be single words (key=value)")
        line = f"{name}:{stored}"
        if any(fields) or extra_fields:
            line = ":".join((line, *fields, " ".join(extra_fields))).rstrip(":")

        def change(lines: list[str], current: dict[str, User]) -> list[str]:
            if name in current:
                raise UserError(f"user {address} already exists (line {current[name].line})")
            return [*lines, line]

        self._rewrite(change)
        user = self.lookup(name)
        assert user is not None
        return user

    def delete_user(self, address: str) -> User:
        """Remove a user's line; UserError when there is none. Returns the removed user."""
        key = normalise_name(address)
        removed: list[User] = []

        def change(lines: list[str], current: dict[str, User]) -> list[str]:
            if key not in current:
                raise UserError(f"no such user: {address}")
            removed.append(current[key])
            drop = current[key].line
            return [x for number, x in enumerate(lines, start=1) if number != drop]

        self._rewrite(change)
        return removed[0]

    def set_password(
        self, address: str, password: str, *, scheme: str = schemes.DEFAULT_SCHEME
    ) -> User:
        """Replace a user's password field, keeping every other field; UserError when unknown."""
        key = normalise_name(address)
        stored = _hash(password, scheme)

        def change(lines: list[str], current: dict[str, User]) -> list[str]:
            if key not in current:
                raise UserError(f"no such user: {address}")
            index = current[key].line - 1
            parts = lines[index].split(":", 2)
            parts[1] = stored
            return [*lines[:index], ":".join(parts), *lines[index + 1 :]]

        self._rewrite(change)
        user = self.lookup(key)
        assert user is not None
        return user


def _hash(password: str, scheme: str) -> str:
    if not password:
        raise UserError("empty passwords are not allowed")
    try:
        stored = schemes.hash_password(password, scheme)
    except ValueError as e:  # includes UnknownSchemeError
        raise UserError(str(e)) from None
    if ":" in stored or "\n" in stored or "\r" in stored:
        raise UserError(f"a {scheme} password may not contain a colon or a line break")
    return stored


def check_users_file(cfg: Config) -> list[str]:
    """Problems with cfg.users_file as "file:line: message" lines (for `config check`)."""
    try:
        db = UserDB.load(cfg.users_file)
    except ConfigError as e:
        return [str(e)]
    except OSError as e:
        return [f"{cfg.users_file}: cannot read: {e.strerror or e}"]
    problems = []
    for user in db.users():
        if user.password and schemes.identify_scheme(user.password) is None:
            scheme, _ = schemes.split_scheme(user.password)
            problems.append(
                f"{cfg.users_file}:{user.line}: {user.address}: "
                f"unknown password scheme {scheme or '(none)'}"
            )
    return problems


__all__ = [
    "User",
    "UserDB",
    "UserError",
    "check_new_address",
    "check_users_file",
    "normalise_name",
    "parse_line",
    "parse_text",
]
