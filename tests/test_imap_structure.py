"""imap/mime.py and imap/structure.py: MIME tree, ENVELOPE, BODY(STRUCTURE), sections, BINARY."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap import mime
from postoffice.imap import structure as s
from postoffice.imap.commands import Section, SectionText


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def sec(
    data: bytes, part: tuple[int, ...] = (), text: SectionText | None = None, *fields: str
) -> bytes | None:
    return s.section(data, mime.parse(data), Section(part=part, text=text, fields=fields))


# A minimal reader of IMAP response data: checks that rendered output is
# well formed (balanced lists, literal sizes right) and returns it as Python
# values, so tests can compare structure instead of only bytes.
_ATOM = re.compile(rb'[^\s()"{}\[\]]+')


def read_imap(data: bytes) -> object:
    value, pos = _read(data, 0)
    assert pos == len(data), (data, pos)
    return value


def _read(data: bytes, pos: int) -> tuple[object, int]:
    c = data[pos : pos + 1]
    if c == b"(":
        items: list[object] = []
        pos += 1
        while data[pos : pos + 1] != b")":
            if items and data[pos : pos + 1] == b" ":
                pos += 1
            item, pos = _read(data, pos)
            items.append(item)
        return items, pos + 1
    if c == b'"':
        out = bytearray()
        pos += 1
        while data[pos : pos + 1] != b'"':
            ch = data[pos]
            assert ch not in (0, 10, 13) and ch < 0x80
            if ch == 0x5C:
                pos += 1
                assert data[pos : pos + 1] in (b'"', b"\\")
                ch = data[pos]
            out.append(ch)
            pos += 1
        return bytes(out), pos + 1
    if c == b"{":
        m = re.compile(rb"\{(\d+)\}\r\n").match(data, pos)
        assert m is not None
        n = int(m.group(1))
        body = data[m.end() : m.end() + n]
        assert len(body) == n and b"\0" not in body
        return body, m.end() + n
    m = _ATOM.match(data, pos)
    assert m is not None, (data, pos)
    atom = m.group(0)
    return (None if atom == b"NIL" else int(atom)), m.end()


# --- RFC examples ------------------------------------------------------------------

RFC3501_HEADER = """\
Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev1 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US,
   John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
MIME-Version: 1.0
"""


def test_rfc3501_envelope_example() -> None:
    data = crlf(RFC3501_HEADER + "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n\nHello\n")
    assert s.envelope(data) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )


def _lines(count: int, total: int) -> str:
    """`count` CRLF lines of `total` octets in all."""
    width = total // count - 2
    lines = ["x" * width] * (count - 1)
    lines.append("y" * (total - (count - 1) * (width + 2) - 2))
    return "\n".join(lines) + "\n"


def test_rfc3501_body_example_sizes_and_lines() -> None:
    # RFC 3501 §7.4.2: the BODY of a two-part message, rebuilt with the same
    # sizes and line counts.
    part1 = _lines(23, 1152)
    part2 = _lines(73, 4554)
    text = (
        RFC3501_HEADER
        + 'Content-Type: MULTIPART/MIXED; BOUNDARY="b1"\n\npreamble\n--b1\n\n'
        + part1
        + "\n--b1\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\n"
        + "Content-ID: <960723163407.20117h@cac.washington.edu>\n"
        + "Content-Description: Compiler diff\nContent-Transfer-Encoding: BASE64\n\n"
        + part2
        + "\n--b1--\nepilogue\n"
    )
    data = crlf(text)
    root = mime.parse(data)
    assert s.body_structure(data, root, False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
    )
    assert s.body_structure(data, root, True) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23 NIL NIL NIL NIL)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73'
        b' NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "b1") NIL NIL NIL)'
    )


# --- a real-world shape: text plus three attachments --------------------------------

PDF = bytes(range(256)) * 3
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
ZIP = b"PK\x03\x04" + b"z" * 90


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


MIXED = (
    crlf(
        "From: Alice <alice@example.org>\nTo: bob@example.com\nSubject: three files\n"
        "Date: Sun, 21 Nov 2026 17:27:10 +0000\nMessage-ID: <m1@example.org>\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="==outer=="\n\n'
        "This is a multi-part message in MIME format.\n"
        "--==outer==\nContent-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n\nSee attached, caf=C3=A9.=\n"
        "\nBye\n"
    )
    + b'--==outer==\r\nContent-Type: application/pdf; name="a.pdf"\r\n'
    b'Content-Disposition: attachment; filename="a.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(PDF).encode() + b"\r\n"
    b"--==outer==\r\nContent-Type: image/png\r\n"
    b"Content-Disposition: inline; filename=b.png\r\nContent-Language: en, de\r\n"
    b"Content-Location: http://example.org/\r\n b.png\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(PNG).encode() + b"\r\n"
    b"--==outer==\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: x-uuencode\r\n"
    b"\r\n" + ZIP + b"\r\n--==outer==--\r\n"
)


def test_mixed_three_attachments_structure() -> None:
    root = mime.parse(MIXED)
    assert root.type == b"multipart" and len(root.children) == 4
    assert [c.type + b"/" + c.subtype for c in root.children] == [
        b"text/plain", b"application/pdf", b"image/png", b"application/zip",
    ]  # fmt: skip
    bs = read_imap(s.body_structure(MIXED, root, True))
    assert isinstance(bs, list)
    assert bs[4] == b"MIXED" and bs[5] == [b"BOUNDARY", b"==outer=="]
    pdf, png = bs[1], bs[2]
    assert pdf[:6] == [b"APPLICATION", b"PDF", [b"NAME", b"a.pdf"], None, None, b"BASE64"]
    assert pdf[8] == [b"ATTACHMENT", [b"FILENAME", b"a.pdf"]]
    assert png[8] == [b"INLINE", [b"FILENAME", b"b.png"]]
    assert png[9] == [b"en", b"de"] and png[10] == b"http://example.org/b.png"


def test_fetch_only_the_second_attachment() -> None:
    root = mime.parse(MIXED)
    raw = sec(MIXED, (2,))
    assert raw is not None and raw.startswith(b"AAECAwQF") and raw.endswith(b"\r\n")
    assert base64.b64decode(raw) == PDF
    assert s.binary(MIXED, root, (2,)) == PDF
    assert s.binary(MIXED, root, (3,)) == PNG
    mime_header = sec(MIXED, (2,), SectionText.MIME)
    assert mime_header is not None
    assert mime_header.startswith(b"Content-Type: application/pdf")
    assert mime_header.endswith(b"base64\r\n\r\n")
    assert s.binary(MIXED, root, (1,)) == "See attached, café.\r\nBye".encode()
    assert s.binary(MIXED, root, (4,)) == s.UnknownCte(encoding=b"x-uuencode")
    assert s.binary(MIXED, root, (5,)) is None
    assert s.binary(MIXED, root, ()) == MIXED
    assert sec(MIXED, (5,)) is None
    assert sec(MIXED, (2, 1)) is None  # a leaf has no sub-parts
    assert sec(MIXED, (2,), SectionText.HEADER) is None  # not a message/rfc822 part


def test_partial() -> None:
    raw = sec(MIXED, (2,))
    assert raw is not None
    assert s.partial(raw, 0, 8) == b"AAECAwQF"
    assert s.partial(raw, 4, 4) == b"AwQF"
    assert s.partial(raw, len(raw) - 2, 100) == b"\r\n"
    assert s.partial(raw, len(raw), 10) == b""
    assert s.partial(raw, 10**9, 10) == b""


# --- part numbering (RFC 3501 §6.4.5) -----------------------------------------------

SINGLE = crlf("From: a@b\nSubject: one\n\nbody line\n")


def test_non_multipart_has_only_part_one() -> None:
    assert sec(SINGLE) == SINGLE
    assert sec(SINGLE, (1,)) == b"body line\r\n"
    assert sec(SINGLE, (1,), SectionText.MIME) == b"From: a@b\r\nSubject: one\r\n\r\n"
    assert sec(SINGLE, (2,)) is None
    assert sec(SINGLE, (1, 1)) is None
    assert sec(SINGLE, (0,)) is None
    assert sec(SINGLE, (), SectionText.TEXT) == b"body line\r\n"
    assert sec(SINGLE, (), SectionText.HEADER) == b"From: a@b\r\nSubject: one\r\n\r\n"
    assert sec(SINGLE, (1,), SectionText.HEADER) is None


INNER = crlf(
    "From: Inner <inner@example.net>\nSubject: inside\n"
    'Content-Type: multipart/alternative; boundary="alt"\n\n'
    "--alt\nContent-Type: text/plain\n\nplain\n--alt\nContent-Type: text/html\n\n<p>html</p>\n"
    "--alt--\n"
)
NESTED = (
    crlf(
        "From: outer@example.org\nSubject: fwd\n"
        "Content-Type: multipart/mixed; boundary=out\n\n--out\n\nsee below\n"
        "--out\nContent-Type: message/rfc822\nContent-Description: forwarded\n\n"
    )
    + INNER
    + crlf("\n--out\nContent-Type: message/rfc822\n\nSubject: simple\n\njust text\n\n--out--\n")
)


def test_message_rfc822_nested_sections() -> None:
    assert sec(NESTED, (2,)) == INNER
    assert sec(NESTED, (2,), SectionText.HEADER) == INNER[: INNER.index(b"\r\n\r\n") + 4]
    assert sec(NESTED, (2,), SectionText.TEXT) == INNER[INNER.index(b"\r\n\r\n") + 4 :]
    assert sec(NESTED, (2,), SectionText.MIME) == (
        b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
    )
    assert sec(NESTED, (2, 1)) == b"plain"
    assert sec(NESTED, (2, 2)) == b"<p>html</p>"
    assert sec(NESTED, (2, 2), SectionText.MIME) == b"Content-Type: text/html\r\n\r\n"
    assert sec(NESTED, (2, 3)) is None
    assert sec(NESTED, (2,), SectionText.HEADER_FIELDS, "SUBJECT") == b"Subject: inside\r\n\r\n"
    # A non-multipart encapsulated message: 3.1 is its body.
    assert sec(NESTED, (3, 1)) == b"just text\r\n"
    assert sec(NESTED, (3, 1), SectionText.MIME) == b"Subject: simple\r\n\r\n"
    assert sec(NESTED, (3, 2)) is None


def test_message_rfc822_bodystructure_has_envelope_and_lines() -> None:
    root = mime.parse(NESTED)
    bs = read_imap(s.body_structure(NESTED, root, True))
    assert isinstance(bs, list)
    msg = bs[1]
    assert msg[:3] == [b"MESSAGE", b"RFC822", None] and msg[4] == b"forwarded"
    env = msg[7]
    assert env[1] == b"inside" and env[2] == [[b"Inner", None, b"inner", b"example.net"]]
    inner = msg[8]
    assert inner[-5] == b"ALTERNATIVE" and inner[-4] == [b"BOUNDARY", b"alt"]
    assert msg[9] == INNER.count(b"\n")
    body = read_imap(s.body_structure(NESTED, root, False))
    assert isinstance(body, list) and body[-1] == b"MIXED"
    assert len(body[1]) == 10  # no extension data in BODY, nor in the nested body
    assert body[1][8][-1] == b"ALTERNATIVE"


def test_top_level_message_rfc822() -> None:
    data = crlf("Subject: wrapper\nContent-Type: message/rfc822\n\nSubject: in\n\nhi\n")
    assert sec(data, (1,)) == b"Subject: in\r\n\r\nhi\r\n"
    assert sec(data, (1,), SectionText.HEADER) == b"Subject: in\r\n\r\n"
    assert sec(data, (1,), SectionText.TEXT) == b"hi\r\n"
    assert sec(data, (1, 1)) == b"hi\r\n"
    assert sec(data, (2,)) is None


def test_base64_message_rfc822_is_a_leaf() -> None:
    data = crlf(
        "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA==\n"
    )
    root = mime.parse(data)
    assert root.message is None
    assert sec(data, (1,), SectionText.HEADER) is None
    assert s.binary(data, root, (1,)) == b"Subject: x"
    assert read_imap(s.body_structure(data, root, True)) == [
        b"MESSAGE", b"RFC822", None, None, None, b"BASE64", 18, None, None, None, None,
    ]  # fmt: skip


def test_digest_defaults_to_message_rfc822() -> None:
    data = crlf(
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\n1\n"
        "--d\nContent-Type: text/plain\n\ntwo\n--d--\n"
    )
    root = mime.parse(data)
    assert [(c.type, c.subtype) for c in root.children] == [
        (b"message", b"rfc822"), (b"text", b"plain"),
    ]  # fmt: skip
    assert sec(data, (1,), SectionText.HEADER) == b"Subject: one\r\n\r\n"


# --- damaged messages ---------------------------------------------------------------


def test_missing_boundary_parameter_keeps_body_reachable() -> None:
    data = crlf("Content-Type: multipart/mixed\n\n--x\n\nhello\n--x--\n")
    root = mime.parse(data)
    assert len(root.children) == 1
    assert sec(data, (1,)) == crlf("--x\n\nhello\n--x--\n")
    assert read_imap(s.body_structure(data, root, False)) == [
        [b"TEXT", b"PLAIN", [b"CHARSET", b"US-ASCII"], None, None, b"7BIT", 21, 4], b"MIXED",
    ]  # fmt: skip


def test_boundary_that_never_occurs() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=zz\n\nonly text\n")
    assert sec(data, (1,)) == b"only text\r\n"


def test_missing_close_delimiter() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n")
    assert sec(data, (1,)) == b"one"
    assert sec(data, (2,)) == b"two\r\n"


def test_delimiter_must_be_the_whole_line() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--bc\n--b  \n\ntwo\n--b--\n"
    )
    assert sec(data, (1,)) == b"one\r\n--bc"
    assert sec(data, (2,)) == b"two"


def test_no_blank_line_between_header_and_body() -> None:
    data = crlf("Subject: s\nFrom: a@b\nthis is the body\nX: y\n")
    root = mime.parse(data)
    assert root.hend == root.bstart == len(b"Subject: s\r\nFrom: a@b\r\n")
    assert sec(data, (), SectionText.TEXT) == b"this is the body\r\nX: y\r\n"
    assert sec(data, (), SectionText.HEADER) == b"Subject: s\r\nFrom: a@b\r\n"


def test_header_only_message_has_no_blank_line() -> None:
    data = b"Subject: s\r\nFrom: a@b"
    assert sec(data, (), SectionText.HEADER_FIELDS, "from") == b"From: a@b\r\n"
    assert sec(data, (), SectionText.TEXT) == b""
    assert s.envelope(data).startswith(b'(NIL "s" ((NIL NIL "a" "b"))')


def test_bare_lf_message() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n--b--\n"
    assert sec(data, (1,)) == b"one" and sec(data, (2,)) == b"two"


def test_empty_message() -> None:
    root = mime.parse(b"")
    assert (root.hstart, root.hend, root.bstart, root.end) == (0, 0, 0, 0)
    assert s.envelope(b"") == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    assert s.body_structure(b"", root, True) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
    )


def test_bad_content_type_is_text_plain() -> None:
    root = mime.parse(b"Content-Type: garbage\r\n\r\nx")
    assert (root.type, root.subtype, root.params) == (
        b"text",
        b"plain",
        ((b"charset", b"US-ASCII"),),
    )


def test_deep_nesting_is_bounded() -> None:
    depth = mime.MAX_DEPTH + 50
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    data = head + b"\r\ninnermost\r\n"
    root = mime.parse(data)
    level, part = 0, root
    while part.children:
        part, level = part.children[0], level + 1
    assert level == mime.MAX_DEPTH
    assert (part.type, part.subtype) == (b"application", b"octet-stream")
    read_imap(s.body_structure(data, root, True))


def test_rfc822_nesting_is_bounded() -> None:
    data = b"Content-Type: message/rfc822\r\n\r\n" * (mime.MAX_DEPTH + 20) + b"x"
    root = mime.parse(data)
    read_imap(s.body_structure(data, root, True))


def test_part_count_is_bounded() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * (
        mime.MAX_PARTS + 500
    )
    root = mime.parse(data)
    assert len(root.children) == mime.MAX_PARTS - 1
    assert root.children[-1].end == len(data)


# --- ENVELOPE details ---------------------------------------------------------------


def env(header: str | bytes) -> list[object]:
    data = header if isinstance(header, bytes) else crlf(header)
    value = read_imap(s.envelope(data + b"\r\n"))
    assert isinstance(value, list) and len(value) == 10
    return value


def test_sender_and_reply_to_default_to_from() -> None:
    e = env("From: a@b\nReply-To:\n")
    assert e[2] == e[3] == e[4] == [[None, None, b"a", b"b"]]
    e = env("From: a@b\nSender: s@b\nReply-To: r@b\n")
    assert e[3] == [[None, None, b"s", b"b"]] and e[4] == [[None, None, b"r", b"b"]]
    e = env("Subject: no from\n")
    assert e[2] is e[3] is e[4] is None


def test_groups() -> None:
    e = env('To: undisclosed-recipients:;\nCc: Team: a@b, "C" <c@d>;, e@f\n')
    assert e[5] == [[None, None, b"undisclosed-recipients", None], [None, None, None, None]]
    assert e[6] == [
        [None, None, b"Team", None],
        [None, None, b"a", b"b"],
        [b"C", None, b"c", b"d"],
        [None, None, None, None],
        [None, None, b"e", b"f"],
    ]
    assert env("To: open: a@b\n")[5] == [
        [None, None, b"open", None], [None, None, b"a", b"b"], [None, None, None, None],
    ]  # fmt: skip


def test_address_forms() -> None:
    cases = {
        "joe@example.com (Joe Bloggs)": [[b"Joe Bloggs", None, b"joe", b"example.com"]],
        '"Bloggs, Joe" <joe@example.com>': [[b"Bloggs, Joe", None, b"joe", b"example.com"]],
        'Joe "the man" Q. Bloggs <joe@x>': [[b"Joe the man Q. Bloggs", None, b"joe", b"x"]],
        "<@r1.example,@r2.example:joe@x>": [[None, b"@r1.example,@r2.example", b"joe", b"x"]],
        '"joe smith"@example.com': [[None, None, b'"joe smith"', b"example.com"]],
        "joe": [[None, None, b"joe", b""]],
        "joe@[192.0.2.1]": [[None, None, b"joe", b"[192.0.2.1]"]],
        "a@b,,c@d,": [[None, None, b"a", b"b"], [None, None, b"c", b"d"]],
        '"Esc \\" \\\\ aped" <e@x>': [[b'Esc " \\ aped', None, b"e", b"x"]],
        "Nested (a (b) c) <n@x>": [[b"Nested", None, b"n", b"x"]],
        "<n@x> (comment (nested))": [[b"comment (nested)", None, b"n", b"x"]],
        "   ": None,
        "<>": None,
    }
    for value, want in cases.items():
        assert env("From: " + value + "\n")[2] == want, value


def test_encoded_words_stay_raw_and_8bit_goes_as_literal() -> None:
    header = (
        "Subject: =?utf-8?q?caf=C3=A9?= =?bogus?x?broken\nFrom: =?iso-8859-1?q?J=F6rg?= <j@x>\n"
    )
    e = env(header)
    assert e[1] == b"=?utf-8?q?caf=C3=A9?= =?bogus?x?broken"
    assert e[2] == [[b"=?iso-8859-1?q?J=F6rg?=", None, b"j", b"x"]]
    raw = "Subject: café\nFrom: Jörg <jörg@exämple.org>\n".encode().replace(b"\n", b"\r\n")
    out = s.envelope(raw + b"\r\n")
    assert b"{5}\r\ncaf\xc3\xa9" in out
    e = env(raw)
    assert e[2] == [["Jörg".encode(), None, "jörg".encode(), "exämple.org".encode()]]


def test_envelope_strips_nul_and_sends_quotes_as_literal() -> None:
    e = env(b'Subject: a\x00b "q" \\ z\r\nMessage-ID: <x@y>\r\n')
    assert e[1] == b'ab "q" \\ z' and e[9] == b"<x@y>"
    assert b'{10}\r\nab "q" \\ z' in s.envelope(b'Subject: a\x00b "q" \\ z\r\n\r\n')


def test_folded_fields_are_unfolded() -> None:
    e = env("Subject: one\n two\n\tthree\nIn-Reply-To:\n <a@b>\n")
    assert e[1] == b"one two\tthree" and e[8] == b"<a@b>"


def test_first_of_repeated_fields_wins() -> None:
    assert env("Subject: first\nSubject: second\n")[1] == b"first"


@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.none(),
                st.from_regex(r"[A-Za-z0-9 ]{0,12}", fullmatch=True),
                st.from_regex(r'"[A-Za-z ,.;:<>@]{0,10}"', fullmatch=True),
            ),
            st.from_regex(r"[a-z0-9.+-]{1,10}", fullmatch=True),
            st.from_regex(r"[a-z0-9-]{1,8}(\.[a-z]{2,4}){0,2}", fullmatch=True),
        ),
        min_size=1,
        max_size=4,
    )
)
@settings(max_examples=200, deadline=None)
def test_fast_path_agrees_with_the_tokenizer(items: list[tuple[str | None, str, str]]) -> None:
    value = ", ".join(
        f"{local}@{host}" if name is None else f"{name} <{local}@{host}>"
        for name, local, host in items
    ).encode()
    assert s.addresses(value) == s._parse_list(s._tokens(value))


# --- header subsets ------------------------------------------------------------------


def test_header_fields_and_not() -> None:
    data = crlf("From: a@b\nSubject: s\n folded\nX-Spam: yes\nsubject: again\n\nbody\n")
    assert sec(data, (), SectionText.HEADER_FIELDS, "SUBJECT", "Date") == crlf(
        "Subject: s\n folded\nsubject: again\n\n"
    )
    assert sec(data, (), SectionText.HEADER_FIELDS_NOT, "subject") == crlf(
        "From: a@b\nX-Spam: yes\n\n"
    )
    assert sec(data, (), SectionText.HEADER_FIELDS, "Nope") == b"\r\n"


# --- decoders ------------------------------------------------------------------------


def test_decode_transfer() -> None:
    assert mime.decode_transfer(b"aGVsbG8", b"BASE64") == b"hello"
    assert mime.decode_transfer(b"aGVs\r\nbG8=\r\n", b"base64") == b"hello"
    assert mime.decode_transfer(b"a*G$V=s=bG8", b"base64") == b"hello"
    assert mime.decode_transfer(b"aGVsb", b"base64") == b"hel"
    assert mime.decode_transfer(b"caf=C3=A9=\r\n!", b"quoted-printable") == b"caf\xc3\xa9!"
    assert mime.decode_transfer(b"raw", b" 8Bit ") == b"raw"
    assert mime.decode_transfer(b"raw", b"x-uue") is None


def test_decode_words() -> None:
    assert mime.decode_words(b"=?utf-8?q?caf=C3=A9?= =?UTF-8?B?IG5vaXI=?=") == "café noir"
    assert mime.decode_words(b"a =?iso-8859-1*fr?Q?J=F6rg_x?= b") == "a Jörg x b"
    assert mime.decode_words(b"=?nope?q?x?=") == "=?nope?q?x?="
    assert mime.decode_words(b"=?idna?q?x=FF?=") == "x\ufffd"
    assert mime.decode_words(b"plain \xc3\xa9") == "plain é"
    assert mime.decode_words(b"=?utf-8?b?!!!?=") == ""


def test_params() -> None:
    assert mime.params(b'text/plain; charset="utf\\"8"; format=flowed (c); x*0*=a') == (
        (b"charset", b'utf"8'),
        (b"format", b"flowed"),
        (b"x*0*", b"a"),
    )
    assert mime.params(b'a/b; name="unterminated') == ((b"name", b"unterminated"),)


# --- cached summary ------------------------------------------------------------------


def test_summary_round_trip() -> None:
    blob = s.cached_summary(MIXED)
    assert blob.startswith(b"IMAPSUM2 ")
    got = s.from_summary(blob)
    root = mime.parse(MIXED)
    assert got.envelope == s.envelope(MIXED)
    assert got.bodystructure == s.body_structure(MIXED, root, True)
    assert got.body == s.body_structure(MIXED, root, False)
    assert (got.header_end, got.body_start) == (root.hend, root.bstart)
    assert got.fields.endswith(b"\r\n\r\n") and got.fields.lower().startswith(b"from:")


def test_search_fields_keep_folded_lines_and_drop_the_rest() -> None:
    data = (
        b"Received: from x\r\n\tby y\r\nSubject: a\r\n  b\r\nX-Subject: no\r\n"
        b"TO: t@example\r\n\r\nbody\r\n"
    )
    root = mime.parse(data)
    assert s.search_fields(data, root.hend) == b"Subject: a\r\n  b\r\nTO: t@example\r\n\r\n"


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"IMAPSUM2 0 0 0 0 0\n",
        b"IMAPSUM1 0 0 0 0 0\n",
        b"IMAPSUM2 0 0 1 1 1 1\nab",
        b"IMAPSUM2 5 2 0 0 0 0\n",
        b"junk",
    ],
)
def test_summary_rejects_what_it_did_not_write(blob: bytes) -> None:
    with pytest.raises(ValueError):
        s.from_summary(blob)


# --- fuzz ----------------------------------------------------------------------------


def _check_tree(part: mime.Part, lo: int, hi: int) -> int:
    assert lo <= part.hstart <= part.hend <= part.bstart <= part.end <= hi
    count = 1
    for child in part.children:
        count += _check_tree(child, part.bstart, part.end)
    if part.message is not None:
        count += _check_tree(part.message, part.bstart, part.end)
    return count


def _paths(part: mime.Part, prefix: tuple[int, ...], depth: int = 0) -> list[tuple[int, ...]]:
    out = [prefix] if prefix else []
    if depth > 4:
        return out
    target = part.message if (prefix and part.message is not None) else part
    if target.children:
        for i, child in enumerate(target.children, 1):
            out += _paths(child, (*prefix, i), depth + 1)
    else:
        out.append((*prefix, 1))
    return out


def _exercise(data: bytes) -> None:
    root = mime.parse(data)
    _check_tree(root, 0, len(data))
    read_imap(s.envelope(data))
    read_imap(s.body_structure(data, root, True))
    read_imap(s.body_structure(data, root, False))
    s.from_summary(s.cached_summary(data))
    for path in _paths(root, ())[:20]:
        for text in (None, SectionText.MIME, SectionText.HEADER, SectionText.TEXT):
            got = s.section(data, root, Section(part=path, text=text))
            assert got is None or got in data
        s.binary(data, root, path)
    got = s.section(data, root, Section(text=SectionText.HEADER_FIELDS, fields=("from", "x")))
    assert got is not None


@given(st.binary(max_size=600))
@settings(max_examples=200, deadline=None)
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _exercise(data)


_LINE = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b",
        b"Content-Type: multipart/digest; boundary=c",
        b"Content-Type: message/rfc822",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="x"',
        b'From: "A" <a@b>, (c) d@e, g: h@i;',
        b"To: =?utf-8?q?x?= <@r:x@y>",
        b"Subject: \xc3\xa9\x00",
        b" folded",
        b"--b",
        b"--b--",
        b"--c",
        b"--c--",
        b"",
        b"text",
        b"aGVsbG8=",
    ]
)


@given(st.lists(_LINE, max_size=40), st.sampled_from([b"\r\n", b"\n"]))
@settings(max_examples=200, deadline=None)
def test_fuzz_mime_shaped(lines: list[bytes], eol: bytes) -> None:
    _exercise(eol.join(lines))
