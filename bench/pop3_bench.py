"""POP3 benchmark: a 10,000-message maildrop read whole, and the login rate with 20 clients.

Description:
    Starts `postoffice serve` on a fresh site under --workdir (default
    /var/tmp/postoffice-pop3-bench) with users user1..user20@example.test
    ({PLAIN} passwords, as ../shared/peers/setup_postfix_dovecot.sh gives
    Dovecot by default), puts --fill messages of --fill-size octets into
    user1's INBOX (../shared/peers/mailbench.py's own make_message, written
    straight into the Maildir, as another MDA would), then runs
    mailbench.py's `pop3` phase against it — the figures Dovecot was
    measured with (docs/benchmarks.md):

      pop3.poplib.*     poplib: USER/PASS, LIST, RETR of every message one
                        at a time, msg/s and MB/s
      pop3.raw.*        a raw client pipelining 64 RETRs at a time (RFC 2449
                        PIPELINING), msg/s and MB/s
      pop3.login_rate   20 concurrent clients doing connect, USER, PASS,
                        QUIT (user3..user20), logins/s

    The first session of the first run scans the Maildir and gives 10,000
    UIDs (the cold index); mailbench's min/max show cold and warm figures.
    The server logs at info level into --workdir/maillog (a Login and a
    Disconnected line per session, as Dovecot logs them).

    A benchmark, not a test: run it on a quiet machine.

Usage:
    python bench/pop3_bench.py [--fill 10000] [--fill-size 5120] [--runs 3]
                               [--login-seconds 10] [--port 2110]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAILBENCH = ROOT.parent / "shared" / "peers" / "mailbench.py"
PASSWORD = "benchpass"
DOMAIN = "example.test"


def load_mailbench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mailbench", MAILBENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_site(workdir: Path, port: int) -> Path:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    users = "".join(f"user{i}@{DOMAIN}:{{PLAIN}}{PASSWORD}::::::\n" for i in range(1, 21))
    (workdir / "users").write_text(users)
    (workdir / "users").chmod(0o600)
    cfg = workdir / "postoffice.toml"
    cfg.write_text(
        'hostname = "bench.example.test"\n'
        f'state_dir = "{workdir}/state"\n'
        f'config_dir = "{workdir}"\n'
        f'local_domains = ["{DOMAIN}", "localhost"]\n'
        '[smtp]\nlisten = ["127.0.0.1:0"]\n'
        "[imap]\nlisten = []\n"
        f'[pop3]\nlisten = ["127.0.0.1:{port}"]\nmax_connections = 5000\n'
        "[auth]\nfailure_delay = 0.0\n"
        f'[log]\nlevel = "info"\nfile = "{workdir}/maillog"\n'  # logins are logged, as Dovecot does
    )
    return cfg


def fill(workdir: Path, user: str, count: int, size: int) -> float:
    """`count` messages straight into the user's Maildir new/ (no fsync: setup only)."""
    mb = load_mailbench()
    maildir = workdir / "state" / "mail" / DOMAIN / user
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    base = int(time.time()) - count
    for i in range(count):
        data = mb.make_message(i, f"sender@{DOMAIN}", f"{user}@{DOMAIN}", size)
        name = f"{base + i}.M{i}P{os.getpid()}.bench"
        path = maildir / "new" / name
        path.write_bytes(data.replace(b"\r\n", b"\n"))
        os.utime(path, (base + i, base + i))
    return time.monotonic() - t0


def start_server(cfg: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "postoffice", "-c", str(cfg), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    pattern = re.compile(r"listening for POP3 on (\S+:\d+)")
    while time.monotonic() < deadline and proc.poll() is None:
        m = pattern.search(log.read_text()) if log.exists() else None
        if m:
            return proc, m.group(1)
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"postoffice serve did not start (no 'listening for POP3' line in {log})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/postoffice-pop3-bench")
    ap.add_argument("--port", type=int, default=2110)
    ap.add_argument("--fill", type=int, default=10000)
    ap.add_argument("--fill-size", type=int, default=5120)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--login-seconds", type=float, default=10)
    ap.add_argument("--login-conc", type=int, default=20)
    ap.add_argument("--quiet-wait", type=float, default=10)
    args = ap.parse_args()

    workdir = Path(args.workdir)
    cfg = make_site(workdir, args.port)
    took = fill(workdir, "user1", args.fill, args.fill_size)
    print(f"filled user1 with {args.fill} x {args.fill_size} octets in {took:.1f}s", flush=True)
    proc, address = start_server(cfg, workdir / "maillog")
    try:
        logins = ",".join(f"user{i}@{DOMAIN}" for i in range(3, 21))
        done = subprocess.run(
            [
                sys.executable, str(MAILBENCH), "--only", "pop3", "--pop3", address,
                "--user", f"user1@{DOMAIN}", "--password", PASSWORD,
                "--login-users", logins, "--login-conc", str(args.login_conc),
                "--login-seconds", str(args.login_seconds), "--runs", str(args.runs),
                "--quiet-wait", str(args.quiet_wait),
                "--rss", f"postoffice=postoffice.*-c {cfg}",
            ],
            check=False,
        )  # fmt: skip
        return done.returncode
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
