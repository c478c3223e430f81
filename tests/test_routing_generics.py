"""routing/generics.py: sendmail's genericstable, and its order with masquerading."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.config.schema import Config, RoutingConfig
from postoffice.maps.interfaces import MemoryMap
from postoffice.message import headers
from postoffice.routing.generics import Generics, SenderRewriter
from postoffice.routing.masquerade import Masquerade

HOST = "linux102.example.com"
LOCAL_HOST_NAMES = (HOST, "tonk.com", "qq.com", "pp.com")


def seed_table() -> MemoryMap:
    """Seed 002 §7's /etc/mail/genericstable."""
    return MemoryMap(
        "genericstable",
        {
            "lee@linux102.example.com": "dl@qq.com",
            "test@linux102.example.com": "yangmei@tonk.com",
        },
        file="/etc/mail/genericstable",
    )


def seed_generics(*, envelope: bool = False) -> Generics:
    # GENERICS_DOMAIN_FILE(`/etc/mail/local-host-names')
    return Generics(seed_table(), domains=LOCAL_HOST_NAMES, hostname=HOST, envelope=envelope)


# --- seed 002 ---------------------------------------------------------------------


def test_seed_002_genericstable_rewrites_the_header_sender() -> None:
    g = seed_generics()
    assert g.rewrite_address("lee@linux102.example.com") == "dl@qq.com"
    assert g.rewrite_address("test@linux102.example.com") == "yangmei@tonk.com"
    assert g.rewrite_address("dongliang@linux102.example.com") == "dongliang@linux102.example.com"
    block = b"From: lee@linux102.example.com\r\nTo: dongliang@linux102.example.com\r\n"
    assert g.rewrite_headers(block) == (
        b"From: dl@qq.com\r\nTo: dongliang@linux102.example.com\r\n"
    )


def test_seed_002_envelope_is_not_rewritten() -> None:
    # "被重写的是信头而不是信封": the header, not the envelope
    g = seed_generics()
    assert g.rewrite_envelope_sender("lee@linux102.example.com") == "lee@linux102.example.com"
    assert seed_generics(envelope=True).rewrite_envelope_sender("lee@linux102.example.com") == (
        "dl@qq.com"
    )


def test_seed_002_trent_example() -> None:
    # "它可以把 trent@atrust.com 映射到 trent.hein@atrust.com"
    table = MemoryMap("genericstable", {"trent@atrust.com": "trent.hein@atrust.com"})
    g = Generics(table, domains=("atrust.com",))
    assert g.rewrite_headers(b"From: Trent <trent@atrust.com>\r\n") == (
        b"From: Trent <trent.hein@atrust.com>\r\n"
    )


def test_seed_002_with_masquerading_too() -> None:
    # §5 and §7 together: genericstable first, masquerading for the rest.
    config = Config(
        hostname=HOST,
        local_domains=LOCAL_HOST_NAMES,
        routing=RoutingConfig(
            masquerade_as="163.com",
            masquerade_envelope=True,
            masquerade_entire_domain=True,
            exposed_users=("root",),
        ),
    )
    r = SenderRewriter.from_config(config, seed_table())
    assert r.header_address("lee@linux102.example.com") == "dl@qq.com"
    assert r.header_address("dl@linux102.example.com") == "dl@163.com"
    assert r.header_address("root@linux102.example.com") == "root@linux102.example.com"
    # envelope: generics_envelope is off, masquerade_envelope is on
    assert r.envelope_sender("lee@linux102.example.com") == "lee@163.com"
    block = b"From: Lee <lee@linux102.example.com>\r\nSender: dl@linux102.example.com\r\n"
    assert r.rewrite_headers(block) == b"From: Lee <dl@qq.com>\r\nSender: dl@163.com\r\n"


# --- the key order -------------------------------------------------------------------


def test_key_order_and_substitution() -> None:
    table = MemoryMap(
        "genericstable",
        {
            "old+*@foo.org": "new+%1@example.com",
            "gen+*@foo.org": "%1@example.com",
            "plain@foo.org": "p@example.com",
            "@bar.org": "%1@example.net",
            "local": "public@example.com",
            "pct": "100%%@example.com",
        },
    )
    g = Generics(table, domains=("foo.org", "bar.org", HOST), hostname=HOST)
    assert g.rewrite_address("old+x@foo.org") == "new+x@example.com"
    assert g.rewrite_address("gen+sales@foo.org") == "sales@example.com"
    assert g.rewrite_address("plain+tag@foo.org") == "p@example.com"  # user@domain after +*
    assert g.rewrite_address("anyone@bar.org") == "anyone@example.net"
    assert g.rewrite_address("local@foo.org") == "public@example.com"  # bare local part
    assert g.rewrite_address("local+x@foo.org") == "public@example.com"  # user after user+*
    assert g.rewrite_address("local") == "public@example.com"  # unqualified: user@$j, user
    assert g.rewrite_address("pct@foo.org") == "100%@example.com"
    # domains outside generics_domains are never looked up
    assert g.rewrite_address("local@elsewhere.org") == "local@elsewhere.org"


def test_full_address_beats_domain_and_user() -> None:
    table = MemoryMap(
        "genericstable",
        {"a@foo.org": "first@x.org", "@foo.org": "second@x.org", "a": "third@x.org"},
    )
    g = Generics(table, domains=("foo.org",))
    assert g.rewrite_address("a@foo.org") == "first@x.org"
    assert g.rewrite_address("b@foo.org") == "second@x.org"


def test_keys_fold_case() -> None:
    table = MemoryMap("genericstable", {"lee@linux102.example.com": "dl@qq.com"})
    g = Generics(table, domains=(HOST,))
    assert g.rewrite_address("Lee@LINUX102.example.com") == "dl@qq.com"


def test_unqualified_result_is_qualified_or_masqueraded() -> None:
    table = MemoryMap("genericstable", {"lee@linux102.example.com": "dl", "r": "root"})
    g = Generics(table, domains=(HOST,), hostname=HOST)
    assert g.rewrite_address("lee@linux102.example.com") == "dl@linux102.example.com"
    m = Masquerade(masquerade_as="163.com", hostname=HOST, exposed_users=("root",))
    r = SenderRewriter(generics=g, masquerade=m, hostname=HOST)
    assert r.header_address("lee@linux102.example.com") == "dl@163.com"
    # an exposed user from the table keeps the host name ($j)
    assert r.header_address("r@linux102.example.com") == "root@linux102.example.com"


def test_qualified_result_is_final() -> None:
    # proto.m4 ruleset 93: a qualified match returns ($@) before masquerading.
    table = MemoryMap("genericstable", {"a@linux102.example.com": "boss@linux102.example.com"})
    g = Generics(table, domains=(HOST,), hostname=HOST)
    m = Masquerade(masquerade_as="163.com", hostname=HOST)
    r = SenderRewriter(generics=g, masquerade=m, hostname=HOST)
    assert r.header_address("a@linux102.example.com") == "boss@linux102.example.com"
    assert r.header_address("b@linux102.example.com") == "b@163.com"


def test_bad_values_are_ignored() -> None:
    table = MemoryMap(
        "genericstable",
        {"a@foo.org": "two words@x.org", "b@foo.org": "evil\r\nBcc: x@y", "c@foo.org": "@x"},
    )
    g = Generics(table, domains=("foo.org",))
    for addr in ("a@foo.org", "b@foo.org", "c@foo.org"):
        assert g.rewrite_address(addr) == addr
        assert g.rewrite_headers(f"From: {addr}\r\n".encode()) == f"From: {addr}\r\n".encode()


def test_no_table_rewrites_nothing() -> None:
    g = Generics(None, domains=(HOST,), hostname=HOST)
    assert g.lookup("lee@linux102.example.com") is None
    r = SenderRewriter(generics=g, hostname=HOST)
    assert r.header_address("lee") == "lee@linux102.example.com"
    assert r.envelope_sender("") == ""


def test_generics_domains_default_to_local_domains() -> None:
    config = Config(hostname=HOST, local_domains=("tonk.com",))
    table = MemoryMap("genericstable", {"x@tonk.com": "y@qq.com", "x@other.com": "z@qq.com"})
    g = Generics.from_config(config, table)
    assert g.rewrite_address("x@tonk.com") == "y@qq.com"
    assert g.rewrite_address("x@other.com") == "x@other.com"
    config2 = Config(
        hostname=HOST,
        local_domains=("tonk.com",),
        routing=RoutingConfig(generics_domains=("other.com",), generics_envelope=True),
    )
    g2 = Generics.from_config(config2, table)
    assert g2.rewrite_address("x@tonk.com") == "x@tonk.com"
    assert g2.rewrite_envelope_sender("x@other.com") == "z@qq.com"


def test_trace_names_file_and_line() -> None:
    config = Config(
        hostname=HOST,
        local_domains=LOCAL_HOST_NAMES,
        routing=RoutingConfig(masquerade_as="163.com"),
    )
    r = SenderRewriter.from_config(config, seed_table())
    new, steps = r.trace("test@linux102.example.com")
    assert new == "yangmei@tonk.com"
    assert [str(s) for s in steps] == [
        "genericstable: test@linux102.example.com -> yangmei@tonk.com "
        "(key test@linux102.example.com) (/etc/mail/genericstable:2)"
    ]
    new, steps = r.trace("dl@linux102.example.com", envelope=True)
    assert (new, steps) == ("dl@linux102.example.com", ())


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_fuzz_sender_rewriter_never_raises(block: bytes) -> None:
    config = Config(
        hostname=HOST, local_domains=LOCAL_HOST_NAMES, routing=RoutingConfig(masquerade_as="a.b")
    )
    r = SenderRewriter.from_config(config, seed_table())
    out = r.rewrite_headers(block)
    assert [n for n, _ in headers.iter_fields(out)] == [n for n, _ in headers.iter_fields(block)]
