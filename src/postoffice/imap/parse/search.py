"""imap.parse.search — the SEARCH program: RETURN options, CHARSET, the key tree (pure).

Description:
    search(r, uid) reads what follows "SEARCH" (RFC 9051 §9):

        search = "SEARCH" [search-return-opts] SP search-program
        search-return-opts = SP "RETURN" SP "(" [opt *(SP opt)] ")"
        search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)

    and returns imap.commands.Search. RETURN takes MIN, MAX, ALL, COUNT
    (RFC 4731 §3.1) and SAVE (RFC 5182 §2.2); an empty list means ALL.
    CHARSET UTF-8 and US-ASCII are accepted (RFC 9051 §6.4.4, RFC 6855);
    any other is refused with `NO [BADCHARSET (US-ASCII UTF-8)]` — a NO,
    not a BAD. Search strings are decoded as UTF-8 (US-ASCII is a subset);
    invalid UTF-8 is BAD.

    The keys are those of RFC 3501 §6.4.4 and RFC 9051 §6.4.4, mapped to
    the tree of imap/commands.py (its manual lists the mapping). NOT, OR
    and parenthesised lists count against the reader's nesting limit, so
    a hostile program cannot exhaust the stack.

See also:
    RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 4731, RFC 5182, RFC 6855 §3;
    imap/search.py (evaluation).
"""

from __future__ import annotations

from collections.abc import Callable

from postoffice.imap import commands as c
from postoffice.imap.parse import values
from postoffice.imap.parse.reader import NUMBER64_MAX, Bad, Reader

__all__ = ["CHARSETS", "search"]

CHARSETS = ("US-ASCII", "UTF-8")  # RFC 9051 §6.4.4: both MUST be supported
_BADCHARSET = "BADCHARSET (" + " ".join(CHARSETS) + ")"

_RETURN = {o.value: o for o in c.SearchReturn}


def _text(r: Reader) -> str:
    r.sp()
    return r.utf8_text(r.astring(), "search string")


def _flag(name: str, present: bool) -> Callable[[Reader], c.SearchKey]:
    key = c.SearchFlag(flag=name, present=present)
    return lambda r: key


def _keyword(present: bool) -> Callable[[Reader], c.SearchKey]:
    def read(r: Reader) -> c.SearchKey:
        r.sp()
        return c.SearchFlag(flag=r.atom().decode("ascii"), present=present)

    return read


def _header(field: str) -> Callable[[Reader], c.SearchKey]:
    return lambda r: c.SearchHeader(field=field, value=_text(r))


def _any_header(r: Reader) -> c.SearchKey:
    r.sp()
    name = r.astring()
    if not name or not name.isascii():
        raise Bad("invalid header field name")
    return c.SearchHeader(field=name.decode("ascii").lower(), value=_text(r))


def _date(op: c.DateOp, sent: bool) -> Callable[[Reader], c.SearchKey]:
    def read(r: Reader) -> c.SearchKey:
        r.sp()
        return c.SearchDate(op=op, date=values.date(r), sent=sent)

    return read


def _size(larger: bool) -> Callable[[Reader], c.SearchKey]:
    def read(r: Reader) -> c.SearchKey:
        r.sp()
        return c.SearchSize(larger=larger, size=r.number(limit=NUMBER64_MAX))

    return read


def _uid(r: Reader) -> c.SearchKey:
    r.sp()
    return c.SearchSet(set=values.sequence_set(r), uid=True)


def _not(r: Reader) -> c.SearchKey:
    r.sp()
    r.enter()
    key = search_key(r)
    r.leave()
    return c.SearchNot(key=key)


def _or(r: Reader) -> c.SearchKey:
    r.sp()
    r.enter()
    left = search_key(r)
    r.sp()
    right = search_key(r)
    r.leave()
    return c.SearchOr(left=left, right=right)


_UNSEEN = c.SearchFlag(flag="\\Seen", present=False)
_NEW = c.SearchAnd(keys=(c.SearchRecent(present=True), _UNSEEN))

# RFC 9051 §6.4.4 / RFC 3501 §6.4.4: search key → reader of its arguments.
_KEYS: dict[str, Callable[[Reader], c.SearchKey]] = {
    "ALL": lambda r: c.SearchAll(),
    "ANSWERED": _flag("\\Answered", True),
    "DELETED": _flag("\\Deleted", True),
    "DRAFT": _flag("\\Draft", True),
    "FLAGGED": _flag("\\Flagged", True),
    "SEEN": _flag("\\Seen", True),
    "UNANSWERED": _flag("\\Answered", False),
    "UNDELETED": _flag("\\Deleted", False),
    "UNDRAFT": _flag("\\Draft", False),
    "UNFLAGGED": _flag("\\Flagged", False),
    "UNSEEN": _flag("\\Seen", False),
    "KEYWORD": _keyword(True),
    "UNKEYWORD": _keyword(False),
    "RECENT": lambda r: c.SearchRecent(present=True),
    "OLD": lambda r: c.SearchRecent(present=False),
    "NEW": lambda r: _NEW,
    "BCC": _header("bcc"),
    "CC": _header("cc"),
    "FROM": _header("from"),
    "SUBJECT": _header("subject"),
    "TO": _header("to"),
    "HEADER": _any_header,
    "BODY": lambda r: c.SearchText(value=_text(r), body_only=True),
    "TEXT": lambda r: c.SearchText(value=_text(r), body_only=False),
    "BEFORE": _date("before", False),
    "ON": _date("on", False),
    "SINCE": _date("since", False),
    "SENTBEFORE": _date("before", True),
    "SENTON": _date("on", True),
    "SENTSINCE": _date("since", True),
    "LARGER": _size(True),
    "SMALLER": _size(False),
    "UID": _uid,
    "NOT": _not,
    "OR": _or,
}

_SEQ_START = frozenset(b"0123456789*$")


def search_key(r: Reader) -> c.SearchKey:
    """One search-key, parenthesised lists included."""
    first = r.peek()
    if first == 0x28:  # "("
        r.open()
        keys = [search_key(r)]
        while r.try_sp():
            keys.append(search_key(r))
        r.close()
        return keys[0] if len(keys) == 1 else c.SearchAnd(keys=tuple(keys))
    if first in _SEQ_START:
        return c.SearchSet(set=values.sequence_set(r), uid=False)
    if first < 0:
        raise Bad("missing search key")
    name = r.keyword()
    read = _KEYS.get(name)
    if read is None:
        raise Bad(f"unknown search key {name[:32]}")
    return read(r)


def _return_options(r: Reader) -> tuple[c.SearchReturn, ...]:
    r.sp()
    r.open()
    options: list[c.SearchReturn] = []
    if r.peek() != 0x29:
        while True:
            name = r.keyword()
            option = _RETURN.get(name)
            if option is None:
                raise Bad(f"unknown SEARCH RETURN option {name[:32]}")
            if option not in options:
                options.append(option)
            if not r.try_sp():
                break
    r.close()
    return tuple(options) or (c.SearchReturn.ALL,)  # RFC 4731 §3.1


def search(r: Reader, tag: str, *, uid: bool) -> c.Search:
    """What follows SEARCH: see the module manual."""
    r.sp()
    result: tuple[c.SearchReturn, ...] | None = None
    if r.peek_keyword() == "RETURN":
        r.pos += 6
        result = _return_options(r)
        r.sp()
    charset: str | None = None
    if r.peek_keyword() == "CHARSET":
        r.pos += 7
        r.sp()
        raw = r.astring()
        name = raw.decode("ascii", "replace").upper()
        if name not in CHARSETS:  # RFC 9051 §6.4.4: NO, not BAD
            raise Bad("unsupported charset", status="NO", code=_BADCHARSET)
        charset = name
        r.sp()
    keys = [search_key(r)]
    while r.try_sp():
        keys.append(search_key(r))
    r.end()
    key = keys[0] if len(keys) == 1 else c.SearchAnd(keys=tuple(keys))
    return c.Search(tag=tag, uid=uid, charset=charset, key=key, result=result)
