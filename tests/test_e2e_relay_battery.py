"""The open-relay battery over SMTP: every trick of the policy-level battery
(tests/test_policy_relay_battery.py TRICKS) sent as RCPT TO to a live server by
an untrusted, unauthenticated client must be refused — never a 2xx."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from conftest import LiveServer, make_site
from test_policy_relay_battery import TRICKS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    site = make_site(
        tmp_path_factory.mktemp("battery") / "site",
        extra_toml=(
            '[relay]\ntrusted_networks = ["10.9.9.9/32"]\n'  # 127.0.0.1 is an outsider
            "[policy]\naccept_unresolvable_domains = true\n"  # the test site has no DNS
        ),
    )
    s = LiveServer(site)
    yield s
    s.stop()


def test_the_battery_is_big_enough() -> None:
    assert len(TRICKS) >= 25


@pytest.mark.parametrize(("name", "recipient"), TRICKS, ids=[n for n, _ in TRICKS])
def test_trick_is_refused(server: LiveServer, name: str, recipient: str) -> None:
    path = recipient if recipient.startswith("<") else f"<{recipient}>"
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        s.ehlo("client.example.org")
        assert s.mail("x@example.org")[0] == 250
        s.send(f"RCPT TO:{path}\r\n".encode())  # raw: some tricks are UTF-8
        code, msg = s.getreply()
        assert code >= 400, f"{name}: {recipient} accepted: {code} {msg!r}"
        # and the legitimate recipient still works in the same transaction
        assert s.rcpt("alice@example.test")[0] == 250


def test_legitimate_cases_still_work(server: LiveServer, tmp_path: Path) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        s.ehlo("client.example.org")
        s.mail("x@example.org")
        assert s.rcpt("alice@example.test")[0] == 250
        assert s.rcpt("postmaster")[0] == 250
        assert s.rcpt("Bob@EXAMPLE.TEST")[0] == 250
