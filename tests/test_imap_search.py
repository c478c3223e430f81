"""imap/search.py: every SEARCH key against MessageInfo and lazily loaded messages."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap.commands import (
    DateOp,
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchNot,
    SearchOr,
    SearchRecent,
    SearchSet,
    SearchSize,
    SearchText,
    SeqRange,
    SequenceSet,
)
from postoffice.imap.search import Matcher, SearchContext, sent_date
from postoffice.store.interfaces import ANSWERED, DELETED, FLAGGED, SEEN, MessageInfo

UTC = dt.UTC
CET = dt.timezone(dt.timedelta(hours=1))


def at(y: int, mo: int, d: int, h: int = 12, tz: dt.tzinfo = UTC) -> float:
    return dt.datetime(y, mo, d, h, tzinfo=tz).timestamp()


def info(
    uid: int = 7, size: int = 100, flags: frozenset[str] = frozenset(), when: float = 0.0
) -> MessageInfo:
    return MessageInfo(uid=uid, key=f"k{uid}", size=size, flags=flags, internaldate=when, modseq=1)


class Loader:
    """A message loader that counts its calls."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.data


def never() -> bytes:
    raise AssertionError("the message was loaded for a key that needs only MessageInfo")


CTX = SearchContext(max_seq=10, max_uid=50)


def match(
    key: SearchKey,
    data: bytes | Callable[[], bytes] = never,
    *,
    msg: MessageInfo | None = None,
    seq: int = 3,
    ctx: SearchContext = CTX,
) -> bool:
    load = Loader(data) if isinstance(data, bytes) else data
    return Matcher(key, ctx).matches(msg or info(), seq, load)


def crlf(text: str, charset: str = "utf-8") -> bytes:
    return text.replace("\n", "\r\n").encode(charset)


# --- keys decided from MessageInfo --------------------------------------------------


def test_flags_and_keywords() -> None:
    m = info(flags=frozenset({SEEN, FLAGGED, "$Forwarded"}))
    assert match(SearchFlag(flag=SEEN), msg=m)
    assert not match(SearchFlag(flag=SEEN, present=False), msg=m)
    assert not match(SearchFlag(flag=ANSWERED), msg=m)
    assert match(SearchFlag(flag=DELETED, present=False), msg=m)
    assert match(SearchFlag(flag="$forwarded"), msg=m)
    assert match(SearchFlag(flag="$Forwarded"), msg=m)
    assert not match(SearchFlag(flag="$Junk"), msg=m)
    assert match(SearchFlag(flag="$junk", present=False), msg=m)


def test_all_recent_old_new() -> None:
    ctx = SearchContext(max_seq=10, max_uid=50, recent=frozenset({7}))
    assert match(SearchAll())
    assert match(SearchRecent(), ctx=ctx)
    assert not match(SearchRecent(present=False), ctx=ctx)
    assert not match(SearchRecent(), msg=info(uid=8), ctx=ctx)
    new = SearchAnd(keys=(SearchRecent(), SearchFlag(flag=SEEN, present=False)))
    assert match(new, ctx=ctx)
    assert not match(new, msg=info(flags=frozenset({SEEN})), ctx=ctx)


def test_sizes() -> None:
    assert match(SearchSize(larger=True, size=99))
    assert not match(SearchSize(larger=True, size=100))
    assert match(SearchSize(larger=False, size=101))
    assert not match(SearchSize(larger=False, size=100))


def test_sequence_and_uid_sets_with_star_and_saved() -> None:
    def seqset(*ranges: tuple[int | None, int | None]) -> SequenceSet:
        return SequenceSet(ranges=tuple(SeqRange(first=a, last=b) for a, b in ranges))

    assert match(SearchSet(set=seqset((1, 3))), seq=3)
    assert not match(SearchSet(set=seqset((1, 2), (4, 6))), seq=3)
    assert match(SearchSet(set=seqset((None, None))), seq=10)
    assert not match(SearchSet(set=seqset((None, None))), seq=9)
    assert match(SearchSet(set=seqset((12, None))), seq=10)  # 12:* is 10:12
    assert match(SearchSet(set=seqset((5, 9)), uid=True), msg=info(uid=7))
    assert not match(SearchSet(set=seqset((5, 6), (8, 9)), uid=True), msg=info(uid=7))
    assert match(SearchSet(set=seqset((40, None)), uid=True), msg=info(uid=50))
    assert match(SearchSet(set=seqset((99, None)), uid=True), msg=info(uid=50))
    saved = SearchContext(max_seq=10, max_uid=50, saved=frozenset({7, 9}))
    assert match(SearchSet(set=SequenceSet.SAVED), ctx=saved)
    assert match(SearchSet(set=SequenceSet.SAVED, uid=True), ctx=saved)
    assert not match(SearchSet(set=SequenceSet.SAVED), msg=info(uid=8), ctx=saved)


def test_internal_date_is_a_day_in_the_context_zone() -> None:
    day = dt.date(2026, 3, 10)
    late = info(when=at(2026, 3, 10, 23, UTC))  # 2026-03-11 00:00 in CET
    assert match(SearchDate(op="on", date=day), msg=late)
    assert not match(
        SearchDate(op="on", date=day), msg=late, ctx=SearchContext(max_seq=1, max_uid=1, tz=CET)
    )
    assert match(SearchDate(op="since", date=day), msg=late)
    assert not match(SearchDate(op="before", date=day), msg=late)
    assert match(SearchDate(op="before", date=dt.date(2026, 3, 11)), msg=late)
    assert not match(SearchDate(op="since", date=dt.date(2026, 3, 11)), msg=late)
    midnight = info(when=at(2026, 3, 10, 0, UTC))
    assert match(SearchDate(op="on", date=day), msg=midnight)
    assert match(SearchDate(op="since", date=day), msg=midnight)
    assert not match(SearchDate(op="before", date=day), msg=midnight)
    assert match(SearchDate(op="before", date=dt.date.max), msg=midnight)
    assert match(SearchDate(op="since", date=dt.date.min), msg=midnight)
    assert not match(SearchDate(op="on", date=dt.date.max), msg=midnight)


def test_cheap_keys_never_load_and_and_orders_by_cost() -> None:
    assert not Matcher(SearchFlag(flag=SEEN), CTX).needs_message
    body_key = SearchText(value="x", body_only=True)
    key = SearchAnd(keys=(body_key, SearchFlag(flag=SEEN)))
    m = Matcher(key, CTX)
    assert m.needs_message and m.needs_body
    assert not m.matches(info(), 1, never)  # the flag fails first: no load
    key2 = SearchOr(left=body_key, right=SearchFlag(flag=SEEN, present=False))
    assert Matcher(key2, CTX).matches(info(), 1, never)
    hm = Matcher(SearchHeader(field="subject", value="x"), CTX)
    assert hm.needs_message and not hm.needs_body


# --- header keys --------------------------------------------------------------------

MSG = crlf(
    "Date: Tue, 10 Mar 2026 23:59:00 -0800\n"
    "From: =?iso-8859-1?q?J=F6rg?= Stra\u00dfe <jorg@example.DE>\n"
    "To: Bob <bob@example.com>,\n carol@example.com\n"
    "Cc: undisclosed-recipients:;\n"
    "Subject: =?utf-8?b?UXVhcnRlcmx5IHLDqXBvcnQ=?=\n =?utf-8?q?_d=C3=A9j=C3=A0?=\n"
    "X-Empty:\n"
    "X-Tag: one\nX-Tag: two\n"
    "Content-Type: text/plain; charset=utf-8\n\n"
    "The body mentions the Strand.\n"
)


def test_header_keys_decode_and_fold() -> None:
    def hit(field: str, value: str) -> bool:
        return match(SearchHeader(field=field, value=value), MSG)

    assert hit("subject", "quarterly RÉPORT déjà")
    assert hit("subject", "")
    assert not hit("subject", "=?utf-8")
    assert hit("from", "jörg")
    assert hit("from", "STRASSE")  # ß case-folds to ss
    assert hit("from", "jorg@example.de")
    assert hit("to", "carol@")
    assert hit("to", "bob <bob")
    assert not hit("bcc", "")
    assert hit("cc", "undisclosed")
    assert hit("x-empty", "")
    assert not hit("x-empty", "a")
    assert hit("x-tag", "two")
    assert not hit("x-tag", "three")
    assert not hit("subject", "strand")  # that is in the body


def test_header_is_parsed_once_per_message() -> None:
    load = Loader(MSG)
    key = SearchAnd(
        keys=(
            SearchHeader(field="subject", value="quarterly"),
            SearchHeader(field="from", value="jorg"),
            SearchDate(op="on", date=dt.date(2026, 3, 10), sent=True),
        )
    )
    assert match(key, load)
    assert load.calls == 1


def test_sent_dates() -> None:
    def on(op: DateOp, day: dt.date, data: bytes = MSG) -> bool:
        return match(SearchDate(op=op, date=day, sent=True), data)

    assert on("on", dt.date(2026, 3, 10))  # the day as written, zone ignored
    assert on("since", dt.date(2026, 3, 10))
    assert not on("before", dt.date(2026, 3, 10))
    assert on("before", dt.date(2026, 3, 11))
    assert not on("on", dt.date(2026, 3, 10), b"Subject: no date\r\n\r\n")
    assert not on("before", dt.date(2999, 1, 1), b"Date: garbage\r\n\r\n")
    assert sent_date(b"1 Jul 03 10:52:37 +0200") == dt.date(2003, 7, 1)
    assert sent_date(b"Fri, 21 Nov 97 09:55:06 -0600") == dt.date(1997, 11, 21)
    assert sent_date(b"Thu, 13 Feb 103 23:32:54 -0330") == dt.date(2003, 2, 13)
    assert sent_date(b"Mon, 31 Feb 2026 00:00:00 +0000") is None
    assert sent_date(b"12 Foo 2026") is None


# --- BODY and TEXT ------------------------------------------------------------------

MULTI = (
    crlf(
        "From: a@example.org\nSubject: Greetings\n"
        'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
        "Content-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable\n\n"
        "Gr=FC=DFe aus M=FCnchen, soft=\nbreak\n--b\n"
        "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
    )
    + base64.encodebytes("<p>Ünïcode in HTML</p>".encode()).replace(b"\n", b"\r\n")
    + crlf(
        "--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(b"secret attachment words").decode()
        + "--b\nContent-Type: message/rfc822\n\nSubject: inner subject\n\nInner body text\n"
        "--b\nContent-Type: text/plain; charset=x-unknown-charset\n\nplain \xe9 bytes\n--b--\n",
        "latin-1",
    )
)


@pytest.mark.parametrize(
    ("needle", "body", "text"),
    [
        ("grüße aus münchen", True, True),
        ("softbreak", True, True),
        ("ÜNÏCODE", True, True),
        ("<p>", True, True),
        ("secret attachment", False, False),  # not a text part
        ("inner subject", True, True),  # the header of an encapsulated message is body
        ("inner body", True, True),
        ("plain", True, True),
        ("greetings", False, True),  # only in the top-level header
        ("a@example.org", False, True),
        ("", True, True),
        ("absent", False, False),
    ],
)
def test_body_and_text(needle: str, body: bool, text: bool) -> None:
    assert match(SearchText(value=needle, body_only=True), MULTI) is body
    assert match(SearchText(value=needle, body_only=False), MULTI) is text


def test_plain_message_without_mime() -> None:
    data = crlf("Subject: hi\n\nJust some Text.\n")
    assert match(SearchText(value="some text", body_only=True), data)
    assert not match(SearchText(value="hi", body_only=True), data)
    assert match(SearchText(value="HI", body_only=False), data)


def test_header_only_loader_is_enough_without_body_keys() -> None:
    header = MSG[: MSG.index(b"\r\n\r\n") + 4]
    key = SearchOr(
        left=SearchHeader(field="subject", value="nothing"),
        right=SearchHeader(field="to", value="carol"),
    )
    assert not Matcher(key, CTX).needs_body
    assert match(key, header) and match(key, MSG)


# --- NOT / OR / AND and fuzz ---------------------------------------------------------

_LEAVES: list[SearchKey] = [
    SearchAll(),
    SearchFlag(flag=SEEN),
    SearchFlag(flag="$Label1", present=False),
    SearchRecent(),
    SearchSize(larger=True, size=50),
    SearchSize(larger=False, size=20),
    SearchSet(set=SequenceSet.of(1, 3)),
    SearchSet(set=SequenceSet(ranges=(SeqRange(first=5, last=None),)), uid=True),
    SearchDate(op="since", date=dt.date(2026, 1, 1)),
    SearchDate(op="on", date=dt.date(2026, 3, 10), sent=True),
    SearchHeader(field="subject", value="é"),
    SearchHeader(field="from", value=""),
    SearchText(value="the", body_only=True),
    SearchText(value="a", body_only=False),
]

_KEYS = st.recursive(
    st.sampled_from(_LEAVES),
    lambda inner: st.one_of(
        st.builds(lambda k: SearchNot(key=k), inner),
        st.builds(lambda a, b: SearchOr(left=a, right=b), inner, inner),
        st.builds(lambda ks: SearchAnd(keys=tuple(ks)), st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=8,
)


def naive(key: SearchKey, leaf: Callable[[SearchKey], bool]) -> bool:
    if isinstance(key, SearchNot):
        return not naive(key.key, leaf)
    if isinstance(key, SearchOr):
        return naive(key.left, leaf) or naive(key.right, leaf)
    if isinstance(key, SearchAnd):
        return all(naive(k, leaf) for k in key.keys)
    return leaf(key)


@given(
    _KEYS,
    st.one_of(st.binary(max_size=300), st.sampled_from([MSG, MULTI])),
    st.integers(min_value=1, max_value=10),
    st.frozensets(st.sampled_from([SEEN, "$label1", FLAGGED])),
)
@settings(max_examples=200, deadline=None)
def test_fuzz_trees_agree_with_leaf_by_leaf_evaluation(
    key: SearchKey, data: bytes, seq: int, flags: frozenset[str]
) -> None:
    msg = info(uid=seq * 2, size=len(data), flags=flags, when=at(2026, 2, seq))
    ctx = SearchContext(max_seq=10, max_uid=20, recent=frozenset({4}))
    load = Loader(data)
    got = Matcher(key, ctx).matches(msg, seq, load)
    assert load.calls <= 1
    want = naive(key, lambda leaf: Matcher(leaf, ctx).matches(msg, seq, Loader(data)))
    assert got is want
