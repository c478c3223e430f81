"""message/dsn.py: the RFC 3464 notifications we build, checked with the stdlib and parse_dsn."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage, Message

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.message import dsn
from postoffice.message.dsn import DsnError, build_dsn, parse_dsn
from postoffice.queue.envelope import Envelope, EnvelopeRecipient, RcptState

ARRIVAL = 1_800_000_000.0  # Fri, 15 Jan 2027 08:00:00 +0000
NOW = ARRIVAL + 4 * 3600
HOST = "mail.example.test"
NEW_QID = "01KDSN0000000000000000NEW1"
ORIGINAL = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: lunch\r\n"
    b"Message-ID: <m1@example.test>\r\n"
    b"\r\n"
    b"See you at noon.\r\n"
)


def rcpt(address: str = "bob@example.net", **kw: object) -> EnvelopeRecipient:
    kw.setdefault("reason", "550 5.1.1 User unknown")
    kw.setdefault("state", RcptState.BOUNCED)
    return EnvelopeRecipient(address=address, **kw)  # type: ignore[arg-type]


def envelope(*rcpts: EnvelopeRecipient, **kw: object) -> Envelope:
    values: dict[str, object] = {
        "queue_id": "01KDSN0000000000000000ORIG",
        "sender": "alice@example.test",
        "recipients": rcpts or (rcpt(),),
        "arrival_time": ARRIVAL,
        "size": len(ORIGINAL),
        "client_address": "192.0.2.7",
        "client_name": "client.example.test",
        "helo": "client.example.test",
    }
    values.update(kw)
    return Envelope(**values)  # type: ignore[arg-type]


def make(
    kind: dsn.DsnKind = "failure",
    env: Envelope | None = None,
    original: bytes = ORIGINAL,
    **kw: object,
) -> bytes:
    env = env or envelope()
    return build_dsn(
        kind=kind,
        envelope=env,
        recipients=env.recipients,
        reporting_mta=HOST,
        original=original,
        now=NOW,
        queue_id_new=NEW_QID,
        **kw,  # type: ignore[arg-type]
    )


def stdlib(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects, msg.defects
    return msg


def parts_of(msg: EmailMessage) -> list[EmailMessage]:
    return [p for p in msg.iter_parts() if isinstance(p, EmailMessage)]


def status_blocks(msg: EmailMessage) -> list[Message]:
    """The stdlib's view of the message/delivery-status part: one Message per field group."""
    part = parts_of(msg)[1]
    assert part.get_content_type() == "message/delivery-status"
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return [b for b in blocks if isinstance(b, Message)]


# --- structure ---------------------------------------------------------------------------


def test_failure_dsn_structure_per_rfc_3464_and_6522() -> None:
    data = make()
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    msg = stdlib(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == f"Mail Delivery Subsystem <MAILER-DAEMON@{HOST}>"
    assert msg["To"] == "alice@example.test"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Date"] == "Fri, 15 Jan 2027 12:00:00 +0000"
    assert msg["Message-ID"] == f"<20270115120000.{NEW_QID}@{HOST}>"
    parts = parts_of(msg)
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "message/rfc822",
    ]  # fmt: skip
    text = parts[0].get_content().replace("\r\n", "\n")
    assert "The original message was received at Fri, 15 Jan 2027 08:00:00 +0000" in text
    assert "from client.example.test [192.0.2.7]" in text
    assert "----- The following addresses had permanent fatal errors -----" in text
    assert "<bob@example.net>\n    (reason: 550 5.1.1 User unknown)" in text
    per_message, per_rcpt = status_blocks(msg)
    assert per_message["Reporting-MTA"] == f"dns; {HOST}"
    assert per_message["Arrival-Date"] == "Fri, 15 Jan 2027 08:00:00 +0000"
    assert per_message["Received-From-MTA"] == "dns; client.example.test"
    assert per_message["Original-Envelope-Id"] is None
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@example.net"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 User unknown"
    assert per_rcpt["Last-Attempt-Date"] == "Fri, 15 Jan 2027 12:00:00 +0000"
    assert per_rcpt["Will-Retry-Until"] is None
    payload = parts[2].get_payload()
    assert isinstance(payload, list)
    returned = payload[0]
    assert isinstance(returned, EmailMessage)
    assert returned["Subject"] == "lunch"
    assert returned.get_content() == "See you at noon.\r\n"


def test_parse_dsn_reads_back_what_build_dsn_wrote() -> None:
    env = envelope(
        rcpt(orcpt="rfc822;Bob.Smith@example.net", relay="mx.example.net[192.0.2.25]:25"),
        rcpt("carol@example.org", reason="554 5.7.1 Rejected", orig="team@example.test"),
        envid="QQ314159",
    )
    report = parse_dsn(make(env=env))
    assert report.reporting_mta == f"dns; {HOST}"
    assert report.original_envelope_id == "QQ314159"
    assert report.arrival_date == "Fri, 15 Jan 2027 08:00:00 +0000"
    assert ("X-Postoffice-Queue-ID", env.queue_id) in report.message_fields
    bob, carol = report.recipients
    assert (bob.final_recipient, bob.final_type, bob.action, bob.status) == (
        "bob@example.net", "rfc822", "failed", "5.1.1",
    )  # fmt: skip
    assert bob.original_recipient == "Bob.Smith@example.net"  # ORCPT, RFC 3461 §4.2
    assert bob.remote_mta == "dns; mx.example.net"
    assert bob.diagnostic_code == "smtp; 550 5.1.1 User unknown"
    # Without ORCPT, the address before alias expansion (as Postfix reports it).
    assert carol.original_recipient == "team@example.test"
    assert (carol.status, carol.remote_mta) == ("5.7.1", None)
    assert report.returned_type == "message/rfc822"
    assert report.returned == ORIGINAL


def test_envid_and_orcpt_are_carried_in_the_stdlib_view_too() -> None:
    env = envelope(rcpt(orcpt="rfc822;first@example.net"), envid="ID-42")
    per_message, per_rcpt = status_blocks(stdlib(make(env=env)))
    assert per_message["Original-Envelope-Id"] == "ID-42"
    assert per_rcpt["Original-Recipient"] == "rfc822; first@example.net"


def test_one_group_per_recipient() -> None:
    env = envelope(rcpt("a@example.net"), rcpt("b@example.net"), rcpt("c@example.net"))
    blocks = status_blocks(stdlib(make(env=env)))
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        "rfc822; a@example.net", "rfc822; b@example.net", "rfc822; c@example.net",
    ]  # fmt: skip


# --- what is returned (RFC 3461 §4.3) ----------------------------------------------------


def test_ret_full_returns_the_message_and_hdrs_only_the_header() -> None:
    full = stdlib(make(env=envelope(ret="FULL")))
    assert parts_of(full)[2].get_content_type() == "message/rfc822"
    hdrs = make(env=envelope(ret="HDRS"))
    part = parts_of(stdlib(hdrs))[2]
    assert part.get_content_type() == "text/rfc822-headers"
    report = parse_dsn(hdrs)
    assert report.returned_type == "text/rfc822-headers"
    assert report.returned is not None
    assert b"Subject: lunch\r\n" in report.returned
    assert b"See you at noon" not in hdrs


def test_without_ret_large_messages_return_only_their_header() -> None:
    body = b"x" * 70 + b"\r\n"
    big = ORIGINAL + body * 1000  # 72 000 bytes > 50 000 (Postfix's bounce_size_limit)
    data = make(env=envelope(size=len(big)), original=big)
    assert parse_dsn(data).returned_type == "text/rfc822-headers"
    assert len(data) < 5000
    # Asked for explicitly, the whole message comes back whatever its size.
    data = make(env=envelope(size=len(big), ret="FULL"), original=big)
    assert parse_dsn(data).returned == big
    # A smaller limit is honoured.
    data = make(env=envelope(), size_limit=10)
    assert parse_dsn(data).returned_type == "text/rfc822-headers"


@pytest.mark.parametrize(
    ("kind", "ret", "size", "copy", "full"),
    [
        ("failure", None, 100, False, True),
        ("failure", None, 50_000, False, True),
        ("failure", None, 50_001, False, False),
        ("failure", "FULL", 10**8, False, True),
        ("failure", "HDRS", 10, False, False),
        ("failure", "FULL", 10, True, False),  # a postmaster copy: headers only
        ("delay", "FULL", 10, False, False),  # no failure indicated: headers only
        ("success", "FULL", 10, False, False),
        ("relayed", None, 10, False, False),
    ],
)
def test_returns_full(
    kind: dsn.DsnKind, ret: str | None, size: int, copy: bool, full: bool
) -> None:
    assert dsn.returns_full(kind, ret, size, postmaster_copy=copy) is full


def test_delay_warnings_return_headers_even_with_ret_full() -> None:
    data = make("delay", env=envelope(ret="FULL"))
    assert parse_dsn(data).returned_type == "text/rfc822-headers"


def test_an_empty_original_leaves_the_third_part_out() -> None:
    data = make(original=b"")
    assert [p.get_content_type() for p in stdlib(data).iter_parts()] == [
        "text/plain", "message/delivery-status",
    ]  # fmt: skip
    report = parse_dsn(data)
    assert report.returned is None and report.returned_type is None


def test_bare_lf_original_is_returned_with_crlf() -> None:
    data = make(original=ORIGINAL.replace(b"\r\n", b"\n"))
    assert parse_dsn(data).returned == ORIGINAL


# --- 8-bit and UTF-8 -----------------------------------------------------------------------


def test_an_8bit_original_is_labelled_8bit() -> None:
    original = ORIGINAL.replace(b"See you at noon.", "Café à midi.".encode())
    data = make(env=envelope(body_type="8BITMIME"), original=original)
    assert dsn.needs_8bitmime(data)
    assert not dsn.needs_smtputf8(data)
    msg = stdlib(data)
    assert msg["Content-Transfer-Encoding"] == "8bit"  # RFC 2045 §6.4: the multipart too
    part = parts_of(msg)[2]
    assert part.get_content_type() == "message/rfc822"
    assert part["Content-Transfer-Encoding"] == "8bit"  # RFC 2046 §5.2.1
    assert parse_dsn(data).returned == original


def test_an_ascii_dsn_says_nothing_about_8bit() -> None:
    data = make()
    assert data.isascii()
    assert b"Content-Transfer-Encoding" not in data
    assert not dsn.needs_8bitmime(data)


def test_utf8_addresses_use_the_utf8_address_type() -> None:
    original = "From: 用户@例子.广告\r\nSubject: 你好\r\n\r\nhi\r\n".encode()
    env = envelope(
        rcpt("收件人@例子.广告", orcpt="utf-8;原来@例子.广告"),
        sender="用户@例子.广告",
        smtputf8=True,
    )
    data = make(env=env, original=original)
    assert dsn.needs_smtputf8(data)  # the To: is UTF-8 (RFC 6532)
    report = parse_dsn(data)
    (r,) = report.recipients
    assert r.final_type == "utf-8"
    assert r.final_recipient == "收件人@例子.广告"
    assert r.original_recipient == "原来@例子.广告"
    # The delivery-status part itself stays 7-bit (utf-8-addr-xtext, RFC 6533 §3) ...
    status_part = data.split(b"message/delivery-status", 1)[1].split(b"\r\n--", 1)[0]
    assert status_part.isascii()
    unfolded = status_part.replace(b"\r\n ", b" ")
    assert b"Final-Recipient: utf-8; \\x{6536}\\x{4EF6}\\x{4EBA}@" in unfolded
    # ... and an internationalised header comes back as message/global (RFC 6533 §6.3).
    assert report.returned_type == "message/global"
    headers_only = make(env=envelope(*env.recipients, ret="HDRS"), original=original)
    assert parse_dsn(headers_only).returned_type == "message/global-headers"
    text = parts_of(stdlib(data))[0]
    assert text.get_content_charset() == "utf-8"
    assert "<收件人@例子.广告>" in text.get_content()


def test_typed_address() -> None:
    assert dsn.typed_address("a@b.example") == "rfc822; a@b.example"
    assert dsn.typed_address("x+y=z@b") == "rfc822; x+y=z@b"
    assert dsn.typed_address("é+1@b") == "utf-8; \\x{E9}\\x{2B}1@b"
    assert dsn.typed_address("a\r\nX-Evil: 1@b").startswith("rfc822; aX-Evil: 1@b")


# --- the other kinds ---------------------------------------------------------------------


def test_delay_warning() -> None:
    env = envelope(
        rcpt("x@remote.example", state=RcptState.PENDING, reason=(
            "451 4.4.1 No route to deliver to (remote delivery not available)")),
    )  # fmt: skip
    data = make("delay", env=env, will_retry_until=ARRIVAL + 5 * 86400)
    msg = stdlib(data)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    text = parts_of(msg)[0].get_content()
    assert "THIS IS A WARNING MESSAGE ONLY" in text
    assert "----- The following addresses had transient non-fatal errors -----" in text
    assert "Warning: message still undelivered after 4 hours" in text
    assert "Will keep trying until message is 5 days old" in text
    (r,) = parse_dsn(data).recipients
    assert (r.action, r.status) == ("delayed", "4.4.1")
    assert r.will_retry_until == "Wed, 20 Jan 2027 08:00:00 +0000"
    assert r.diagnostic_code == (
        "smtp; 451 4.4.1 No route to deliver to (remote delivery not available)"
    )


def test_success_and_relayed() -> None:
    env = envelope(rcpt(state=RcptState.DELIVERED, reason="250 2.0.0 delivered to maildir"))
    data = make("success", env=env)
    msg = stdlib(data)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    assert "successful delivery notifications" in parts_of(msg)[0].get_content()
    (r,) = parse_dsn(data).recipients
    assert (r.action, r.status, r.diagnostic_code) == ("delivered", "2.0.0", None)
    (r,) = parse_dsn(make("relayed", env=env)).recipients
    assert (r.action, r.status) == ("relayed", "2.0.0")


def test_expired_mail_keeps_its_4xx_status_and_the_last_reply() -> None:
    reason = "4.4.7 Message expired in the queue (last: 451 4.2.0 Mailbox busy)"
    (r,) = parse_dsn(make(env=envelope(rcpt(reason=reason)))).recipients
    assert (r.action, r.status) == ("failed", "4.4.7")
    assert r.diagnostic_code == "smtp; 451 4.2.0 Mailbox busy"


def test_postmaster_copy() -> None:
    env = envelope(rcpt(), sender="")
    data = make(env=env, to="postmaster@mail.example.test")
    msg = stdlib(data)
    assert msg["To"] == "postmaster@mail.example.test"
    assert msg["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert "null sender <>" in parts_of(msg)[0].get_content()
    assert parse_dsn(data).returned_type == "text/rfc822-headers"


def test_never_to_the_null_sender() -> None:
    with pytest.raises(ValueError, match="null sender"):
        make(env=envelope(sender=""))
    with pytest.raises(ValueError):
        build_dsn(
            kind="failure", envelope=envelope(), recipients=[], reporting_mta=HOST,
            original=b"", now=NOW, queue_id_new=NEW_QID,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "reason", "status"),
    [
        ("failure", "550 5.1.1 User unknown", "5.1.1"),
        ("failure", "550-5.7.1 Go away", "5.7.1"),
        ("failure", "554 Transaction failed", "5.0.0"),
        ("failure", "4.4.7 Message expired", "4.4.7"),
        ("failure", "", "5.0.0"),
        ("failure", "250 2.0.0 Ok", "5.0.0"),  # the class must fit the kind
        ("delay", "451 4.4.1 No route", "4.4.1"),
        ("delay", "421 try later", "4.0.0"),
        ("delay", "550 5.1.1 nope", "4.0.0"),
        ("success", "250 2.0.0 delivered to maildir", "2.0.0"),
        ("success", "250 2.6.0 Queued", "2.6.0"),
        ("relayed", "delivered at once", "2.0.0"),
    ],
)
def test_status_of(kind: dsn.DsnKind, reason: str, status: str) -> None:
    assert dsn.status_of(kind, reason) == status


def test_diagnostic_of() -> None:
    assert dsn.diagnostic_of("550 5.1.1 User unknown") == "smtp; 550 5.1.1 User unknown"
    assert dsn.diagnostic_of("") is None
    assert dsn.diagnostic_of("mailbox full") == "x-postoffice; mailbox full"
    assert dsn.diagnostic_of("550 é\r\nX: y") == "smtp; 550 ? X: y"


@pytest.mark.parametrize(
    ("notify", "failure", "delay", "success"),
    [
        (None, True, True, False),  # RFC 3461 §4.1: the default is FAILURE,DELAY here
        (frozenset({"NEVER"}), False, False, False),
        (frozenset({"SUCCESS"}), False, False, True),
        (frozenset({"FAILURE"}), True, False, False),
        (frozenset({"DELAY", "SUCCESS"}), False, True, True),
        (frozenset({"FAILURE", "DELAY", "SUCCESS"}), True, True, True),
    ],
)
def test_wants_dsn(
    notify: frozenset[str] | None, failure: bool, delay: bool, success: bool
) -> None:
    assert dsn.wants_dsn(notify, "failure") is failure
    assert dsn.wants_dsn(notify, "delay") is delay
    assert dsn.wants_dsn(notify, "success") is success
    assert dsn.wants_dsn(notify, "relayed") is success


def test_remote_mta() -> None:
    assert dsn.remote_mta("mx.example.net[192.0.2.1]:25") == "mx.example.net"
    assert dsn.remote_mta("unknown[192.0.2.1]:25") == "[192.0.2.1]"
    assert dsn.remote_mta("[2001:db8::1]:25") == "[2001:db8::1]"
    for local in ("local", "none", "pipe", "file", ""):
        assert dsn.remote_mta(local) is None


# --- hostile input -------------------------------------------------------------------------


def test_untrusted_text_cannot_add_fields_or_break_lines() -> None:
    evil = "550 5.1.1 nope\r\nX-Injected: yes\r\n\r\n--" + "A" * 3000
    env = envelope(
        rcpt("bob@example.net", reason=evil),
        envid="E\r\nX-Injected: 1",
        client_name="evil\r\nX-Injected: 2",
    )
    data = make(env=env)
    assert b"\r\nX-Injected" not in data
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    (r,) = parse_dsn(data).recipients
    assert r.status == "5.1.1"
    assert r.diagnostic_code is not None and r.diagnostic_code.startswith("smtp; 550 5.1.1 nope ")


def test_the_boundary_never_occurs_in_the_returned_message() -> None:
    boundary = f"{NEW_QID}.{int(NOW)}/{HOST}"
    original = ORIGINAL + f"--{boundary}\r\n--{boundary}.1--\r\n".encode()
    data = make(original=original)
    msg = stdlib(data)
    assert msg.get_boundary() == f"{boundary}.2"
    assert parse_dsn(data).returned == original


# --- parse_dsn on other people's notifications ----------------------------------------------

FOREIGN = b"""\
Received: by mx.example.net (Postfix)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: alice@example.test
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: Multipart/Report; Report-Type=delivery-status;
\tboundary="6B3E41C0.1/mx.example.net"

--6B3E41C0.1/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you...

--6B3E41C0.1/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status
Content-Transfer-Encoding: base64

UmVwb3J0aW5nLU1UQTogZG5zOyBteC5leGFtcGxlLm5ldApYLVBvc3RmaXgtUXVldWUtSUQ6IDZC
M0U0MUMwCkFycml2YWwtRGF0ZTogU2F0LCAxNiBKYW4gMjAyNyAxMDowMDowMCArMDEwMAoKRmlu
YWwtUmVjaXBpZW50OiByZmM4MjI7IGJvYkBleGFtcGxlLm5ldApPcmlnaW5hbC1SZWNpcGllbnQ6
IHJmYzgyMjtib2JAZXhhbXBsZS5uZXQKQWN0aW9uOiBmYWlsZWQKU3RhdHVzOiA1LjEuMQpSZW1v
dGUtTVRBOiBkbnM7IGlubWFpbC5leGFtcGxlLm5ldApEaWFnbm9zdGljLUNvZGU6IHNtdHA7IDU1
MCA1LjEuMSA8Ym9iQGV4YW1wbGUubmV0PjogUmVjaXBpZW50IGFkZHJlc3MKICAgIHJlamVjdGVk
OiBVc2VyIHVua25vd24K

--6B3E41C0.1/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Subject: lunch

--6B3E41C0.1/mx.example.net--

--outer--
"""


def test_parse_a_foreign_nested_base64_lf_dsn() -> None:
    report = parse_dsn(FOREIGN)
    assert report.reporting_mta == "dns; mx.example.net"
    (r,) = report.recipients
    assert (r.final_recipient, r.action, r.status) == ("bob@example.net", "failed", "5.1.1")
    assert r.original_recipient == "bob@example.net"
    assert r.remote_mta == "dns; inmail.example.net"
    # Folded fields are unfolded.
    assert r.diagnostic_code == (
        "smtp; 550 5.1.1 <bob@example.net>: Recipient address    rejected: User unknown"
    )
    assert report.returned_type == "text/rfc822-headers"
    assert report.returned == b"Subject: lunch\n"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"Subject: hi\r\n\r\nbody\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary",
        b'Content-Type: multipart/report; boundary="b"\r\n\r\n--b\r\n\r\ntext\r\n--b--\r\n',
        b'Content-Type: multipart/report; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n--b--\r\n",
    ],
)
def test_not_a_dsn(data: bytes) -> None:
    with pytest.raises(DsnError):
        parse_dsn(data)


@given(st.binary(max_size=2000))
def test_parse_dsn_never_raises_anything_else(data: bytes) -> None:
    try:
        parse_dsn(data)
    except DsnError:
        pass


@given(st.integers(min_value=0, max_value=3000), st.binary(min_size=1, max_size=20))
def test_parse_dsn_survives_damaged_notifications(at: int, junk: bytes) -> None:
    data = make()
    damaged = data[:at] + junk + data[at + len(junk) :]
    try:
        parse_dsn(damaged)
    except DsnError:
        pass


addresses = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=40,
)


@given(st.lists(addresses, min_size=1, max_size=4), st.text(max_size=200))
def test_any_recipients_and_reasons_round_trip(addrs: list[str], reason: str) -> None:
    env = envelope(*(rcpt(a, reason=reason) for a in addrs))
    data = make(env=env)
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    report = parse_dsn(data)
    assert [r.final_recipient for r in report.recipients] == addrs
    assert all(re.fullmatch(r"[45]\.\d{1,3}\.\d{1,3}", r.status) for r in report.recipients)
