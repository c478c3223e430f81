"""Target specs round-trip through the envelope; transports are named by target."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.routing.targets import (
    File,
    Mailbox,
    Program,
    Refusal,
    Remote,
    Resolution,
    envelope_recipients,
    from_spec,
    to_spec,
    transport,
)
from postoffice.smtp.replies import Reply

TARGETS = [
    (Mailbox(address="a@x.example", spec="maildir:/m/a", user=""), "local"),
    (Program(address="l@x.example", command="/usr/bin/p -x", user="nobody", home="/"), "pipe"),
    (File(address="f@x.example", path="/var/log/f", user="nobody"), "file"),
    (Remote(address="r@y.example", nexthop=""), "smtp"),
    (Remote(address="r@y.example", nexthop="[mx.y.example]:2525"), "smtp"),
    (Remote(address="r@y.example", nexthop="lmtp:unix:/run/dovecot/lmtp"), "lmtp"),
    (Remote(address="r@y.example", nexthop="qmtp:mx.y.example"), "qmtp"),
    (Refusal(address="e@x.example", reply=Reply(code=550, enhanced="5.1.1", text="no")), "error"),
]


@pytest.mark.parametrize(("target", "name"), TARGETS)
def test_spec_round_trip_and_transport(target: object, name: str) -> None:
    spec = to_spec(target)  # type: ignore[arg-type]
    assert "\n" not in spec
    assert from_spec(target.address, spec) == target  # type: ignore[attr-defined]
    assert transport(target) == name  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_bad_specs_are_value_errors(spec: str) -> None:
    try:
        from_spec("a@b.example", spec)
    except ValueError:
        pass


def test_envelope_recipients_keep_the_original_address() -> None:
    res = Resolution(recipient="admin@x.example", targets=tuple(t for t, _ in TARGETS[:2]))
    rcpts = envelope_recipients(res, "admin@x.example", notify=frozenset({"FAILURE"}))
    assert [r.orig for r in rcpts] == ["admin@x.example", "admin@x.example"]
    assert [from_spec(r.address, r.target) for r in rcpts] == [t for t, _ in TARGETS[:2]]
    assert all(r.notify == frozenset({"FAILURE"}) for r in rcpts)


def test_envelope_recipients_carry_the_list_owner_as_their_sender() -> None:
    targets = tuple(t for t, _ in TARGETS)
    owned = Resolution(
        recipient="list@x.example", targets=targets, envelope_sender="owner-list@x.example"
    )
    rcpts = envelope_recipients(owned, "list@x.example")
    assert len(rcpts) == len(targets)
    assert {r.sender for r in rcpts} == {"owner-list@x.example"}  # refusals too: they bounce
    plain = Resolution(recipient="admin@x.example", targets=targets[:1])
    assert [r.sender for r in envelope_recipients(plain, "admin@x.example")] == [""]
