"""Tests for message/headers.py: splitting, fields, Received counting and building."""

from __future__ import annotations

import email.utils
import re

from hypothesis import given
from hypothesis import strategies as st

from postoffice.message import headers as h

MSG = (
    b"Received: from a.example\r\n"
    b"\tby b.example; Sun, 21 Nov 2026 17:27:16 +0000\r\n"
    b"received : from c\r\n"
    b"Subject: hello\r\n"
    b"  world\r\n"
    b"\r\n"
    b"Received: in the body does not count\r\n"
)


def test_split_crlf() -> None:
    block, body = h.split_message(MSG)
    assert block.endswith(b"  world\r\n")
    assert body == b"Received: in the body does not count\r\n"


def test_split_lf() -> None:
    assert h.split_message(b"A: 1\nB: 2\n\nbody\n") == (b"A: 1\nB: 2\n", b"body\n")


def test_split_no_separator_all_header() -> None:
    assert h.split_message(b"A: 1\r\nB: 2") == (b"A: 1\r\nB: 2", b"")
    assert h.header_end(b"A: 1\r\n") == (6, 6)


def test_split_no_header() -> None:
    assert h.split_message(b"just text\r\nA: b\r\n") == (b"", b"just text\r\nA: b\r\n")
    assert h.split_message(b"\r\nbody") == (b"", b"body")
    assert h.split_message(b"") == (b"", b"")


def test_split_non_header_line_starts_body() -> None:
    end, start = h.header_end(b"A: 1\r\nnot a field\r\n\r\nmore")
    assert (end, start) == (6, 6)


def test_leading_continuation_is_not_header() -> None:
    assert h.split_message(b" folded: x\r\n\r\n") == (b"", b" folded: x\r\n\r\n")


def test_iter_fields_folding() -> None:
    fields = list(h.iter_fields(MSG))
    assert [n for n, _ in fields] == ["Received", "received", "Subject"]
    assert fields[0][1] == b" from a.example\r\n\tby b.example; Sun, 21 Nov 2026 17:27:16 +0000"
    assert fields[2][1] == b" hello\r\n  world"
    assert h.unfold(fields[2][1]) == b" hello  world"


def test_iter_spans_cover_block() -> None:
    block, _ = h.split_message(MSG)
    spans = list(h.iter_spans(block))
    assert b"".join(block[s:e] for _, s, _, e in spans) == block


def test_get_and_has() -> None:
    assert h.has_header(MSG, "subject")
    assert h.has_header(MSG, "RECEIVED")
    assert not h.has_header(MSG, "Date")
    assert len(h.get_all(MSG, "received")) == 2
    assert h.get_first(MSG, "Subject") == b" hello\r\n  world"
    assert h.get_first(MSG, "To") is None


def test_count_received() -> None:
    assert h.count_received(MSG) == 2
    assert h.count_received(b"") == 0
    assert h.count_received(b"Subject: x\n\nReceived: y\n") == 0
    assert h.count_received(b"X-Received: a\nReceived-SPF: b\nReceivedx: c\n\n") == 0
    many = b"".join(b"Received: from h%d\r\n" % i for i in range(30)) + b"\r\nbody"
    assert h.count_received(many) == 30


def test_count_received_stops_at_body_of_large_message() -> None:
    big = b"Received: x\r\n\r\n" + b"Received: y\r\n" * 100_000
    assert h.count_received(big) == 1


@given(st.binary(max_size=2000))
def test_parsers_never_raise(data: bytes) -> None:
    end, start = h.header_end(data)
    assert 0 <= end <= start <= len(data)
    block, body = h.split_message(data)
    assert data.startswith(block) and data.endswith(body)
    for name, value in h.iter_fields(data):
        assert ":" not in name and name
        assert isinstance(value, bytes)
    assert h.count_received(data) >= 0
    h.has_header(data, "received")


_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_VALUE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F))
_field = st.tuples(
    st.text(alphabet=_NAME_CHARS, min_size=1, max_size=20),
    st.lists(st.text(alphabet=_VALUE_CHARS, max_size=30), min_size=1, max_size=3),
)


@given(st.lists(_field, max_size=10), st.binary(max_size=200), st.sampled_from([b"\r\n", b"\n"]))
def test_round_trip_fields(fields: list[tuple[str, list[str]]], body: bytes, eol: bytes) -> None:
    raw = b""
    for name, parts in fields:
        raw += name.encode() + b":" + (eol + b" ").join(p.encode() for p in parts) + eol
    data = raw + eol + body
    block, got_body = h.split_message(data)
    assert block == raw
    assert got_body == body
    got = list(h.iter_fields(block))
    assert [n for n, _ in got] == [n for n, _ in fields]
    want_received = sum(1 for n, _ in fields if n.lower() == "received")
    assert h.count_received(data) == want_received


# --- Received -----------------------------------------------------------------------

WHEN = 1795281136.0  # Sat, 21 Nov 2026 17:12:16 +0000


def test_format_date_rfc5322() -> None:
    text = h.format_date(WHEN)
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000", text)
    assert email.utils.parsedate_to_datetime(text).timestamp() == WHEN


def test_build_received_shape() -> None:
    got = h.build_received(
        helo="client.example",
        client_name="rdns.example",
        client_ip="192.0.2.1",
        hostname="mx.example",
        protocol="ESMTP",
        queue_id="01JD7Q4W2N",
        recipient="bob@example.net",
        when=WHEN,
    )
    assert got == (
        b"Received: from client.example (rdns.example [192.0.2.1])\r\n"
        b"\tby mx.example (postoffice) with ESMTP id 01JD7Q4W2N\r\n"
        b"\tfor <bob@example.net>; " + h.format_date(WHEN).encode() + b"\r\n"
    )
    assert h.count_received(got + b"\r\n") == 1


def test_build_received_ipv6_unknown_rdns_tls_no_for() -> None:
    got = h.build_received(
        helo="[IPv6:2001:db8::1]",
        client_name="",
        client_ip="2001:0db8:0::1",
        hostname="mx.example",
        protocol="ESMTPSA",
        queue_id="Q",
        recipient=None,
        when=WHEN,
        tls="TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
    ).decode()
    lines = got.split("\r\n")
    assert lines[0] == "Received: from [IPv6:2001:db8::1] (unknown [IPv6:2001:db8::1])"
    assert lines[1] == "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))"
    assert lines[2].startswith("\tby mx.example (postoffice) with ESMTPSA id Q; ")
    assert "for" not in got


def test_build_received_ipv4_mapped_and_local() -> None:
    got = h.build_received(
        helo="h", client_name="n", client_ip="::ffff:192.0.2.9", hostname="mx",
        protocol="SMTP", queue_id="Q", recipient=None, when=WHEN,
    )  # fmt: skip
    assert b"(n [192.0.2.9])" in got
    local = h.build_received(
        helo="", client_name="", client_ip="", hostname="mx",
        protocol="local", queue_id="Q", recipient=None, when=WHEN,
    )  # fmt: skip
    assert local.startswith(b"Received: by mx (postoffice) with local id Q; ")


def test_build_received_sanitises_injection() -> None:
    got = h.build_received(
        helo="evil\r\nX-Injected: yes (by fake)",
        client_name="rdns);\r\nFoo: bar",
        client_ip="not-an-ip\r\n",
        hostname="mx.example",
        protocol="ESMTP\r\nX: y",
        queue_id="Q\r\nZ: 1",
        recipient="a@b>\r\nInjected: 1",
        when=WHEN,
        tls="x) (y\r\nQ: (",
    )
    # Exactly the folded lines we make, each continuation starting with a tab.
    lines = got.split(b"\r\n")
    assert lines[-1] == b""
    assert all(line.startswith(b"\t") for line in lines[1:-1])
    assert lines[0].startswith(b"Received: from ")
    assert b"\n" not in got.replace(b"\r\n", b"")
    assert b"\r" not in got.replace(b"\r\n", b"")
    assert b"with SMTP id" in got
    first = lines[0].decode()
    assert first.count("(") == first.count(")") == 1
    tls_line = lines[1].decode()
    assert tls_line.count("(") == tls_line.count(")")
    assert ";" not in tls_line
    # The block parses as one field.
    assert [n for n, _ in h.iter_fields(got)] == ["Received"]


@given(
    st.text(max_size=80), st.text(max_size=80), st.text(max_size=60), st.text(max_size=80),
    st.one_of(st.none(), st.text(max_size=40)), st.one_of(st.none(), st.text(max_size=60)),
)  # fmt: skip
def test_build_received_is_always_one_field(
    helo: str, rdns: str, ip: str, host: str, rcpt: str | None, tls: str | None
) -> None:
    got = h.build_received(
        helo=helo, client_name=rdns, client_ip=ip, hostname=host, protocol="ESMTP",
        queue_id="Q", recipient=rcpt, when=WHEN, tls=tls,
    )  # fmt: skip
    assert got.endswith(b"\r\n")
    assert [n for n, _ in h.iter_fields(got)] == ["Received"]
    assert h.count_received(got + b"\r\nbody") == 1
    assert len(got.split(b"\r\n")) <= 6


def test_return_path_and_delivered_to() -> None:
    assert h.build_return_path("alice@example.org") == b"Return-Path: <alice@example.org>\r\n"
    assert h.build_return_path("") == b"Return-Path: <>\r\n"
    assert h.build_return_path("a\r\nX: y@b") == b"Return-Path: <aX: y@b>\r\n"
    assert h.build_delivered_to("bob@example.net") == b"Delivered-To: bob@example.net\r\n"
    assert h.build_delivered_to("jörg@example.de") == "Delivered-To: jörg@example.de\r\n".encode()


def test_received_notes_a_forged_name() -> None:
    from postoffice.message.headers import build_received

    field = build_received(
        helo="mx.example.org", client_name="mx.example.org", client_ip="192.0.2.7",
        hostname="mail.example.test", protocol="ESMTP", queue_id="Q", recipient=None,
        when=0.0, forged=True,
    )  # fmt: skip
    assert field.startswith(
        b"Received: from mx.example.org (mx.example.org [192.0.2.7] (may be forged))"
    )
