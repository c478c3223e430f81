"""maps/text — sendmail text maps: the `makemap` input format, read directly.

Description:
    One entry per line, the key, white space, the value:

        # virtusertable
        info@example.com        alice
        @example.com            %1@mail.example.net   # catch-all
        lee@example.com         error:5.1.1:550 No such user

    - The key ends at the first white space (or at the `-t` delimiter of
      makemap); the value is the rest of the line and may contain spaces.
    - Keys are stored lower-cased, as makemap does by default (`-f` keeps
      case: `fold_case=False`); values are never case-folded.
    - Blank lines and lines whose first non-blank character is `#` are
      comments. A `#` preceded by white space and outside double quotes
      also starts a comment (`key value  # note`): sendmail's makemap would
      keep such a note in the value, but administrators write them, as the
      seed examples do, and no value in these maps needs a ` #`.
    - Leading white space is ignored; there are no continuation lines in
      this format (aliases have them, see maps/aliases.py).
    - A duplicate key: the first line wins and the later one is a problem
      ("duplicate key"), as makemap warns and does not insert; `replace=True`
      (makemap -r) lets the later line win silently.
    - A malformed line — no value (unless `allow_empty`, makemap -e, used
      for one-per-line lists such as relay-domains), a control character,
      bytes that are not UTF-8 — is skipped and reported by `problems()`
      as "file:line: message"; the rest of the map works.

    API:
        parse_text_map(data, *, file, fold_case=True, allow_empty=False,
                       replace=False, comment="#", delimiter=None) -> ParsedMap
            Pure; never raises on any input (fuzzed with hypothesis).
        TextMap(name, path, *, safe_files=True, fold_case=True,
                allow_empty=False, parse=None, what="map", log=True)
            implements maps.interfaces.Map over the file: lookup(key)
            lower-cases `key` (unless fold_case is off) and looks it up
            exactly; entries() yields every entry in file order;
            reload_if_changed() re-reads when the file's device, inode,
            size, mtime or ctime changed (one stat). A missing file is an
            empty map without problems; an unsafe one (maps/safefile.py)
            is an empty map whose problems() says why. `parse` lets other
            grammars (maps/aliases.py) reuse the file handling.
        fold_key(key) -> str: the case folding keys get.

Security:
    Reads only the file it is given, after the safe-file checks when
    `safe_files` is on ([maps] safe_files).

See also:
    sendmail makemap(8); maps/aliases.py, maps/compiled.py,
    maps/registry.py, maps/safefile.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial

from postoffice.maps.interfaces import MapEntry
from postoffice.maps.safefile import Signature, file_signature, read_file

BLANKS = " \t\f\v"
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def fold_key(key: str) -> str:
    """The case folding applied to keys (makemap folds upper case to lower)."""
    return key.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedMap:
    """A parsed map file: its entries by (folded) key, and its broken lines."""

    entries: Mapping[str, MapEntry] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


Parser = Callable[[bytes, str], ParsedMap]
"""(file content, file name for messages) -> ParsedMap."""


def split_lines(data: bytes | str) -> Iterator[tuple[int, str | None, bytes | str]]:
    """(line number, decoded line or None when not UTF-8, raw line); CRLF tolerated.

    Splits on "\\n" only: other characters str.splitlines() breaks on
    (form feed, U+2028 ...) are data here.
    """
    if isinstance(data, str):
        for number, line in enumerate(data.split("\n"), 1):
            line = line.removesuffix("\r")
            yield number, line, line
        return
    for number, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.removesuffix(b"\r")
        try:
            text: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        yield number, text, raw


def strip_comment(line: str, comment: str = "#") -> str:
    """`line` without a trailing comment: `comment` after white space, outside quotes."""
    if comment not in line:
        return line
    quoted = escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == comment and not quoted and (i == 0 or line[i - 1] in BLANKS):
            return line[:i]
    return line


def _split_key(line: str, delimiter: str | None) -> tuple[str, str]:
    if delimiter:
        key, _, value = line.partition(delimiter)
        return key.strip(BLANKS), value.strip(BLANKS)
    for i, ch in enumerate(line):
        if ch in BLANKS:
            return line[:i], line[i:].strip(BLANKS)
    return line, ""


def parse_text_map(
    data: bytes | str,
    *,
    file: str,
    fold_case: bool = True,
    allow_empty: bool = False,
    replace: bool = False,
    comment: str = "#",
    delimiter: str | None = None,
) -> ParsedMap:
    """Parse a makemap-format text map (see the module docstring); never raises."""
    entries: dict[str, MapEntry] = {}
    problems: list[str] = []
    comment = comment or "#"
    for number, text, _raw in split_lines(data):
        where = f"{file}:{number}"
        if text is None:
            problems.append(f"{where}: not valid UTF-8; line skipped")
            continue
        line = text.strip(BLANKS)
        if not line or line.startswith(comment):
            continue
        line = strip_comment(line, comment).rstrip(BLANKS)
        if CONTROL_RE.search(line):
            problems.append(f"{where}: control character in line; line skipped")
            continue
        key, value = _split_key(line, delimiter)
        if not key:
            problems.append(f"{where}: no key; line skipped")
            continue
        if not value and not allow_empty:
            problems.append(f"{where}: {key}: no value (write: key, white space, value)")
            continue
        if fold_case:
            key = fold_key(key)
        previous = entries.get(key)
        if previous is not None and not replace:
            problems.append(
                f"{where}: {key}: duplicate key; the entry at line {previous.line} is used"
            )
            continue
        entries[key] = MapEntry(key=key, value=value, file=file, line=number)
    return ParsedMap(entries=entries, problems=tuple(problems))


class TextMap:
    """A text map file (makemap format, or another grammar through `parse`)."""

    def __init__(
        self,
        name: str,
        path: str,
        *,
        safe_files: bool = True,
        fold_case: bool = True,
        allow_empty: bool = False,
        parse: Parser | None = None,
        what: str = "map",
        log: bool = True,
    ) -> None:
        self._name = name
        self._path = path
        self._safe_files = safe_files
        self._fold_case = fold_case
        self._what = what
        self._log = log
        self._parse: Parser = parse or partial(
            _parse_file, fold_case=fold_case, allow_empty=allow_empty
        )
        self._entries: Mapping[str, MapEntry] = {}
        self._problems: tuple[str, ...] = ()
        self._signature: Signature | None = None
        self._load()

    def _load(self) -> None:
        contents = read_file(
            self._path, safe_files=self._safe_files, what=self._what, log=self._log
        )
        self._signature = contents.signature
        if contents.missing or contents.problem:
            self._entries = {}
            self._problems = (contents.problem,) if contents.problem else ()
            return
        parsed = self._parse(contents.data, self._path)
        self._entries = parsed.entries
        self._problems = parsed.problems

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> str:
        return self._path

    def lookup(self, key: str) -> MapEntry | None:
        return self._entries.get(fold_key(key) if self._fold_case else key)

    def problems(self) -> list[str]:
        return list(self._problems)

    def reload_if_changed(self) -> bool:
        if file_signature(self._path) == self._signature:
            return False
        self._load()
        return True

    def entries(self) -> Iterator[MapEntry]:
        """Every entry, in file order."""
        return iter(list(self._entries.values()))

    def close(self) -> None:
        """Nothing to release (the file is read whole); for symmetry with CompiledMap."""

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"TextMap({self._name!r}, {self._path!r}, {len(self._entries)} entries)"


def _parse_file(data: bytes, file: str, *, fold_case: bool, allow_empty: bool) -> ParsedMap:
    return parse_text_map(data, file=file, fold_case=fold_case, allow_empty=allow_empty)


__all__ = [
    "BLANKS",
    "CONTROL_RE",
    "ParsedMap",
    "Parser",
    "TextMap",
    "fold_key",
    "parse_text_map",
    "split_lines",
    "strip_comment",
]
