"""The IMAP client grammar (imap/parse/): every command, the SEARCH tree, FETCH
sections, sequence sets, mailbox names, APPEND heads, hostile input, fuzz."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap import commands as c
from postoffice.imap.parse import (
    COMMAND_NAMES,
    ParseError,
    parse_append_head,
    parse_append_next,
    parse_command,
    split_head,
)


def ok(line: bytes, **kw: bool) -> c.Command:
    result = parse_command(line, **kw)
    assert not isinstance(result, ParseError), result
    return result


def bad(line: bytes, **kw: bool) -> ParseError:
    result = parse_command(line, **kw)
    assert isinstance(result, ParseError), result
    return result


def seq(*ranges: tuple[int | None, int | None]) -> c.SequenceSet:
    return c.SequenceSet(ranges=tuple(c.SeqRange(first=a, last=b) for a, b in ranges))


# -- tags, names, any-state commands -------------------------------------------


def test_bare_commands_case_insensitive() -> None:
    for line, cls in [
        (b"a1 CAPABILITY", c.Capability),
        (b"a1 noop", c.Noop),
        (b"a1 Logout", c.Logout),
        (b"a1 STARTTLS", c.StartTls),
        (b"a1 NAMESPACE", c.Namespace),
        (b"a1 IDLE", c.Idle),
        (b"a1 CHECK", c.Check),
        (b"a1 CLOSE", c.Close),
        (b"a1 UNSELECT", c.Unselect),
        (b"a1 EXPUNGE", c.Expunge),
    ]:
        cmd = ok(line)
        assert type(cmd) is cls
        assert cmd.tag == "a1"
    assert bad(b"a1 NOOP extra").reason == "unexpected characters after the command"


def test_tags() -> None:
    assert ok(b"A.1]x NOOP").tag == "A.1]x"  # "]" is an ASTRING-CHAR
    for line in (b"+ NOOP", b"* NOOP", b"(a NOOP", b" NOOP", b"", b'"a" NOOP', b"a\x00 NOOP"):
        assert bad(line).tag is None
    err = bad(b"a1 FROBNICATE")
    assert err.tag == "a1"
    assert "unknown command" in err.reason


def test_split_head() -> None:
    assert split_head(b"t1 uid Fetch 1:* FLAGS").name == "UID FETCH"
    assert split_head(b"t1 APPEND INBOX {5}").name == "APPEND"
    head = split_head(b"t1 XYZZY")
    assert (head.tag, head.name) == ("t1", None)
    assert split_head(b"+").tag is None
    assert split_head(b"t1").name is None
    assert "UID EXPUNGE" in COMMAND_NAMES and "UID FETCH" in COMMAND_NAMES


def test_id() -> None:
    cmd = ok(b'a ID ("name" "Thunderbird" "version" NIL)')
    assert isinstance(cmd, c.Id)
    assert cmd.params == (("name", "Thunderbird"), ("version", None))
    cmd = ok(b"a ID NIL")
    assert isinstance(cmd, c.Id) and cmd.params is None
    cmd = ok(b"a ID ()")
    assert isinstance(cmd, c.Id) and cmd.params == ()
    assert bad(b'a ID ("name")').tag == "a"
    assert "too long" in bad(b'a ID ("' + b"x" * 31 + b'" "v")').reason
    many = b" ".join(b'"f%d" "v"' % i for i in range(31))
    assert "too many" in bad(b"a ID (" + many + b")").reason


# -- not authenticated ---------------------------------------------------------


def test_login_astrings_and_literals() -> None:
    cmd = ok(b'a LOGIN fred "pa ss\\"w\\\\d"')
    assert isinstance(cmd, c.Login)
    assert (cmd.userid, cmd.password) == ("fred", 'pa ss"w\\d')
    cmd = ok(b"a LOGIN {4}\r\nfr d {5+}\r\nse\r\nt")
    assert isinstance(cmd, c.Login)
    assert (cmd.userid, cmd.password) == ("fr d", "se\r\nt")
    assert "secret" not in repr(ok(b"a LOGIN fred secret"))
    bad(b"a LOGIN fred")
    bad(b"a LOGIN fred pw extra")
    assert "NUL" in bad(b"a LOGIN fred {3}\r\na\x00b").reason
    assert "shorter" in bad(b"a LOGIN fred {30}\r\nabc").reason
    bad(b'a LOGIN fred "a\\nb"')  # only \" and \\ are escapes
    bad(b'a LOGIN fred "a\rb"')
    bad(b"a LOGIN fred ~{3}\r\nabc")  # literal8 outside APPEND
    assert "UTF-8" in bad(b'a LOGIN "\xff" x').reason


def test_authenticate_sasl_ir() -> None:
    cmd = ok(b"a AUTHENTICATE plain")
    assert isinstance(cmd, c.Authenticate)
    assert (cmd.mechanism, cmd.initial_response) == ("PLAIN", None)
    cmd = ok(b"a AUTHENTICATE PLAIN AGZyZWQAc2VjcmV0")
    assert isinstance(cmd, c.Authenticate)
    assert cmd.initial_response == b"\x00fred\x00secret"
    assert "secret" not in repr(cmd)
    cmd = ok(b"a AUTHENTICATE EXTERNAL =")
    assert isinstance(cmd, c.Authenticate) and cmd.initial_response == b""
    bad(b"a AUTHENTICATE PLAIN AGZy*")
    bad(b"a AUTHENTICATE PLAIN abc")  # bad padding
    bad(b"a AUTHENTICATE")


# -- authenticated -------------------------------------------------------------


def test_mailbox_names_rev1_modified_utf7() -> None:
    cmd = ok(b"a SELECT inbox")
    assert isinstance(cmd, c.Select) and cmd.mailbox == "INBOX"
    cmd = ok(b'a EXAMINE "Entw&APw-rfe"')
    assert isinstance(cmd, c.Examine) and cmd.mailbox == "Entwürfe"
    cmd = ok(b"a DELETE INBOX.sub")
    assert isinstance(cmd, c.Delete) and cmd.mailbox == "INBOX.sub"
    assert "modified UTF-7" in bad(b'a SELECT "Entw\xc3\xbcrfe"').reason
    assert "modified UTF-7" in bad(b"a SELECT a&b").reason
    bad(b"a SELECT INBOX (CONDSTORE)")


def test_mailbox_names_utf8_mode() -> None:
    cmd = ok(b'a SELECT "Entw\xc3\xbcrfe"', utf8=True)
    assert isinstance(cmd, c.Select) and cmd.mailbox == "Entwürfe"
    cmd = ok(b"a SELECT a&b", utf8=True)  # "&" is just a character in UTF-8 names
    assert isinstance(cmd, c.Select) and cmd.mailbox == "a&b"
    assert "UTF-8" in bad(b'a SELECT "\xc3"', utf8=True).reason


def test_create_rename_subscribe() -> None:
    cmd = ok(b"a CREATE Drafts (USE (\\drafts \\X-Custom))")
    assert isinstance(cmd, c.Create)
    assert cmd.special_use == {"\\Drafts", "\\X-Custom"}
    cmd = ok(b"a CREATE foo/bar")
    assert isinstance(cmd, c.Create) and cmd.special_use == frozenset()
    bad(b"a CREATE foo (BOGUS (x))")
    bad(b"a CREATE foo (USE (Drafts))")
    cmd = ok(b'a RENAME "old" {3}\r\nnew')
    assert isinstance(cmd, c.Rename) and (cmd.old, cmd.new) == ("old", "new")
    assert isinstance(ok(b"a SUBSCRIBE x"), c.Subscribe)
    assert isinstance(ok(b"a UNSUBSCRIBE x"), c.Unsubscribe)


def test_enable() -> None:
    cmd = ok(b"a ENABLE imap4rev2 utf8=accept")
    assert isinstance(cmd, c.Enable)
    assert cmd.capabilities == ("IMAP4REV2", "UTF8=ACCEPT")
    bad(b"a ENABLE")


def test_list_basic_and_extended() -> None:
    cmd = ok(b'a LIST "" *')
    assert isinstance(cmd, c.List)
    assert (cmd.reference, cmd.patterns, cmd.extended) == ("", ("*",), False)
    cmd = ok(b"a LIST ~/Mail/ %")
    assert isinstance(cmd, c.List) and cmd.reference == "~/Mail/" and cmd.patterns == ("%",)
    cmd = ok(
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" Sent*) '
        b"RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))"
    )
    assert isinstance(cmd, c.List)
    assert cmd.select == {c.ListSelect.SUBSCRIBED, c.ListSelect.RECURSIVEMATCH}
    assert cmd.patterns == ("INBOX", "Sent*")
    assert cmd.returns == {c.ListReturn.CHILDREN, c.ListReturn.SPECIAL_USE}
    assert cmd.status == (c.StatusItem.MESSAGES, c.StatusItem.UNSEEN)
    assert cmd.extended
    cmd = ok(b'a LIST (SPECIAL-USE) "" *')
    assert isinstance(cmd, c.List) and cmd.select == {c.ListSelect.SPECIAL_USE}
    cmd = ok(b'a LIST () "" % RETURN ()')
    assert isinstance(cmd, c.List) and cmd.extended and not cmd.select
    assert "RECURSIVEMATCH" in bad(b'a LIST (RECURSIVEMATCH) "" *').reason
    bad(b'a LIST (BOGUS) "" *')
    bad(b'a LIST "" * RETURN (BOGUS)')
    bad(b'a LIST "" * EXTRA (x)')
    cmd = ok(b'a LSUB "" "Entw&APw-*"')
    assert isinstance(cmd, c.Lsub) and cmd.pattern == "Entwü*"


def test_status() -> None:
    cmd = ok(b"a STATUS inbox (messages UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT)")
    assert isinstance(cmd, c.Status)
    assert cmd.mailbox == "INBOX"
    assert cmd.items == tuple(c.StatusItem)
    bad(b"a STATUS inbox ()")
    bad(b"a STATUS inbox (HIGHESTMODSEQ)")
    bad(b"a STATUS inbox MESSAGES")


# -- selected -----------------------------------------------------------------


def test_sequence_sets() -> None:
    cmd = ok(b"a FETCH 1,3:5,7:*,*:2,* FLAGS")
    assert isinstance(cmd, c.Fetch)
    assert cmd.set == seq((1, 1), (3, 5), (7, None), (None, 2), (None, None))
    assert cmd.set.intervals(10) == ((1, 10),)
    assert cmd.set.intervals(4) == ((1, 7),)  # 7:* is 4:7
    cmd = ok(b"a UID FETCH $ UID")
    assert isinstance(cmd, c.Fetch) and cmd.set.saved and cmd.uid
    for line in (
        b"a FETCH 0 FLAGS",
        b"a FETCH 1:0 FLAGS",
        b"a FETCH 4294967296 FLAGS",
        b"a FETCH 1,,2 FLAGS",
        b"a FETCH 1, FLAGS",
        b"a FETCH :3 FLAGS",
        b"a FETCH -1 FLAGS",
        b"a FETCH $,1 FLAGS",
    ):
        bad(line)
    assert ok(b"a FETCH 4294967295 FLAGS")


def test_fetch_macros_and_simple_attributes() -> None:
    fast = (c.FetchAttr.FLAGS, c.FetchAttr.INTERNALDATE, c.FetchAttr.RFC822_SIZE)
    for name, items in [
        (b"FAST", fast),
        (b"all", (*fast, c.FetchAttr.ENVELOPE)),
        (b"FULL", (*fast, c.FetchAttr.ENVELOPE, c.FetchAttr.BODY)),
    ]:
        cmd = ok(b"a FETCH 1 " + name)
        assert isinstance(cmd, c.Fetch) and cmd.items == items
    bad(b"a FETCH 1 (ALL)")  # macros stand alone
    cmd = ok(
        b"a FETCH 1 (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE "
        b"RFC822.TEXT BODY BODYSTRUCTURE UID uid)"
    )
    assert isinstance(cmd, c.Fetch)
    assert set(cmd.items) == set(c.FetchAttr)
    assert len(cmd.items) == len(c.FetchAttr)  # the duplicate UID dropped
    bad(b"a FETCH 1 (FLAGS")
    bad(b"a FETCH 1 ()")
    bad(b"a FETCH 1 (FLAGS BOGUS)")
    bad(b"a FETCH 1 FLAGS (CHANGEDSINCE 5)")


def test_fetch_sections() -> None:
    cmd = ok(
        b"a UID FETCH 1:* (BODY[] BODY.PEEK[HEADER] BODY[TEXT]<0.1024> BODY[1.2.3] "
        b'BODY[2.MIME] BODY[3.HEADER.FIELDS (From "Subject" {2}\r\nTo)] '
        b"body.peek[header.fields.not (Received)]<10.20> BODY[4.TEXT])"
    )
    assert isinstance(cmd, c.Fetch)
    s = c.SectionText
    assert cmd.items == (
        c.FetchBody(section=c.Section()),
        c.FetchBody(section=c.Section(text=s.HEADER), peek=True),
        c.FetchBody(section=c.Section(text=s.TEXT), partial=c.Partial(offset=0, length=1024)),
        c.FetchBody(section=c.Section(part=(1, 2, 3))),
        c.FetchBody(section=c.Section(part=(2,), text=s.MIME)),
        c.FetchBody(
            section=c.Section(part=(3,), text=s.HEADER_FIELDS, fields=("From", "Subject", "To"))
        ),
        c.FetchBody(
            section=c.Section(text=s.HEADER_FIELDS_NOT, fields=("Received",)),
            partial=c.Partial(offset=10, length=20),
            peek=True,
        ),
        c.FetchBody(section=c.Section(part=(4,), text=s.TEXT)),
    )
    for line in (
        b"a FETCH 1 BODY[MIME]",  # MIME needs a part
        b"a FETCH 1 BODY[0]",
        b"a FETCH 1 BODY[1.]",
        b"a FETCH 1 BODY[HEADER.FIELDS]",
        b"a FETCH 1 BODY[HEADER.FIELDS ()]",
        b"a FETCH 1 BODY[HEADER.FIELDS (a:b)]",
        b"a FETCH 1 BODY[BOGUS]",
        b"a FETCH 1 BODY[TEXT",
        b"a FETCH 1 BODY[]<0.0>",  # nz-number length
        b"a FETCH 1 BODY[]<5>",
        b"a FETCH 1 BODY.PEEK",
        b"a FETCH 1 BINARY[HEADER]",
        b"a FETCH 1 UID[1]",
    ):
        bad(line)


def test_fetch_binary() -> None:
    cmd = ok(b"a FETCH 1 (BINARY[1.2] BINARY.PEEK[]<0.10> BINARY.SIZE[3])")
    assert isinstance(cmd, c.Fetch)
    assert cmd.items == (
        c.FetchBinary(part=(1, 2)),
        c.FetchBinary(part=(), partial=c.Partial(offset=0, length=10), peek=True),
        c.FetchBinarySize(part=(3,)),
    )


def test_store() -> None:
    cmd = ok(b"a STORE 2:4 +FLAGS (\\Deleted)")
    assert isinstance(cmd, c.Store)
    assert (cmd.mode, cmd.silent, cmd.flags) == ("add", False, {"\\Deleted"})
    cmd = ok(b"a UID STORE 1 -flags.silent \\seen $Junk")
    assert isinstance(cmd, c.Store)
    assert (cmd.uid, cmd.mode, cmd.silent, cmd.flags) == (True, "remove", True, {"\\Seen", "$Junk"})
    cmd = ok(b"a STORE 1 FLAGS ()")
    assert isinstance(cmd, c.Store) and cmd.mode == "replace" and cmd.flags == frozenset()
    assert "system flag" in bad(b"a STORE 1 +FLAGS (\\Recent)").reason
    bad(b"a STORE 1 +FLAGS (\\Bogus)")
    bad(b"a STORE 1 *FLAGS (x)")
    bad(b"a STORE 1 +FLAGS")
    bad(b"a STORE 1 (UNCHANGEDSINCE 3) +FLAGS (x)")
    bad(b"a STORE 1 +FLAGS (a b")


def test_copy_move_expunge() -> None:
    cmd = ok(b"a UID COPY 1:3 Trash")
    assert isinstance(cmd, c.Copy) and cmd.uid and cmd.mailbox == "Trash"
    assert c.command_name(cmd) == "UID COPY"
    cmd = ok(b'a MOVE 2 "Archive/2026"')
    assert isinstance(cmd, c.Move) and not cmd.uid and c.command_name(cmd) == "MOVE"
    cmd = ok(b"a UID EXPUNGE 3:5")
    assert isinstance(cmd, c.Expunge) and cmd.uids == seq((3, 5))
    assert c.command_name(cmd) == "UID EXPUNGE"
    assert c.command_name(ok(b"a EXPUNGE")) == "EXPUNGE"
    bad(b"a UID EXPUNGE")
    bad(b"a COPY 1")


# -- SEARCH ----------------------------------------------------------------------


def key(line: bytes, **kw: bool) -> c.SearchKey:
    cmd = ok(line, **kw)
    assert isinstance(cmd, c.Search)
    return cmd.key


def test_search_every_key() -> None:
    d = dt.date(1994, 2, 1)
    cases: list[tuple[bytes, c.SearchKey]] = [
        (b"ALL", c.SearchAll()),
        (b"ANSWERED", c.SearchFlag(flag="\\Answered")),
        (b"DELETED", c.SearchFlag(flag="\\Deleted")),
        (b"DRAFT", c.SearchFlag(flag="\\Draft")),
        (b"FLAGGED", c.SearchFlag(flag="\\Flagged")),
        (b"SEEN", c.SearchFlag(flag="\\Seen")),
        (b"UNANSWERED", c.SearchFlag(flag="\\Answered", present=False)),
        (b"UNDELETED", c.SearchFlag(flag="\\Deleted", present=False)),
        (b"UNDRAFT", c.SearchFlag(flag="\\Draft", present=False)),
        (b"UNFLAGGED", c.SearchFlag(flag="\\Flagged", present=False)),
        (b"UNSEEN", c.SearchFlag(flag="\\Seen", present=False)),
        (b"KEYWORD $Junk", c.SearchFlag(flag="$Junk")),
        (b"UNKEYWORD $Junk", c.SearchFlag(flag="$Junk", present=False)),
        (b"RECENT", c.SearchRecent()),
        (b"OLD", c.SearchRecent(present=False)),
        (
            b"NEW",
            c.SearchAnd(keys=(c.SearchRecent(), c.SearchFlag(flag="\\Seen", present=False))),
        ),
        (b"BCC x", c.SearchHeader(field="bcc", value="x")),
        (b"CC x", c.SearchHeader(field="cc", value="x")),
        (b'FROM "Joe Q"', c.SearchHeader(field="from", value="Joe Q")),
        (b"SUBJECT {5}\r\nhi yo", c.SearchHeader(field="subject", value="hi yo")),
        (b"TO x", c.SearchHeader(field="to", value="x")),
        (b'HEADER X-Spam ""', c.SearchHeader(field="x-spam", value="")),
        (b'BODY "caf\xc3\xa9"', c.SearchText(value="café", body_only=True)),
        (b"TEXT x", c.SearchText(value="x", body_only=False)),
        (b"BEFORE 1-Feb-1994", c.SearchDate(op="before", date=d)),
        (b'ON "01-feb-1994"', c.SearchDate(op="on", date=d)),
        (b"SINCE 1-Feb-1994", c.SearchDate(op="since", date=d)),
        (b"SENTBEFORE 1-Feb-1994", c.SearchDate(op="before", date=d, sent=True)),
        (b"SENTON 1-Feb-1994", c.SearchDate(op="on", date=d, sent=True)),
        (b"SENTSINCE 1-Feb-1994", c.SearchDate(op="since", date=d, sent=True)),
        (b"LARGER 1000", c.SearchSize(larger=True, size=1000)),
        (b"SMALLER 5000000000", c.SearchSize(larger=False, size=5000000000)),
        (b"UID 1:*", c.SearchSet(set=seq((1, None)), uid=True)),
        (b"2,4:6", c.SearchSet(set=seq((2, 2), (4, 6)))),
        (b"$", c.SearchSet(set=c.SequenceSet.SAVED)),
        (b"NOT SEEN", c.SearchNot(key=c.SearchFlag(flag="\\Seen"))),
        (
            b"OR SEEN (FLAGGED 1)",
            c.SearchOr(
                left=c.SearchFlag(flag="\\Seen"),
                right=c.SearchAnd(
                    keys=(c.SearchFlag(flag="\\Flagged"), c.SearchSet(set=seq((1, 1))))
                ),
            ),
        ),
        (b"(SEEN)", c.SearchFlag(flag="\\Seen")),
    ]
    for text, expected in cases:
        assert key(b"a SEARCH " + text) == expected, text
        assert key(b"a search " + text.lower() if b"{" not in text else b"a SEARCH " + text)


def test_search_program_shapes() -> None:
    cmd = ok(b"a UID SEARCH RETURN (COUNT min MIN) CHARSET utf-8 FLAGGED SINCE 1-Feb-1994")
    assert isinstance(cmd, c.Search)
    assert cmd.uid and cmd.charset == "UTF-8"
    assert cmd.result == (c.SearchReturn.COUNT, c.SearchReturn.MIN)
    assert isinstance(cmd.key, c.SearchAnd) and len(cmd.key.keys) == 2
    # the trailing "x" is not a search key: BAD
    cmd2 = parse_command(b"a SEARCH FLAGGED x")
    assert isinstance(cmd2, ParseError)
    cmd = ok(b"a SEARCH RETURN () ALL")
    assert isinstance(cmd, c.Search) and cmd.result == (c.SearchReturn.ALL,)
    cmd = ok(b"a SEARCH RETURN (SAVE) ALL")
    assert isinstance(cmd, c.Search) and cmd.result == (c.SearchReturn.SAVE,)
    cmd = ok(b"a SEARCH CHARSET US-ASCII ALL")
    assert isinstance(cmd, c.Search) and cmd.charset == "US-ASCII" and cmd.result is None
    bad(b"a SEARCH RETURN (BOGUS) ALL")
    bad(b"a SEARCH")
    bad(b"a SEARCH ()")
    bad(b"a SEARCH (SEEN")
    bad(b"a SEARCH OR SEEN")
    bad(b"a SEARCH BEFORE 31-Feb-1994")
    bad(b"a SEARCH BEFORE 1-Foo-1994")
    bad(b"a SEARCH LARGER x")
    bad(b"a SEARCH HEADER")
    assert "UTF-8" in bad(b'a SEARCH BODY "\xff"').reason


def test_search_badcharset_is_no_with_code() -> None:
    err = bad(b"a SEARCH CHARSET KOI8-R TEXT x")
    assert (err.tag, err.status, err.code) == ("a", "NO", "BADCHARSET (US-ASCII UTF-8)")


def test_search_nesting_limit() -> None:
    assert isinstance(ok(b"a SEARCH " + b"NOT " * 30 + b"ALL"), c.Search)
    assert "nested" in bad(b"a SEARCH " + b"NOT " * 40 + b"ALL").reason
    assert "nested" in bad(b"a SEARCH " + b"(" * 40 + b"ALL" + b")" * 40).reason
    assert "nested" in bad(b"a SEARCH " + b"OR ALL " * 40 + b"ALL").reason
    assert "nested" in bad(b"a SEARCH " + b"(" * 100000).reason
    assert isinstance(
        parse_command(b"a SEARCH " + b"(" * 5 + b"ALL" + b")" * 5, max_depth=4), ParseError
    )


# -- APPEND -----------------------------------------------------------------------


def test_append_head() -> None:
    head = parse_append_head(b'a APPEND saved-messages (\\Seen) "07-Feb-1994 21:52:25 -0800" {310}')
    assert isinstance(head, c.Append)
    assert head.mailbox == "saved-messages"
    zone = dt.timezone(-dt.timedelta(hours=8))
    assert head.message == c.AppendMessage(
        flags=frozenset({"\\Seen"}),
        internaldate=dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=zone),
        size=310,
    )
    head = parse_append_head(b'a APPEND INBOX " 7-Feb-1994 01:02:03 +0100" {10+}')
    assert isinstance(head, c.Append) and not head.message.synchronizing
    assert head.message.internaldate is not None and head.message.internaldate.day == 7
    head = parse_append_head(b"a APPEND INBOX ~{10}")
    assert isinstance(head, c.Append) and head.message.binary
    head = parse_append_head(b"a APPEND {5}\r\nInBoX {3}")
    assert isinstance(head, c.Append) and head.mailbox == "INBOX" and head.message.size == 3
    assert parse_append_head(b"a APPEND {5}") is None  # the mailbox as a literal
    assert parse_append_head(b"a APPEND {5+}") is None
    for data in (
        b"a APPEND INBOX (\\Recent) {3}",
        b"a APPEND INBOX (\\Seen {3}",
        b'a APPEND INBOX "32-Feb-1994 21:52:25 -0800" {3}',
        b'a APPEND INBOX "07-Feb-1994 25:52:25 -0800" {3}',
        b"a APPEND INBOX junk {3}",
        b"a APPEND ~{5}",
        b"a NOOP {3}",
    ):
        assert isinstance(parse_append_head(data), ParseError), data
    assert isinstance(parse_command(b"a APPEND INBOX {0}\r\n"), ParseError)


def test_append_next_multiappend() -> None:
    msg = parse_append_next(b" (\\Draft) {12+}", "a")
    assert isinstance(msg, c.AppendMessage) and msg.flags == {"\\Draft"} and msg.size == 12
    assert isinstance(parse_append_next(b" junk", "a"), ParseError)
    assert isinstance(parse_append_next(b"{3}", "a"), ParseError)


# -- hostile input and fuzz --------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"a SELECT \x00",
        b"a\x00 NOOP",
        b"a FETCH 1 (((((((((FLAGS",
        b"a FETCH 1 BODY[1" + b".1" * 10000 + b"]",
        b"a SEARCH " + b")" * 10,
        b"a LOGIN {99999999999999999999}\r\n",
        b"a LOGIN {184467440737095516150}\r\nx x",
        b"a STATUS x (" + b"MESSAGES " * 10000,
        b'a LOGIN "' + b"x" * 100000,
    ],
)
def test_hostile_lines_are_bad_not_exceptions(line: bytes) -> None:
    assert isinstance(parse_command(line), ParseError)


_GRAMMAR_WORDS = st.sampled_from(
    [
        b"a1 ",
        b"UID ",
        b"FETCH ",
        b"SEARCH ",
        b"STORE ",
        b"LIST ",
        b"APPEND ",
        b"LOGIN ",
        b"SELECT ",
        b"STATUS ",
        b"CREATE ",
        b"ID ",
        b"AUTHENTICATE ",
        b"1:*",
        b"*",
        b",",
        b"$",
        b"(",
        b")",
        b"[",
        b"]",
        b"<0.5>",
        b" ",
        b'"',
        b"\\",
        b"{3}\r\n",
        b"{2+}\r\n",
        b"~{1}\r\n",
        b"BODY",
        b".PEEK",
        b"HEADER.FIELDS",
        b"NOT ",
        b"OR ",
        b"FLAGS",
        b"+FLAGS.SILENT ",
        b"\\Seen",
        b"NIL",
        b"RETURN ",
        b"CHARSET ",
        b"UTF-8 ",
        b"&AOk-",
        b"\x00",
        b"\xff",
        b"1-Feb-1994",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_GRAMMAR_WORDS, max_size=30).map(b"".join), st.booleans())
def test_fuzz_grammar_fragments_never_raise(data: bytes, utf8: bool) -> None:
    result = parse_command(data, utf8=utf8)
    assert isinstance(result, c.Command | ParseError)
    split_head(data)
    head = parse_append_head(data, utf8=utf8)
    assert head is None or isinstance(head, c.Append | ParseError)
    assert isinstance(parse_append_next(data, "t"), c.AppendMessage | ParseError)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_fuzz_random_bytes_never_raise(data: bytes, utf8: bool) -> None:
    result = parse_command(data, utf8=utf8)
    assert isinstance(result, c.Command | ParseError)
    parse_append_head(data)
    parse_append_next(data, "t")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 2**32 - 1) | st.none(), st.integers(1, 2**32 - 1) | st.none()),
        min_size=1,
        max_size=8,
    )
)
def test_sequence_set_round_trip(ranges: list[tuple[int | None, int | None]]) -> None:
    def text(n: int | None) -> str:
        return "*" if n is None else str(n)

    wire = ",".join(text(a) if a == b else f"{text(a)}:{text(b)}" for a, b in ranges)
    cmd = ok(b"a FETCH " + wire.encode() + b" FLAGS")
    assert isinstance(cmd, c.Fetch)
    assert cmd.set == seq(*ranges)
