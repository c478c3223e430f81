"""SMTP throughput benchmark: postoffice and (when set up) Postfix, side by side.

Description:
    Starts `postoffice serve` on a fresh site under --workdir (default
    /var/tmp/postoffice-bench, the same disk Postfix's queue uses), with
    users user1..user20@example.test delivering into
    WORKDIR/home/<user>/Maildir, then runs ../shared/peers/mailbench.py's
    SMTP phase against it: Postfix's `smtp-source` as the load generator
    (N sessions x M messages of S bytes), accepted msg/s, time until every
    message is in the Maildir, and server CPU per message (from --rss
    sampling). When a Postfix set up by ../shared/peers/setup_postfix_dovecot.sh
    listens on 127.0.0.1:25, the same figures are measured for it in the
    same run. Raw output goes to bench/results/ (not committed); the
    summary lines are printed for docs/benchmarks.md.

    A benchmark, not a test: run it with `make bench` on a quiet machine.

Usage:
    python bench/smtp_bench.py [--sizes 5120] [--concurrency 20] [--messages 5000]
                               [--runs 3] [--no-postfix] [--port 2526]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAILBENCH = ROOT.parent / "shared" / "peers" / "mailbench.py"


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def make_site(workdir: Path, port: int) -> Path:
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "home").mkdir(parents=True)
    users = "".join(f"user{i}@example.test:{{PLAIN}}benchpass::::::\n" for i in range(1, 21))
    (workdir / "users").write_text(users)
    (workdir / "users").chmod(0o600)
    cfg = workdir / "postoffice.toml"
    cfg.write_text(
        'hostname = "bench.example.test"\n'
        f'state_dir = "{workdir}/state"\n'
        f'config_dir = "{workdir}"\n'
        'local_domains = ["example.test", "localhost"]\n'
        f'[smtp]\nlisten = ["127.0.0.1:{port}"]\nmax_connections = 1000\n'
        "[pop3]\nlisten = []\n[imap]\nlisten = []\n"  # only SMTP is measured here
        f'[delivery]\nmailbox = "maildir:{workdir}/home/{{user}}/Maildir"\n'
        '[log]\nlevel = "info"\nfile = ""\n'
    )
    return cfg


def run_mailbench(target: str, maildir_root: str, rss: str, args: argparse.Namespace) -> str:
    cmd = [
        sys.executable, str(MAILBENCH), "--only", "smtp", "--smtp", target,
        "--clients", "smtp-source", "--sizes", args.sizes, "--concurrency", args.concurrency,
        "--messages", str(args.messages), "--runs", str(args.runs),
        "--maildir-root", maildir_root, "--rss", rss, "--quiet-wait", "20",
    ]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sys.stderr.write(out.stderr[-4000:])
    return out.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5120")
    ap.add_argument("--concurrency", default="20")
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=2526)
    ap.add_argument("--workdir", default="/var/tmp/postoffice-bench")
    ap.add_argument("--no-postfix", action="store_true")
    args = ap.parse_args()
    if not MAILBENCH.exists():
        print(f"smtp_bench: {MAILBENCH} not found", file=sys.stderr)
        return 1
    if not shutil.which("smtp-source") and not Path("/usr/sbin/smtp-source").exists():
        print("smtp_bench: smtp-source not found (run ../shared/peers/setup_postfix_dovecot.sh)",
              file=sys.stderr)  # fmt: skip
        return 1
    workdir = Path(args.workdir)
    cfg = make_site(workdir, args.port)
    env = dict(os.environ)
    server = subprocess.Popen(
        [sys.executable, "-m", "postoffice", "-c", str(cfg), "serve"],
        stderr=open(workdir / "serve.log", "wb"),  # noqa: SIM115
        env=env,
    )
    results: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", args.port):
            if time.monotonic() > deadline or server.poll() is not None:
                print("smtp_bench: postoffice did not start; see serve.log", file=sys.stderr)
                return 1
            time.sleep(0.1)
        out = run_mailbench(
            f"127.0.0.1:{args.port}", str(workdir / "home"), "ours=postoffice", args
        )
        results += [f"postoffice {line}" for line in out.splitlines() if line.startswith("FIGURE")]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    if not args.no_postfix and port_open("127.0.0.1", 25):
        out = run_mailbench("127.0.0.1:25", "/home", "postfix=^/usr/lib/postfix/", args)
        results += [f"postfix {line}" for line in out.splitlines() if line.startswith("FIGURE")]
    resdir = ROOT / "bench" / "results"
    resdir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (resdir / f"smtp-{stamp}.txt").write_text("\n".join(results) + "\n")
    print("\n".join(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
