"""routing/masquerade.py: sendmail's masquerading rules and the sender-field walker."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.config.schema import Config, RoutingConfig
from postoffice.message import headers
from postoffice.routing.masquerade import (
    SENDER_FIELDS,
    Masquerade,
    addresses_in,
    rewrite_sender_fields,
)

HOST = "linux102.example.com"


def seed_002() -> Masquerade:
    """Seed 002 §5: EXPOSED_USER(root), masquerade_envelope, MASQUERADE_AS(163.com),
    masquerade_entire_domain."""
    return Masquerade(
        masquerade_as="163.com",
        exposed_users=("root",),
        envelope=True,
        entire_domain=True,
        hostname=HOST,
        local_domains=(HOST, "tonk.com", "qq.com", "pp.com"),
    )


# --- seed 002 ---------------------------------------------------------------------


def test_seed_002_user_of_this_host_appears_as_163_com() -> None:
    m = seed_002()
    assert m.rewrite_address("dl@linux102.example.com") == "dl@163.com"
    block = b"From: dl@linux102.example.com\r\nSubject: test10\r\n"
    assert m.rewrite_headers(block) == b"From: dl@163.com\r\nSubject: test10\r\n"


def test_seed_002_root_is_exposed() -> None:
    # "超级用户无法伪装": root keeps the host's name, in headers and envelope.
    m = seed_002()
    assert m.rewrite_address("root@linux102.example.com") == "root@linux102.example.com"
    assert m.rewrite_address("ROOT@linux102.example.com") == "ROOT@linux102.example.com"
    assert m.rewrite_envelope_sender("root@linux102.example.com") == "root@linux102.example.com"
    # unqualified root is qualified with the host name, not the masquerade name
    assert m.rewrite_address("root") == "root@linux102.example.com"


def test_seed_002_masquerade_envelope() -> None:
    m = seed_002()
    assert m.rewrite_envelope_sender("dl@linux102.example.com") == "dl@163.com"
    assert m.rewrite_envelope_sender("") == ""


# --- the rules ----------------------------------------------------------------------


def test_envelope_untouched_without_masquerade_envelope() -> None:
    m = Masquerade(masquerade_as="example.com", hostname="mail.example.com")
    assert m.rewrite_envelope_sender("alice@mail.example.com") == "alice@mail.example.com"
    assert m.rewrite_envelope_sender("alice") == "alice@mail.example.com"
    assert m.rewrite_address("alice@mail.example.com") == "alice@example.com"


def test_unqualified_addresses_are_qualified_first() -> None:
    m = Masquerade(masquerade_as="example.com", hostname="mail.example.com")
    assert m.rewrite_address("alice") == "alice@example.com"
    plain = Masquerade(hostname="mail.example.com")
    assert plain.rewrite_address("alice") == "alice@mail.example.com"
    assert not plain.active
    assert plain.rewrite_address("alice@mail.example.com") == "alice@mail.example.com"


def test_masquerade_domains_exact_unless_entire_domain() -> None:
    # cf/README masquerade_entire_domain: "*foo.org and *bar.com are converted to masq.com"
    exact = Masquerade(masquerade_as="masq.com", domains=("foo.org", "bar.com"), hostname="h.x")
    assert exact.rewrite_address("a@foo.org") == "a@masq.com"
    assert exact.rewrite_address("a@BAR.com.") == "a@masq.com"
    assert exact.rewrite_address("a@host.foo.org") == "a@host.foo.org"
    entire = Masquerade(
        masquerade_as="masq.com", domains=("foo.org",), entire_domain=True, hostname="h.x"
    )
    assert entire.rewrite_address("a@host.foo.org") == "a@masq.com"
    assert entire.rewrite_address("a@deep.host.foo.org") == "a@masq.com"
    assert entire.rewrite_address("a@notfoo.org") == "a@notfoo.org"
    # entire_domain covers masquerade_domains only, not subdomains of the host name
    assert entire.rewrite_address("a@sub.h.x") == "a@sub.h.x"


def test_other_local_domains_only_when_not_limited() -> None:
    m = Masquerade(
        masquerade_as="example.com", hostname="mail.example.com", local_domains=("example.org",)
    )
    assert m.rewrite_address("a@example.org") == "a@example.org"
    unlimited = Masquerade(
        masquerade_as="example.com",
        hostname="mail.example.com",
        local_domains=("example.org",),
        limited=False,
    )
    assert unlimited.rewrite_address("a@example.org") == "a@example.com"


def test_foreign_and_odd_addresses_unchanged() -> None:
    m = seed_002()
    for addr in ("a@gmail.com", "a@[192.0.2.1]", "@linux102.example.com", '"x y"@gmail.com'):
        assert m.rewrite_address(addr) == addr
    assert m.rewrite_address('"x y"@linux102.example.com') == '"x y"@163.com'


def test_from_config() -> None:
    routing = RoutingConfig(
        masquerade_as="163.com",
        masquerade_domains=("example.org",),
        masquerade_entire_domain=True,
        masquerade_envelope=True,
        exposed_users=("root", "postmaster"),
    )
    config = Config(hostname=HOST, local_domains=(HOST,), routing=routing)
    m = Masquerade.from_config(config)
    assert m.rewrite_address("a@x.example.org") == "a@163.com"
    assert m.rewrite_address("Postmaster@linux102.example.com") == (
        "Postmaster@linux102.example.com"
    )
    assert m.rewrite_envelope_sender("a@linux102.example.com") == "a@163.com"


def test_trace_names_the_rule() -> None:
    m = seed_002()
    new, steps = m.trace_address("dl@linux102.example.com")
    assert new == "dl@163.com"
    assert [str(s) for s in steps] == ["masquerade: dl@linux102.example.com -> dl@163.com"]
    _, steps = m.trace_address("root@linux102.example.com")
    assert "exposed" in str(steps[0])
    assert m.trace_address("a@gmail.com") == ("a@gmail.com", ())


# --- the header walker -------------------------------------------------------------


def test_sender_fields_are_sendmails_h_from_fields() -> None:
    assert {"from", "sender", "reply-to", "resent-from", "resent-sender"} <= SENDER_FIELDS
    assert not {"to", "cc", "bcc", "resent-to", "return-path"} & SENDER_FIELDS


def test_headers_keep_display_names_comments_and_groups() -> None:
    m = seed_002()
    block = (
        b'From: "Dong, Liang" <dl@linux102.example.com> (home)\r\n'
        b"Sender: dl@linux102.example.com (Dong Liang)\r\n"
        b"Reply-To: admins: root@linux102.example.com, lee@linux102.example.com;\r\n"
        b"Resent-From: =?utf-8?q?D=C3=B6ng?= <dl@LINUX102.example.com>\r\n"
        b"To: lee@linux102.example.com\r\n"
        b"Cc: dl@linux102.example.com\r\n"
        b"Subject: From: dl@linux102.example.com\r\n"
    )
    assert m.rewrite_headers(block) == (
        b'From: "Dong, Liang" <dl@163.com> (home)\r\n'
        b"Sender: dl@163.com (Dong Liang)\r\n"
        b"Reply-To: admins: root@linux102.example.com, lee@163.com;\r\n"
        b"Resent-From: =?utf-8?q?D=C3=B6ng?= <dl@163.com>\r\n"
        b"To: lee@linux102.example.com\r\n"
        b"Cc: dl@linux102.example.com\r\n"
        b"Subject: From: dl@linux102.example.com\r\n"
    )


def test_headers_folded_lists_and_lf_endings() -> None:
    m = seed_002()
    block = b"from: a@linux102.example.com,\n\tb@gmail.com,\n  c@linux102.example.com\n\nbody\n"
    assert m.rewrite_headers(block) == (b"from: a@163.com,\n\tb@gmail.com,\n  c@163.com\n\nbody\n")


def test_unqualified_header_address_is_qualified() -> None:
    m = seed_002()
    assert m.rewrite_headers(b"From: dl\r\n") == b"From: dl@163.com\r\n"
    assert m.rewrite_headers(b"From: Dong Liang <dl>\r\n") == b"From: Dong Liang <dl@163.com>\r\n"
    # a bare phrase is not an address
    assert m.rewrite_headers(b"From: Dong Liang\r\n") == b"From: Dong Liang\r\n"


def test_source_route_is_kept() -> None:
    m = seed_002()
    assert m.rewrite_headers(b"From: <@relay.example:dl@linux102.example.com>\r\n") == (
        b"From: <@relay.example:dl@163.com>\r\n"
    )


@pytest.mark.parametrize(
    "value",
    [
        b' "unterminated <dl@linux102.example.com>\r\n',
        b" (open comment <dl@linux102.example.com>\r\n",
        b" <dl@linux102.example.com\r\n",
        b" dl@linux102.example.com>\r\n",
        b" dl @ linux102.example.com\r\n",  # CFWS inside: left alone
        b" dl@linux102(c).example.com\r\n",
        b" <>\r\n",
        b" \xff\xfe@linux102.example.com\r\n",
    ],
)
def test_what_does_not_scan_is_left_alone(value: bytes) -> None:
    block = b"From:" + value
    assert seed_002().rewrite_headers(block) == block


def test_unsafe_replacements_are_refused() -> None:
    block = b"From: a@x.example, b@x.example\r\n"
    for bad in ("evil\r\nBcc: x@y", "a b@c", "<a@b>", "a@b, c@d", "", "a@b@c"):
        assert rewrite_sender_fields(block, lambda _a, bad=bad: bad) == block
    assert rewrite_sender_fields(block, lambda a: a.upper()) == (
        b"From: A@X.EXAMPLE, B@X.EXAMPLE\r\n"
    )


def test_addresses_in() -> None:
    assert addresses_in(b' "A" <a@x>, b@y (B), grp: c@z, "q u"@w;, Dong Liang') == [
        "a@x",
        "b@y",
        "c@z",
        '"q u"@w',
    ]
    assert addresses_in(b' "broken') == []


# --- fuzz ------------------------------------------------------------------------

_domain = st.sampled_from(
    ["linux102.example.com", "gmail.com", "sub.example.org", "example.org", "[192.0.2.1]"]
)
_local = st.sampled_from(["dl", "root", "a.b", '"x y"', "lee+tag", "ROOT"])
_addr = st.builds(lambda lp, d: f"{lp}@{d}", _local, _domain)
_mailbox = st.one_of(
    _addr,
    st.builds(lambda a: f"<{a}>", _addr),
    st.builds(lambda a: f'"Some, One" <{a}>', _addr),
    st.builds(lambda a: f"{a} (comment)", _addr),
    st.builds(lambda a: f"Name\r\n <{a}>", _addr),
)
_field_name = st.sampled_from(["From", "Sender", "Reply-To", "To", "Subject", "resent-from"])
_field = st.builds(
    lambda n, boxes: f"{n}: {', '.join(boxes)}\r\n".encode(),
    _field_name,
    st.lists(_mailbox, min_size=1, max_size=3),
)
_block = st.builds(lambda fs: b"".join(fs), st.lists(_field, max_size=6))


def _names(block: bytes) -> list[str]:
    return [n for n, _ in headers.iter_fields(block)]


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_raise_and_stay_headers(block: bytes) -> None:
    out = seed_002().rewrite_headers(block)
    assert _names(out) == _names(block)
    assert headers.split_message(out)[1] == headers.split_message(block)[1]
    assert rewrite_sender_fields(block, lambda a: a) == block


@settings(max_examples=300)
@given(_block)
def test_fuzz_structured_headers(block: bytes) -> None:
    m = seed_002()
    out = m.rewrite_headers(block)
    assert _names(out) == _names(block)
    for name, value in headers.iter_fields(out):
        text = headers.unfold(value).decode()
        for _, addr in email.utils.getaddresses([text]):
            if name.lower() in SENDER_FIELDS and addr:
                local = addr.rpartition("@")[0]
                assert not addr.endswith("@linux102.example.com") or local.lower() == "root"
    # Idempotent: masquerading a masqueraded header changes nothing.
    assert m.rewrite_headers(out) == out


@settings(max_examples=200)
@given(_block)
def test_fuzz_no_matching_address_means_unchanged(block: bytes) -> None:
    other = Masquerade(masquerade_as="masq.example", hostname="elsewhere.example")
    assert other.rewrite_headers(block) == block
