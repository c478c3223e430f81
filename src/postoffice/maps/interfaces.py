"""The Map protocol: what routing and policy ask of a sendmail-format map.

Description:
    A map answers `lookup(key)` with the entry it holds for exactly that
    key (lookups are exact and case-sensitive at this level; the caller
    folds case and builds the candidate keys in sendmail's order, e.g.
    `user@domain`, `user`, `@domain` for virtusertable). Every entry knows
    the file and line it came from so that `postoffice explain` and the
    logs can name them. A broken line never breaks the map: it is skipped
    and listed by `problems()` as "file:line: message".

    Implementations: maps/text.py (the text file), maps/compiled.py (the
    SQLite file `makemap` writes), MemoryMap (tests and built-in defaults),
    chosen through maps/registry.py.

See also:
    sendmail's makemap(8), aliases(5); routing/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class MapEntry:
    key: str
    value: str  # the right-hand side as written (aliases: the raw target list)
    file: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else "(built-in)"


class Map(Protocol):
    @property
    def name(self) -> str:
        """What the map is ("aliases", "virtusertable" ...), for messages."""

    def lookup(self, key: str) -> MapEntry | None: ...

    def problems(self) -> list[str]:
        """The lines that could not be used, as "file:line: message"."""

    def reload_if_changed(self) -> bool:
        """Re-read the file when it changed on disk; True when it did."""

    def __len__(self) -> int: ...


class MemoryMap:
    """A map held in memory (tests, built-in defaults)."""

    def __init__(self, name: str, entries: dict[str, str], *, file: str = "") -> None:
        self._name = name
        self._entries = {
            k: MapEntry(key=k, value=v, file=file, line=i)
            for i, (k, v) in enumerate(entries.items(), start=1)
        }

    @property
    def name(self) -> str:
        return self._name

    def lookup(self, key: str) -> MapEntry | None:
        return self._entries.get(key)

    def problems(self) -> list[str]:
        return []

    def reload_if_changed(self) -> bool:
        return False

    def __len__(self) -> int:
        return len(self._entries)
