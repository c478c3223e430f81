"""imap.commands — the typed IMAP commands a client can send (pure values).

Description:
    What imap/parse/ returns for one complete client command: a frozen
    dataclass per command, each with its `tag`. Sessions match on the class
    (`isinstance(cmd, Fetch)`); nothing here touches the wire format except
    the command `name` used by the state table (imap/protocol.py).

    Values are decoded once, at the parser:
      * mailbox names are `str` (modified UTF-7 decoded in IMAP4rev1, UTF-8
        with UTF8=ACCEPT / IMAP4rev2); a name equal to INBOX in any case is
        spelled "INBOX" (RFC 9051 §5.1);
      * flags are `str` as IMAP spells them: system flags in their canonical
        case ("\\Seen"), keywords as sent ("$Forwarded") — the same spelling
        as store.interfaces;
      * search strings are `str` (the CHARSET decoded); dates are
        `datetime.date`, APPEND's date-time an aware `datetime.datetime`;
      * SASL initial responses and AUTHENTICATE data are decoded `bytes`.

    Sequence sets (RFC 9051 §9 sequence-set) keep `*` as None until a
    session resolves it against the mailbox: `SequenceSet.intervals(largest)`.
    `$` (RFC 5182 SEARCHRES, saved search result) is `SequenceSet.SAVED`.

    The SEARCH program is a tree (RFC 9051 §6.4.4, RFC 3501 §6.4.4): the
    keys of a search command form an implicit AND (`SearchAnd`); NOT, OR
    and parenthesised lists nest. Keys that are shorthand are expanded by
    the parser so an evaluator sees few shapes:
      ALL                         SearchAll()
      ANSWERED DELETED DRAFT FLAGGED SEEN, KEYWORD k
                                  SearchFlag(flag=..., present=True)
      UNANSWERED ... UNSEEN, UNKEYWORD k
                                  SearchFlag(flag=..., present=False)
      RECENT / OLD                SearchRecent(present=True / False)
      NEW                         SearchAnd((SearchRecent(True), UNSEEN))
      BCC CC FROM SUBJECT TO s    SearchHeader(field="bcc"..., value=s)
      HEADER name s               SearchHeader(field=name.lower(), value=s)
      BODY s / TEXT s             SearchText(value=s, body_only=True / False)
      BEFORE ON SINCE d           SearchDate(op=..., date=d, sent=False)
      SENTBEFORE SENTON SENTSINCE SearchDate(op=..., date=d, sent=True)
      LARGER n / SMALLER n        SearchSize(larger=True / False, size=n)
      sequence-set / UID set      SearchSet(set=..., uid=False / True)
      NOT k, OR a b, (k ...)      SearchNot, SearchOr, SearchAnd

    FETCH items (RFC 9051 §6.4.5): `FetchAttr` for the simple attributes,
    `FetchBody` for BODY[section]<partial> and BODY.PEEK, `FetchBinary` and
    `FetchBinarySize` for RFC 3516 BINARY[...], BINARY.PEEK, BINARY.SIZE.
    The macros ALL, FAST and FULL are expanded by the parser.

See also:
    imap/parse/ (the grammar), imap/protocol.py (the state table by
    `name`), imap/response.py, imap/search.py, imap/structure.py;
    RFC 9051 §6, RFC 3501 §6, RFC 4315, RFC 4731, RFC 4959, RFC 5258,
    RFC 5819, RFC 6154, RFC 6851, RFC 2177, RFC 2971, RFC 5161, RFC 3516.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import ClassVar, Literal

from postoffice.store.interfaces import FlagMode

__all__ = [
    "Append",
    "AppendMessage",
    "Authenticate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Copy",
    "Create",
    "DateOp",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "FetchAttr",
    "FetchBinary",
    "FetchBinarySize",
    "FetchBody",
    "FetchItem",
    "Id",
    "Idle",
    "List",
    "ListReturn",
    "ListSelect",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "Partial",
    "Rename",
    "Search",
    "SearchAll",
    "SearchAnd",
    "SearchDate",
    "SearchFlag",
    "SearchHeader",
    "SearchKey",
    "SearchNot",
    "SearchOr",
    "SearchRecent",
    "SearchReturn",
    "SearchSet",
    "SearchSize",
    "SearchText",
    "Section",
    "SectionText",
    "Select",
    "SeqRange",
    "SequenceSet",
    "StartTls",
    "Status",
    "StatusItem",
    "Store",
    "Subscribe",
    "Unselect",
    "Unsubscribe",
    "command_name",
]


# -- sequence sets ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SeqRange:
    """`first:last` of a sequence set, or one number when first == last.
    None stands for `*`, the largest number in use (RFC 9051 §9)."""

    first: int | None
    last: int | None

    def bounds(self, largest: int) -> tuple[int, int]:
        """(low, high) with `*` as `largest`; `4:2` is `2:4` (RFC 9051 §9:
        the range contains the numbers between them, in either order)."""
        a = largest if self.first is None else self.first
        b = largest if self.last is None else self.last
        return (a, b) if a <= b else (b, a)


@dataclass(frozen=True, slots=True, kw_only=True)
class SequenceSet:
    """A sequence set (message numbers or UIDs, RFC 9051 §9 sequence-set),
    or `$`, the saved search result (RFC 5182 §2.1): `saved=True`."""

    ranges: tuple[SeqRange, ...] = ()
    saved: bool = False

    SAVED: ClassVar[SequenceSet]

    @classmethod
    def of(cls, *numbers: int) -> SequenceSet:
        """A set of single numbers (for tests and sessions)."""
        return cls(ranges=tuple(SeqRange(first=n, last=n) for n in numbers))

    @property
    def uses_star(self) -> bool:
        """True when `*` appears (RFC 9051 §6.4.8: `UID n:*` quirks)."""
        return any(r.first is None or r.last is None for r in self.ranges)

    def intervals(self, largest: int) -> tuple[tuple[int, int], ...]:
        """Sorted, merged, inclusive (low, high) intervals with `*` resolved
        to `largest`. For `$` the caller substitutes the saved result."""
        spans = sorted(r.bounds(largest) for r in self.ranges)
        merged: list[tuple[int, int]] = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        return tuple(merged)

    def contains(self, number: int, largest: int) -> bool:
        """Whether `number` is in the set, `*` being `largest`."""
        for r in self.ranges:
            low, high = r.bounds(largest)
            if low <= number <= high:
                return True
        return False


SequenceSet.SAVED = SequenceSet(saved=True)


# -- SEARCH keys (RFC 9051 §6.4.4, RFC 3501 §6.4.4) ---------------------------

DateOp = Literal["before", "on", "since"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchAll:
    """ALL: every message."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchFlag:
    """A flag or keyword set (present) or not set: ANSWERED ... UNSEEN,
    KEYWORD, UNKEYWORD. System flags in canonical case ("\\Seen")."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchRecent:
    """RECENT (present) and OLD (not present), IMAP4rev1 only."""

    present: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchHeader:
    """A header field contains `value` (case-insensitive substring; an empty
    value matches every message that has the field). `field` is lower case:
    "from", "to", "cc", "bcc", "subject", or HEADER's field name."""

    field: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchText:
    """BODY (body_only) or TEXT (header and body) contains `value`."""

    value: str
    body_only: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchDate:
    """BEFORE/ON/SINCE on the internal date (sent=False) or SENTBEFORE/
    SENTON/SENTSINCE on the Date: header (sent=True); dates only, time and
    zone ignored (RFC 9051 §6.4.4)."""

    op: DateOp
    date: dt.date
    sent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSize:
    """LARGER n (larger=True: RFC822.SIZE > n) or SMALLER n (< n)."""

    larger: bool
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSet:
    """A message sequence set (uid=False) or UID set (UID keyword)."""

    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchNot:
    """NOT key."""

    key: SearchKey


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchOr:
    """OR key1 key2."""

    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchAnd:
    """Every key matches: the top level of a search program and each
    parenthesised list."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll
    | SearchFlag
    | SearchRecent
    | SearchHeader
    | SearchText
    | SearchDate
    | SearchSize
    | SearchSet
    | SearchNot
    | SearchOr
    | SearchAnd
)


class SearchReturn(enum.Enum):
    """ESEARCH result options (RFC 4731 §3.1, RFC 5182 SAVE; RFC 9051 §6.4.4)."""

    MIN = "MIN"
    MAX = "MAX"
    ALL = "ALL"
    COUNT = "COUNT"
    SAVE = "SAVE"


# -- FETCH items (RFC 9051 §6.4.5) -------------------------------------------


class FetchAttr(enum.Enum):
    """The FETCH attributes that take no section; values are the wire names."""

    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822_SIZE = "RFC822.SIZE"
    ENVELOPE = "ENVELOPE"
    BODY = "BODY"  # the non-extensible BODYSTRUCTURE
    BODYSTRUCTURE = "BODYSTRUCTURE"
    UID = "UID"
    RFC822 = "RFC822"  # = BODY[], sets \Seen (IMAP4rev1)
    RFC822_HEADER = "RFC822.HEADER"  # = BODY.PEEK[HEADER]
    RFC822_TEXT = "RFC822.TEXT"  # = BODY[TEXT], sets \Seen


class SectionText(enum.Enum):
    """section-text / section-msgtext of RFC 9051 §9."""

    HEADER = "HEADER"
    HEADER_FIELDS = "HEADER.FIELDS"
    HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
    TEXT = "TEXT"
    MIME = "MIME"  # only after a part number


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """A body section: `part` numbers (1.2.3 → (1, 2, 3); () is the whole
    message), then an optional `text` specifier; `fields` are the header
    field names of HEADER.FIELDS (.NOT), as the client spelled them."""

    part: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Partial:
    """`<offset.length>`: octets from `offset`, at most `length` (> 0)."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchBody:
    """BODY[section]<partial> (peek=False sets \\Seen) or BODY.PEEK[...]."""

    section: Section
    partial: Partial | None = None
    peek: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchBinary:
    """BINARY[part]<partial> or BINARY.PEEK[...] (RFC 3516 §4.2)."""

    part: tuple[int, ...]
    partial: Partial | None = None
    peek: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchBinarySize:
    """BINARY.SIZE[part] (RFC 3516 §4.2)."""

    part: tuple[int, ...]


FetchItem = FetchAttr | FetchBody | FetchBinary | FetchBinarySize


# -- STATUS and LIST options -------------------------------------------------


class StatusItem(enum.Enum):
    """STATUS data items (RFC 9051 §6.3.11; RECENT is IMAP4rev1)."""

    MESSAGES = "MESSAGES"
    UIDNEXT = "UIDNEXT"
    UIDVALIDITY = "UIDVALIDITY"
    UNSEEN = "UNSEEN"
    DELETED = "DELETED"
    SIZE = "SIZE"
    RECENT = "RECENT"


class ListSelect(enum.Enum):
    """LIST selection options (RFC 5258 §3.1, RFC 6154 §3)."""

    SUBSCRIBED = "SUBSCRIBED"
    REMOTE = "REMOTE"
    RECURSIVEMATCH = "RECURSIVEMATCH"
    SPECIAL_USE = "SPECIAL-USE"


class ListReturn(enum.Enum):
    """LIST return options (RFC 5258 §3.2, RFC 6154 §3); STATUS is
    `List.status` (RFC 5819)."""

    SUBSCRIBED = "SUBSCRIBED"
    CHILDREN = "CHILDREN"
    SPECIAL_USE = "SPECIAL-USE"


# -- commands ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Base of every command. `name` is the command as the state table
    (imap/protocol.py) knows it: "FETCH", "UID FETCH", ..."""

    name: ClassVar[str] = ""
    tag: str


# Any state (RFC 9051 §6.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True, kw_only=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True, kw_only=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True, kw_only=True)
class Id(Command):
    """ID (RFC 2971 §3.1): field/value pairs, or None for NIL."""

    name: ClassVar[str] = "ID"
    params: tuple[tuple[str, str | None], ...] | None


# Not authenticated (RFC 9051 §6.2)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTls(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticate(Command):
    """AUTHENTICATE mechanism [initial-response] (RFC 9051 §6.2.2, RFC 4959):
    `initial_response` is decoded base64 ("=" is b""), None when absent."""

    name: ClassVar[str] = "AUTHENTICATE"
    mechanism: str  # upper case
    initial_response: bytes | None = None

    def __repr__(self) -> str:  # a PLAIN initial response holds a password
        return f"Authenticate(tag={self.tag!r}, mechanism={self.mechanism!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Login(Command):
    """LOGIN userid password (RFC 9051 §6.2.3)."""

    name: ClassVar[str] = "LOGIN"
    userid: str
    password: str

    def __repr__(self) -> str:  # never log a password by accident
        return f"Login(tag={self.tag!r}, userid={self.userid!r})"


# Authenticated (RFC 9051 §6.3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Enable(Command):
    """ENABLE capabilities (RFC 5161 §3.1), upper case."""

    name: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Select(Command):
    """SELECT mailbox (RFC 9051 §6.3.2)."""

    name: ClassVar[str] = "SELECT"
    mailbox: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Examine(Command):
    """EXAMINE mailbox: SELECT read-only (RFC 9051 §6.3.3)."""

    name: ClassVar[str] = "EXAMINE"
    mailbox: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Create(Command):
    """CREATE mailbox [(USE (flags))] (RFC 9051 §6.3.4, RFC 6154 §3)."""

    name: ClassVar[str] = "CREATE"
    mailbox: str
    special_use: frozenset[str] = frozenset()  # "\\Sent", "\\Drafts", ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete(Command):
    name: ClassVar[str] = "DELETE"
    mailbox: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rename(Command):
    name: ClassVar[str] = "RENAME"
    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe(Command):
    name: ClassVar[str] = "SUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe(Command):
    name: ClassVar[str] = "UNSUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True, kw_only=True)
class List(Command):
    """LIST [(selection)] reference patterns [RETURN (options)]
    (RFC 9051 §6.3.9, RFC 5258 §3, RFC 5819, RFC 6154). `patterns` holds
    one pattern, or several with the RFC 5258 parenthesised form; `status`
    is the RETURN (STATUS (...)) items, None when not asked."""

    name: ClassVar[str] = "LIST"
    reference: str
    patterns: tuple[str, ...]
    select: frozenset[ListSelect] = frozenset()
    returns: frozenset[ListReturn] = frozenset()
    status: tuple[StatusItem, ...] | None = None
    extended: bool = False  # a selection or RETURN option, or several patterns


@dataclass(frozen=True, slots=True, kw_only=True)
class Lsub(Command):
    """LSUB reference pattern (RFC 3501 §6.3.9; IMAP4rev1 only)."""

    name: ClassVar[str] = "LSUB"
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(Command):
    """STATUS mailbox (items) (RFC 9051 §6.3.11)."""

    name: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[StatusItem, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendMessage:
    """One message of APPEND (RFC 9051 §6.3.12; several with MULTIAPPEND,
    RFC 3502): its flags, internal date, announced size and whether it came
    as literal8 (`~{n}`, RFC 3516 §4.4). The octets are streamed by
    imap/protocol.py, never held here."""

    flags: frozenset[str] = frozenset()
    internaldate: dt.datetime | None = None
    size: int
    binary: bool = False
    synchronizing: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Append(Command):
    """The head of APPEND: the mailbox and the first message's attributes."""

    name: ClassVar[str] = "APPEND"
    mailbox: str
    message: AppendMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class Idle(Command):
    """IDLE (RFC 2177, RFC 9051 §6.3.13); DONE is read by the engine."""

    name: ClassVar[str] = "IDLE"


# Selected (RFC 9051 §6.4)


@dataclass(frozen=True, slots=True, kw_only=True)
class Check(Command):
    name: ClassVar[str] = "CHECK"  # IMAP4rev1 only (RFC 3501 §6.4.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unselect(Command):
    name: ClassVar[str] = "UNSELECT"  # RFC 3691, RFC 9051 §6.4.2


@dataclass(frozen=True, slots=True, kw_only=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE set (RFC 4315 §2.1) when `uids` is given."""

    name: ClassVar[str] = "EXPUNGE"
    uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Search(Command):
    """[UID] SEARCH [RETURN (options)] [CHARSET c] keys (RFC 9051 §6.4.4,
    RFC 4731). `result` None asks for the classic `* SEARCH` response;
    otherwise the ESEARCH options (RETURN () is stored as (ALL,))."""

    name: ClassVar[str] = "SEARCH"
    uid: bool = False
    charset: str | None = None  # "UTF-8" or "US-ASCII" as accepted
    key: SearchKey
    result: tuple[SearchReturn, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetch(Command):
    """[UID] FETCH set items (RFC 9051 §6.4.5); macros expanded, order kept."""

    name: ClassVar[str] = "FETCH"
    uid: bool = False
    set: SequenceSet
    items: tuple[FetchItem, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Store(Command):
    """[UID] STORE set [+|-]FLAGS[.SILENT] flags (RFC 9051 §6.4.6)."""

    name: ClassVar[str] = "STORE"
    uid: bool = False
    set: SequenceSet
    mode: FlagMode  # "replace" FLAGS, "add" +FLAGS, "remove" -FLAGS
    silent: bool = False
    flags: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(Command):
    """[UID] COPY set mailbox (RFC 9051 §6.4.7, COPYUID RFC 4315)."""

    name: ClassVar[str] = "COPY"
    uid: bool = False
    set: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Move(Command):
    """[UID] MOVE set mailbox (RFC 6851 §3, RFC 9051 §6.4.8)."""

    name: ClassVar[str] = "MOVE"
    uid: bool = False
    set: SequenceSet
    mailbox: str


def command_name(command: Command) -> str:
    """The state-table name: "UID FETCH" for a UID command, else `name`."""
    uid = isinstance(command, Search | Fetch | Store | Copy | Move) and command.uid
    if isinstance(command, Expunge) and command.uids is not None:
        uid = True
    return "UID " + command.name if uid else command.name
