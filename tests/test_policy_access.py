"""policy/access: sendmail access map values, keys and precedence (cf/README
"ANTI-SPAM CONFIGURATION CONTROL", cf/m4/proto.m4), over a real text map so
every result names its file and line. Seed 002's examples included."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.maps.interfaces import MemoryMap
from postoffice.maps.registry import open_map
from postoffice.policy.access import (
    ACCESS_DENIED,
    AccessMap,
    Action,
    bracket_keys,
    domain_keys,
    ip_keys,
    parse_value,
)
from postoffice.smtp.replies import Reply

SEED_002 = """\
# seed 002: /etc/mail/access
localhost.localdomain           RELAY
localhost                       RELAY
127.0.0.1                       RELAY
192.168.0           RELAY
140.116.44.125         RELAY
qq.com       DISCARD
192.168.1.100    DISCARD
dl@linux102.example.com  REJECT
from:dongliang@linux102.example.com REJECT
to:dongliang@linux102.example.com   REJECT
"""


def access_from(tmp_path: Path, text: str, name: str = "access") -> AccessMap:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return AccessMap(open_map("access", str(path)))


# --- values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "action", "reply"),
    [
        ("OK", Action.OK, None),
        ("relay", Action.RELAY, None),
        ("REJECT", Action.REJECT, None),
        ("Discard", Action.DISCARD, None),
        ("SKIP", Action.SKIP, None),
        ("ERROR:5.7.1:550 Go away", Action.ERROR, Reply.of(550, "5.7.1", "Go away")),
        ('ERROR:5.7.1:"550 Go away now"', Action.ERROR, Reply.of(550, "5.7.1", "Go away now")),
        (
            'ERROR:"550 We don\'t accept mail"',
            Action.ERROR,
            Reply.of(550, "5.0.0", "We don't accept mail"),
        ),
        ("ERROR:550 Spam not accepted", Action.ERROR, Reply.of(550, "5.0.0", "Spam not accepted")),
        ("ERROR:4.2.2:450 mailbox full", Action.ERROR, Reply.of(450, "4.2.2", "mailbox full")),
        ("ERROR:450 later", Action.ERROR, Reply.of(450, "4.0.0", "later")),
        ('"550 deprecated form"', Action.ERROR, Reply.of(550, "5.0.0", "deprecated form")),
        ("553 also deprecated", Action.ERROR, Reply.of(553, "5.0.0", "also deprecated")),
        ("ERROR:550", Action.ERROR, Reply.of(550, "5.0.0", "Access denied")),
    ],
)
def test_values(text: str, action: Action, reply: Reply | None) -> None:
    value = parse_value(text)
    assert value.action is action
    assert value.reply == reply
    assert value.problem == ""


def test_mismatched_status_class_is_corrected() -> None:
    value = parse_value("ERROR:5.2.2:450 mailbox full")
    assert value.reply == Reply.of(450, "4.2.2", "mailbox full")
    assert "does not match" in value.problem


@pytest.mark.parametrize("text", ["RELAYY", "ERROR:250 fine", "ERROR:hello", "maybe"])
def test_broken_values_refuse_and_say_why(text: str) -> None:
    value = parse_value(text)
    assert value.action is Action.REJECT
    assert value.reply == ACCESS_DENIED
    assert value.problem


def test_quarantine_is_ignored() -> None:
    assert parse_value("QUARANTINE:look at it").action is Action.IGNORED


@given(st.text(max_size=80))
def test_parse_value_never_raises(text: str) -> None:
    value = parse_value(text)
    if value.reply is not None:
        assert 400 <= value.reply.code < 600


# --- keys -------------------------------------------------------------------------


def test_ip_keys() -> None:
    assert ip_keys("192.168.1.100") == ["192.168.1.100", "192.168.1", "192.168", "192"]
    assert ip_keys("::ffff:192.0.2.1")[0] == "192.0.2.1"
    keys = ip_keys("2001:db8::1")
    assert keys[0] == "IPv6:2001:db8::1"
    assert "IPv6:2001:db8:0:0:0:0:0:1" in keys
    assert "IPv6:2001:db8" in keys and "IPv6:2001:0db8" in keys
    assert keys.index("IPv6:2001:db8:0") < keys.index("IPv6:2001:db8") < keys.index("IPv6:2001")
    assert ip_keys("not an address") == []


def test_domain_and_bracket_keys() -> None:
    assert domain_keys("Mail.Sub.Example.COM.") == [
        "mail.sub.example.com",
        "sub.example.com",
        "example.com",
        "com",
    ]
    assert bracket_keys("192.0.2.7") == ["[192.0.2.7]", "[192.0.2]", "[192.0]", "[192]"]
    assert domain_keys("[192.0.2.7]")[0] == "[192.0.2.7]"


# --- seed 002 ---------------------------------------------------------------------


def test_seed_002_connect(tmp_path: Path) -> None:
    access = access_from(tmp_path, SEED_002)
    found = access.check_connect("127.0.0.1", "localhost")
    assert found is not None and found.action is Action.RELAY
    assert found.key == "localhost" and found.where == f"{tmp_path}/access:3"
    found = access.check_connect("127.0.0.1", None)  # no name: the address decides
    assert found is not None and found.action is Action.RELAY and found.key == "127.0.0.1"
    assert found.where.endswith("access:4")
    found = access.check_connect("192.168.0.77")
    assert found is not None and found.action is Action.RELAY and found.key == "192.168.0"
    found = access.check_connect("192.168.1.100")
    assert found is not None and found.action is Action.DISCARD
    assert access.check_connect("192.168.1.101") is None
    found = access.check_connect("203.0.113.5", "mx3.qq.com")
    assert found is not None and found.action is Action.DISCARD and found.key == "qq.com"
    assert access.check_connect("127.0.0.2") is None


def test_seed_002_from_and_to(tmp_path: Path) -> None:
    access = access_from(tmp_path, SEED_002)
    found = access.check_from("dl@linux102.example.com")
    assert found is not None and found.action is Action.REJECT
    assert found.reply == ACCESS_DENIED
    found = access.check_from("DongLiang@linux102.example.com")  # keys are case-folded
    assert found is not None and found.key == "from:dongliang@linux102.example.com"
    found = access.check_from("pony@qq.com")
    assert found is not None and found.action is Action.DISCARD
    assert access.check_from("lee@linux102.example.com") is None
    found = access.check_to("dongliang@linux102.example.com", local=True)
    assert found is not None and found.action is Action.REJECT and found.key.startswith("to:")
    assert access.check_from("") is None  # <> is never looked up


# --- precedence -------------------------------------------------------------------


PRECEDENCE = """\
Connect:example.com          RELAY
Connect:192.0.2              REJECT
Connect:192.0.2.9            OK
Connect:128.32               RELAY
Connect:128.32.2             SKIP
Connect:[198.51.100.7]       OK
Connect:[198.51.100]         ERROR:5.7.1:550 Unnamed hosts from that net may not send
Connect:IPv6:2001:db8:1      RELAY
Connect:IPv6:2001:db8:1:2::7 REJECT
untagged.example             REJECT
Connect:untagged.example     OK
From:spammer@aol.com         REJECT
From:cyberspammer.com        ERROR:"550 We don't accept mail from spammers"
From:okay.cyberspammer.com   OK
From:postmaster@             OK
From:good@another.dom        OK
From:another.dom             REJECT
From:list+*@example.org      DISCARD
From:list@example.org        OK
From:FREE.STEALTH.MAILER@    ERROR:550 Spam not accepted
To:badlocaluser@             ERROR:5.2.1:550 Mailbox disabled for badlocaluser
To:host.my.tld               ERROR:550 That host does not accept mail
To:user@other.my.tld         ERROR:550 Mailbox disabled for this recipient
To:friend.example            RELAY
sub.friend.example           REJECT
"""


@pytest.fixture
def access(tmp_path: Path) -> AccessMap:
    return access_from(tmp_path, PRECEDENCE)


def test_full_address_before_network(access: AccessMap) -> None:
    found = access.check_connect("192.0.2.9")
    assert found is not None and found.action is Action.OK
    found = access.check_connect("192.0.2.10")
    assert found is not None and found.action is Action.REJECT


def test_name_before_address(access: AccessMap) -> None:
    found = access.check_connect("192.0.2.10", "mx.example.com")
    assert found is not None and found.action is Action.RELAY
    assert access.check_connect_ip("192.0.2.10") is not None


def test_skip_exempts_a_subnet(access: AccessMap) -> None:
    found = access.check_connect("128.32.7.1")
    assert found is not None and found.action is Action.RELAY
    assert access.check_connect("128.32.2.1") is None


def test_unconfirmed_clients_are_their_bracketed_address(access: AccessMap) -> None:
    found = access.check_connect("198.51.100.7")
    assert found is not None and found.action is Action.OK
    found = access.check_connect("198.51.100.8")
    assert found is not None and found.action is Action.ERROR
    assert found.reply == Reply.of(550, "5.7.1", "Unnamed hosts from that net may not send")
    assert access.check_connect("198.51.100.8", "named.example.net") is None


def test_ipv6_networks(access: AccessMap) -> None:
    found = access.check_connect("2001:db8:1:5::1")
    assert found is not None and found.action is Action.RELAY
    found = access.check_connect("2001:db8:1:2::7")
    assert found is not None and found.action is Action.REJECT
    assert access.check_connect("2001:db8:2::1") is None


def test_tagged_before_untagged(access: AccessMap) -> None:
    found = access.check_connect("203.0.113.1", "untagged.example")
    assert found is not None and found.action is Action.OK
    found = access.check_from("someone@untagged.example")  # untagged applies to From: too
    assert found is not None and found.action is Action.REJECT and found.key == "untagged.example"


def test_longest_domain_first(access: AccessMap) -> None:
    found = access.check_from("x@okay.cyberspammer.com")
    assert found is not None and found.action is Action.OK
    found = access.check_from("x@mail.cyberspammer.com")
    assert found is not None and found.action is Action.ERROR
    assert found.reply is not None and found.reply.text == "We don't accept mail from spammers"


def test_address_before_user_before_domain(access: AccessMap) -> None:
    found = access.check_from("good@another.dom")
    assert found is not None and found.action is Action.OK
    found = access.check_from("bad@another.dom")
    assert found is not None and found.action is Action.REJECT
    # sendmail's SearchList order is <F:user@domain> <U:user@> <D:domain>
    found = access.check_from("postmaster@another.dom")
    assert found is not None and found.action is Action.OK and found.key == "from:postmaster@"
    found = access.check_from("free.stealth.mailer@anywhere.example")
    assert found is not None and found.action is Action.ERROR


def test_detail_variants(access: AccessMap) -> None:
    found = access.check_from("list+bounces@example.org")
    assert found is not None and found.action is Action.DISCARD and "list+*@" in found.key
    found = access.check_from("list@example.org")
    assert found is not None and found.action is Action.OK


def test_to_entries(access: AccessMap) -> None:
    found = access.check_to("badlocaluser@my.tld", local=True)
    assert found is not None and found.reply == Reply.of(
        550, "5.2.1", "Mailbox disabled for badlocaluser"
    )
    assert access.check_to("badlocaluser@elsewhere.example", local=False) is None
    found = access.check_to("anyone@host.my.tld")
    assert found is not None and found.action is Action.ERROR
    found = access.check_to("user@other.my.tld")
    assert found is not None and found.action is Action.ERROR
    found = access.check_relay_to("deep.friend.example")
    assert found is not None and found.action is Action.RELAY
    found = access.check_relay_to("x.sub.friend.example")  # the longer entry wins
    assert found is not None and found.action is Action.REJECT


def test_result_describes_itself(access: AccessMap, tmp_path: Path) -> None:
    found = access.check_connect("192.0.2.10")
    assert found is not None
    assert found.describe() == f"access connect:192.0.2 REJECT ({tmp_path}/access:2)"


def test_memory_map_and_empty_map() -> None:
    access = AccessMap(MemoryMap("access", {"connect:10": "RELAY"}))
    found = access.check_connect("10.1.2.3")
    assert found is not None and found.action is Action.RELAY and found.where == "(built-in)"
    assert AccessMap(MemoryMap("access", {})).check_connect("10.1.2.3") is None


def test_edited_file_is_reloaded(tmp_path: Path) -> None:
    access = access_from(tmp_path, "10.0.0.1 REJECT\n")
    found = access.check_connect("10.0.0.1")
    assert found is not None and found.action is Action.REJECT
    path = tmp_path / "access"
    path.write_text("10.0.0.1 RELAY\n# changed\n")
    assert access.reload_if_changed()
    found = access.check_connect("10.0.0.1")
    assert found is not None and found.action is Action.RELAY
