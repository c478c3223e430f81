"""Tests for observe/log.py: syslog line shape, components, file handling, line formatters."""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.observe import log as maillog

LINE = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) (?P<day>[ \d]\d) \d\d:\d\d:\d\d (?P<host>\S+) "
    r"(?P<prog>[^/\s]+)/(?P<comp>[^\[\s]+)\[(?P<pid>\d+)\]: (?P<msg>.*)"
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    maillog.shutdown_logging()
    root.setLevel(level)


def test_component_mapping() -> None:
    cases = {
        "postoffice.smtp": "smtpd",
        "postoffice.smtp.session": "smtpd",
        "postoffice.smtp.client": "smtp",
        "postoffice.queue.manager": "qmgr",
        "postoffice.mail": "qmgr",
        "postoffice.queue.spool": "cleanup",
        "postoffice.delivery.local": "local",
        "postoffice.delivery.smtp": "smtp",
        "postoffice.pop3.server": "pop3d",
        "postoffice.imap": "imapd",
        "postoffice": "master",
        "postoffice.somethingnew.x": "somethingnew",
        "asyncio": "asyncio",
        "": "master",
    }
    for name, want in cases.items():
        assert maillog.component_for(name) == want, name


def test_syslog_time() -> None:
    assert re.fullmatch(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d", maillog.syslog_time(0.0))


def test_setup_writes_file_and_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    path = tmp_path / "log" / "sub" / "maillog"
    maillog.setup_logging(file=str(path), level="info", hostname="mx.example")
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o137 == 0  # at most 0640
    logging.getLogger("postoffice.smtp").info(
        "%s", maillog.client_line("01JD7Q4W2N", "localhost", "127.0.0.1")
    )
    logging.getLogger("postoffice.delivery.local").debug("not logged at info")
    logging.getLogger("postoffice.queue").warning("disk is getting full")
    lines = path.read_text().splitlines()
    assert err.getvalue().splitlines() == lines
    assert len(lines) == 2
    m = LINE.fullmatch(lines[0])
    assert m is not None
    assert m["host"] == "mx.example" and m["prog"] == "postoffice" and m["comp"] == "smtpd"
    assert int(m["pid"]) == os.getpid()
    assert m["msg"] == "01JD7Q4W2N: client=localhost[127.0.0.1]"
    m = LINE.fullmatch(lines[1])
    assert m is not None and m["comp"] == "qmgr"
    assert m["msg"] == "warning: disk is getting full"


def test_setup_again_replaces_handlers_and_levels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    path = tmp_path / "maillog"
    maillog.setup_logging(file=str(path), level="info", hostname="h")
    maillog.setup_logging(file=str(path), level="DEBUG", stderr=False, hostname="h", program="po")
    ours = [h for h in logging.getLogger().handlers if isinstance(h, maillog._FileHandler)]
    assert len(ours) == 1
    logging.getLogger("postoffice.delivery.local").debug("x")
    assert path.read_text().count("\n") == 1
    assert " po/local[" in path.read_text()
    with pytest.raises(ValueError):
        maillog.setup_logging(file=None, level="loud")


def test_rotation_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "maillog"
    maillog.setup_logging(file=str(path), level="info", stderr=False, hostname="h")
    logger = logging.getLogger("postoffice.queue")
    logger.info("one")
    os.rename(path, tmp_path / "maillog.1")  # logrotate moves the file away
    logger.info("two")  # still to the old file, until SIGHUP
    maillog.reopen()  # postrotate: kill -HUP
    logger.info("three")
    assert (tmp_path / "maillog.1").read_text().count("\n") == 2
    assert "three" in path.read_text() and path.read_text().count("\n") == 1


def test_traceback_lines_are_prefixed(tmp_path: Path) -> None:
    path = tmp_path / "maillog"
    maillog.setup_logging(file=str(path), level="info", stderr=False, hostname="h")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("postoffice.app").exception("crash")
    lines = path.read_text().splitlines()
    assert len(lines) > 2
    assert all(LINE.fullmatch(line) for line in lines)
    assert lines[0].endswith(f"master[{os.getpid()}]: error: crash")


def test_format_delay() -> None:
    cases = {
        0: "0",
        0.004: "0",
        0.006: "0.01",
        0.1: "0.1",
        0.12: "0.12",
        0.81: "0.81",
        1.4: "1.4",
        2.44: "2.4",
        9.96: "10",
        38.2: "38",
        1038.0: "1038",
    }
    for value, want in cases.items():
        assert maillog.format_delay(value) == want, value


def test_from_and_delivery_lines() -> None:
    assert (
        maillog.from_line("01JD7Q4W2N", "alice@example.org", 1234, 2)
        == "01JD7Q4W2N: from=<alice@example.org>, size=1234, nrcpt=2 (queue active)"
    )
    assert maillog.from_line("Q", "", 1, 1) == "Q: from=<>, size=1, nrcpt=1 (queue active)"
    assert maillog.delivery_line(
        "01JD7Q4W2N", "c@d", "local", 0.12, (0.01, 0, 0, 0.11),
        "2.0.0", "sent", "delivered to maildir",
    ) == (
        "01JD7Q4W2N: to=<c@d>, relay=local, delay=0.12, delays=0.01/0/0/0.11, "
        "dsn=2.0.0, status=sent (delivered to maildir)"
    )  # fmt: skip
    assert maillog.delivery_line(
        "Q", "bob@x", "mx.y[192.0.2.1]:25", 2.4, (0.18, 0.01, 1.4, 0.81),
        "4.4.1", "deferred", "connect to mx.y: timed out", orig_to="postmaster@x",
    ) == (
        "Q: to=<bob@x>, orig_to=<postmaster@x>, relay=mx.y[192.0.2.1]:25, delay=2.4, "
        "delays=0.18/0.01/1.4/0.81, dsn=4.4.1, status=deferred (connect to mx.y: timed out)"
    )  # fmt: skip


def test_other_lines() -> None:
    assert maillog.client_line("Q", "", "192.0.2.1") == "Q: client=unknown[192.0.2.1]"
    assert (
        maillog.client_line("Q", "h", "::1", sasl_method="PLAIN", sasl_username="bob")
        == "Q: client=h[::1], sasl_method=PLAIN, sasl_username=bob"
    )
    assert maillog.message_id_line("Q", " <a@b>") == "Q: message-id=<a@b>"
    assert maillog.removed_line("Q") == "Q: removed"
    assert maillog.expired_line("Q", "a@b") == "Q: from=<a@b>, status=expired, returned to sender"
    assert maillog.bounce_line("Q", "R") == "Q: sender non-delivery notification: R"
    assert maillog.connect_line("h", "192.0.2.1") == "connect from h[192.0.2.1]"
    assert (
        maillog.disconnect_line("h", "192.0.2.1", {"ehlo": 1, "mail": 1, "rcpt": 2, "quit": 1})
        == "disconnect from h[192.0.2.1] ehlo=1 mail=1 rcpt=2 quit=1 commands=5"
    )
    assert maillog.reject_line(
        qid=None, stage="RCPT", client_name="unknown", client_ip="192.0.2.1",
        reply="554 5.7.1 <x@y>: Relay access denied", sender="a@b", rcpt="x@y",
        proto="ESMTP", helo="client",
    ) == (
        "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <x@y>: Relay access denied; "
        "from=<a@b> to=<x@y> proto=ESMTP helo=<client>"
    )  # fmt: skip


def test_values_cannot_forge_lines() -> None:
    line = maillog.from_line("Q", "a@b>\nNov 21 00:00:00 h postoffice/qmgr[1]: X: removed", 1, 1)
    assert "\n" not in line
    line = maillog.delivery_line("Q", "c\r\nd", "local", 0, (0, 0, 0, 0), "2.0.0", "sent", "x\ny")
    assert "\n" not in line and "\r" not in line
