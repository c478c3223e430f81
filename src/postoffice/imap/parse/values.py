"""imap.parse.values — sequence sets, flags, dates and mailbox names (RFC 9051 §9, pure).

Description:
    Readers for the value types many commands share, each taking a
    parse.reader.Reader at the value and leaving it just after:

      sequence_set   seq-number / seq-range, comma separated, `*`, and `$`
                     (RFC 5182 §2.1) as the whole set;
      flag, flag_list  "\\Answered" ... "\\Draft" in canonical case, keywords
                     (atoms) as sent; "\\Recent" and unknown "\\" flags
                     are refused where a client may not set them
                     (RFC 9051 §9 flag, flag-extension);
      date           date (SEARCH): d-Mon-yyyy, optionally quoted;
      date_time      APPEND's "dd-Mon-yyyy hh:mm:ss +zzzz" (RFC 9051 §9
                     date-time; a day of one digit is accepted with or
                     without its leading space);
      mailbox        astring decoded: modified UTF-7 in IMAP4rev1
                     (imap/mutf7.py, strict), UTF-8 with UTF8=ACCEPT /
                     IMAP4rev2 (RFC 9051 §5.1, RFC 6855 §3); "INBOX" in
                     any case is "INBOX";
      pattern        list-mailbox decoded the same way (no INBOX rule).

See also:
    RFC 9051 §9, §2.3.2 (flags), §5.1 (mailbox naming), RFC 3501 §5.1.3,
    RFC 5182; imap/commands.py (SequenceSet).
"""

from __future__ import annotations

import datetime as dt
import re

from postoffice.imap import mutf7
from postoffice.imap.commands import SeqRange, SequenceSet
from postoffice.imap.parse.reader import Bad, Reader

__all__ = [
    "MONTHS",
    "SYSTEM_FLAGS",
    "date",
    "date_time",
    "decode_name",
    "flag",
    "flag_list",
    "mailbox",
    "pattern",
    "sequence_set",
]

# RFC 9051 §2.3.2 system flags a client may set, by upper-case spelling.
SYSTEM_FLAGS = {
    "\\ANSWERED": "\\Answered",
    "\\FLAGGED": "\\Flagged",
    "\\DELETED": "\\Deleted",
    "\\SEEN": "\\Seen",
    "\\DRAFT": "\\Draft",
}

MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}

_SEQ = re.compile(rb"(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?(?:,(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?)*")
_DATE = re.compile(rb'("?)([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})\1')
_DATE_TIME = re.compile(
    rb'" ?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_MAX_SEQ = 0xFFFFFFFF


def _seq_number(text: bytes) -> int | None:
    if text == b"*":
        return None
    if len(text) > 10 or not 0 < int(text) <= _MAX_SEQ:  # nz-number (RFC 9051 §9)
        raise Bad("invalid sequence number")
    return int(text)


def sequence_set(r: Reader) -> SequenceSet:
    """sequence-set, or "$" (RFC 5182 SEARCHRES)."""
    if r.peek() == 0x24:  # "$"
        r.pos += 1
        return SequenceSet.SAVED
    m = _SEQ.match(r.data, r.pos)
    if m is None:
        raise Bad("invalid sequence set")
    r.pos = m.end()
    ranges = []
    for item in m.group().split(b","):
        first, colon, last = item.partition(b":")
        a = _seq_number(first)
        ranges.append(SeqRange(first=a, last=_seq_number(last) if colon else a))
    return SequenceSet(ranges=tuple(ranges))


def flag(r: Reader, *, allow_recent: bool = False) -> str:
    """A flag a client may set: system flag (canonical case) or keyword."""
    if r.peek() == 0x5C:  # "\"
        r.pos += 1
        name = "\\" + r.atom().decode("ascii")
        upper = name.upper()
        if upper in SYSTEM_FLAGS:
            return SYSTEM_FLAGS[upper]
        if allow_recent and upper == "\\RECENT":
            return "\\Recent"
        raise Bad(f"invalid system flag {name}")
    return r.atom().decode("ascii")


def flag_list(r: Reader) -> frozenset[str]:
    """ "(" [flag *(SP flag)] ")"."""
    r.open()
    flags: list[str] = []
    if r.peek() != 0x29:
        flags.append(flag(r))
        while r.try_sp():
            flags.append(flag(r))
    r.close()
    return frozenset(flags)


def _ymd(year: bytes, month: bytes, day: bytes) -> dt.date:
    number = MONTHS.get(month.decode("ascii").upper())
    if number is None:
        raise Bad("invalid month name")
    try:
        return dt.date(int(year), number, int(day))
    except ValueError as exc:
        raise Bad("invalid date") from exc


def date(r: Reader) -> dt.date:
    """date = date-text / DQUOTE date-text DQUOTE (SEARCH BEFORE, ON, ...)."""
    m = _DATE.match(r.data, r.pos)
    if m is None:
        raise Bad("invalid date (expected d-Mon-yyyy)")
    r.pos = m.end()
    return _ymd(m.group(4), m.group(3), m.group(2))


def date_time(r: Reader) -> dt.datetime:
    """date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP
    time SP zone DQUOTE (RFC 9051 §9)."""
    m = _DATE_TIME.match(r.data, r.pos)
    if m is None:
        raise Bad("invalid date-time")
    day, month, year, hh, mm, ss, sign, zh, zm = m.groups()
    when = _ymd(year, month, day)
    if int(hh) > 23 or int(mm) > 59 or int(ss) > 60 or int(zm) > 59:
        raise Bad("invalid time of day")
    offset = dt.timedelta(hours=int(zh), minutes=int(zm))
    zone = dt.timezone(-offset if sign == b"-" else offset)
    r.pos = m.end()
    return dt.datetime(
        when.year, when.month, when.day, int(hh), int(mm), min(int(ss), 59), tzinfo=zone
    )


def decode_name(r: Reader, raw: bytes) -> str:
    """A mailbox name or pattern from the wire (see the module manual)."""
    if r.utf8:
        return r.utf8_text(raw, "mailbox name")  # RFC 9051 §5.1: UTF-8 as is
    if not raw.isascii():
        raise Bad("mailbox name is not modified UTF-7 (8-bit octets)")
    try:
        return mutf7.decode(raw.decode("ascii"))
    except ValueError as exc:
        raise Bad("mailbox name is not valid modified UTF-7") from exc


def mailbox(r: Reader) -> str:
    """mailbox = "INBOX" / astring, decoded; INBOX case-insensitive."""
    name = decode_name(r, r.astring())
    return "INBOX" if len(name) == 5 and name.upper() == "INBOX" else name


def pattern(r: Reader) -> str:
    """list-mailbox, decoded (RFC 9051 §6.3.9)."""
    return decode_name(r, r.list_mailbox())
