"""imap.parse.command — one complete client command to a typed command or an error value (pure).

Description:
    parse_command(data, utf8=False, max_depth=32) -> Command | ParseError

    `data` is one whole command without its final CRLF, literals inline as
    imap/protocol.py assembles them (`{n}` or `{n+}`, CRLF, the n octets).
    The result is an imap.commands value, or a ParseError carrying the tag
    (None when there was no valid tag: answered `* BAD`), the status (BAD;
    NO for an unsupported CHARSET) with an optional response code, and a
    short reason safe to show the client. Nothing raises, whatever the
    input (fuzzed in tests/test_imap_parse.py).

    split_head(line) -> Head reads only the tag and the command name ("UID
    FETCH" for UID commands) so the engine can check the state table and
    the limits before it reads any literal.

    parse_append_head(data) and parse_append_next(data, tag) read APPEND
    up to the message literal's announcement (RFC 9051 §6.3.12, MULTIAPPEND
    RFC 3502 §6.3.11, literal8 RFC 3516 §4.4): the engine streams the
    message octets instead of inlining them.

    Mailbox names are decoded by `utf8`: False for IMAP4rev1 (modified
    UTF-7), True once IMAP4rev2 or UTF8=ACCEPT is enabled.

    The commands (RFC 9051 §6, RFC 3501 §6): CAPABILITY NOOP LOGOUT ID
    (RFC 2971) STARTTLS AUTHENTICATE (SASL-IR, RFC 4959) LOGIN ENABLE (RFC
    5161) SELECT EXAMINE CREATE (USE, RFC 6154) DELETE RENAME SUBSCRIBE
    UNSUBSCRIBE LIST (RFC 5258, RFC 5819, RFC 6154) LSUB NAMESPACE STATUS
    APPEND IDLE (RFC 2177) CHECK CLOSE UNSELECT EXPUNGE SEARCH (RFC 4731)
    FETCH STORE COPY MOVE (RFC 6851) and UID COPY/MOVE/FETCH/SEARCH/STORE/
    EXPUNGE (RFC 4315). Anything else is BAD "unknown command".

See also:
    imap/parse/reader.py (tokens), values.py, search.py, fetch.py;
    imap/commands.py; imap/protocol.py.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.imap import commands as c
from postoffice.imap.parse import values
from postoffice.imap.parse.fetch import fetch_items
from postoffice.imap.parse.reader import Bad, Reader
from postoffice.imap.parse.search import search
from postoffice.store.interfaces import FlagMode

__all__ = [
    "COMMAND_NAMES",
    "Head",
    "ParseError",
    "parse_append_head",
    "parse_append_next",
    "parse_command",
    "split_head",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseError:
    """A command that cannot be run: `tag status [code] reason`."""

    tag: str | None
    reason: str
    status: str = "BAD"  # "BAD", or "NO" for BADCHARSET
    code: str | None = None  # e.g. "BADCHARSET (US-ASCII UTF-8)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """The tag and command name of a command line; None when invalid or unknown."""

    tag: str | None
    name: str | None


_Parser = Callable[[Reader, str], c.Command]


# -- any state ----------------------------------------------------------------


def _bare(cls: type[c.Command]) -> _Parser:
    def parse(r: Reader, tag: str) -> c.Command:
        r.end()
        return cls(tag=tag)

    return parse


_ID_MAX_PAIRS = 30  # RFC 2971 §3.3
_ID_MAX_FIELD = 30
_ID_MAX_VALUE = 1024


def _id(r: Reader, tag: str) -> c.Command:
    r.sp()
    if r.peek_keyword() == "NIL":
        r.pos += 3
        r.end()
        return c.Id(tag=tag, params=None)
    r.open()
    pairs: list[tuple[str, str | None]] = []
    while r.peek() != 0x29:
        if pairs:
            r.sp()
        field = r.string()
        r.sp()
        value = r.nstring()
        if len(field) > _ID_MAX_FIELD or (value is not None and len(value) > _ID_MAX_VALUE):
            raise Bad("ID field or value too long")
        pairs.append(
            (
                field.decode("utf-8", "replace"),
                None if value is None else value.decode("utf-8", "replace"),
            )
        )
        if len(pairs) > _ID_MAX_PAIRS:
            raise Bad("too many ID fields")
    r.close()
    r.end()
    return c.Id(tag=tag, params=tuple(pairs))


# -- not authenticated --------------------------------------------------------

_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def _authenticate(r: Reader, tag: str) -> c.Command:
    r.sp()
    mechanism = r.keyword()
    initial: bytes | None = None
    if r.try_sp():  # RFC 4959 §3: SP (base64 / "=")
        m = _BASE64.match(r.data, r.pos)
        raw = m.group() if m is not None else b""
        r.pos += len(raw)
        if raw == b"=":
            initial = b""
        else:
            try:
                initial = base64.b64decode(raw, validate=True) if raw else None
            except (binascii.Error, ValueError):
                initial = None
            if initial is None:
                raise Bad("invalid base64 in the initial response")
    r.end()
    return c.Authenticate(tag=tag, mechanism=mechanism, initial_response=initial)


def _login(r: Reader, tag: str) -> c.Command:
    r.sp()
    userid = r.utf8_text(r.astring(), "user name")
    r.sp()
    password = r.utf8_text(r.astring(), "password")
    r.end()
    return c.Login(tag=tag, userid=userid, password=password)


# -- authenticated --------------------------------------------------------------


def _enable(r: Reader, tag: str) -> c.Command:
    names: list[str] = []
    while r.try_sp():
        names.append(r.keyword())
    if not names:
        raise Bad("ENABLE needs at least one capability")
    r.end()
    return c.Enable(tag=tag, capabilities=tuple(names))


def _one_mailbox(
    cls: type[c.Select | c.Examine | c.Delete | c.Subscribe | c.Unsubscribe],
) -> _Parser:
    def parse(r: Reader, tag: str) -> c.Command:
        r.sp()
        name = values.mailbox(r)
        if not r.at_end():
            raise Bad("unsupported parameters")  # select-params: CONDSTORE, QRESYNC
        return cls(tag=tag, mailbox=name)

    return parse


# RFC 6154 §2 use-attr, canonical spelling by upper case
_USE = {
    f.upper(): f
    for f in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}


def _create(r: Reader, tag: str) -> c.Command:
    r.sp()
    name = values.mailbox(r)
    use: set[str] = set()
    if r.try_sp():  # create-params (RFC 4466 §2.2), USE (RFC 6154 §3)
        r.open()
        while True:
            if r.keyword() != "USE":
                raise Bad("unknown CREATE parameter")
            r.sp()
            r.open()
            while r.peek() != 0x29:
                if r.peek() != 0x5C:
                    raise Bad("invalid USE attribute")
                r.pos += 1
                attr = "\\" + r.atom().decode("ascii")
                use.add(_USE.get(attr.upper(), attr))
                if not r.try_sp():
                    break
            r.close()
            if not r.try_sp():
                break
        r.close()
    r.end()
    return c.Create(tag=tag, mailbox=name, special_use=frozenset(use))


def _rename(r: Reader, tag: str) -> c.Command:
    r.sp()
    old = values.mailbox(r)
    r.sp()
    new = values.mailbox(r)
    r.end()
    return c.Rename(tag=tag, old=old, new=new)


_STATUS = {i.value: i for i in c.StatusItem}


def _status_items(r: Reader) -> tuple[c.StatusItem, ...]:
    r.open()
    items: dict[c.StatusItem, None] = {}
    while True:
        name = r.keyword()
        item = _STATUS.get(name)
        if item is None:
            raise Bad(f"unknown STATUS item {name[:32]}")
        items[item] = None
        if not r.try_sp():
            break
    r.close()
    return tuple(items)


def _status(r: Reader, tag: str) -> c.Command:
    r.sp()
    name = values.mailbox(r)
    r.sp()
    items = _status_items(r)
    r.end()
    return c.Status(tag=tag, mailbox=name, items=items)


_SELECT_OPTS = {o.value: o for o in c.ListSelect}
_RETURN_OPTS = {o.value: o for o in c.ListReturn}


def _list(r: Reader, tag: str) -> c.Command:
    r.sp()
    extended = False
    select: set[c.ListSelect] = set()
    if r.peek() == 0x28:  # RFC 5258 §3.1 list-select-opts
        extended = True
        r.open()
        while r.peek() != 0x29:
            name = r.keyword()
            option = _SELECT_OPTS.get(name)
            if option is None:
                raise Bad(f"unknown LIST selection option {name[:32]}")
            select.add(option)
            if not r.try_sp():
                break
        r.close()
        r.sp()
        if select == {c.ListSelect.RECURSIVEMATCH}:  # RFC 5258 §3.1: BAD
            raise Bad("RECURSIVEMATCH needs another selection option")
    reference = values.decode_name(r, r.astring())
    r.sp()
    patterns: list[str] = []
    if r.peek() == 0x28:  # RFC 5258 §3 patterns
        extended = True
        r.open()
        patterns.append(values.pattern(r))
        while r.try_sp():
            patterns.append(values.pattern(r))
        r.close()
    else:
        patterns.append(values.pattern(r))
    returns: set[c.ListReturn] = set()
    status: tuple[c.StatusItem, ...] | None = None
    if r.try_sp():  # RFC 5258 §3.2 list-return-opts
        extended = True
        if r.keyword() != "RETURN":
            raise Bad("expected RETURN")
        r.sp()
        r.open()
        while r.peek() != 0x29:
            name = r.keyword()
            if name == "STATUS":  # RFC 5819 §2
                r.sp()
                status = _status_items(r)
            else:
                ret = _RETURN_OPTS.get(name)
                if ret is None:
                    raise Bad(f"unknown LIST return option {name[:32]}")
                returns.add(ret)
            if not r.try_sp():
                break
        r.close()
    r.end()
    return c.List(
        tag=tag,
        reference=reference,
        patterns=tuple(patterns),
        select=frozenset(select),
        returns=frozenset(returns),
        status=status,
        extended=extended,
    )


def _lsub(r: Reader, tag: str) -> c.Command:
    r.sp()
    reference = values.decode_name(r, r.astring())
    r.sp()
    pattern = values.pattern(r)
    r.end()
    return c.Lsub(tag=tag, reference=reference, pattern=pattern)


def _append(r: Reader, tag: str) -> c.Command:
    # APPEND reaches parse_command only without its message literal (the
    # engine streams it): whatever arrives here is incomplete.
    raise Bad("APPEND without a message literal")


# -- selected -------------------------------------------------------------------


def _search(uid: bool) -> _Parser:
    return lambda r, tag: search(r, tag, uid=uid)


def _fetch(uid: bool) -> _Parser:
    def parse(r: Reader, tag: str) -> c.Command:
        r.sp()
        seqs = values.sequence_set(r)
        r.sp()
        items = fetch_items(r)
        if not r.at_end():
            raise Bad("unsupported FETCH modifiers")  # RFC 4466 fetch-modifiers
        return c.Fetch(tag=tag, uid=uid, set=seqs, items=items)

    return parse


_STORE_ATT = re.compile(rb"([+-]?)FLAGS(\.SILENT)?", re.IGNORECASE)
_MODES: dict[bytes, FlagMode] = {b"": "replace", b"+": "add", b"-": "remove"}


def _store(uid: bool) -> _Parser:
    def parse(r: Reader, tag: str) -> c.Command:
        r.sp()
        seqs = values.sequence_set(r)
        r.sp()
        if r.peek() == 0x28:
            raise Bad("unsupported STORE modifiers")  # UNCHANGEDSINCE (RFC 7162)
        m = _STORE_ATT.match(r.data, r.pos)
        if m is None:
            raise Bad("expected FLAGS, +FLAGS or -FLAGS")
        r.pos = m.end()
        r.sp()
        if r.peek() == 0x28:
            flags = values.flag_list(r)
        else:
            found = [values.flag(r)]
            while r.try_sp():
                found.append(values.flag(r))
            flags = frozenset(found)
        r.end()
        return c.Store(
            tag=tag,
            uid=uid,
            set=seqs,
            mode=_MODES[m.group(1)],
            silent=bool(m.group(2)),
            flags=flags,
        )

    return parse


def _copy_move(cls: type[c.Copy | c.Move], uid: bool) -> _Parser:
    def parse(r: Reader, tag: str) -> c.Command:
        r.sp()
        seqs = values.sequence_set(r)
        r.sp()
        name = values.mailbox(r)
        r.end()
        return cls(tag=tag, uid=uid, set=seqs, mailbox=name)

    return parse


def _uid_expunge(r: Reader, tag: str) -> c.Command:
    r.sp()
    seqs = values.sequence_set(r)
    r.end()
    return c.Expunge(tag=tag, uids=seqs)


# The grammar by command name (RFC 9051 §9 command-any / -auth / -nonauth /
# -select); "UID x" are the RFC 9051 §6.4.9 UID forms.
_COMMANDS: dict[str, _Parser] = {
    "CAPABILITY": _bare(c.Capability),
    "NOOP": _bare(c.Noop),
    "LOGOUT": _bare(c.Logout),
    "ID": _id,
    "STARTTLS": _bare(c.StartTls),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _one_mailbox(c.Select),
    "EXAMINE": _one_mailbox(c.Examine),
    "CREATE": _create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _bare(c.Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _bare(c.Idle),
    "CHECK": _bare(c.Check),
    "CLOSE": _bare(c.Close),
    "UNSELECT": _bare(c.Unselect),
    "EXPUNGE": _bare(c.Expunge),
    "SEARCH": _search(False),
    "FETCH": _fetch(False),
    "STORE": _store(False),
    "COPY": _copy_move(c.Copy, False),
    "MOVE": _copy_move(c.Move, False),
    "UID SEARCH": _search(True),
    "UID FETCH": _fetch(True),
    "UID STORE": _store(True),
    "UID COPY": _copy_move(c.Copy, True),
    "UID MOVE": _copy_move(c.Move, True),
    "UID EXPUNGE": _uid_expunge,
}

COMMAND_NAMES = frozenset(_COMMANDS)


def _read_head(r: Reader) -> tuple[str, str]:
    tag = r.tag()
    r.sp()
    name = r.keyword()
    if name == "UID":
        r.sp()
        name = "UID " + r.keyword()
    if name not in _COMMANDS:
        raise Bad(f"unknown command {name[:40]}")
    return tag, name


def split_head(line: bytes) -> Head:
    """The tag and the known command name at the start of `line`."""
    r = Reader(line)
    try:
        tag = r.tag()
    except Bad:
        return Head(tag=None, name=None)
    try:
        r.sp()
        name = r.keyword()
        if name == "UID":
            r.sp()
            name = "UID " + r.keyword()
    except Bad:
        return Head(tag=tag, name=None)
    return Head(tag=tag, name=name if name in _COMMANDS else None)


def parse_command(
    data: bytes, *, utf8: bool = False, max_depth: int = 32
) -> c.Command | ParseError:
    """One whole command (see the module manual)."""
    r = Reader(data, utf8=utf8, max_depth=max_depth)
    tag: str | None = None
    try:
        tag = r.tag()
        r.pos = 0
        tag, name = _read_head(r)
        return _COMMANDS[name](r, tag)
    except Bad as exc:
        return ParseError(tag=tag, reason=exc.reason, status=exc.status, code=exc.code)
    except RecursionError:  # pragma: no cover - the depth limit comes first
        return ParseError(tag=tag, reason="too deeply nested")


# -- APPEND, streamed ---------------------------------------------------------

_ANNOUNCE = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}")


def _message(r: Reader) -> c.AppendMessage:
    """[flag-list SP] [date-time SP] literal-announcement, at the end of data."""
    flags: frozenset[str] = frozenset()
    when = None
    if r.peek() == 0x28:
        flags = values.flag_list(r)
        r.sp()
    if r.peek() == 0x22:
        when = values.date_time(r)
        r.sp()
    m = _ANNOUNCE.fullmatch(r.data, r.pos)
    if m is None:
        raise Bad("expected the message literal")
    size = int(m.group(2))
    if size > 0x7FFFFFFFFFFFFFFF:
        raise Bad("literal size out of range")
    return c.AppendMessage(
        flags=flags,
        internaldate=when,
        size=size,
        binary=bool(m.group(1)),
        synchronizing=not m.group(3),
    )


def parse_append_head(
    data: bytes, *, utf8: bool = False, max_depth: int = 32
) -> c.Append | ParseError | None:
    """APPEND up to a literal announcement ending `data`: the Append head
    when that literal is the message, None when it is an argument (the
    mailbox name) the engine should read inline, or a ParseError."""
    r = Reader(data, utf8=utf8, max_depth=max_depth)
    tag: str | None = None
    try:
        tag = r.tag()
        r.pos = 0
        tag, name = _read_head(r)
        if name != "APPEND":
            raise Bad("not APPEND")
        r.sp()
        m = _ANNOUNCE.fullmatch(data, r.pos)
        if m is not None:
            if m.group(1):
                raise Bad("literal8 is only allowed for the message")
            return None  # the mailbox name comes as a literal
        mailbox = values.mailbox(r)
        r.sp()
        return c.Append(tag=tag, mailbox=mailbox, message=_message(r))
    except Bad as exc:
        return ParseError(tag=tag, reason=exc.reason, status=exc.status, code=exc.code)


def parse_append_next(data: bytes, tag: str) -> c.AppendMessage | ParseError:
    """The next message of a MULTIAPPEND (RFC 3502 §6.3.11): `data` is what
    followed the previous message literal, up to the next announcement."""
    r = Reader(data)
    try:
        r.sp()
        return _message(r)
    except Bad as exc:
        return ParseError(tag=tag, reason=exc.reason, status=exc.status, code=exc.code)
