"""Seed 002's routing examples, end to end: SMTP in, and where the mail landed.

The site is seed 002's host linux102.example.com, which also receives for
tonk.com (local-host-names), with the users of the examples.
"""

from __future__ import annotations

import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

from conftest import LiveServer, Site, make_site, wait_until

HOST = "linux102.example.com"
USERS = tuple(f"{u}@{HOST}" for u in ("dongliang", "lee", "dl", "test", "root"))


def _site(tmp_path: Path, *, aliases: str = "", virtusertable: str = "", extra: str = "") -> Site:
    root = tmp_path / "site"
    site = make_site(root, users=USERS, domains=("localhost", HOST), extra_toml=extra)
    toml = site.config.read_text().replace('hostname = "mail.example.test"', f'hostname = "{HOST}"')
    site.config.write_text(toml)
    (root / "local-host-names").write_text(f"# local-host-names\n{HOST}\ntonk.com\n")
    for name, text in (("aliases", aliases), ("virtusertable", virtusertable)):
        if text:
            (root / name).write_text(text)
            (root / name).chmod(0o644)
    return site


def _send(server: LiveServer, rcpts: list[str]) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        return s.sendmail("sender@example.org", rcpts, "Subject: routed\r\n\r\nhello\r\n")


def _count(site: Site, user: str) -> int:
    return len(site.delivered(f"{user}@{HOST}"))


def _wait(site: Site, counts: dict[str, int]) -> None:
    assert wait_until(lambda: all(_count(site, u) == n for u, n in counts.items())), {
        u: _count(site, u) for u in counts
    }


@pytest.fixture
def serve():  # type: ignore[no-untyped-def]
    servers: list[LiveServer] = []

    def start(site: Site) -> LiveServer:
        servers.append(LiveServer(site))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def test_admin_alias_reaches_three_users(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    site = _site(tmp_path, aliases="admin: dongliang,lee,dl\n")
    _send(serve(site), [f"admin@{HOST}"])
    _wait(site, {"dongliang": 1, "lee": 1, "dl": 1})


def test_admin_alias_with_include(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    users = tmp_path / "include-users"
    users.write_text("dongliang\nlee\ndl\n")
    users.chmod(0o644)
    site = _site(tmp_path, aliases=f"admin:   :include:{users}\n")
    _send(serve(site), [f"admin@{HOST}"])
    _wait(site, {"dongliang": 1, "lee": 1, "dl": 1})


def test_dl_backup_alias_copies_to_lee(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    site = _site(tmp_path, aliases="dl: dl,lee\n")
    _send(serve(site), [f"dl@{HOST}"])
    _wait(site, {"dl": 1, "lee": 1})


def test_virtusertable_examples(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    site = _site(
        tmp_path,
        virtusertable=(
            "dl@tonk.com     dongliang\n"
            "lee@tonk.com    error:5.1.1:550 you are wrong\n"
            f"@tonk.com       %1@{HOST}\n"
        ),
    )
    server = serve(site)
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        s.ehlo("client.example.org")
        s.mail("sender@example.org")
        assert s.rcpt("lee@tonk.com") == (550, b"5.1.1 you are wrong")
        assert s.rcpt("dl@tonk.com")[0] == 250  # → dongliang
        assert s.rcpt("test@tonk.com")[0] == 250  # catch-all: %1@linux102.example.com
        assert s.rcpt("nobody@tonk.com")[0] == 550  # → nobody@linux102: no such user
        assert s.data(b"Subject: v\r\n\r\nx\r\n")[0] == 250
    _wait(site, {"dongliang": 1, "test": 1, "dl": 0})


def test_alias_loop_ends(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    site = _site(tmp_path, aliases="a: b\nb: a\nc: c,lee\n")
    server = serve(site)
    refused = {}
    try:
        refused = _send(server, [f"a@{HOST}", f"c@{HOST}"])
    except smtplib.SMTPRecipientsRefused as e:
        refused = e.recipients
    # The a↔b loop never floods: a refusal or a logged error; c still reaches lee.
    _wait(site, {"lee": 1})
    assert server.proc.poll() is None
    assert f"a@{HOST}" in refused or any("loop" in line.lower() for line in server.lines)


@pytest.fixture
def open_tmp():  # type: ignore[no-untyped-def]
    """A temporary directory the unprivileged default user can traverse
    (pytest's tmp_path lives below a 0700 directory of root's)."""
    base = Path(tempfile.mkdtemp(prefix="postoffice-test-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_program_and_file_targets_run_as_the_default_user(
    open_tmp: Path,
    serve,  # type: ignore[no-untyped-def]
) -> None:
    tmp_path = open_tmp
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the default user (nobody) writes here
    smrsh = tmp_path / "site" / "smrsh"
    smrsh.mkdir(parents=True)
    (tmp_path / "site").chmod(0o755)
    smrsh.chmod(0o755)
    prog = smrsh / "record"
    prog.write_text(f'#!/bin/sh\nid -un > {out}/who\nprintf "%s" "$RECIPIENT" > {out}/rcpt\n'
                    f"cat > {out}/stdin\n")  # fmt: skip
    prog.chmod(0o755)
    site = _site(
        tmp_path,
        aliases=f'log: "|/usr/bin/record"\narchive: {out}/archive.mbox\n',
        extra=f'[delivery]\nprogram_dir = "{smrsh}"\n',
    )
    _send(serve(site), [f"log@{HOST}", f"archive@{HOST}"])
    assert wait_until(lambda: (out / "stdin").exists() and (out / "archive.mbox").exists())
    assert wait_until(lambda: (out / "who").exists() and (out / "who").read_text() == "nobody\n")
    assert (out / "rcpt").read_text() == f"log@{HOST}"
    assert wait_until(lambda: b"Subject: routed" in (out / "stdin").read_bytes())
    assert wait_until(lambda: (out / "archive.mbox").read_text().startswith("From sender@"))
    assert (out / "archive.mbox").stat().st_uid != 0


def test_sendmail_command_expands_aliases(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    site = _site(tmp_path, aliases="admin: dongliang,lee\n")
    serve(site)
    res = subprocess.run(
        [str(Path(sys.executable).parent / "sendmail"), "-C", str(site.config), f"admin@{HOST}"],
        input=b"Subject: local\n\nhi\n", capture_output=True, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    _wait(site, {"dongliang": 1, "lee": 1})


def test_changed_aliases_are_used_without_restart(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    site = _site(tmp_path, aliases="team: dongliang\n")
    server = serve(site)
    _send(server, [f"team@{HOST}"])
    _wait(site, {"dongliang": 1, "lee": 0})
    (site.root / "aliases").write_text("team: lee\n")
    server.wait_for("maps reloaded", timeout=10)
    _send(server, [f"team@{HOST}"])
    _wait(site, {"dongliang": 1, "lee": 1})


def test_newaliases_compiled_map_is_used_and_bad_lines_are_reported(tmp_path: Path) -> None:
    import subprocess
    import sys

    bindir = Path(sys.executable).parent
    site = _site(tmp_path, aliases="admin: dongliang\nthis line is broken\nops: lee\n")
    res = subprocess.run([str(bindir / "newaliases"), "-C", str(site.config)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (site.root / "aliases.db").exists()
    check = subprocess.run([str(bindir / "postoffice"), "-c", str(site.config), "config", "check"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert check.returncode == 1
    assert f"{site.root / 'aliases'}:2" in check.stdout + check.stderr
    explain = subprocess.run(
        [str(bindir / "postoffice"), "-c", str(site.config), "explain", f"ops@{HOST}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert explain.returncode == 0, explain.stderr
    assert "lee" in explain.stdout and "aliases" in explain.stdout


def test_undeliverable_alias_member_bounces_to_the_sender(
    tmp_path: Path,
    serve,  # type: ignore[no-untyped-def]
) -> None:
    import email
    from email.message import Message

    site = _site(tmp_path, aliases="team: dongliang, ghost\n")
    server = serve(site)
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        s.sendmail(f"lee@{HOST}", [f"team@{HOST}"], "Subject: to the team\r\n\r\nhi\r\n")
    _wait(site, {"dongliang": 1, "lee": 1})  # lee, the sender, gets the bounce
    dsn = email.message_from_bytes(site.delivered(f"lee@{HOST}")[0].read_bytes())
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["From"].startswith("MAILER-DAEMON@") or "MAILER-DAEMON" in dsn["From"]
    parts = dsn.get_payload()
    assert isinstance(parts, list)
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    fields: list[Message] = status.get_payload()  # type: ignore[assignment]
    recipient = fields[1]
    assert recipient["Action"] == "failed" and recipient["Status"].startswith("5.")
    assert "ghost" in recipient["Final-Recipient"]
    assert b"Return-Path: <>" in site.delivered(f"lee@{HOST}")[0].read_bytes()
