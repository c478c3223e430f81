"""The sendmail command's flag parser and input reader."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.cli.sendmail import UsageError, parse_args, read_message


def test_flags_in_sendmail_syntax() -> None:
    o = parse_args(["-t", "-oi", "-fme@example.org", "-F", "Me", "-N", "failure,delay",
                    "-R", "hdrs", "-V", "env1", "-B", "8BITMIME", "-odq", "-C/etc/x.toml",
                    "a@b.example", "--", "-c@d.example"])  # fmt: skip
    assert o.from_headers and not o.dot_ends
    assert o.sender == "me@example.org" and o.full_name == "Me"
    assert o.notify == frozenset({"FAILURE", "DELAY"}) and o.ret == "HDRS" and o.envid == "env1"
    assert o.body == "8BITMIME" and o.config == "/etc/x.toml"
    assert o.recipients == ["a@b.example", "-c@d.example"]


@pytest.mark.parametrize(
    "argv",
    [["-f"], ["-N", "never,success"], ["-R", "all"], ["-B", "binary"], ["-Z"], ["-bx"]],
)
def test_bad_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


def test_mode_bp_is_mailq() -> None:
    assert parse_args(["-bp"]).mode == "bp"


def test_a_lone_dot_ends_input_unless_i() -> None:
    data = b"Subject: x\n\nline\n.\nafter\n"
    assert read_message(io.BytesIO(data), dot_ends=True) == b"Subject: x\n\nline\n"
    assert read_message(io.BytesIO(data), dot_ends=False) == data


@given(st.lists(st.text(max_size=12), max_size=8))
def test_parser_only_raises_usage_errors(argv: list[str]) -> None:
    try:
        parse_args(argv)
    except UsageError:
        pass
