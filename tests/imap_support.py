"""Shared pieces of the IMAP tests: canned messages, seeded Maildirs, deps, live servers.

A transcript or test seeds a user's folder with the canned MESSAGES (fixed
internal dates, so FETCH INTERNALDATE is the same on every run); the deps
are the real ones over the site's Maildir++ tree, as app.py builds them,
so an engine run and a live run see the same mailboxes.
"""

from __future__ import annotations

import io
import pwd
import re
from pathlib import Path

from conftest import LiveServer, Site
from postoffice.auth.backend import AuthBackend
from postoffice.auth.passwd_file import UserDB
from postoffice.auth.throttle import FailureThrottle
from postoffice.config.load import load_config
from postoffice.imap.session import ImapDeps
from postoffice.routing.users import locate_mailbox
from postoffice.store.folder import MaildirFolder
from postoffice.store.interfaces import SEEN
from postoffice.store.mailstore import MaildirStore
from postoffice.store.opener import StoreOpener

# No failure delay in tests (the throttle has its own tests).
FAST_AUTH = "[auth]\nfailure_delay = 0.0\nmax_failure_delay = 0.0\n"

SIMPLE = (
    b"Date: Mon, 5 Jan 2026 10:00:00 +0100\r\n"
    b"From: Alice Example <alice@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: Hello Bob\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"this is the first message.\r\n"
)
MULTIPART = (
    b"Date: Tue, 6 Jan 2026 11:30:00 +0000\r\n"
    b"From: carol@example.org\r\n"
    b"To: alice@example.test\r\n"
    b"Cc: dave@example.org\r\n"
    b"Subject: Report with attachment\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="xyz"\r\n'
    b"\r\n"
    b"--xyz\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"See the attached numbers.\r\n"
    b"--xyz\r\n"
    b"Content-Type: application/octet-stream; name=data.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=data.bin\r\n"
    b"\r\n"
    b"AAECAwQ=\r\n"
    b"--xyz--\r\n"
)
ENCODED = (
    b"Date: Wed, 7 Jan 2026 08:15:00 -0500\r\n"
    b"From: =?UTF-8?Q?J=C3=BCrgen?= <juergen@example.de>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus Berlin\r\n"
    b"\r\n"
    b"Viele Gr\xc3\xbc\xc3\x9fe.\r\n"
)
MESSAGES = (SIMPLE, MULTIPART, ENCODED)
DATES = (1_767_600_000.0, 1_767_700_000.0, 1_767_800_000.0)  # 2026-01-05 ... 07


def seed(site: Site, address: str, count: int, *, folder: str = "INBOX") -> None:
    """The first `count` canned messages into `address`'s folder; the first is \\Seen."""
    root = site.maildir(address)
    path = root if folder == "INBOX" else root / ("." + folder)
    if folder != "INBOX":
        MaildirStore(str(root)).create(folder)
    box = MaildirFolder(str(path))
    for i in range(count):
        flags = frozenset({SEEN}) if i == 0 else frozenset()
        box.append(io.BytesIO(MESSAGES[i % 3]), flags=flags, internaldate=DATES[i % 3])


def headers(text: str) -> dict[str, str]:
    """The `# key: value` lines of a transcript."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"# ([a-z_]+): (.*)", line)
        if m:
            out.setdefault(m.group(1), m.group(2).strip())
    return out


def imap_deps(site: Site, *, throttle: FailureThrottle | None = None) -> ImapDeps:
    """ImapDeps over the site's users file and Maildir tree, as app.py wires them."""
    config = load_config(str(site.config))
    users = UserDB.load(config.users_file)
    opener = StoreOpener(
        lambda login: locate_mailbox(
            login,
            mailbox_template=config.delivery.mailbox,
            user_exists=users.exists,
            system_users=False,
            system_template=config.delivery.system_mailbox,
            getpwnam=pwd.getpwnam,
        ),
        index_dir=str(Path(config.state_dir) / "index"),
        hostname=config.hostname,
    )
    return ImapDeps(
        config=config,
        open_store=opener.store,
        auth=AuthBackend(
            users=lambda: users,
            throttle=throttle or FailureThrottle(base=0.0, cap=0.0),
            hostname=config.hostname,
        ),
    )


def imap_address(server: LiveServer, kind: str = "IMAP") -> tuple[str, int]:
    """The live server's IMAP (or IMAPS) address, from its log."""
    m = server.wait_for(rf"listening for {kind} on (\S+):(\d+)")
    return m.group(1), int(m.group(2))
