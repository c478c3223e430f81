"""Modified UTF-7 (RFC 3501 §5.1.3): examples, refusals, round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap import mutf7

EXAMPLES = [
    ("INBOX", "INBOX"),
    ("Sent Items", "Sent Items"),
    ("&", "&-"),
    ("Tom & Jerry", "Tom &- Jerry"),
    # RFC 3501 §5.1.3's example
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("é", "&AOk-"),
    ("éé", "&AOkA6Q-"),
    ("😀", "&2D3eAA-"),  # a surrogate pair
    ("a\tb", "a&AAk-b"),  # control characters are encoded
    ("", ""),
]


@pytest.mark.parametrize(("name", "wire"), EXAMPLES)
def test_examples_both_ways(name: str, wire: str) -> None:
    assert mutf7.encode(name) == wire
    assert mutf7.decode(wire) == name
    assert mutf7.is_valid(wire)


@pytest.mark.parametrize(
    "wire",
    [
        "&",  # no closing "-"
        "a&AOk",  # no closing "-"
        "&AOk-&AOk-",  # adjacent runs: the canonical form is &AOkA6Q-
        "&AGE-",  # "a" must stand for itself
        "&ACY-",  # "&" must be "&-"
        "&AOl-",  # non-zero padding bits
        "&AO-",  # an odd number of octets
        "&A-",  # bad base64 length
        "&AOk/-",  # "/" is "," in modified base64
        "&AOk=-",  # no padding
        "&2D0-",  # a lone high surrogate
        "&3gA-",  # a lone low surrogate
        "é",  # 8-bit outside base64
        "a\tb",  # a control character outside base64
        "a\x7fb",
    ],
)
def test_non_canonical_forms_are_refused(wire: str) -> None:
    with pytest.raises(ValueError):
        mutf7.decode(wire)
    assert not mutf7.is_valid(wire)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        mutf7.encode("a\ud800b")


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_round_trip(name: str) -> None:
    wire = mutf7.encode(name)
    assert wire.isascii()
    assert mutf7.decode(wire) == name


@settings(max_examples=200)
@given(st.text())
def test_random_text_never_raises_anything_but_value_error(text: str) -> None:
    try:
        name = mutf7.decode(text)
    except ValueError:
        return
    assert mutf7.encode(name) == text


@settings(max_examples=200)
@given(st.text(alphabet="&-AOkZz09+,/=ab", max_size=20))
def test_near_misses_decode_only_canonically(text: str) -> None:
    if mutf7.is_valid(text):
        assert mutf7.encode(mutf7.decode(text)) == text
