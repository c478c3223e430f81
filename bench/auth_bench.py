"""TLS handshakes/s and AUTH PLAIN logins/s: postoffice next to Postfix + Dovecot SASL (issue 5).

Description:
    Three loads, each from CONCURRENCY (20) asyncio clients for DURATION
    seconds against a server on loopback, counting completed sessions:

      starttls   connect, 220, EHLO, STARTTLS, 220, TLS handshake, EHLO
                 over TLS, QUIT                      (the SMTP port)
      implicit   connect, TLS handshake, 220 over TLS, QUIT
                                                     (submissions, RFC 8314)
      auth       connect, 220, EHLO, AUTH PLAIN <user1..user20, benchpass>,
                 235, QUIT; no TLS (loopback)        (the submission port)

    Every TLS session is a full handshake (the clients never resume one),
    TLS 1.3 as both servers negotiate by default, the same certificate
    (ECDSA P-256 by default, `--key-type rsa` for RSA 2048, made with
    `postoffice tls self-signed`'s code). The passwords are stored with the
    default hash of each server's setup: ARGON2ID m=64 MiB, t=3, p=1
    (postoffice's default; Dovecot's passwd-file gets `doveadm pw -s
    ARGON2ID` hashes with the same parameters).

    The servers, one after the other, runs alternating:
    - postoffice: `postoffice serve` on a fresh site under --workdir,
      [smtp] listen (STARTTLS), [submission] listen and tls_listen, [tls]
      cert/key, users user1..user20@example.test;
    - Postfix 3.7 + Dovecot 2.3 SASL: a PRIVATE Postfix instance (own
      config, queue and data directories under --workdir: smtpd with
      STARTTLS on the SMTP port, a submission smtpd with
      `smtpd_sasl_type = dovecot`, and a wrapper-mode smtpd for
      submissions) and a PRIVATE Dovecot running only its auth service
      (own base_dir, passwd-file passdb, its auth socket in the private
      Postfix's queue directory). The machine's own Postfix and Dovecot
      (../shared/peers/setup_postfix_dovecot.sh, which sets up no SASL and
      no TLS for Postfix) are not touched.

    Figures per server and load (median of --runs, min–max): sessions/s,
    median session latency, server CPU per session (the server's process
    tree, Dovecot's included for Postfix, reaped children included), and
    the machine's busy share. `FIGURE` lines as ../shared/peers/mailbench.py
    writes them, a Markdown table, raw lines in bench/results/ (not
    committed). A benchmark, not a test: `make bench`.

Security:
    Needs root for the Postfix + Dovecot part (their masters start as
    root). Listens and connects on 127.0.0.1 only.

Usage:
    python bench/auth_bench.py [--duration 8] [--runs 3] [--concurrency 20]
        [--only postoffice,postfix] [--loads starttls,implicit,auth]
        [--key-type ecdsa|rsa] [--workdir /var/tmp/postoffice-auth-bench]

See also:
    bench/relay_bench.py (the private Postfix instance, helpers),
    docs/benchmarks.md, smtp/server.py, smtp/auth_session.py.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import grp
import os
import pwd
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from relay_bench import (
    alive,
    busy_since,
    connectable,
    emit,
    free_port,
    sysstat,
    tool,
    tree_cpu,
    wait_quiet,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from postoffice.auth import schemes  # noqa: E402
from postoffice.cli.tls import self_signed  # noqa: E402

USERS = 20
PASSWORD = "benchpass"
DOMAIN = "example.test"
LOADS = ("starttls", "implicit", "auth")


@dataclass
class Ports:
    smtp: int
    submission: int
    submissions: int


# ------------------------------------------------------------------ the servers


class Postoffice:
    name = "postoffice"

    def __init__(self, workdir: Path, cert: Path, key: Path) -> None:
        site = workdir / "postoffice"
        if site.exists():
            shutil.rmtree(site)
        site.mkdir(parents=True)
        users = "".join(
            f"user{i}@{DOMAIN}:{schemes.hash_password(PASSWORD)}::::::\n"
            for i in range(1, USERS + 1)
        )
        (site / "users").write_text(users)
        (site / "users").chmod(0o600)
        self.ports = Ports(free_port(), free_port(), free_port())
        cfg = site / "postoffice.toml"
        cfg.write_text(
            'hostname = "bench.example.test"\n'
            f'state_dir = "{site}/state"\n'
            f'config_dir = "{site}"\n'
            f'local_domains = ["{DOMAIN}", "localhost"]\n'
            f'[smtp]\nlisten = ["127.0.0.1:{self.ports.smtp}"]\nmax_connections = 1000\n'
            "[pop3]\nlisten = []\n[imap]\nlisten = []\n"  # only SMTP is measured here
            f'[submission]\nlisten = ["127.0.0.1:{self.ports.submission}"]\n'
            f'tls_listen = ["127.0.0.1:{self.ports.submissions}"]\n'
            f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
            '[auth]\nmechanisms = ["PLAIN", "LOGIN"]\n'
            f'[log]\nlevel = "info"\nfile = "{site}/maillog"\n'
        )
        self.log = site / "serve.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "postoffice", "-c", str(cfg), "serve"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )  # fmt: skip
        ports = (self.ports.smtp, self.ports.submission, self.ports.submissions)
        up = wait_until(
            lambda: all(connectable(p) for p in ports) or self.proc.poll() is not None, 30
        )
        if not up or self.proc.poll() is not None:
            raise RuntimeError(f"postoffice did not start; see {self.log}")
        self.pids = [self.proc.pid]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


POSTFIX_SERVICES = """\
127.0.0.1:{smtp} inet n - n - - smtpd
127.0.0.1:{submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
127.0.0.1:{submissions} inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
virtual unix - n n - - virtual
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

DOVECOT_CONF = """\
# A private Dovecot for auth_bench.py: the auth service only, for Postfix's SASL.
base_dir = {root}/run
state_dir = {root}/state
instance_name = dovecot-authbench
protocols =
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=ARGON2ID username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""


class PostfixDovecot:
    """A private Postfix (TLS, SASL) and a private Dovecot auth service under workdir."""

    name = "postfix+dovecot"

    def __init__(self, workdir: Path, cert: Path, key: Path) -> None:
        postfix, dovecot, doveadm = tool("postfix"), tool("dovecot"), tool("doveadm")
        assert postfix and dovecot and doveadm
        self.postfix, self.dovecot = postfix, dovecot
        self.root = workdir / "postfix"
        if self.root.exists():
            shutil.rmtree(self.root)
        self.conf = self.root / "etc"
        for sub in ("etc", "spool", "data", "dovecot/run", "dovecot/state"):
            (self.root / sub).mkdir(parents=True)
        owner = pwd.getpwnam("postfix")
        os.chown(self.root / "data", owner.pw_uid, owner.pw_gid)
        self.ports = Ports(free_port(), free_port(), free_port())
        # Dovecot first: its auth socket goes into Postfix's private/ directory.
        (self.root / "spool" / "private").mkdir(mode=0o700)
        os.chown(self.root / "spool" / "private", owner.pw_uid, owner.pw_gid)
        dv = self.root / "dovecot"
        hashed = subprocess.run(
            [doveadm, "pw", "-s", "ARGON2ID", "-p", PASSWORD],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        (dv / "passwd").write_text(
            "".join(f"user{i}@{DOMAIN}:{hashed}\n" for i in range(1, USERS + 1))
        )
        os.chown(dv / "passwd", 0, grp.getgrnam("dovecot").gr_gid)
        (dv / "passwd").chmod(0o640)
        self.dovecot_conf = dv / "dovecot.conf"
        self.dovecot_conf.write_text(
            DOVECOT_CONF.format(root=dv, socket=self.root / "spool" / "private" / "auth")
        )
        with open(dv / "start.out", "wb") as out:  # never a pipe: the daemon keeps it open
            subprocess.run(
                [dovecot, "-c", str(self.dovecot_conf)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=True, timeout=30,
            )  # fmt: skip
        master_pid = dv / "run" / "master.pid"
        if not wait_until(lambda: master_pid.exists(), 30):
            raise RuntimeError(f"Dovecot did not start; see {dv}/dovecot.log")
        self.dovecot_pid = int(master_pid.read_text().split()[0])
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.root / "spool",
            "data_directory": self.root / "data",
            "myhostname": "pfbench.example.test",
            "mydomain": DOMAIN,
            "mydestination": f"{DOMAIN}, localhost",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
            "reject_unauth_destination",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtputf8_enable": "no",
            "default_process_limit": "200",
            "smtp_dns_support_level": "disabled",
            "disable_dns_lookups": "yes",
            "biff": "no",
            "maillog_file": self.root / "maillog",
            "maillog_file_prefixes": self.root,
            "smtpd_tls_cert_file": cert,
            "smtpd_tls_key_file": key,
            "smtpd_tls_security_level": "may",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": "private/auth",
        }
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.conf / "master.cf").write_text(
            POSTFIX_SERVICES.format(
                smtp=self.ports.smtp,
                submission=self.ports.submission,
                submissions=self.ports.submissions,
            )
        )
        for command in ("check", "start"):
            with open(self.root / "postfix-command.out", "a") as out:
                code = subprocess.run(
                    [postfix, "-c", str(self.conf), command],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60, check=False,
                ).returncode  # fmt: skip
            if code != 0:
                self._stop_dovecot()
                raise RuntimeError(f"postfix {command} failed; see {self.root}")
        ports = (self.ports.smtp, self.ports.submission, self.ports.submissions)
        if not wait_until(lambda: all(connectable(p) for p in ports), 30):
            raise RuntimeError(f"Postfix did not start; see {self.root}/maillog")
        self.postfix_pid = int((self.root / "spool" / "pid" / "master.pid").read_text().split()[0])
        self.pids = [self.postfix_pid, self.dovecot_pid]

    def _stop_dovecot(self) -> None:
        doveadm = tool("doveadm")
        if doveadm:
            subprocess.run(
                [doveadm, "-c", str(self.dovecot_conf), "stop"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=30, check=False,
            )  # fmt: skip

    def stop(self) -> None:
        with open(self.root / "postfix-command.out", "a") as out:
            subprocess.run(
                [self.postfix, "-c", str(self.conf), "stop"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60, check=False,
            )  # fmt: skip
        self._stop_dovecot()
        for pid in self.pids:
            if not wait_until(functools.partial(_gone, pid), 30):
                os.kill(pid, signal.SIGKILL)  # a master this script started


def _gone(pid: int) -> bool:
    return not alive(pid)


def peer_unusable() -> str | None:
    for name in ("postfix", "postconf", "dovecot", "doveadm"):
        if not tool(name):
            return f"{name} is not installed"
    if os.geteuid() != 0:
        return "a private Postfix and Dovecot need root"
    for user in ("postfix", "dovecot"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"no {user} user"
    return None


# ------------------------------------------------------------------ the clients


async def _reply(reader: asyncio.StreamReader) -> int:
    """One SMTP reply (all its lines); its code."""
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise ConnectionError(f"bad reply {line!r}")
        if line[3:4] != b"-":
            return int(line[:3])


async def _expect(reader: asyncio.StreamReader, code: int) -> None:
    got = await _reply(reader)
    if got != code:
        raise ConnectionError(f"expected {code}, got {got}")


async def session_starttls(port: int, ctx: ssl.SSLContext, _n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _expect(reader, 220)
        writer.write(b"EHLO client.example.org\r\n")
        await _expect(reader, 250)
        writer.write(b"STARTTLS\r\n")
        await _expect(reader, 220)
        await writer.start_tls(ctx, server_hostname="bench.example.test")
        writer.write(b"EHLO client.example.org\r\n")
        await _expect(reader, 250)
        writer.write(b"QUIT\r\n")
        await _expect(reader, 221)
    finally:
        writer.close()


async def session_implicit(port: int, ctx: ssl.SSLContext, _n: int) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="bench.example.test"
    )
    try:
        await _expect(reader, 220)
        writer.write(b"QUIT\r\n")
        await _expect(reader, 221)
    finally:
        writer.close()


async def session_auth(port: int, _ctx: ssl.SSLContext, n: int) -> None:
    user = f"user{n % USERS + 1}@{DOMAIN}"
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _expect(reader, 220)
        writer.write(b"EHLO client.example.org\r\n")
        await _expect(reader, 250)
        writer.write(f"AUTH PLAIN {token}\r\n".encode())
        await _expect(reader, 235)
        writer.write(b"QUIT\r\n")
        await _expect(reader, 221)
    finally:
        writer.close()


SESSIONS = {"starttls": session_starttls, "implicit": session_implicit, "auth": session_auth}


def port_for(load: str, ports: Ports) -> int:
    return {"starttls": ports.smtp, "implicit": ports.submissions, "auth": ports.submission}[load]


async def drive(
    load: str, port: int, concurrency: int, duration: float
) -> tuple[int, int, list[float]]:
    """(completed, failed, latencies) of `concurrency` clients looping for `duration` s."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a self-signed certificate; the handshake is the same
    session = SESSIONS[load]
    loop = asyncio.get_running_loop()
    end = loop.time() + duration
    done, failed, latencies = 0, 0, []
    counter = 0

    async def worker() -> None:
        nonlocal done, failed, counter
        while loop.time() < end:
            counter += 1
            start = loop.time()
            try:
                await asyncio.wait_for(session(port, ctx, counter), 60)
            except (OSError, ConnectionError, TimeoutError, ssl.SSLError, ValueError):
                failed += 1
                continue
            done += 1
            latencies.append(loop.time() - start)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, failed, latencies


@dataclass
class Run:
    rate: float
    latency_ms: float
    cpu_ms: float
    busy: float
    failed: int


FIGURES = (("rate", "sessions/s"), ("latency_ms", "ms"), ("cpu_ms", "ms"), ("busy", "%"))


def one_run(server: Postoffice | PostfixDovecot, load: str, args: argparse.Namespace) -> Run:
    port = port_for(load, server.ports)
    # Warm up (Postfix forks its smtpd processes, postoffice its hash threads).
    asyncio.run(drive(load, port, args.concurrency, 1.0))
    wait_quiet(args.quiet_wait)
    cpu0 = sum(tree_cpu(pid) for pid in server.pids)
    machine = sysstat()
    t0 = time.monotonic()
    done, failed, latencies = asyncio.run(drive(load, port, args.concurrency, args.duration))
    elapsed = time.monotonic() - t0
    busy = busy_since(machine)
    cpu = sum(tree_cpu(pid) for pid in server.pids) - cpu0
    return Run(
        rate=done / elapsed,
        latency_ms=1000 * statistics.median(latencies) if latencies else float("nan"),
        cpu_ms=1000 * cpu / max(1, done),
        busy=busy,
        failed=failed,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--only", default="postoffice,postfix")
    ap.add_argument("--loads", default=",".join(LOADS))
    ap.add_argument("--key-type", choices=("ecdsa", "rsa"), default="ecdsa")
    ap.add_argument("--workdir", default="/var/tmp/postoffice-auth-bench")
    ap.add_argument("--quiet-wait", type=float, default=20.0)
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = self_signed("bench.example.test", key_type=args.key_type)
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    servers: list[type[Postoffice] | type[PostfixDovecot]] = []
    for name in args.only.split(","):
        if name == "postoffice":
            servers.append(Postoffice)
        elif name == "postfix":
            why = peer_unusable()
            if why:
                print(f"# Postfix + Dovecot skipped: {why}", file=sys.stderr)
            else:
                servers.append(PostfixDovecot)
    loads = [x for x in args.loads.split(",") if x in SESSIONS]
    print(
        f"# {args.concurrency} clients x {args.duration:g} s per run, median of {args.runs}; "
        f"{args.key_type} certificate; loads {', '.join(loads)}",
        file=sys.stderr,
    )
    runs: dict[tuple[str, str], list[Run]] = {}
    for i in range(args.runs):
        for server_class in servers:  # runs alternate, so drifting load hits both alike
            server = server_class(workdir, cert, key)
            try:
                for load in loads:
                    run = one_run(server, load, args)
                    print(f"# {server.name} {load} run {i}: {run}", file=sys.stderr, flush=True)
                    runs.setdefault((server.name, load), []).append(run)
            finally:
                server.stop()
    lines: list[str] = []
    details = f"c={args.concurrency} duration={args.duration:g}s key={args.key_type}"
    for (server_name, load), server_runs in runs.items():
        for key_name, unit in FIGURES:
            values = [float(getattr(r, key_name)) for r in server_runs]
            lines.append(emit(f"auth.{server_name}.{load}.{key_name}", values, unit, details))
        failed = sum(r.failed for r in server_runs)
        if failed:
            print(f"# {server_name} {load}: {failed} sessions failed", file=sys.stderr)
    names = list(dict.fromkeys(name for name, _ in runs))
    print("\n| figure (median of runs, min–max) | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for load in loads:
        for key_name, unit in FIGURES:
            cells = []
            for name in names:
                v = [float(getattr(r, key_name)) for r in runs.get((name, load), [])]
                cells.append(f"{statistics.median(v):.4g} ({min(v):.4g}–{max(v):.4g})" if v else "")
            print(f"| {load} {key_name} ({unit}) | " + " | ".join(cells) + " |")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"auth-{stamp}.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
