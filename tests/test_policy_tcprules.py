"""policy/tcprules: qmail's tcprules(1) syntax and tcpserver's matching order."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.policy.tcprules import (
    DEFAULT_RULE,
    TcpRules,
    candidate_keys,
    expand_address,
    parse_instructions,
    parse_tcprules,
)

QMAIL_EXAMPLE = """\
# /etc/tcp.smtp, qmail style
127.:allow,RELAYCLIENT=""
10.0.0.:allow,RELAYCLIENT="",MAXCONNIP="50"
192.168.1.1-99:deny
18.23.0.32:allow,RBLSMTPD=""
=mx.partner.example:allow,RELAYCLIENT=""
=.dialup.example:allow,RBLSMTPD="-Dynamic addresses may not send mail here"
::1:allow,RELAYCLIENT=""
2001:db8:bad::7:deny
2001:db8::allow,DATABYTES=/1000000/
:allow
"""


@pytest.fixture
def rules() -> TcpRules:
    return TcpRules.from_text(QMAIL_EXAMPLE, file="tcp.smtp")


def test_instructions() -> None:
    assert parse_instructions("allow") == (True, ())
    assert parse_instructions("deny") == (False, ())
    assert parse_instructions('allow,RELAYCLIENT="",X="a b"') == (
        True,
        (("RELAYCLIENT", ""), ("X", "a b")),
    )
    # "The quotes may be replaced by any repeated character" (tcprules(1)).
    assert parse_instructions('allow,MSG=/say "hi"/') == (True, (("MSG", 'say "hi"'),))
    for bad in ("permit", 'allow,X"', "allow,X=", 'allow,X="open', "allow,=1", 'allow X="1"'):
        with pytest.raises(ValueError):
            parse_instructions(bad)
    with pytest.raises(ValueError, match="not a number"):
        parse_instructions('allow,MAXCONNIP="lots"')


def test_addresses_expand() -> None:
    assert expand_address("192.168.1.1-3") == ["192.168.1.1", "192.168.1.2", "192.168.1.3"]
    assert expand_address("10.1-3.") == ["10.1.", "10.2.", "10.3."]
    assert len(expand_address("1.2.3.250-300")) == 6  # the top is capped at 255
    assert expand_address("10.0.0.0/8") == ["10."]
    assert expand_address("192.0.2.0/24") == ["192.0.2."]
    assert expand_address("192.0.2.5/32") == ["192.0.2.5"]
    assert len(expand_address("10.0.0.0/2")) == 64
    assert expand_address("172.16.0.0/12") == [f"172.{n}." for n in range(16, 32)]
    assert expand_address("=Mail.Example.COM") == ["=mail.example.com"]
    for bad in ("1.2.3.9-1", "1.2.x-4", "10.0.0.0/x", "2001:db8::/32", "a b", "1.2.3.4/40"):
        with pytest.raises(ValueError):
            expand_address(bad)


def test_order_of_candidates() -> None:
    assert candidate_keys("192.168.1.5", "a.dialup.example") == [
        "192.168.1.5",
        "=a.dialup.example",
        "192.168.1.",
        "192.168.",
        "192.",
        "=.dialup.example",
        "=.example",
        "=",
        "",
    ]
    v6 = ["2001:db8:1::5", "2001:db8:1::", "2001:db8:1:", "2001:db8:", "2001:", ""]
    assert candidate_keys("2001:db8:1::5") == v6
    assert candidate_keys("::ffff:10.0.0.1")[0] == "10.0.0.1"


def test_matching(rules: TcpRules) -> None:
    rule = rules.match("127.0.0.1")
    assert rule.allow and rule.relay_client and rule.address == "127."
    assert rule.where == "tcp.smtp:2"
    rule = rules.match("10.0.0.8")
    assert rule.limit("MAXCONNIP") == 50 and rule.limit("MAXMSGHOUR") is None
    rule = rules.match("192.168.1.50")
    assert not rule.allow and rule.address == "192.168.1.50" and rule.line == 4
    assert rules.match("192.168.1.100").address == ""  # beyond the range: the default
    rule = rules.match("18.23.0.32")
    assert rule.rblsmtpd == "" and not rule.relay_client
    rule = rules.match("203.0.113.9", "mx.partner.example")
    assert rule.relay_client and rule.address == "=mx.partner.example"
    rule = rules.match("203.0.113.10", "ppp-7.pool.dialup.example")
    assert rule.rblsmtpd == "-Dynamic addresses may not send mail here"
    assert rules.match("203.0.113.10").rblsmtpd is None  # no name: no = rule
    assert rules.match("::1").relay_client
    assert not rules.match("2001:db8:bad::7").allow
    rule = rules.match("2001:db8::99")
    assert rule.allow and rule.environment == {"DATABYTES": "1000000"}
    assert rules.match("198.51.100.1").describe() == "tcprules (default):allow (tcp.smtp:11)"


def test_exact_address_beats_host_and_host_beats_prefix() -> None:
    rules = TcpRules.from_text(
        "10.1.1.1:allow,WHO=/ip/\n=h.example:allow,WHO=/host/\n10.1.:allow,WHO=/net/\n"
        "=.example:allow,WHO=/domain/\n=:allow,WHO=/named/\n:deny\n"
    )
    assert rules.match("10.1.1.1", "h.example").environment["WHO"] == "ip"
    assert rules.match("10.1.1.2", "h.example").environment["WHO"] == "host"
    assert rules.match("10.1.1.2", "x.example").environment["WHO"] == "net"
    assert rules.match("10.2.0.1", "x.example").environment["WHO"] == "domain"
    assert rules.match("10.2.0.1", "x.other").environment["WHO"] == "named"
    assert not rules.match("10.2.0.1").allow


def test_no_rules_allow_everything() -> None:
    assert TcpRules.from_text("").match("192.0.2.1") is DEFAULT_RULE
    assert TcpRules.from_text("10.:deny\n").match("192.0.2.1") is DEFAULT_RULE


def test_problems_name_file_and_line() -> None:
    parsed = parse_tcprules(
        '10.:allow\n10.:deny\nbogus line\n1.2.3.9-1:deny\njoe@127.0.0.1:allow\n11.:allow,X="open\n',
        file="rules",
    )
    assert parsed.entries["10."].line == 1
    problems = "\n".join(parsed.problems)
    assert "rules:2: 10.: duplicate address; the rule at line 1 is used" in problems
    assert "rules:3: no ':allow' or ':deny'" in problems
    assert "rules:4: empty range" in problems
    assert "rules:5: joe@127.0.0.1: ident rules (user@) never match here" in problems
    assert "rules:6: setting X: value not closed" in problems
    assert "11." not in parsed.entries


def test_file_is_read_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "tcprules"
    path.write_text('127.:allow,RELAYCLIENT=""\n:deny\n')
    path.chmod(0o600)
    rules = TcpRules.open(str(path))
    assert not rules.match("192.0.2.1").allow
    assert rules.match("127.0.0.1").where == f"{path}:1"
    path.write_text(":allow\n")
    assert rules.reload_if_changed()
    assert rules.match("192.0.2.1").allow
    assert TcpRules.open(str(tmp_path / "missing")).match("192.0.2.1") is DEFAULT_RULE


def test_unsafe_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tcprules"
    path.write_text(":deny\n")
    path.chmod(0o666)
    rules = TcpRules.open(str(path), log=False)
    assert rules.match("192.0.2.1") is DEFAULT_RULE
    assert "unsafe file refused" in rules.problems()[0]


@given(st.text(max_size=200))
def test_parser_never_raises(text: str) -> None:
    parsed = parse_tcprules(text, file="f")
    for entry in parsed.entries.values():
        parse_instructions(entry.value)
