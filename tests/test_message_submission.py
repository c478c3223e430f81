"""Tests for message/submission.py: header completion, sendmail -t, Bcc removal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postoffice.message import headers, submission

NOW = 1795281136.0


def complete(msg: bytes, sender: str = "alice@example.org") -> bytes:
    return submission.complete_headers(
        msg, sender=sender, hostname="mx.example", now=NOW, queue_id="01JD7Q4W2N"
    )


def test_normalize_line_endings() -> None:
    assert submission.normalize_line_endings(b"a\nb\r\nc\rd\n") == b"a\r\nb\r\nc\rd\r\n"


def test_adds_missing_fields_at_end_of_header() -> None:
    out = complete(b"Subject: hi\nTo: bob@example.net\n\nbody\n")
    block, body = headers.split_message(out)
    names = [n for n, _ in headers.iter_fields(block)]
    assert names == ["Subject", "To", "From", "Date", "Message-ID"]
    assert headers.get_first(block, "From") == b" alice@example.org"
    assert headers.get_first(block, "Date") == b" " + headers.format_date(NOW).encode()
    assert headers.get_first(block, "Message-ID") == b" <20261121171216.01JD7Q4W2N@mx.example>"
    assert body == b"body\r\n"
    assert b"\n" not in out.replace(b"\r\n", b"")


def test_keeps_present_fields() -> None:
    msg = b"From: Me <me@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <a@b>\r\n\r\nx"
    assert complete(msg) == msg


def test_null_sender_from_mailer_daemon() -> None:
    out = complete(b"Subject: x\n\n", sender="")
    assert headers.get_first(out, "From") == b" MAILER-DAEMON@mx.example"


def test_strips_leading_unix_from_line() -> None:
    out = complete(b"From alice Sat Nov 21 17:27:16 2026\nSubject: x\n\nbody\n")
    assert out.startswith(b"Subject: x\r\n")
    # "From:" is a field and stays.
    assert complete(b"From: a@b\n\n").startswith(b"From: a@b\r\n")


def test_message_without_header_or_separator() -> None:
    out = complete(b"just a body line\nanother\n")
    block, body = headers.split_message(out)
    assert [n for n, _ in headers.iter_fields(block)] == ["From", "Date", "Message-ID"]
    assert body == b"just a body line\r\nanother\r\n"
    out = complete(b"Subject: no newline at end")
    block, body = headers.split_message(out)
    assert next(n for n, _ in headers.iter_fields(block)) == "Subject"
    assert body == b""
    assert out.endswith(b"\r\n\r\n")


def test_empty_message() -> None:
    out = complete(b"")
    assert [n for n, _ in headers.iter_fields(out)] == ["From", "Date", "Message-ID"]


def test_recipients_from_headers() -> None:
    msg = (
        b"From: a@x\n"
        b'To: "Doe, John" <john@example.com>, (comment) plain@example.com,\n'
        b"  friends: one@example.org, Two <two@example.org>;\n"
        b"Cc: undisclosed-recipients:;\n"
        b"Bcc: hidden@example.net, john@example.com\n"
        b"Subject: x\n\nTo: body@example.com\n"
    )
    assert submission.recipients_from_headers(msg) == [
        "john@example.com",
        "plain@example.com",
        "one@example.org",
        "two@example.org",
        "hidden@example.net",
    ]


def test_recipients_prefer_resent_fields() -> None:
    msg = b"To: orig@x\nResent-To: new@y\nResent-Bcc: secret@z\n\n"
    assert submission.recipients_from_headers(msg) == ["new@y", "secret@z"]


def test_recipients_none() -> None:
    assert submission.recipients_from_headers(b"Subject: x\n\n") == []


def test_remove_bcc() -> None:
    msg = b"To: a@x\r\nBcc: b@y,\r\n c@z\r\nSubject: s\r\nresent-bcc: d@w\r\n\r\nBcc: in body\r\n"
    assert submission.remove_bcc(msg) == b"To: a@x\r\nSubject: s\r\n\r\nBcc: in body\r\n"
    plain = b"To: a@x\r\n\r\nbody"
    assert submission.remove_bcc(plain) is plain


@given(st.binary(max_size=1500))
def test_never_raise(data: bytes) -> None:
    out = complete(data)
    assert b"\n" not in out.replace(b"\r\n", b"")
    names = {n.lower() for n, _ in headers.iter_fields(out)}
    assert {"from", "date", "message-id"} <= names
    assert isinstance(submission.recipients_from_headers(data), list)
    stripped = submission.remove_bcc(data)
    assert not any(n.lower() in ("bcc", "resent-bcc") for n, _ in headers.iter_fields(stripped))
