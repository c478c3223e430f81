"""sendmail's owner-LIST, end to end: a list's copies carry the owner as envelope sender.

SMTP in from an outside sender to an alias list that has an `owner-LIST`
alias: the members' copies have the owner as Return-Path, and a member's
failure is reported to the owner (which the aliases then expand), never
to the original sender. The owner is the `owner-LIST` value when that is
one address, else `owner-LIST@host` itself (sendmail alias.c; routing).
"""

from __future__ import annotations

import email
import smtplib
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from conftest import LiveServer, Site, make_site, wait_until

HOST = "linux102.example.com"
USERS = tuple(f"{u}@{HOST}" for u in ("dongliang", "lee", "dl"))
OUTSIDER = "sender@example.org"


def _site(tmp_path: Path, aliases: str) -> Site:
    site = make_site(tmp_path / "site", users=USERS, domains=("localhost", HOST))
    toml = site.config.read_text().replace('hostname = "mail.example.test"', f'hostname = "{HOST}"')
    site.config.write_text(toml)
    (site.root / "aliases").write_text(aliases)
    (site.root / "aliases").chmod(0o644)
    return site


@pytest.fixture
def serve() -> Iterator[list[LiveServer]]:
    servers: list[LiveServer] = []
    yield servers
    for s in servers:
        s.stop()


def _count(site: Site, user: str) -> int:
    return len(site.delivered(f"{user}@{HOST}"))


def _wait(site: Site, counts: dict[str, int]) -> None:
    assert wait_until(lambda: all(_count(site, u) == n for u, n in counts.items())), {
        u: _count(site, u) for u in counts
    }


def _failed_recipient(data: bytes) -> Message:
    dsn = email.message_from_bytes(data)
    assert dsn.get_content_type() == "multipart/report"
    parts = dsn.get_payload()
    assert isinstance(parts, list)
    fields: list[Message] = parts[1].get_payload()
    return fields[1]


def test_list_copies_come_from_the_owner_and_failures_go_to_it(
    tmp_path: Path, serve: list[LiveServer]
) -> None:
    site = _site(tmp_path, "list: dongliang, ghost\nowner-list: lee\n")
    server = LiveServer(site)
    serve.append(server)
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        refused = s.sendmail(OUTSIDER, [f"list@{HOST}"], "Subject: to the list\r\n\r\nhi\r\n")
    assert refused == {}
    _wait(site, {"dongliang": 1, "lee": 1})  # lee, the owner, gets the bounce for ghost
    copy = site.delivered(f"dongliang@{HOST}")[0].read_bytes()
    assert copy.startswith(f"Return-Path: <lee@{HOST}>\n".encode())  # `owner-list: lee`
    bounce = site.delivered(f"lee@{HOST}")[0].read_bytes()
    assert bounce.startswith(b"Return-Path: <>\n")
    assert f"To: lee@{HOST}".encode() in bounce
    recipient = _failed_recipient(bounce)
    assert recipient["Action"] == "failed" and recipient["Status"].startswith("5.")
    assert "ghost" in recipient["Final-Recipient"]
    # That was the only notification: nothing was ever addressed to the outside sender.
    m = server.wait_for(r"(\S+): sender non-delivery notification: (\S+)")
    server.wait_for(rf"{m.group(2)}: removed")
    assert sum("non-delivery notification" in line for line in server.lines) == 1
    assert not any(f"to=<{OUTSIDER}>" in line for line in server.lines)
    assert not [p for p in (site.state / "queue").rglob("*") if p.is_file()]


def test_an_owner_that_is_a_list_is_the_owner_alias_itself(
    tmp_path: Path, serve: list[LiveServer]
) -> None:
    site = _site(tmp_path, "staff: dongliang\nowner-staff: lee, dl\n")
    server = LiveServer(site)
    serve.append(server)
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        s.sendmail(OUTSIDER, [f"staff@{HOST}"], "Subject: staff\r\n\r\nhi\r\n")
    _wait(site, {"dongliang": 1})  # all local: delivered at once by the session
    copy = site.delivered(f"dongliang@{HOST}")[0].read_bytes()
    assert copy.startswith(f"Return-Path: <owner-staff@{HOST}>\n".encode())
    assert _count(site, "lee") == 0 and _count(site, "dl") == 0
