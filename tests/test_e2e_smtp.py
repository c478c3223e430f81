"""End to end over real sockets: smtplib → postoffice serve → Maildir / mbox, and the CLI."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LiveServer, Site, make_site, wait_until

VENV_BIN = Path(sys.executable).parent


def _send(server: LiveServer, rcpts: list[str], body: str, sender: str = "x@example.org") -> dict:
    with smtplib.SMTP(server.host, server.port, timeout=10) as s:
        return s.sendmail(sender, rcpts, body)


def test_smtplib_message_lands_in_maildir(live_server: LiveServer, site: Site) -> None:
    body = "From: x@example.org\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello\r\n.dot\r\n"
    refused = _send(live_server, ["alice@example.test"], body)
    assert refused == {}
    assert wait_until(lambda: len(site.delivered("alice@example.test")) == 1)
    data = site.delivered("alice@example.test")[0].read_bytes()
    assert data.startswith(b"Return-Path: <x@example.org>\nDelivered-To: alice@example.test\n")
    assert b"\nReceived: from " in data and b"by mail.example.test" in data
    assert data.endswith(b"Subject: hi\n\nHello\n.dot\n")  # CRLF → LF; dot-stuffing undone
    m = live_server.wait_for(r"to=<alice@example.test>, relay=local, .*status=sent")
    assert m is not None
    maillog = (site.state / "log" / "maillog").read_text()
    assert "status=sent" in maillog and "from=<x@example.org>" in maillog


def test_several_recipients_and_unknown_user(live_server: LiveServer, site: Site) -> None:
    with smtplib.SMTP(live_server.host, live_server.port, timeout=10) as s:
        s.ehlo("client.example.org")
        s.mail("x@example.org")
        code, msg = s.rcpt("nobody@example.test")
        assert (code, msg) == (550, b"5.1.1 <nobody@example.test>... User unknown")
        assert s.rcpt("alice@example.test")[0] == 250
        assert s.rcpt("bob@example.test")[0] == 250
        code, msg = s.data(b"Subject: two\r\n\r\nfor both\r\n")
        assert code == 250 and b"queued as" in msg
    assert wait_until(
        lambda: (
            len(site.delivered("alice@example.test")) == 1
            and len(site.delivered("bob@example.test")) == 1
        )
    )
    assert not site.maildir("nobody@example.test").exists()


def test_relay_denied_for_untrusted_client(tmp_path: Path) -> None:
    site = make_site(
        tmp_path / "s",
        extra_toml='[relay]\ntrusted_networks = ["10.0.0.0/8"]\n'
        # the test site has no DNS: do not ask whether sender domains resolve
        "[policy]\naccept_unresolvable_domains = true\n",
    )
    server = LiveServer(site)
    try:
        with smtplib.SMTP(server.host, server.port, timeout=10) as s:
            s.ehlo("client.example.org")
            s.mail("x@example.org")
            assert s.rcpt("someone@elsewhere.example") == (
                550, b"5.7.1 <someone@elsewhere.example>... Relaying denied"
            )  # fmt: skip
            assert s.rcpt("alice@example.test")[0] == 250
    finally:
        server.stop()


def test_remote_recipient_stays_deferred_with_reason(live_server: LiveServer, site: Site) -> None:
    _send(live_server, ["friend@remote.example"], "Subject: out\r\n\r\nbye\r\n")
    # The test site's DNS is a closed loopback port: a temporary DNS failure.
    m = live_server.wait_for(r"to=<friend@remote.example>.*status=deferred \((.*)\)")
    assert "4.4.3" in m.group(0)
    out = subprocess.run(
        [str(VENV_BIN / "postoffice"), "-c", str(site.config), "queue", "list"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "friend@remote.example" in out.stdout and "<x@example.org>" in out.stdout
    assert "1 request" in out.stdout.lower() or "requests" in out.stdout.lower()


def test_mbox_delivery(tmp_path: Path) -> None:
    mbox = tmp_path / "mail"
    site = make_site(tmp_path / "s", extra_toml=f'[delivery]\nmailbox = "mbox:{mbox}/{{user}}"\n')
    server = LiveServer(site)
    try:
        _send(server, ["bob@example.test"], "Subject: m\r\n\r\nFrom here\r\n>From there\r\n")
        assert wait_until(lambda: (mbox / "bob").exists() and (mbox / "bob").stat().st_size > 0)
        server.wait_for(r"to=<bob@example.test>.*status=sent")
        text = (mbox / "bob").read_text()
        assert text.startswith("From x@example.org ")
        assert "\n>From here\n>>From there\n" in text
    finally:
        server.stop()


def test_sendmail_command_queues_and_server_delivers(live_server: LiveServer, site: Site) -> None:
    msg = b"To: alice@example.test\nBcc: bob@example.test\nSubject: local\n\nbody\n.\nnot read\n"
    res = subprocess.run(
        [str(VENV_BIN / "sendmail"), "-C", str(site.config), "-t", "-f", "root@example.test"],
        input=msg, capture_output=True, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert wait_until(lambda: len(site.delivered("alice@example.test")) == 1)
    assert wait_until(lambda: len(site.delivered("bob@example.test")) == 1)
    data = site.delivered("bob@example.test")[0].read_bytes()
    assert b"\nBcc:" not in data and b"Date: " in data and b"Message-ID: <" in data
    assert b"From: root@example.test" in data
    assert data.endswith(b"\n\nbody\n")  # a lone "." ended the input (no -i)


def test_sendmail_refuses_unknown_local_user(site: Site) -> None:
    res = subprocess.run(
        [str(VENV_BIN / "sendmail"), "-C", str(site.config), "nobody@example.test"],
        input=b"Subject: x\n\ny\n", capture_output=True, check=False,
    )  # fmt: skip
    assert res.returncode == 67
    assert b"nobody@example.test... User unknown" in res.stderr


def test_sendmail_bad_option(site: Site) -> None:
    res = subprocess.run(
        [str(VENV_BIN / "sendmail"), "-C", str(site.config), "-Z"],
        input=b"", capture_output=True, check=False,
    )  # fmt: skip
    assert res.returncode == 64 and res.stderr.count(b"\n") == 1


def test_broken_config_is_one_line_and_nonzero(tmp_path: Path) -> None:
    cfg = tmp_path / "postoffice.toml"
    cfg.write_text('hostname = "a"\n[smtp]\nlisten = ["nonsense"]\n')
    res = subprocess.run(
        [str(VENV_BIN / "postoffice"), "-c", str(cfg), "serve"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and f"{cfg}:3" in res.stderr and "smtp.listen" in res.stderr


def test_sighup_reloads_users_without_dropping_connections(
    live_server: LiveServer, site: Site
) -> None:
    with smtplib.SMTP(live_server.host, live_server.port, timeout=10) as s:
        s.ehlo("c.example.org")
        s.mail("x@example.org")
        assert s.rcpt("carol@example.test")[0] == 550
        (site.root / "users").write_text(
            (site.root / "users").read_text() + "carol@example.test:{PLAIN}pw::::::\n"
        )
        live_server.proc.send_signal(signal.SIGHUP)
        live_server.wait_for("reloaded configuration")
        assert s.rcpt("carol@example.test")[0] == 250  # same connection, new users
        assert s.data(b"Subject: hup\r\n\r\nx\r\n")[0] == 250
    assert wait_until(lambda: len(site.delivered("carol@example.test")) == 1)


def test_sigterm_stops_cleanly(site: Site) -> None:
    server = LiveServer(site)
    assert server.stop(signal.SIGTERM) == 0
    assert any("stopped" in line for line in server.lines)


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_cli_front_door(flag: str) -> None:
    res = subprocess.run(
        [str(VENV_BIN / "postoffice"), flag], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0 and "postoffice" in res.stdout
