"""maps/aliases: the aliases(5) grammar, target lists, :include: files."""

from __future__ import annotations

from pathlib import Path

import pytest

from postoffice.maps.aliases import (
    AliasMap,
    parse_aliases,
    parse_targets,
    read_include,
    split_targets,
)

SEED_ALIASES = """\
# Basic system aliases -- these MUST be present.
mailer-daemon:  postmaster
postmaster:     root

# General redirections for pseudo accounts.
bin:            root
daemon:         root
adm:            root
decode:         root
#root:          your_account
admin:          test1,test2
dl:             dl,dl@163.com
"""


def values(text: str, file: str = "aliases") -> dict[str, str]:
    return {k: e.value for k, e in parse_aliases(text, file=file).entries.items()}


def test_seed_aliases() -> None:
    p = parse_aliases(SEED_ALIASES, file="/etc/aliases")
    assert p.problems == ()
    assert p.entries["mailer-daemon"].value == "postmaster"
    assert p.entries["admin"].value == "test1,test2"
    assert parse_targets(p.entries["dl"].value) == ["dl", "dl@163.com"]
    assert "root" not in p.entries
    assert p.entries["postmaster"].line == 3


def test_names_are_lower_cased_and_may_be_quoted() -> None:
    assert values('PostMaster: root\n"Odd Name": a\n') == {"postmaster": "root", "odd name": "a"}


def test_continuation_lines_join_with_one_space() -> None:
    text = "staff: alice,\n\tbob,\n    carol\nnext: x\n"
    p = parse_aliases(text, file="a")
    assert p.entries["staff"].value == "alice, bob, carol"
    assert p.entries["staff"].line == 1 and p.entries["next"].line == 4
    assert parse_targets(p.entries["staff"].value) == ["alice", "bob", "carol"]


def test_comments_and_blank_lines_inside_a_continuation() -> None:
    p = parse_aliases("list: a,\n# a note\n\n  b\n", file="a")
    assert p.problems == ()
    assert parse_targets(p.entries["list"].value) == ["a", "b"]


def test_hash_inside_an_entry_is_data() -> None:
    p = parse_aliases('t: "|/usr/bin/prog #1"\n', file="a")
    assert parse_targets(p.entries["t"].value) == ["|/usr/bin/prog #1"]


@pytest.mark.parametrize(
    ("value", "targets"),
    [
        ("alice, bob@example.net", ["alice", "bob@example.net"]),
        ('"|/usr/bin/prog arg"', ["|/usr/bin/prog arg"]),
        ("|/usr/bin/vacation alice", ["|/usr/bin/vacation alice"]),
        ('"|/usr/bin/prog a,b", c', ["|/usr/bin/prog a,b", "c"]),
        ('"/var/log/file"', ["/var/log/file"]),
        ("/var/log/admin.mbox, x", ["/var/log/admin.mbox", "x"]),
        ('"/var/log/with space"', ["/var/log/with space"]),
        ('"user name"@example.org', ['"user name"@example.org']),
        (":include:/etc/mail/staff.list, a", [":include:/etc/mail/staff.list", "a"]),
        (":INCLUDE: /etc/x", [":include:/etc/x"]),
        (':include:"/etc/with space"', [":include:/etc/with space"]),
        ("Alice Smith <alice@example.org>, bob (Bob B.)", ["alice@example.org", "bob"]),
        ('"Smith, Alice" <alice@example.org>', ["alice@example.org"]),
        ("alice bob", ["alice", "bob"]),
        ("\\bob, carol", ["\\bob", "carol"]),
        ("a,,b,", ["a", "b"]),
        ("", []),
    ],
)
def test_parse_targets(value: str, targets: list[str]) -> None:
    assert parse_targets(value) == targets


@pytest.mark.parametrize(
    ("value", "error"),
    [('"unclosed', "unclosed double quote"), ("a (x", "unclosed '('"), ("<a", "unclosed '<'")],
)
def test_unbalanced_lists_are_errors_but_parse_targets_still_answers(
    value: str, error: str
) -> None:
    assert split_targets(value)[1] == error
    assert isinstance(parse_targets(value), list)


def test_malformed_entries_are_reported_and_the_rest_works() -> None:
    text = (
        "good: a\n"
        "no colon here\n"
        "  continued\n"
        ": nameless\n"
        "empty:\n"
        "user@example.com: x\n"
        'quote: "unclosed\n'
        "two words: x\n"
        "ctl: a\x01b\n"
        "GOOD: dup\n"
        "last: z\n"
    )
    p = parse_aliases(text, file="/etc/aliases")
    assert set(p.entries) == {"good", "last"}
    assert p.entries["good"].value == "a"
    assert p.problems == (
        "/etc/aliases:2: missing ':' (write: name: target, target, ...)",
        "/etc/aliases:4: empty alias name",
        "/etc/aliases:5: empty: no targets",
        "/etc/aliases:6: user@example.com: cannot alias non-local names",
        "/etc/aliases:7: quote: unclosed double quote",
        "/etc/aliases:8: bad alias name 'two words' (quote a name with spaces)",
        "/etc/aliases:9: ctl: control character in entry",
        "/etc/aliases:10: good: duplicate alias name; the entry at line 1 is used",
    )


def test_continuation_at_the_start_and_bad_bytes() -> None:
    p = parse_aliases(b"  orphan\nok: a,\n  b\xff\n  c\n", file="a")
    assert p.problems == (
        "a:1: continuation line without an alias before it",
        "a:3: not valid UTF-8; line skipped",
    )
    assert parse_targets(p.entries["ok"].value) == ["a", "c"]


# --- :include: ------------------------------------------------------------------


def test_read_include(tmp_path: Path) -> None:
    f = tmp_path / "staff.list"
    f.write_text(
        "# the staff\nalice, bob@example.net\n\ncarol\n"
        '"|/usr/bin/archive staff"\n'
        'bad "quote\n'
        ":include:/etc/more.list\n"
    )
    targets, problems = read_include(str(f), safe_files=True)
    assert targets == [
        "alice",
        "bob@example.net",
        "carol",
        "|/usr/bin/archive staff",
        ":include:/etc/more.list",
    ]
    assert problems == [f"{f}:6: unclosed double quote; line skipped"]


def test_read_include_missing_and_unsafe(tmp_path: Path) -> None:
    targets, problems = read_include(str(tmp_path / "none"), safe_files=True)
    assert targets == [] and problems == [
        f"{tmp_path / 'none'}: cannot open :include: file: No such file or directory"
    ]
    f = tmp_path / "list"
    f.write_text("alice\n")
    f.chmod(0o646)
    targets, problems = read_include(str(f), safe_files=True)
    assert targets == []
    assert problems == [f"{f}: unsafe file refused: writable by others (mode 0646)"]
    assert read_include(str(f), safe_files=False) == (["alice"], [])


# --- AliasMap ---------------------------------------------------------------------


def test_alias_map(tmp_path: Path) -> None:
    f = tmp_path / "aliases"
    f.write_text(SEED_ALIASES + "broken\n")
    m = AliasMap(str(f))
    assert m.name == "aliases" and m.path == str(f)
    e = m.lookup("ADMIN")
    assert e is not None and e.value == "test1,test2" and e.where == f"{f}:11"
    assert len(m) == 8
    assert m.problems() == [f"{f}:13: missing ':' (write: name: target, target, ...)"]
    assert [x.key for x in m.entries()][:2] == ["mailer-daemon", "postmaster"]
    assert m.reload_if_changed() is False
