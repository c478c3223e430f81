"""maps/aliases — the /etc/aliases grammar (aliases(5)), :include: files, target lists.

Description:
    An aliases file maps local names to lists of targets:

        # comments start a line
        postmaster:  root
        admin:       alice, bob@example.net,
                     "|/usr/bin/ticket --queue admin",     (continuation line)
                     /var/log/admin.mbox
        staff:       :include:/etc/mail/staff.list
        owner-staff: alice
        "odd name":  \\bob

    - `name: target, target, ...`; the name is lower-cased (alias names
      are case-insensitive, as in sendmail) and may be written quoted.
      A name with `@` is refused ("cannot alias non-local names"), as
      sendmail refuses it: this file is for local names; virtusertable
      handles addresses.
    - A line that starts with white space continues the previous entry;
      lines are joined with one space, so the entry's value (the raw
      right-hand side, what praliases prints) is one line.
    - Lines whose first non-blank character is `#`, and blank lines, are
      comments, also between continuation lines (Postfix reads them so);
      a `#` inside an entry is data (`"|prog #1"`).
    - A duplicate name: the first entry wins and the later one is a
      problem, as newaliases warns "duplicate alias name".
    - A malformed entry — no `:`, an empty name, no targets, an unclosed
      quote, `(` or `<`, a control character — is skipped and reported as
      "file:line: message" (the line the entry starts on); the rest works.

    Targets (parse_targets): the right-hand side splits at commas outside
    double quotes, `(comments)` and `<angle brackets>`. Each piece is
    - `|command args`, `/path/file`, `:include:/path` — kept whole up to
      the comma (quote them to include commas: `"|prog a,b"`);
    - a quoted string alone (`"|/usr/bin/prog arg"`, `"/var/log/x y"`):
      its quotes only group, so they are removed;
    - `Full Name <addr>` — the address in the brackets; `(comments)` dropped;
    - otherwise addresses; several separated only by white space
      (`alice bob`) are several targets — sendmail would glue them with its
      BlankSub character, which is never what was meant; quotes that are part
      of an address (`"user name"@example.org`) stay;
    - `\\user` (deliver to the mailbox, no further aliasing) is kept as is.

    API:
        parse_aliases(data, *, file) -> ParsedMap     pure; never raises
        parse_targets(value) -> list[str]              never raises
        split_targets(value) -> tuple[list[str], str]  targets and "" or the
                                                       reason the list is malformed
        read_include(path, *, safe_files, allowed_uids=()) -> (targets, problems)
            an :include: file: one or more targets per line, comma
            separated, `#` comments, after the safe-file checks (the user
            whose home holds it goes in allowed_uids). A missing or refused
            file yields no targets and one problem line.
        AliasMap(path, *, safe_files=True, name="aliases", log=True)
            implements maps.interfaces.Map (see maps/text.TextMap); each
            entry's value is the raw right-hand side.

Security:
    :include: files and aliases files are refused when unsafe (see
    maps/safefile.py); what targets may do (programs, files) is decided by
    routing/ and delivery/.

See also:
    aliases(5) (sendmail and Postfix), RFC 5322 §3.4 (mailbox lists),
    maps/text.py, maps/safefile.py, routing/.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

from postoffice.maps.interfaces import MapEntry
from postoffice.maps.safefile import read_file
from postoffice.maps.text import BLANKS, CONTROL_RE, ParsedMap, TextMap, fold_key, split_lines

INCLUDE = ":include:"


# --- Target lists ---------------------------------------------------------------


def _scan(value: str) -> tuple[list[str], str]:
    """Split at top-level commas; the pieces and "" or what is unbalanced.

    A piece that starts with `|`, `/` or `:include:` is raw up to the next
    comma outside quotes: parentheses and angle brackets there are data.
    """
    pieces: list[str] = []
    start = 0
    quoted = escaped = False
    parens = angles = 0
    raw: bool | None = None  # None: the piece's first character is still to come
    for i, ch in enumerate(value):
        if raw is None and ch not in BLANKS:
            raw = ch in "|/" or value[i : i + len(INCLUDE)].lower() == INCLUDE
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif raw:
            if ch == ",":
                pieces.append(value[start:i])
                start, raw = i + 1, None
        elif ch == "(":
            parens += 1
        elif ch == ")" and parens:
            parens -= 1
        elif parens:
            continue
        elif ch == "<":
            angles += 1
        elif ch == ">" and angles:
            angles -= 1
        elif ch == "," and not angles:
            pieces.append(value[start:i])
            start, raw = i + 1, None
    pieces.append(value[start:])
    if quoted:
        return pieces, "unclosed double quote"
    if parens:
        return pieces, "unclosed '('"
    if angles:
        return pieces, "unclosed '<'"
    return pieces, ""


def _unquote(text: str) -> str:
    """The content of one quoted string `"..."`, backslash escapes undone."""
    out: list[str] = []
    escaped = False
    for ch in text[1:-1]:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def _is_one_quoted(text: str) -> bool:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return False
    escaped = False
    for ch in text[1:-1]:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return False
    return not escaped


def _tokens(piece: str) -> tuple[list[str], str]:
    """Split `piece` at white space outside quotes, dropping (comments); the
    tokens and the text of the first <angle address>, if any."""
    tokens: list[str] = []
    current: list[str] = []
    angle: list[str] | None = None
    angle_text = ""
    quoted = escaped = False
    parens = 0

    def flush() -> None:
        if current:
            tokens.append("".join(current))
            current.clear()

    for ch in piece:
        if escaped:
            escaped = False
            (angle if angle is not None else current).append(ch)
            continue
        if parens:
            parens += ch == "("
            parens -= ch == ")"
            continue
        if not quoted and ch == "(":
            parens = 1
            continue
        if ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<" and angle is None and not angle_text:
            flush()
            angle = []
            continue
        elif not quoted and ch == ">" and angle is not None:
            angle_text = "".join(angle).strip(BLANKS) or "<>"
            angle = None
            continue
        elif not quoted and ch in BLANKS and angle is None:
            flush()
            continue
        (angle if angle is not None else current).append(ch)
    flush()
    return tokens, angle_text


def _normalise(token: str) -> str:
    if _is_one_quoted(token):
        return _unquote(token)
    return token


def _targets_of(piece: str) -> list[str]:
    piece = piece.strip(BLANKS)
    if not piece:
        return []
    if piece[:1] in "|/":
        return [piece]
    if piece[: len(INCLUDE)].lower() == INCLUDE:
        path = piece[len(INCLUDE) :].strip(BLANKS)
        return [INCLUDE + (_unquote(path) if _is_one_quoted(path) else path)]
    if _is_one_quoted(piece):
        return [_unquote(piece)]
    tokens, angle = _tokens(piece)
    if angle:
        return [_normalise(angle)]
    return [_normalise(t) for t in tokens if t]


_SPECIAL_RE = re.compile(r'["\\()<>|/:]')
_BLANKS_RE = re.compile(f"[{BLANKS}]+")


def split_targets(value: str) -> tuple[list[str], str]:
    """The targets of a right-hand side, and "" or why it is malformed."""
    if not _SPECIAL_RE.search(value):  # plain addresses: the common case, fast
        return [t for piece in value.split(",") for t in _BLANKS_RE.split(piece) if t], ""
    pieces, error = _scan(value)
    targets: list[str] = []
    for piece in pieces:
        targets.extend(t for t in _targets_of(piece) if t)
    return targets, error


def parse_targets(value: str) -> list[str]:
    """The targets of a right-hand side (see the module docstring); never raises."""
    return split_targets(value)[0]


# --- The aliases file -----------------------------------------------------------


def _name_end(text: str) -> int:
    """Index of the ':' ending the alias name (outside quotes), or -1."""
    if '"' not in text and "\\" not in text:
        return text.find(":")
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            return i
    return -1


def _entry(text: str, where: str) -> tuple[str, str, str]:
    """(name, value, "") or ("", "", problem) for one logical entry."""
    colon = _name_end(text)
    if colon < 0:
        return "", "", f"{where}: missing ':' (write: name: target, target, ...)"
    name = text[:colon].strip(BLANKS)
    value = text[colon + 1 :].strip(BLANKS)
    if _is_one_quoted(name):
        name = _unquote(name).strip(BLANKS)
    elif '"' in name or any(ch in BLANKS for ch in name):
        return "", "", f"{where}: bad alias name {name!r} (quote a name with spaces)"
    if not name:
        return "", "", f"{where}: empty alias name"
    if "@" in name:
        return "", "", f"{where}: {name}: cannot alias non-local names"
    if CONTROL_RE.search(text):
        return "", "", f"{where}: {name}: control character in entry"
    targets, error = split_targets(value)
    if error:
        return "", "", f"{where}: {name}: {error}"
    if not targets:
        return "", "", f"{where}: {name}: no targets"
    return fold_key(name), value, ""


def parse_aliases(data: bytes | str, *, file: str) -> ParsedMap:
    """Parse an aliases file (see the module docstring); never raises."""
    entries: dict[str, MapEntry] = {}
    problems: list[str] = []
    logical: list[tuple[int, list[str]]] = []  # (first line, parts) of each entry
    for number, text, _raw in split_lines(data):
        if text is None:
            problems.append(f"{file}:{number}: not valid UTF-8; line skipped")
            continue
        stripped = text.strip(BLANKS)
        if not stripped or stripped.startswith("#"):
            continue
        if text[0] in BLANKS:
            if logical:
                logical[-1][1].append(stripped)
            else:
                problems.append(f"{file}:{number}: continuation line without an alias before it")
            continue
        logical.append((number, [stripped]))
    for number, parts in logical:
        where = f"{file}:{number}"
        name, value, problem = _entry(" ".join(parts), where)
        if problem:
            problems.append(problem)
            continue
        previous = entries.get(name)
        if previous is not None:
            problems.append(
                f"{where}: {name}: duplicate alias name; the entry at line {previous.line} is used"
            )
            continue
        entries[name] = MapEntry(key=name, value=value, file=file, line=number)
    problems.sort(key=_line_of)
    return ParsedMap(entries=entries, problems=tuple(problems))


def _line_of(problem: str) -> int:
    """Sort key: the line number in "file:line: message" (stable for equal lines)."""
    head = problem.split(": ", 1)[0]
    number = head.rsplit(":", 1)[-1]
    return int(number) if number.isdigit() else 0


def _parse(data: bytes, file: str) -> ParsedMap:
    return parse_aliases(data, file=file)


# --- :include: files ------------------------------------------------------------


def read_include(
    path: str, *, safe_files: bool, allowed_uids: Collection[int] = ()
) -> tuple[list[str], list[str]]:
    """The targets of an :include: file, and its problems as "file:line: message"."""
    contents = read_file(path, safe_files=safe_files, allowed_uids=allowed_uids, what=":include:")
    if contents.missing:
        return [], [f"{path}: cannot open :include: file: No such file or directory"]
    if contents.problem:
        return [], [contents.problem]
    targets: list[str] = []
    problems: list[str] = []
    for number, text, _raw in split_lines(contents.data):
        where = f"{path}:{number}"
        if text is None:
            problems.append(f"{where}: not valid UTF-8; line skipped")
            continue
        line = text.strip(BLANKS)
        if not line or line.startswith("#"):
            continue
        if CONTROL_RE.search(line):
            problems.append(f"{where}: control character in line; line skipped")
            continue
        found, error = split_targets(line)
        if error:
            problems.append(f"{where}: {error}; line skipped")
            continue
        targets.extend(found)
    return targets, problems


# --- The map --------------------------------------------------------------------


class AliasMap:
    """The aliases file as a Map: key = lower-cased name, value = raw right-hand side."""

    def __init__(
        self, path: str, *, safe_files: bool = True, name: str = "aliases", log: bool = True
    ) -> None:
        self._map = TextMap(
            name, path, safe_files=safe_files, parse=_parse, what="aliases", log=log
        )

    @property
    def name(self) -> str:
        return self._map.name

    @property
    def path(self) -> str:
        return self._map.path

    def lookup(self, key: str) -> MapEntry | None:
        return self._map.lookup(key)

    def problems(self) -> list[str]:
        return self._map.problems()

    def reload_if_changed(self) -> bool:
        return self._map.reload_if_changed()

    def entries(self) -> Iterator[MapEntry]:
        """Every alias, in file order."""
        return self._map.entries()

    def close(self) -> None:
        self._map.close()

    def __len__(self) -> int:
        return len(self._map)

    def __repr__(self) -> str:
        return f"AliasMap({self._map.path!r}, {len(self._map)} aliases)"


__all__ = [
    "INCLUDE",
    "AliasMap",
    "parse_aliases",
    "parse_targets",
    "read_include",
    "split_targets",
]
