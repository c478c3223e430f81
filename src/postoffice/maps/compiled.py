"""maps/compiled — the compiled form of a map: what `makemap hash` and `newaliases` write.

Description:
    sendmail compiles `NAME` into a Berkeley DB file `NAME.db` so that a
    lookup in a large map does not read the whole text. postoffice writes
    an SQLite file (stdlib sqlite3) at the same place, `NAME.db`:

        CREATE TABLE map  (key TEXT PRIMARY KEY, value TEXT NOT NULL,
                           line INTEGER NOT NULL) WITHOUT ROWID
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID

    meta rows: `version` (this format: 1), `source` (the text file the
    entries came from, so entries still name "file:line"), `kind`
    (`aliases` or `text`), `fold_case` (1: keys were lower-cased, lookups
    fold too; makemap -f writes 0), `entries`, and `problems` (the source's
    broken lines, one per line, so `config check` still reports them).

    A lookup is one primary-key probe on a read-only connection: a few
    microseconds in a 100,000-entry map (bench/maps_bench.py). The file is
    opened `immutable` (no locking): files are only ever replaced by
    rename, never changed in place, so whoever edits one by other means
    (the sqlite3 shell) must do the same.

    Writing is atomic (CONVENTIONS §9): a temporary file in the same
    directory, filled with journaling off, fsynced, given the text file's
    permission bits (less any group/other write) and, when run as root, its
    owner, renamed over `NAME.db`, and the directory fsynced. A reader never
    sees half a map; a running server keeps the old file open until it
    notices the new one (reload_if_changed).

    API:
        write_compiled(db_path, entries, *, source, kind, fold_case=True,
                       problems=(), mode=None, owner=None) -> CompileResult
        compile_map(text_path, db_path=None, *, aliases, fold_case=True,
                    allow_empty=False, safe_files=False) -> CompileResult
            parse the text file (maps/text or maps/aliases grammar) and
            write `db_path` (default: text_path + ".db"). Raises
            CompileError (missing, unreadable or refused source) or OSError
            (cannot write).
        CompiledMap(name, path, *, safe_files=True, log=True)
            implements maps.interfaces.Map over the file; also entries()
            (by source line), source, kind, close(). A file that is missing,
            unsafe or not in this format is an empty map whose problems()
            says so.
        is_compiled_map(path) -> bool: the file starts with SQLite's magic.
        db_path_for(name) -> str: NAME.db (NAME if it already ends in .db).

Security:
    The file is opened read-only; the safe-file checks (maps/safefile.py)
    apply to it as to the text file.

See also:
    sendmail makemap(8), newaliases(1); maps/registry.py (text or
    compiled), cli/makemap.py, cli/newaliases.py.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import tempfile
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from postoffice.maps.aliases import parse_aliases
from postoffice.maps.interfaces import MapEntry
from postoffice.maps.safefile import Signature, check_file, file_signature, read_file, refuse
from postoffice.maps.text import fold_key, parse_text_map

log = logging.getLogger("postoffice.maps")

FORMAT_VERSION = "1"
SQLITE_MAGIC = b"SQLite format 3\x00"
_SCHEMA = (
    "CREATE TABLE map (key TEXT PRIMARY KEY, value TEXT NOT NULL, line INTEGER NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)


class CompileError(Exception):
    """The source of a compile could not be used (missing, unreadable, unsafe)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused  # True: refused by the safe-file checks


@dataclass(frozen=True, slots=True, kw_only=True)
class CompileResult:
    """What a compile wrote, with newaliases' numbers."""

    db_path: str
    source: str
    entries: int
    longest: int  # the longest value, in bytes
    total_bytes: int  # keys plus values, in bytes
    problems: tuple[str, ...] = ()


def db_path_for(name: str) -> str:
    """The compiled file for map NAME: NAME.db (makemap adds .db unless it is there)."""
    return name if name.endswith(".db") else name + ".db"


def is_compiled_map(path: str) -> bool:
    """True when `path` is an SQLite file (not, say, a Berkeley DB left by sendmail)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _fsync_path(path: str, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_compiled(
    db_path: str,
    entries: Iterable[MapEntry],
    *,
    source: str,
    kind: str,
    fold_case: bool = True,
    problems: Sequence[str] = (),
    mode: int | None = None,
    owner: tuple[int, int] | None = None,
) -> CompileResult:
    """Write `entries` to `db_path` atomically (see the module docstring)."""
    rows = sorted(((e.key, e.value, e.line) for e in entries), key=lambda r: r[0])
    directory = os.path.dirname(os.path.abspath(db_path))
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(db_path)}.", suffix=".tmp", dir=directory
    )
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("BEGIN")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany("INSERT OR REPLACE INTO map VALUES (?, ?, ?)", rows)
            meta = {
                "version": FORMAT_VERSION,
                "source": source,
                "kind": kind,
                "fold_case": "1" if fold_case else "0",
                "entries": str(len(rows)),
                "problems": "\n".join(problems),
            }
            conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.chmod(tmp, 0o644 if mode is None else mode)
        if owner is not None:
            os.chown(tmp, *owner)
        _fsync_path(tmp)
        os.replace(tmp, db_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_path(directory, os.O_RDONLY | os.O_DIRECTORY)
    values = [len(r[1].encode("utf-8", "surrogatepass")) for r in rows]
    keys = sum(len(r[0].encode("utf-8", "surrogatepass")) for r in rows)
    return CompileResult(
        db_path=db_path,
        source=source,
        entries=len(rows),
        longest=max(values, default=0),
        total_bytes=keys + sum(values),
        problems=tuple(problems),
    )


def compile_map(
    text_path: str,
    db_path: str | None = None,
    *,
    aliases: bool,
    fold_case: bool = True,
    allow_empty: bool = False,
    safe_files: bool = False,
) -> CompileResult:
    """Compile the text map (or aliases file) `text_path` into `db_path`."""
    contents = read_file(text_path, safe_files=safe_files, log=False)
    if contents.missing:
        raise CompileError(f"{text_path}: cannot open: No such file or directory")
    if contents.problem:
        raise CompileError(contents.problem, refused=bool(contents.refused))
    if aliases:
        parsed = parse_aliases(contents.data, file=text_path)
    else:
        parsed = parse_text_map(
            contents.data, file=text_path, fold_case=fold_case, allow_empty=allow_empty
        )
    st = os.stat(text_path)
    owner = (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
    return write_compiled(
        db_path or db_path_for(text_path),
        parsed.entries.values(),
        source=text_path,
        kind="aliases" if aliases else "text",
        fold_case=fold_case or aliases,
        problems=parsed.problems,
        mode=stat.S_IMODE(st.st_mode) & 0o644,
        owner=owner,
    )


def _connect_ro(path: str) -> sqlite3.Connection:
    # immutable=1: no locks and no change checks per statement (3x faster
    # lookups). True for every file written here: a new map is a new inode
    # put in place by rename, and the old inode is never written again.
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)


class CompiledMap:
    """A compiled (SQLite) map file as a Map."""

    def __init__(self, name: str, path: str, *, safe_files: bool = True, log: bool = True) -> None:
        self._name = name
        self._path = path
        self._safe_files = safe_files
        self._log = log
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._source = ""
        self._kind = ""
        self._fold_case = True
        self._count = 0
        self._problems: tuple[str, ...] = ()
        self._signature: Signature | None = None
        self._open()

    def _open(self) -> None:
        self._signature = file_signature(self._path)
        self._conn, self._count, self._problems = None, 0, ()
        if self._signature is None:
            return
        if self._safe_files:
            reason = check_file(self._path)
            if reason:
                if self._log:
                    refuse(self._path, reason)
                self._problems = (f"{self._path}: unsafe file refused: {reason}",)
                return
        if not is_compiled_map(self._path):
            self._problems = (
                f"{self._path}: not a postoffice compiled map (rebuild it with "
                "makemap or newaliases)",
            )
            return
        conn: sqlite3.Connection | None = None
        try:
            conn = _connect_ro(self._path)
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            self._problems = (f"{self._path}: cannot read the compiled map: {e}",)
            return
        if meta.get("version") != FORMAT_VERSION:
            conn.close()
            self._problems = (
                f"{self._path}: compiled map version {meta.get('version')!r} is not "
                f"{FORMAT_VERSION} (rebuild it with makemap or newaliases)",
            )
            return
        self._conn = conn
        self._source = meta.get("source", "") or self._path
        self._kind = meta.get("kind", "text")
        self._fold_case = meta.get("fold_case", "1") == "1"
        entries = meta.get("entries", "0")
        self._count = int(entries) if entries.isdigit() else 0
        problems = meta.get("problems", "")
        self._problems = tuple(problems.split("\n")) if problems else ()

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> str:
        return self._path

    @property
    def source(self) -> str:
        """The text file the entries came from (entries name it, with their lines)."""
        return self._source

    @property
    def kind(self) -> str:
        """The source's grammar, "aliases" or "text" ("" when not opened)."""
        return self._kind

    def lookup(self, key: str) -> MapEntry | None:
        if self._fold_case:
            key = fold_key(key)
        with self._lock:
            if self._conn is None:
                return None
            try:
                row = self._conn.execute(
                    "SELECT value, line FROM map WHERE key = ?", (key,)
                ).fetchone()
            except sqlite3.Error as e:
                log.error("%s: lookup failed: %s", self._path, e)
                return None
        if row is None:
            return None
        return MapEntry(key=key, value=row[0], file=self._source, line=row[1])

    def problems(self) -> list[str]:
        return list(self._problems)

    def reload_if_changed(self) -> bool:
        if file_signature(self._path) == self._signature:
            return False
        with self._lock:
            self._close_nowait()
            self._open()
        return True

    def entries(self) -> Iterator[MapEntry]:
        """Every entry, in source order."""
        with self._lock:
            if self._conn is None:
                return iter(())
            rows = self._conn.execute(
                "SELECT key, value, line FROM map ORDER BY line, key"
            ).fetchall()
        return (MapEntry(key=k, value=v, file=self._source, line=n) for k, v, n in rows)

    def _close_nowait(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection; the map is empty afterwards."""
        with self._lock:
            self._close_nowait()
            self._count = 0

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"CompiledMap({self._name!r}, {self._path!r}, {self._count} entries)"


__all__ = [
    "FORMAT_VERSION",
    "CompileError",
    "CompileResult",
    "CompiledMap",
    "compile_map",
    "db_path_for",
    "is_compiled_map",
    "write_compiled",
]
