"""maps/registry — open a map by name and path: text or compiled, reloaded when changed.

Description:
    open_map(name, path, *, aliases=False, safe_files=True,
             allow_empty=False, log=True) -> FileMap
        The map an administrator means by `path`, as sendmail reads it:
        - `path.db` (maps/compiled.py) when it exists and its mtime is not
          older than the text file's (or the text file is gone);
        - else the text file (maps/text.py, or maps/aliases.py when
          `aliases`); when a `.db` exists but is older, a warning is logged
          and listed by problems(): "PATH.db is older than PATH, using the
          text file; run newaliases" (or "... run makemap hash PATH < PATH");
          a `.db` that is not ours (sendmail's Berkeley DB) is passed over
          the same way;
        - an empty `path` ("no such map" in the config) is an EmptyMap;
          missing files are an empty map that fills when they appear.
        The result is a ReloadingMap: reload_if_changed() stats the text
        file and the `.db` (two stat calls, nothing else when neither
        changed) and, when either changed, picks text or compiled afresh,
        so an edited map or a new `newaliases` is used without a restart.
        Callers throttle it (e.g. at most once a second per map).
        `allow_empty` reads one-per-line lists (relay-domains): a key alone
        is an entry with an empty value. `log=False` keeps warnings out of
        the log (`config check` prints problems itself).

    MAP_KINDS: the explicit registry of map kinds (CONVENTIONS §7), each
    an opener `(name, path, *, safe_files, log) -> FileMap`:
        "text" TextMap, "list" TextMap with empty values allowed,
        "aliases" AliasMap, "hash" / "btree" / "sqlite" CompiledMap.

    CONFIG_MAPS: the [maps] keys and the kind each is read as;
    open_config_maps(maps_config) opens them all;
    check_maps(config) lists the problems of every map the config names
    (malformed lines, unsafe files, stale .db files; [auth]
    sender_login_map too when sender_login_binding is on): the `config check`
    entry in cli/config_cmd.MAP_CHECKERS.

    FileMap is maps.interfaces.Map plus `path`, `entries()` (every entry,
    in file order) and `close()` (release a compiled map's connection).

    Concurrency: lookups may run in several threads; a reload builds the
    new map first and swaps one reference. The map it replaces is closed
    at the next reload (a lookup still running on it finishes).

Config:
    [maps] aliases, virtusertable, genericstable, mailertable, access,
    relay_domains, safe_files.

See also:
    maps/text.py, maps/aliases.py, maps/compiled.py, maps/safefile.py,
    sendmail makemap(8), newaliases(1).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Protocol

from postoffice.config.schema import Config, MapsConfig
from postoffice.maps.aliases import AliasMap
from postoffice.maps.compiled import CompiledMap, db_path_for, is_compiled_map
from postoffice.maps.interfaces import Map, MapEntry
from postoffice.maps.safefile import Signature, file_signature
from postoffice.maps.text import TextMap

log = logging.getLogger("postoffice.maps")


class FileMap(Map, Protocol):
    """A Map read from a file: also its path, its entries and close()."""

    @property
    def path(self) -> str: ...

    def entries(self) -> Iterator[MapEntry]: ...

    def close(self) -> None: ...


class MapOpener(Protocol):
    def __call__(self, name: str, path: str, *, safe_files: bool, log: bool) -> FileMap: ...


def _open_text(name: str, path: str, *, safe_files: bool, log: bool) -> FileMap:
    return TextMap(name, path, safe_files=safe_files, log=log)


def _open_list(name: str, path: str, *, safe_files: bool, log: bool) -> FileMap:
    return TextMap(name, path, safe_files=safe_files, allow_empty=True, log=log)


def _open_aliases(name: str, path: str, *, safe_files: bool, log: bool) -> FileMap:
    return AliasMap(path, name=name, safe_files=safe_files, log=log)


def _open_compiled(name: str, path: str, *, safe_files: bool, log: bool) -> FileMap:
    return CompiledMap(name, path, safe_files=safe_files, log=log)


MAP_KINDS: Mapping[str, MapOpener] = {
    "text": _open_text,
    "list": _open_list,
    "aliases": _open_aliases,
    "hash": _open_compiled,
    "btree": _open_compiled,
    "sqlite": _open_compiled,
}
"""Map kinds by name (sendmail's map types where they exist)."""

TEXT_KINDS = ("text", "list", "aliases")
"""The kinds a ReloadingMap reads its text file as."""

CONFIG_MAPS: Mapping[str, str] = {
    "aliases": "aliases",
    "virtusertable": "text",
    "genericstable": "text",
    "mailertable": "text",
    "access": "text",
    "relay_domains": "list",
}
"""[maps] key → the kind its file is read as."""


class EmptyMap:
    """A map with no entries: an unset path, or a stand-in with problems to report."""

    def __init__(self, name: str, *, path: str = "", problems: tuple[str, ...] = ()) -> None:
        self._name = name
        self._path = path
        self._problems = problems

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> str:
        return self._path

    def lookup(self, key: str) -> MapEntry | None:
        return None

    def problems(self) -> list[str]:
        return list(self._problems)

    def reload_if_changed(self) -> bool:
        return False

    def entries(self) -> Iterator[MapEntry]:
        return iter(())

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return 0


def rebuild_hint(path: str, kind: str) -> str:
    """The command that brings `path`.db up to date."""
    return "newaliases" if kind == "aliases" else f"makemap hash {path} < {path}"


class ReloadingMap:
    """The text file or its compiled .db, whichever is current, re-picked on change."""

    def __init__(
        self, name: str, path: str, *, kind: str = "text", safe_files: bool = True, log: bool = True
    ) -> None:
        if kind not in TEXT_KINDS:
            raise ValueError(f"not a text map kind: {kind!r} (one of {', '.join(TEXT_KINDS)})")
        self._name = name
        self._path = path
        self._db_path = db_path_for(path)
        self._kind = kind
        self._safe_files = safe_files
        self._log = log
        self._lock = threading.Lock()
        self._retired: list[FileMap] = []
        self._signatures: tuple[Signature | None, Signature | None] = (None, None)
        self._notes: tuple[str, ...] = ()
        self._inner: FileMap = self._pick()

    def _pick(self) -> FileMap:
        text_sig, db_sig = file_signature(self._path), file_signature(self._db_path)
        self._signatures = (text_sig, db_sig)
        note = ""
        hint = rebuild_hint(self._path, self._kind)
        if db_sig is not None and (text_sig is None or db_sig[3] >= text_sig[3]):
            if is_compiled_map(self._db_path):
                self._notes = ()
                return MAP_KINDS["hash"](
                    self._name, self._db_path, safe_files=self._safe_files, log=self._log
                )
            note = (
                f"{self._db_path} is not a postoffice compiled map (sendmail's?), "
                f"using the text file; run {hint}"
            )
        elif db_sig is not None:
            note = f"{self._db_path} is older than {self._path}, using the text file; run {hint}"
        if note and self._log:
            log.warning("%s", note)
        self._notes = (note,) if note else ()
        return MAP_KINDS[self._kind](
            self._name, self._path, safe_files=self._safe_files, log=self._log
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> str:
        """The text file's path (the compiled file is path + ".db")."""
        return self._path

    @property
    def db_path(self) -> str:
        return self._db_path

    @property
    def compiled(self) -> bool:
        """True while the compiled .db is the one in use."""
        return isinstance(self._inner, CompiledMap)

    @property
    def in_use(self) -> str:
        """The file lookups are answered from."""
        return self._inner.path

    def lookup(self, key: str) -> MapEntry | None:
        return self._inner.lookup(key)

    def problems(self) -> list[str]:
        return [*self._notes, *self._inner.problems()]

    def reload_if_changed(self) -> bool:
        """Stat both files; re-pick when either changed. True when it did."""
        current = (file_signature(self._path), file_signature(self._db_path))
        if current == self._signatures:
            return False
        with self._lock:
            if (file_signature(self._path), file_signature(self._db_path)) == self._signatures:
                return False
            new = self._pick()
            for old in self._retired:
                old.close()
            self._retired = [self._inner]
            self._inner = new
        return True

    def entries(self) -> Iterator[MapEntry]:
        return self._inner.entries()

    def close(self) -> None:
        with self._lock:
            for old in (*self._retired, self._inner):
                old.close()
            self._retired = []

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return f"ReloadingMap({self._name!r}, in use: {self.in_use!r}, {len(self)} entries)"


def open_map(
    name: str,
    path: str,
    *,
    aliases: bool = False,
    safe_files: bool = True,
    allow_empty: bool = False,
    log: bool = True,
) -> FileMap:
    """The map at `path` (see the module docstring); an empty path is an EmptyMap."""
    if not path:
        return EmptyMap(name)
    kind = "aliases" if aliases else "list" if allow_empty else "text"
    return ReloadingMap(name, path, kind=kind, safe_files=safe_files, log=log)


def open_config_maps(maps: MapsConfig, *, log: bool = True) -> dict[str, FileMap]:
    """Every map [maps] names, by key ("aliases", "virtusertable", ...)."""
    opened: dict[str, FileMap] = {}
    for key, kind in CONFIG_MAPS.items():
        path: str = getattr(maps, key)
        opened[key] = (
            ReloadingMap(key, path, kind=kind, safe_files=maps.safe_files, log=log)
            if path
            else EmptyMap(key)
        )
    return opened


def check_maps(config: Config) -> list[str]:
    """The problems of every map the config names, as "file:line: message" lines."""
    problems: list[str] = []
    for m in open_config_maps(config.maps, log=False).values():
        problems.extend(m.problems())
        m.close()
    if config.auth.sender_login_binding and config.auth.sender_login_map:
        auth = config.auth
        logins = open_map(
            "sender_login_map", auth.sender_login_map, safe_files=config.maps.safe_files, log=False
        )
        problems.extend(logins.problems())
        logins.close()
    return problems


__all__ = [
    "CONFIG_MAPS",
    "MAP_KINDS",
    "TEXT_KINDS",
    "EmptyMap",
    "FileMap",
    "MapOpener",
    "ReloadingMap",
    "check_maps",
    "open_config_maps",
    "open_map",
    "rebuild_hint",
]
