"""Tests for postoffice.address: RFC 5321 path parsing and normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.address import (
    AddressError,
    Utf8RequiredError,
    format_path,
    is_ascii_address,
    parse_domain,
    parse_forward_path,
    parse_mailbox,
    parse_path,
    parse_reverse_path,
    split_address,
    take_path,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<user@example.org>", "user@example.org"),
        ("<User@Example.ORG>", "User@example.org"),  # local part case kept (RFC 5321 §2.4)
        ("<user@example.org.>", "user@example.org"),  # trailing dot removed
        ("user@example.org", "user@example.org"),  # bare, as Postfix accepts
        ("<first.last+tag@sub.example.org>", "first.last+tag@sub.example.org"),
        ("<!#$%&'*+/=?^_`{|}~-@example.org>", "!#$%&'*+/=?^_`{|}~-@example.org"),
        ('<"john doe"@example.org>', '"john doe"@example.org'),
        ('<"a\\"b"@example.org>', '"a\\"b"@example.org'),
        ('<"a@b"@example.org>', '"a@b"@example.org'),
        ("<@a.example,@b.example:user@c.example>", "user@c.example"),  # RFC 5321 §C
        ("<@relay.example:user@c.example>", "user@c.example"),
        ("<user@[192.0.2.1]>", "user@[192.0.2.1]"),
        ("<user@[192.000.002.001]>", "user@[192.0.2.1]"),
        ("<user@[IPv6:2001:DB8::1]>", "user@[IPv6:2001:db8::1]"),
        ("<user@[ipv6:2001:db8:0:0:0:0:0:1]>", "user@[IPv6:2001:db8::1]"),
        ("<user@[IPv6:::ffff:192.0.2.1]>", "user@[IPv6:::ffff:c000:201]"),
        ("<x@a-b.c-d.example>", "x@a-b.c-d.example"),
        ("<x@123.example>", "x@123.example"),
    ],
)
def test_valid_paths(text: str, expected: str) -> None:
    assert parse_path(text, smtputf8=False) == expected


def test_null_path() -> None:
    assert parse_reverse_path("<>", smtputf8=False) == ""
    with pytest.raises(AddressError):
        parse_forward_path("<>", smtputf8=False)


@pytest.mark.parametrize("text", ["<Postmaster>", "<postmaster>", "<POSTMASTER>", "postmaster"])
def test_bare_postmaster_only_for_rcpt(text: str) -> None:
    # RFC 5321 §4.1.1.3
    assert parse_forward_path(text, smtputf8=False) == "postmaster"
    with pytest.raises(AddressError):
        parse_reverse_path(text, smtputf8=False)


def test_postmaster_with_domain_is_normal() -> None:
    assert parse_forward_path("<Postmaster@Example.org>", smtputf8=False) == (
        "Postmaster@example.org"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<",
        "<user@example.org",
        "user@example.org>",
        "<user>",
        "<@example.org>",
        "<user@>",
        "<user@@example.org>",
        "<us er@example.org>",
        "<.user@example.org>",
        "<user.@example.org>",
        "<us..er@example.org>",
        '<"unterminated@example.org>',
        '<"a"b"@example.org>',
        '<"a\\"@example.org>',
        "<user@exa_mple.org>",
        "<user@-example.org>",
        "<user@example-.org>",
        "<user@example..org>",
        "<user@.example.org>",
        "<user@.>",
        "<user@example.org..>",
        "<user@[300.1.1.1]>",
        "<user@[1.2.3]>",
        "<user@[1.2.3.4.5]>",
        "<user@[1.2.3.a]>",
        "<user@[1.2.3.4>",
        "<user@[]>",
        "<user@[IPv6:nonsense]>",
        "<user@[IPv6:fe80::1%eth0]>",
        "<user@[IPv6:]>",
        "<user@[x-tag:stuff]>",  # general address literals are refused
        "<@a.example:>",
        "<@a.example user@b.example>",
        "<a.example:user@b.example>",
        "<@[192.0.2.1]:user@b.example>",  # no literals in source routes
        "<@:user@b.example>",
        "<user\x00@example.org>",
        "<user@example.org\r\n>",
        "<user\t@example.org>",
        "<user@" + "a" * 64 + ".example>",  # label over 63 octets
        "<user@" + ".".join(["abcdefghi"] * 30) + ">",  # domain over 255 octets
    ],
)
def test_invalid_paths(text: str) -> None:
    with pytest.raises(AddressError):
        parse_path(text, smtputf8=True)


def test_utf8_needs_smtputf8() -> None:
    # RFC 6531 §3.5
    for text in ("<jöran@example.org>", "<user@exämple.org>", "<用户@例子.广告>"):
        with pytest.raises(Utf8RequiredError):
            parse_path(text, smtputf8=False)
    assert parse_path("<jöran@Exämple.ORG>", smtputf8=True) == "jöran@exämple.org"
    assert parse_path("<用户@例子.广告>", smtputf8=True) == "用户@例子.广告"
    assert parse_path('<"jö ran"@example.org>', smtputf8=True) == '"jö ran"@example.org'


def test_utf8_rejects_invalid_utf8_and_c1_controls() -> None:
    broken = b"<j\xffo@example.org>".decode("utf-8", "surrogateescape")
    with pytest.raises(AddressError):
        parse_path(broken, smtputf8=True)
    for char in ("\u0085", "\u2028", "\u202e", "\u00ad", "\ue000", "\u0378"):
        with pytest.raises(AddressError):
            parse_path(f"<a{char}b@example.org>", smtputf8=True)
        with pytest.raises(AddressError):
            parse_path(f"<ab@exa{char}mple.org>", smtputf8=True)


def test_take_path() -> None:
    assert take_path("<a@b.example> SIZE=10") == ("<a@b.example>", " SIZE=10")
    assert take_path("<a@b.example>") == ("<a@b.example>", "")
    assert take_path('<"x>y"@b.example> BODY=8BITMIME') == ('<"x>y"@b.example>', " BODY=8BITMIME")
    assert take_path('<"x\\">y"@b.example>') == ('<"x\\">y"@b.example>', "")
    assert take_path("a@b.example SIZE=1") == ("a@b.example", " SIZE=1")
    assert take_path("<>") == ("<>", "")
    with pytest.raises(AddressError):
        take_path("<a@b.example")
    with pytest.raises(AddressError):
        take_path('<"a>@b.example')


def test_parse_domain_and_mailbox() -> None:
    assert parse_domain("EXAMPLE.org.", smtputf8=False) == "example.org"
    assert parse_domain("[10.0.0.1]", smtputf8=False) == "[10.0.0.1]"
    with pytest.raises(AddressError):
        parse_domain("[10.0.0.1]", smtputf8=False, allow_literal=False)
    with pytest.raises(AddressError):
        parse_domain("", smtputf8=False)
    assert parse_mailbox("a@B.example", smtputf8=False) == "a@b.example"


def test_split_and_format() -> None:
    assert split_address("user@example.org") == ("user", "example.org")
    assert split_address('"a@b"@example.org') == ('"a@b"', "example.org")
    assert split_address("postmaster") == ("postmaster", "")
    assert split_address("") == ("", "")
    assert format_path("") == "<>"
    assert format_path("a@b.example") == "<a@b.example>"
    assert is_ascii_address("a@b.example")
    assert not is_ascii_address("ä@b.example")


def test_error_is_value_error() -> None:
    assert issubclass(AddressError, ValueError)
    assert issubclass(Utf8RequiredError, AddressError)


# --- fuzzing ----------------------------------------------------------------------

_atext = st.text(alphabet=st.sampled_from("abcXYZ019!#$%&'*+/=?^_`{|}~-"), min_size=1, max_size=10)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(st.text(max_size=80), st.booleans())
def test_fuzz_never_crashes(text: str, utf8: bool) -> None:
    try:
        result = parse_path(text, smtputf8=utf8, allow_postmaster=True)
    except AddressError:
        return
    # Whatever passes is clean: no controls, no spaces outside quotes.
    assert result.isprintable() or result == ""
    assert "\r" not in result and "\n" not in result
    if not utf8:
        assert result.isascii()
    # Normalisation is idempotent.
    assert parse_path(f"<{result}>", smtputf8=utf8, allow_postmaster=True) == result


@given(st.lists(_atext, min_size=1, max_size=4), st.lists(_label, min_size=1, max_size=4))
def test_fuzz_generated_addresses_parse(atoms: list[str], labels: list[str]) -> None:
    addr = ".".join(atoms) + "@" + ".".join(labels)
    assert parse_path(f"<{addr}>", smtputf8=False) == addr
    assert parse_path(addr, smtputf8=False) == addr
    local, domain = split_address(addr)
    assert f"{local}@{domain}" == addr


@given(st.text(max_size=60))
def test_fuzz_take_path(text: str) -> None:
    try:
        path, rest = take_path(text)
    except AddressError:
        return
    assert path + rest == text
