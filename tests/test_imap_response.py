"""IMAP response rendering (imap/response.py): status lines, quoting choice,
lists, sequence-set compression, dates, FETCH names; round-trips through the
client grammar's reader; rendering speed."""

from __future__ import annotations

import datetime as dt
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap import commands as c
from postoffice.imap import response as r
from postoffice.imap.parse import parse_append_head, parse_command
from postoffice.imap.parse.reader import Reader


def test_status_lines_and_codes() -> None:
    ok = r.Result(status="OK", text="SELECT completed", code=r.Code(name="READ-WRITE"))
    assert r.tagged("a1", ok) == b"a1 OK [READ-WRITE] SELECT completed\r\n"
    assert r.untagged(
        r.Result(status="OK", text="UIDs valid", code=r.Code.number("UIDVALIDITY", 3857529045))
    ) == (b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n")
    assert r.untagged(r.Result(status="BYE", text="bye\r\nA1 OK injected")) == (
        b"* BYE bye  A1 OK injected\r\n"
    )
    assert r.tagged("t", r.Result(status="BAD", text="x\x00y")) == b"t BAD xy\r\n"
    assert r.Code.listed("BADCHARSET", ["US-ASCII", "UTF-8"]).render() == (
        b"[BADCHARSET (US-ASCII UTF-8)]"
    )
    assert r.Code.atoms("CAPABILITY", ["IMAP4rev1", "IDLE"]).render() == (
        b"[CAPABILITY IMAP4rev1 IDLE]"
    )
    assert r.Code.appenduid(38505, [3955]).render() == b"[APPENDUID 38505 3955]"
    assert r.Code.appenduid(38505, [1, 2, 3, 9]).render() == b"[APPENDUID 38505 1:3,9]"
    # RFC 4315 §3 example shape: source and destination stay paired
    code = r.Code.copyuid(38505, [304, 319, 320, 321], [3956, 3957, 3958, 3959])
    assert code.render() == b"[COPYUID 38505 304,319:321 3956:3959]"
    code = r.Code.copyuid(1, [5, 3], [10, 11])
    assert code.render() == b"[COPYUID 1 5,3 10:11]"
    assert r.continuation() == b"+ \r\n"
    assert r.continuation("idling") == b"+ idling\r\n"
    assert r.continuation_data(b"\x00abc") == b"+ AGFiYw==\r\n"


def test_string_choice() -> None:
    assert r.string(b"hello world") == b'"hello world"'
    assert r.string(b"") == b'""'
    for s in (b'say "hi"', b"back\\slash", b"a\r\nb", b"nul\x00", b"caf\xc3\xa9", b"x" * 2000):
        assert r.string(s) == b"{%d}\r\n" % len(s) + s
    assert r.string(b"caf\xc3\xa9", utf8=True) == b'"caf\xc3\xa9"'
    assert r.string(b"bad \xff utf8", utf8=True) == b"{10}\r\nbad \xff utf8"
    assert r.string(b"x" * r.QUOTED_MAX) == b'"' + b"x" * r.QUOTED_MAX + b'"'
    assert r.astring(b"INBOX") == b"INBOX"
    assert r.astring(b"a]b") == b"a]b"
    assert r.astring(b"two words") == b'"two words"'
    assert r.astring(b"NIL") == b'"NIL"'
    assert r.astring(b"nil") == b'"nil"'
    assert r.astring(b"") == b'""'
    assert r.astring(b"%") == b'"%"'
    assert r.nstring(None) == b"NIL"
    assert r.nstring(b"NIL") == b'"NIL"'
    assert r.literal8(b"\x00\x01") == b"~{2}\r\n\x00\x01"


def test_mailbox_names() -> None:
    assert r.mailbox("INBOX") == b"INBOX"
    assert r.mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert r.mailbox("Entwürfe", utf8=True) == b'"Entw\xc3\xbcrfe"'  # atoms are 7-bit
    assert r.mailbox("Sent Items") == b'"Sent Items"'
    assert r.mailbox("~peter/mail/台北/日本語") == b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"


def test_lists_flags_sets() -> None:
    assert r.flag_list(["$Junk", "\\Seen", "\\Answered", "$Forwarded"]) == (
        b"(\\Answered \\Seen $Forwarded $Junk)"
    )
    assert r.flag_list([]) == b"()"
    assert r.paren_list([b"a", b"b"]) == b"(a b)"
    assert r.sequence_set([1, 2, 3, 4, 5, 7]) == b"1:5,7"
    assert r.sequence_set([9, 1, 3, 2, 2]) == b"1:3,9"
    assert r.sequence_set([]) == b""
    assert r.sequence_set([42]) == b"42"


def test_date_time() -> None:
    zone = dt.timezone(-dt.timedelta(hours=7))
    moment = dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=zone)
    assert r.date_time(moment) == b'"17-Jul-1996 02:44:25 -0700"'
    assert r.date_time(moment.timestamp()) == b'"17-Jul-1996 09:44:25 +0000"'
    assert r.date_time(moment.timestamp(), zone) == b'"17-Jul-1996 02:44:25 -0700"'
    early = dt.datetime(2024, 3, 5, 0, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
    assert r.date_time(early) == b'" 5-Mar-2024 00:00:00 +0530"'


@settings(max_examples=200)
@given(st.integers(0, 2**33), st.integers(-14 * 60, 14 * 60))
def test_date_time_round_trips_through_append(ts: int, minutes: int) -> None:
    zone = dt.timezone(dt.timedelta(minutes=minutes))
    wire = r.date_time(float(ts), zone)
    head = parse_append_head(b"a APPEND x " + wire + b" {1}")
    assert isinstance(head, c.Append), wire
    assert head.message.internaldate is not None
    assert head.message.internaldate.timestamp() == ts


def test_fetch_names() -> None:
    s = c.SectionText
    cases = [
        (c.FetchAttr.RFC822_SIZE, b"RFC822.SIZE"),
        (c.FetchBody(section=c.Section(), peek=True), b"BODY[]"),
        (c.FetchBody(section=c.Section(part=(1, 2), text=s.MIME)), b"BODY[1.2.MIME]"),
        (
            c.FetchBody(
                section=c.Section(text=s.HEADER_FIELDS, fields=("From", "X Y")),
                partial=c.Partial(offset=10, length=5),
            ),
            b'BODY[HEADER.FIELDS (From "X Y")]<10>',
        ),
        (c.FetchBody(section=c.Section(part=(3,))), b"BODY[3]"),
        (c.FetchBinary(part=(1,), peek=True), b"BINARY[1]"),
        (c.FetchBinary(part=(), partial=c.Partial(offset=0, length=9)), b"BINARY[]<0>"),
        (c.FetchBinarySize(part=(2, 1)), b"BINARY.SIZE[2.1]"),
    ]
    for item, name in cases:
        assert r.fetch_item_name(item) == name
    line = r.fetch(12, [b"FLAGS (\\Seen)", b"UID 4827313"])
    assert line == b"* 12 FETCH (FLAGS (\\Seen) UID 4827313)\r\n"


def test_fetch_names_parse_back() -> None:
    cmd = parse_command(
        b"a FETCH 1 (BODY.PEEK[1.HEADER.FIELDS.NOT (Received)]<5.6> BODY[2.TEXT] BINARY[3])"
    )
    assert isinstance(cmd, c.Fetch)
    names = [r.fetch_item_name(i) for i in cmd.items]
    assert names == [b"BODY[1.HEADER.FIELDS.NOT (Received)]<5>", b"BODY[2.TEXT]", b"BINARY[3]"]


def test_untagged_data() -> None:
    assert r.exists(23) == b"* 23 EXISTS\r\n"
    assert r.recent(0) == b"* 0 RECENT\r\n"
    assert r.expunge(3) == b"* 3 EXPUNGE\r\n"
    assert r.flags(["\\Seen", "\\Deleted"]) == b"* FLAGS (\\Deleted \\Seen)\r\n"
    assert r.capability(["IMAP4rev1", "IDLE"]) == b"* CAPABILITY IMAP4rev1 IDLE\r\n"
    assert r.enabled([]) == b"* ENABLED\r\n"
    assert r.enabled(["IMAP4rev2"]) == b"* ENABLED IMAP4rev2\r\n"
    assert r.search([2, 3, 6]) == b"* SEARCH 2 3 6\r\n"
    assert r.search([]) == b"* SEARCH\r\n"
    assert r.esearch("A282", uid=True, minimum=2, count=3, all_numbers=[2, 10, 11]) == (
        b'* ESEARCH (TAG "A282") UID MIN 2 COUNT 3 ALL 2,10:11\r\n'
    )
    assert r.esearch("A283", uid=False, count=0, all_numbers=[]) == (
        b'* ESEARCH (TAG "A283") COUNT 0\r\n'
    )
    assert (
        r.list_item(["\\HasNoChildren"], "/", "INBOX") == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    )
    assert r.list_item(["\\Noselect"], None, "", verb="LSUB") == b'* LSUB (\\Noselect) NIL ""\r\n'
    assert r.list_item([], "\\", "a") == b'* LIST () "\\\\" a\r\n'
    assert (
        r.list_item(["\\Subscribed"], ".", "Entwürfe", extended=b'("CHILDINFO" ("SUBSCRIBED"))')
        == b'* LIST (\\Subscribed) "." Entw&APw-rfe ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    )
    assert r.status(
        "blurdybloop", [(c.StatusItem.MESSAGES, 231), (c.StatusItem.UIDNEXT, 44292)]
    ) == (b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n")


def _read_back(wire: bytes) -> bytes:
    reader = Reader(wire)
    value = reader.astring()
    assert reader.at_end()
    return value


@settings(max_examples=200)
@given(st.binary(max_size=1500).filter(lambda b: b"\x00" not in b), st.booleans())
def test_strings_round_trip_through_the_reader(s: bytes, utf8: bool) -> None:
    assert _read_back(r.string(s, utf8=utf8)) == s
    assert _read_back(r.astring(s, utf8=utf8)) == s
    rendered = r.nstring(s)
    assert rendered != b"NIL"


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_mailbox_round_trip(name: str) -> None:
    for utf8 in (False, True):
        wire = r.mailbox(name, utf8=utf8)
        cmd = parse_command(b"a SELECT " + wire, utf8=utf8)
        assert isinstance(cmd, c.Select), (name, wire, cmd)
        expected = "INBOX" if name.upper() == "INBOX" else name
        assert cmd.mailbox == expected


@settings(max_examples=200)
@given(st.sets(st.integers(1, 10_000), max_size=50))
def test_sequence_set_round_trip(numbers: set[int]) -> None:
    wire = r.sequence_set(numbers)
    if not numbers:
        assert wire == b""
        return
    cmd = parse_command(b"a UID FETCH " + wire + b" UID")
    assert isinstance(cmd, c.Fetch)
    members = {n for low, high in cmd.set.intervals(10_000) for n in range(low, high + 1)}
    assert members == numbers


def test_rendering_ten_thousand_fetch_responses_is_fast() -> None:
    """The brief's performance case: 10,000 `* n FETCH (UID FLAGS
    INTERNALDATE RFC822.SIZE ...)` lines, built with this module's pieces."""
    flag_sets = [frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Flagged", "$Junk"}), frozenset()]
    zone = dt.timezone(dt.timedelta(hours=1))
    start = time.perf_counter()
    out = []
    for n in range(1, 10_001):
        out.append(
            r.fetch(
                n,
                (
                    b"UID %d" % (n + 100),
                    b"FLAGS " + r.flag_list(flag_sets[n % 3]),
                    b"INTERNALDATE " + r.date_time(1_700_000_000.0 + n, zone),
                    b"RFC822.SIZE %d" % (5000 + n),
                ),
            )
        )
    blob = b"".join(out)
    elapsed = time.perf_counter() - start
    assert blob.count(b"\r\n") == 10_000
    assert b"* 10000 FETCH (UID 10100 FLAGS (\\Seen $Junk" not in blob  # flag order: system first
    assert b"* 10000 FETCH (UID 10100 FLAGS (\\Flagged \\Seen $Junk) INTERNALDATE" in blob
    assert elapsed < 1.0, f"{elapsed:.3f}s for 10,000 FETCH responses"
