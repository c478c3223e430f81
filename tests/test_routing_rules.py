"""The rule modules of routing/ one by one: keys, values, target kinds, file grammars."""

from __future__ import annotations

from pathlib import Path

import pytest

from postoffice.maps.interfaces import MemoryMap
from postoffice.routing import aliases, dotqmail, forward, mailertable, users, virtual
from postoffice.routing.aliases import Addr, parse_address
from postoffice.smtp.replies import Reply
from test_routing_support import TOOLS

DEFAULT = Reply(code=550, enhanced="5.1.1", text="User unknown")

# --- virtusertable -------------------------------------------------------------------


def test_virtual_keys_without_detail() -> None:
    assert [k for k, _, _ in virtual.keys("Joe", "bar.com", "+")] == ["joe@bar.com", "@bar.com"]


def test_virtual_keys_follow_sendmails_order_for_detail() -> None:
    keys = [k for k, _, _ in virtual.keys("old+news", "foo.org", "+")]
    assert keys == [
        "old+news@foo.org",
        "old++@foo.org",
        "old+*@foo.org",
        "old@foo.org",
        "++@foo.org",
        "+*@foo.org",
        "@foo.org",
    ]


def test_virtual_keys_empty_detail_skip_the_non_empty_wildcards() -> None:
    keys = [k for k, _, _ in virtual.keys("user+", "foo.org", "+")]
    assert "user++@foo.org" not in keys and "++@foo.org" not in keys
    assert "user+*@foo.org" in keys and "+*@foo.org" in keys


def test_virtual_keys_use_the_configured_delimiter() -> None:
    keys = [k for k, _, _ in virtual.keys("joe-list", "q.org", "-")]
    assert keys[:4] == ["joe-list@q.org", "joe--@q.org", "joe-*@q.org", "joe@q.org"]


def test_virtual_keys_never_split_quoted_local_parts() -> None:
    keys = virtual.keys('"a+b"', "q.org", "+")
    assert [k for k, _, _ in keys] == ['"a+b"@q.org', "@q.org"]


def test_substitute_percent_1_2_3() -> None:
    assert virtual.substitute("%1@example.com", "someone", "", "+") == "someone@example.com"
    assert virtual.substitute("new+%2@x", "old", "news", "+") == "new+news@x"
    assert virtual.substitute("%1%3@x", "joe", "tag", "+") == "joe+tag@x"
    assert virtual.substitute("%1%3@x", "joe", "", "+") == "joe@x"
    assert virtual.substitute("100%%-%1", "a", "", "+") == "100%-a"
    assert virtual.substitute("%4 %x", "a", "", "+") == "%4 %x"


@pytest.mark.parametrize(
    ("value", "reply"),
    [
        ("error:5.1.1:550 User gone", (550, "5.1.1", "User gone")),
        ("error:5.7.0:550 Address invalid", (550, "5.7.0", "Address invalid")),
        ("error:nouser 550 No such user here", (550, "5.1.1", "No such user here")),
        ("error:nouser No such user", (550, "5.1.1", "No such user")),
        ("error:tempfail 451 Try later", (451, "4.0.0", "Try later")),
        ("error:550 Go away", (550, "5.1.1", "Go away")),
        ("error:550 5.7.1 Go away", (550, "5.7.1", "Go away")),
        ("error:No such user", (550, "5.1.1", "No such user")),  # seed 002
        ("error:you are wrong", (550, "5.1.1", "you are wrong")),  # seed 002
        ("ERROR:4.2.2:452 full", (452, "4.2.2", "full")),
        ("error:5.1.1:450 mismatch", (450, "4.1.1", "mismatch")),
        ("error:", (550, "5.1.1", "User unknown")),
        ('error:5.1.1:550 "quoted text"', (550, "5.1.1", "quoted text")),
        ("error:550 a\x00b", (550, "5.1.1", "a b")),
    ],
)
def test_parse_error(value: str, reply: tuple[int, str, str]) -> None:
    got = virtual.parse_error(value, default=DEFAULT)
    assert (got.code, got.enhanced, got.text) == reply


def test_virtual_lookup_prefers_the_most_specific_key() -> None:
    vt = MemoryMap("virtusertable", {"@foo.org": "catch@x", "joe@foo.org": "joe@x"})
    m = virtual.lookup(vt, "JOE", "foo.org", "+", default_error=DEFAULT)
    assert m is not None and m.key == "joe@foo.org" and m.value == "joe@x"
    m = virtual.lookup(vt, "ann+tag", "foo.org", "+", default_error=DEFAULT)
    assert m is not None and m.key == "@foo.org"
    assert virtual.lookup(vt, "joe", "bar.org", "+", default_error=DEFAULT) is None


# --- mailertable ---------------------------------------------------------------------


def test_mailertable_keys_most_to_least_qualified() -> None:
    assert mailertable.keys("host.CS.Example.COM.") == [
        ("host.cs.example.com", ""),
        (".cs.example.com", "host"),
        (".example.com", "host.cs"),
        (".com", "host.cs.example"),
        (".", "host.cs.example.com"),
    ]


@pytest.mark.parametrize(
    ("value", "kind", "nexthop", "user"),
    [
        ("smtp:[mx.example.net]", "remote", "[mx.example.net]", ""),
        ("smtp:relay.example.net", "remote", "relay.example.net", ""),
        ("esmtp:[10.0.0.1]:2525", "remote", "[10.0.0.1]:2525", ""),
        ("relay:hub.example.net", "remote", "hub.example.net", ""),
        ("smtp:", "remote", "", ""),
        ("local:postmaster", "local", "", "postmaster"),
        ("local:", "local", "", ""),
        ("uucp-new:uuhost1", "error", "", ""),
        ("no mailer here", "error", "", ""),
    ],
)
def test_mailertable_values(value: str, kind: str, nexthop: str, user: str) -> None:
    route = mailertable.lookup(MemoryMap("mailertable", {".example.org": value}), "a.example.org")
    assert route is not None
    assert (route.kind, route.nexthop, route.user) == (kind, nexthop, user)
    if kind == "error":
        assert route.reply is not None and route.reply.code == 451


def test_mailertable_percent_1_and_error() -> None:
    mt = MemoryMap(
        "mailertable",
        {".my.domain": "smtp:%1.gw.my.domain", "bad.org": "error:5.1.2:550 No such domain"},
    )
    route = mailertable.lookup(mt, "h.sub.my.domain")
    assert route is not None and route.nexthop == "h.sub.gw.my.domain"
    route = mailertable.lookup(mt, "bad.org")
    assert route is not None and route.reply == Reply(
        code=550, enhanced="5.1.2", text="No such domain"
    )
    assert mailertable.lookup(mt, "my.domain") is None  # ".my.domain" matches only below it
    assert mailertable.lookup(mt, "[192.0.2.1]") is None


# --- aliases ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "kind", "value"),
    [
        ("dl", "address", "dl"),
        ("dl@qq.com", "address", "dl@qq.com"),
        ('"|/usr/bin/vacation dl"', "program", "/usr/bin/vacation dl"),
        ("|/usr/bin/ticket", "program", "/usr/bin/ticket"),
        ("/var/log/admin.mbox", "file", "/var/log/admin.mbox"),
        ('"/var/log/x y"', "file", "/var/log/x y"),
        (":include:/etc/mail/users", "include", "/etc/mail/users"),
        (":INCLUDE: /etc/mail/users", "include", "/etc/mail/users"),
        ("\\dl", "direct", "dl"),
        ('"john doe"@example.com', "address", '"john doe"@example.com'),
    ],
)
def test_classify(target: str, kind: str, value: str) -> None:
    assert aliases.classify(target) == (kind, value)


def test_alias_keys_with_detail() -> None:
    assert aliases.alias_keys("User+Tag", "+") == ["user+tag", "user+*", "user"]
    assert aliases.alias_keys("a+b+c", "+") == ["a+b+c", "a+b+*", "a+b", "a+*", "a"]
    assert aliases.alias_keys("plain", "+") == ["plain"]


def test_alias_lookup_never_for_quoted_names() -> None:
    m = MemoryMap("aliases", {'"dl"': "x", "dl": "y"})
    assert aliases.lookup(m, '"dl"', "+") is None
    entry = aliases.lookup(m, "DL", "+")
    assert entry is not None and entry.value == "y"


def test_owner_of_a_list() -> None:
    m = MemoryMap(
        "aliases",
        {"staff": "a, b", "owner-staff": "alice", "team": "c", "owner-team": "a, b"},
    )
    assert aliases.owner(m, "staff", "ex.com") == ("alice@ex.com", m.lookup("owner-staff"))
    found = aliases.owner(m, "team", "ex.com")
    assert found is not None and found[0] == "owner-team@ex.com"  # not an address: owner-LIST
    assert aliases.owner(m, "nobody", "ex.com") is None
    assert aliases.owner(m, "owner-staff", "ex.com") is None


# --- address normalisation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Joe@Example.COM.", Addr("Joe", "example.com", True)),
        ("<joe@example.com>", Addr("joe", "example.com", True)),
        ("@relay.org,@hop.org:joe@example.com", Addr("joe", "example.com", True)),
        ("a%b@example.com", Addr("a%b", "example.com", True)),
        ("host!user@example.com", Addr("host!user", "example.com", True)),
        ('"john doe"@example.com', Addr('"john doe"', "example.com", True)),
        ('"a@b"@example.com', Addr('"a@b"', "example.com", True)),
        ("postmaster", Addr("postmaster", "home.test", False)),
        ("joe@[192.0.2.1]", Addr("joe", "[192.0.2.1]", True)),
    ],
)
def test_parse_address(text: str, expected: Addr) -> None:
    assert parse_address(text, "home.test") == expected


@pytest.mark.parametrize(
    "text",
    ["", "@", "joe@", "@relay.org", "a b@example.com", "joe@exa mple.com", '"open@x', "a\nb@c"],
)
def test_parse_address_refuses(text: str) -> None:
    assert parse_address(text, "home.test") is None


# --- users --------------------------------------------------------------------------


def test_splits_longest_user_first() -> None:
    assert users.splits("mary-jane-news", "-") == [("mary-jane", "news"), ("mary", "jane-news")]
    assert users.splits("joe", "+") == []
    assert users.splits("+joe", "+") == []
    assert users.splits("joe+", "+") == [("joe", "")]
    assert users.splits('"a+b"', "+") == []
    assert users.splits("a+b", "") == []


def test_fill_mailbox_like_delivery_local() -> None:
    t = "maildir:/srv/mail/{domain}/{user}"
    assert users.fill_mailbox(t, "Alice", "Example.com") == "maildir:/srv/mail/example.com/alice"
    assert users.fill_mailbox("mbox:/m/{address}", '"j d"', "x.org") == "mbox:/m/j d@x.org"
    for bad in ("../etc", ".hidden", "a/b", "a\x00b", "a\\b", ""):
        with pytest.raises(users.UnsafeName):
            users.fill_mailbox(t, bad, "example.com")
    with pytest.raises(users.UnsafeName):
        users.fill_mailbox(t, "alice", "..")


# --- .forward and .qmail -----------------------------------------------------------


def test_forward_paths_in_sendmails_order() -> None:
    paths = forward.forward_paths("/home/dl", detail="news", hostname="linux102.example.com")
    assert paths == [
        "/home/dl/.forward.linux102+news",
        "/home/dl/.forward+news",
        "/home/dl/.forward.linux102",
        "/home/dl/.forward",
    ]
    assert forward.forward_paths("/h", detail="../x", hostname="")[-1] == "/h/.forward"
    assert "/h/.forward+../x" not in forward.forward_paths("/h", detail="../x", hostname="")


def test_parse_forward_lines() -> None:
    text = '# mine\n\\dl, dl@qq.com\n\n  "|/usr/bin/vacation dl"\n'
    found = forward.parse_forward(text, TOOLS.parse_targets)
    assert found == [("\\dl", 2), ("dl@qq.com", 2), ("|/usr/bin/vacation dl", 4)]


def test_parse_dotqmail() -> None:
    text = (
        "# comment\n|preline /usr/ucb/vacation djb\n&me@new.job.com\nme2@new.job.com\n"
        "/home/djb/Mailbox.sos\n./Maildir/\n\n& bad\n&me@x (comment)\n?what\n"
    )
    found, problems = dotqmail.parse_dotqmail(text)
    assert [(i.kind, i.value, i.line) for i in found] == [
        ("program", "preline /usr/ucb/vacation djb", 2),
        ("forward", "me@new.job.com", 3),
        ("forward", "me2@new.job.com", 4),
        ("mbox", "/home/djb/Mailbox.sos", 5),
        ("maildir", "./Maildir/", 6),
    ]
    assert [p.split(":")[0] for p in problems] == ["line 8", "line 9", "line 10"]


def test_qmail_names() -> None:
    assert dotqmail.qmail_names("") == [".qmail"]
    assert dotqmail.qmail_names("Foo-Bar") == [
        ".qmail-foo-bar",
        ".qmail-foo-default",
        ".qmail-default",
    ]
    assert dotqmail.qmail_names("a.b") == [".qmail-a:b", ".qmail-default"]
    assert dotqmail.qmail_names("x/y") == []


def test_read_home_file_states(tmp_path: Path) -> None:
    f = tmp_path / ".forward"
    assert forward.read_home_file(str(f), uid=0, check_file=None).status == "missing"
    f.write_text("dl\n")
    f.chmod(0o644)
    got = forward.read_home_file(str(f), uid=0, check_file=None)
    assert (got.status, got.text) == ("ok", "dl\n")
    f.chmod(0o666)
    unsafe = forward.read_home_file(str(f), uid=0, check_file=TOOLS.check_file)
    assert unsafe.status == "unsafe" and "writable" in unsafe.problem
    assert forward.read_home_file(str(tmp_path), uid=0, check_file=None).status == "unreadable"
