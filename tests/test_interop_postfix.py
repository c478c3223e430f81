"""Interoperation with a real Postfix on loopback, in both directions.

Description:
    A real peer MTA is the test no fake can stand in for. Each test starts a
    PRIVATE Postfix instance (its own config_directory, queue_directory and
    data_directory in a fresh temporary directory, `inet_interfaces =
    127.0.0.1`, smtpd on an ephemeral loopback port named in its master.cf,
    logging to a file with `maillog_file`), and a `postoffice serve`
    subprocess (tests/conftest.py LiveServer):

    - postoffice → Postfix: a mailertable route `pf.test smtp:[127.0.0.1]:PORT`
      sends mail for Postfix's virtual mailbox domain to that Postfix; the
      message is submitted to postoffice with smtplib. It must arrive in
      the Postfix recipient's Maildir byte for byte (line ends aside), with
      only trace fields (Return-Path, X-Original-To, Delivered-To,
      Received) added above it, and postoffice logs
      `relay=...[127.0.0.1]:PORT, ... status=sent`.
    - Postfix → postoffice: Postfix relays po.test (`relay_domains`, a
      `transport_maps` entry `smtp:[127.0.0.1]:POPORT`) to postoffice; the
      message is submitted to Postfix with smtplib and must land intact in
      postoffice's Maildir; Postfix logs status=sent for it.

    Each direction sends a small message and one larger than postoffice's
    direct-delivery limit (so it goes through the queue), both with 8-bit
    text, dot-leading lines (dot-stuffing both ways), trailing white space
    and a 998-octet line.

    The machine's own Postfix (if any) is not touched: the private instance
    shares nothing with it but the binaries. Waits poll with deadlines
    (conftest.wait_until), nothing sleeps; the instance is stopped and its
    directory removed even when a test fails.

When it runs:
    Only where Postfix is installed (postconf, postfix and master(8) found)
    AND the tests run as root (master(8) must start as root to run a
    private instance); otherwise every test here is skipped with the
    reason. CI machines do not install Postfix (`.ci/run` installs nothing
    but the Python test extra), so CI skips this module; set
    POSTOFFICE_REQUIRE_POSTFIX=1 to turn a skip into a failure on a machine
    that is meant to run it.

    The temporary directory is made with tempfile.mkdtemp (mode 0755), not
    under pytest's tmp_path: Postfix's virtual(8) agent writes the Maildir
    as `nobody`, which must be able to reach it, and pytest's base
    temporary directory is private to root.

See also:
    RFC 5321 §4.5.2 (transparency: dot-stuffing), RFC 6152 (8BITMIME),
    Postfix postconf(5) (transport_maps, virtual_mailbox_maps, maillog_file),
    tests/test_e2e_remote.py (the same paths against a scripted MX),
    bench/relay_bench.py (relay throughput against Postfix).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from conftest import LiveServer, Site, make_site, wait_until

PF_HOSTNAME = "pf.interop.test"  # Postfix's myhostname
PF_DOMAIN = "pf.test"  # Postfix's virtual mailbox domain
PO_DOMAIN = "po.test"  # a postoffice domain Postfix relays to
TRACE_FIELDS = {"return-path", "x-original-to", "delivered-to", "received"}
DEADLINE = 30.0  # seconds for any one delivery to show up


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def _postconf_default(postconf: str, name: str) -> str:
    out = subprocess.run(
        [postconf, "-dh", name], capture_output=True, text=True, timeout=30, check=True
    )
    return out.stdout.strip()


def _why_postfix_unusable() -> str | None:
    """None when a private Postfix instance can be started here, else why not."""
    postconf, postfix = _tool("postconf"), _tool("postfix")
    if not postconf or not postfix:
        return "Postfix is not installed (no postconf/postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root (master(8) starts as root)"
    try:
        master = Path(_postconf_default(postconf, "daemon_directory")) / "master"
        owner = _postconf_default(postconf, "mail_owner")
        group = _postconf_default(postconf, "setgid_group")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"postconf does not work: {exc}"
    if not master.is_file():
        return f"Postfix's master(8) not found at {master}"
    try:
        pwd.getpwnam(owner)
        grp.getgrnam(group)
        pwd.getpwnam("nobody")
    except KeyError as exc:
        return f"a user or group Postfix needs is missing: {exc}"
    return None


UNUSABLE = _why_postfix_unusable()
pytestmark = pytest.mark.skipif(UNUSABLE is not None, reason=f"interop: {UNUSABLE}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connectable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _compatibility_level(postconf: str) -> str:
    version = _postconf_default(postconf, "mail_version")
    major, minor = (int(x) for x in re.findall(r"\d+", version)[:2])
    return "3.6" if (major, minor) >= (3, 6) else "2"


class PrivatePostfix:
    """A Postfix instance of its own under a temporary directory, on 127.0.0.1:port.

    `mailboxes` are the pf.test addresses it delivers into Maildirs
    (virtual(8), as nobody); `relays` maps a domain to the loopback port of
    the SMTP server Postfix relays it to.
    """

    def __init__(self, *, mailboxes: Sequence[str], relays: Mapping[str, int]) -> None:
        postconf, postfix = _tool("postconf"), _tool("postfix")
        assert postconf and postfix
        self.postconf, self.postfix = postconf, postfix
        self.root = Path(tempfile.mkdtemp(prefix="postoffice-interop-"))
        self.root.chmod(0o755)
        self.conf = self.root / "etc"
        self.maillog = self.root / "maillog"
        self.vmail = self.root / "vmail"
        for sub in (self.conf, self.root / "spool", self.root / "data", self.vmail):
            sub.mkdir()
        owner = pwd.getpwnam(_postconf_default(postconf, "mail_owner"))
        os.chown(self.root / "data", owner.pw_uid, owner.pw_gid)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.vmail, nobody.pw_uid, nobody.pw_gid)
        self.nobody = nobody
        self.mailboxes = list(mailboxes)
        self.relays = dict(relays)
        self.port = 0
        self.master_pid = 0

    def maildir(self, address: str) -> Path:
        return self.vmail / address.partition("@")[0]

    def delivered(self, address: str) -> list[Path]:
        new = self.maildir(address) / "new"
        return sorted(new.iterdir()) if new.is_dir() else []

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def _write_config(self) -> None:
        mailbox_map = ", ".join(f"{a}={a.partition('@')[0]}/" for a in self.mailboxes)
        transport = ", ".join(f"{d}=smtp:[127.0.0.1]:{p}" for d, p in self.relays.items())
        main = {
            "compatibility_level": _compatibility_level(self.postconf),
            "queue_directory": self.root / "spool",
            "data_directory": self.root / "data",
            "myhostname": PF_HOSTNAME,
            "mydomain": "interop.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "relay_domains": ", ".join(self.relays),
            "transport_maps": f"inline:{{ {transport} }}" if transport else "",
            "virtual_mailbox_domains": PF_DOMAIN,
            "virtual_mailbox_base": self.vmail,
            "virtual_mailbox_maps": f"inline:{{ {mailbox_map} }}",
            "virtual_uid_maps": f"static:{self.nobody.pw_uid}",
            "virtual_gid_maps": f"static:{self.nobody.pw_gid}",
            "virtual_minimum_uid": "1",
            # No header rewriting: what arrives must be what was sent.
            "local_header_rewrite_clients": "",
            "alias_maps": "",
            "alias_database": "",
            "smtp_dns_support_level": "disabled",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "biff": "no",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.root,
        }
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        # The services this test needs; chroot off (nothing is copied into one).
        services = [
            f"127.0.0.1:{self.port} inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        (self.conf / "master.cf").write_text("\n".join(services) + "\n")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        # The daemons inherit these descriptors: a file, never a pipe we wait on.
        with open(self.root / "postfix-command.out", "a") as out:
            return subprocess.run(
                [self.postfix, "-c", str(self.conf), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, text=True,
                timeout=60, check=False,
            )  # fmt: skip

    def start(self) -> None:
        """Start on a free port (a few tries: another process may take the port first)."""
        for _ in range(3):
            self.port = _free_port()
            self._write_config()
            if self._run("check").returncode != 0:
                break
            if self._run("start").returncode == 0 and wait_until(
                lambda: _connectable(self.port), timeout=20
            ):
                pid_file = self.root / "spool" / "pid" / "master.pid"
                self.master_pid = int(pid_file.read_text().split()[0])
                return
            self.stop()
        output = (self.root / "postfix-command.out").read_text(errors="replace")
        reason = f"cannot start a private Postfix instance:\n{output}\n{self.log()[-2000:]}"
        if os.environ.get("POSTOFFICE_REQUIRE_POSTFIX") == "1":
            pytest.fail(reason)
        pytest.skip(reason)

    def stop(self) -> None:
        pid_file = self.root / "spool" / "pid" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0] or 0)
            self._run("stop")
            if pid and not wait_until(lambda: not _alive(pid), timeout=20):
                os.kill(pid, signal.SIGKILL)  # the master this test started
                wait_until(lambda: not _alive(pid), timeout=10)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _start_postfix(mailboxes: Sequence[str], relays: Mapping[str, int]) -> PrivatePostfix:
    pf = PrivatePostfix(mailboxes=mailboxes, relays=relays)
    try:
        pf.start()
    except BaseException:
        pf.stop()
        pf.remove()
        raise
    return pf


@pytest.fixture
def postfix_instances() -> Iterator[list[PrivatePostfix]]:
    """Collects the instances a test starts; stops and removes them however it ends."""
    started: list[PrivatePostfix] = []
    try:
        yield started
    finally:
        for pf in started:
            try:
                pf.stop()
            finally:
                pf.remove()


def _site(tmp_path: Path, mailertable: str = "") -> Site:
    site = make_site(
        tmp_path / "site",
        users=("alice@example.test", f"carol@{PO_DOMAIN}"),
        domains=("localhost", "example.test", "mail.example.test", PO_DOMAIN),
        extra_toml='[smtp_client]\ntls = "none"\n',
    )
    if mailertable:
        (site.root / "mailertable").write_text(mailertable)
        (site.root / "mailertable").chmod(0o644)
    return site


def _message(sender: str, rcpt: str, tag: str, size: int) -> bytes:
    """A message with the awkward parts: 8-bit text, dots, white space, a 998-octet line."""
    head = (
        f"From: Sender <{sender}>\r\n"
        f"To: Recipient <{rcpt}>\r\n"
        f"Subject: interop {tag} =?utf-8?q?caf=C3=A9?=\r\n"
        "Date: Sat, 21 Nov 2026 12:00:00 +0000\r\n"
        f"Message-ID: <{tag}@interop.example.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "X-Folded: first part\r\n\tsecond part\r\n"
        "\r\n"
    ).encode()
    body = (
        "Grüße aus Köln — 8-bit UTF-8 text.\r\n"
        ".a line that starts with a dot\r\n"
        "..two dots\r\n"
        ".\r\n"
        "trailing white space   \r\n"
        "\ttab first\r\n"
        "From the start of a line\r\n" + "x" * 998 + "\r\n"
    ).encode()
    filler = b"".join(
        f"line {i:06d} of filler text for size\r\n".encode() for i in range(size // 40)
    )
    return head + body + filler + b"end\r\n"


def _send(port: int, sender: str, rcpt: str, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=DEADLINE) as client:
        client.sendmail(sender, [rcpt], message, mail_options=["BODY=8BITMIME"])


def _added_fields(delivered: bytes, sent: bytes) -> list[tuple[str, bytes]]:
    """The header fields above the sent message in a delivered file (which must end with it)."""
    expected = sent.replace(b"\r\n", b"\n")
    assert delivered.endswith(expected), "the delivered message differs from the one sent"
    prefix = delivered[: len(delivered) - len(expected)]
    fields: list[tuple[str, bytes]] = []
    for line in prefix.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + line)
        else:
            name, colon, _ = line.partition(b":")
            assert colon, f"not a header field above the message: {line!r}"
            fields.append((name.decode("ascii").lower(), line))
    return fields


def _assert_intact(delivered: bytes, sent: bytes, *, by: Sequence[str], sender: str) -> None:
    fields = _added_fields(delivered, sent)
    names = {name for name, _ in fields}
    assert names <= TRACE_FIELDS, f"fields other than trace fields were added: {names}"
    received = b"".join(value for name, value in fields if name == "received")
    for host in by:
        assert f"by {host}".encode() in received, f"no Received: by {host}"
    return_path = [value for name, value in fields if name == "return-path"]
    assert return_path == [f"Return-Path: <{sender}>\n".encode()]


def _by_message_id(paths: list[Path]) -> dict[str, bytes]:
    out = {}
    for path in paths:
        data = path.read_bytes()
        m = re.search(rb"^Message-ID: <([^@>]+)@", data, re.MULTILINE | re.IGNORECASE)
        assert m, f"no Message-ID in {path}"
        out[m.group(1).decode()] = data
    return out


SIZES = {"small": 4_000, "large": 300_000}  # large > [delivery] direct_max_size (256 KiB)


def test_postoffice_relays_to_postfix(
    tmp_path: Path, postfix_instances: list[PrivatePostfix]
) -> None:
    rcpt, sender = f"bob@{PF_DOMAIN}", "alice@example.test"
    pf = _start_postfix([rcpt], {})
    postfix_instances.append(pf)
    site = _site(tmp_path, mailertable=f"{PF_DOMAIN} smtp:[127.0.0.1]:{pf.port}\n")
    server = LiveServer(site)
    try:
        sent = {tag: _message(sender, rcpt, f"po2pf-{tag}", n) for tag, n in SIZES.items()}
        for message in sent.values():
            _send(server.port, sender, rcpt, message)
        arrived = wait_until(lambda: len(pf.delivered(rcpt)) == len(sent), timeout=DEADLINE)
        assert arrived, f"not in Postfix's Maildir; Postfix log:\n{pf.log()[-3000:]}"
        for _ in sent:
            server.wait_for(
                rf"to=<{re.escape(rcpt)}>, relay=\S*\[127\.0\.0\.1\]:{pf.port}, .*status=sent",
                timeout=DEADLINE,
            )
    finally:
        server.stop()
    sent_lines = [line for line in server.lines if "status=sent" in line and rcpt in line]
    assert len(sent_lines) == len(sent), sent_lines
    delivered = _by_message_id(pf.delivered(rcpt))
    for tag, message in sent.items():
        _assert_intact(
            delivered[f"po2pf-{tag}"], message, by=["mail.example.test", PF_HOSTNAME], sender=sender
        )
    assert re.search(rf"to=<{re.escape(rcpt)}>, relay=virtual, .*status=sent", pf.log())


def test_postfix_relays_to_postoffice(
    tmp_path: Path, postfix_instances: list[PrivatePostfix]
) -> None:
    rcpt, sender = f"carol@{PO_DOMAIN}", f"dave@{PF_DOMAIN}"
    site = _site(tmp_path)
    server = LiveServer(site)
    try:
        pf = _start_postfix([], {PO_DOMAIN: server.port})
        postfix_instances.append(pf)
        sent = {tag: _message(sender, rcpt, f"pf2po-{tag}", n) for tag, n in SIZES.items()}
        for message in sent.values():
            _send(pf.port, sender, rcpt, message)
        arrived = wait_until(lambda: len(site.delivered(rcpt)) == len(sent), timeout=DEADLINE)
        assert arrived, f"not in postoffice's Maildir; Postfix log:\n{pf.log()[-3000:]}"
        # Postfix logs the delivery after it has read postoffice's reply to the data.
        relay = rf"to=<{re.escape(rcpt)}>, relay=\S*\[127\.0\.0\.1\]:{server.port}, .*status=sent"
        assert wait_until(
            lambda: len(re.findall(relay, pf.log())) == len(sent), timeout=DEADLINE
        ), pf.log()[-3000:]
    finally:
        server.stop()
    delivered = _by_message_id(site.delivered(rcpt))
    for tag, message in sent.items():
        _assert_intact(
            delivered[f"pf2po-{tag}"], message, by=[PF_HOSTNAME, "mail.example.test"], sender=sender
        )
