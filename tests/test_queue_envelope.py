"""Envelope files round-trip, whatever the addresses look like."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.queue.envelope import Envelope, EnvelopeError, EnvelopeRecipient, RcptState
from postoffice.queue.ids import new_queue_id

# Addresses as they reach the queue: quoted local parts, UTF-8 (RFC 6531), odd characters,
# even things no parser should have let through (newlines, quotes, backslashes, colons).
weird = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=60
) | st.sampled_from(
    [
        '"john doe"@example.org',
        '"a\\"b"@example.org',
        "用户@例子.广告",
        "postmaster",
        "x@[IPv6:2001:db8::1]",
        'a\nrcpt: {"address": "evil"}@x',
        "key: value@x",
        "",
    ]
)

recipients = st.builds(
    EnvelopeRecipient,
    address=weird,
    notify=st.none() | st.frozensets(st.sampled_from(["SUCCESS", "FAILURE", "DELAY", "NEVER"])),
    orcpt=st.none() | weird,
    state=st.sampled_from(list(RcptState)),
    reason=weird,
    sender=weird,
)

envelopes = st.builds(
    Envelope,
    queue_id=st.builds(new_queue_id),
    sender=weird,
    recipients=st.lists(recipients, min_size=1, max_size=5).map(tuple),
    arrival_time=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    size=st.integers(min_value=0, max_value=2**40),
    body_type=st.sampled_from(["7BIT", "8BITMIME", "BINARYMIME"]),
    smtputf8=st.booleans(),
    ret=st.none() | st.sampled_from(["FULL", "HDRS"]),
    envid=st.none() | weird,
    client_address=weird,
    client_name=weird,
    helo=weird,
    protocol=st.sampled_from(["ESMTP", "ESMTPSA", "SMTP", "local"]),
    local_submission=st.booleans(),
    attempts=st.integers(min_value=0, max_value=10_000),
    next_attempt=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    last_reason=weird,
)


@given(envelopes)
def test_round_trip(env: Envelope) -> None:
    data = env.to_bytes()
    assert data.startswith(b"version: 1\n")
    assert Envelope.from_bytes(data) == env


@given(envelopes)
def test_one_line_per_field(env: Envelope) -> None:
    lines = env.to_bytes().decode().splitlines()
    assert sum(1 for line in lines if line.startswith("rcpt: ")) == len(env.recipients)


def test_unknown_keys_are_kept() -> None:
    env = Envelope(
        queue_id=new_queue_id(), sender="a@b", recipients=(EnvelopeRecipient(address="c@d"),),
        arrival_time=1.0,
    )  # fmt: skip
    data = env.to_bytes() + b'future_key: {"x": 1}\n'
    again = Envelope.from_bytes(data)
    assert again.extra == (("future_key", '{"x": 1}'),)
    assert Envelope.from_bytes(again.to_bytes()) == again


@pytest.mark.parametrize(
    "data",
    [b"", b"version: 2\n", b"\xff\xfe", b'version: 1\nid: "X"\n', b"version: 1\nnonsense\n"],
)
def test_unreadable(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_bytes(data)


def test_a_recipients_own_sender_is_written_only_when_set() -> None:
    owned = EnvelopeRecipient(address="m@x.example", sender="owner-list@x.example")
    plain = EnvelopeRecipient(address="o@x.example")
    env = Envelope(
        queue_id=new_queue_id(), sender="a@b.example", recipients=(owned, plain), arrival_time=1.0
    )
    lines = env.to_bytes().decode().splitlines()
    rcpts = [line for line in lines if line.startswith("rcpt: ")]
    assert '"sender": "owner-list@x.example"' in rcpts[0]
    assert "sender" not in rcpts[1]
    again = Envelope.from_bytes(env.to_bytes())
    assert again == env
    assert [again.sender_for(r) for r in again.recipients] == [
        "owner-list@x.example",
        "a@b.example",
    ]


def test_files_without_a_recipient_sender_stay_readable() -> None:
    old = (
        b'version: 1\nid: "Q1"\nsender: ""\narrival: 5.0\n'
        b'rcpt: {"address": "m@x.example", "state": "pending"}\n'
    )
    env = Envelope.from_bytes(old)
    (rcpt,) = env.recipients
    assert rcpt.sender == "" and env.sender_for(rcpt) == ""
