"""IMAP benchmark: a 10,000-message mailbox, login rate, and memory of idle IDLE connections.

Description:
    Starts `postoffice serve` on a fresh site under --workdir (default
    /var/tmp/postoffice-imap-bench) with users user1..user20@example.test
    ({PLAIN} passwords, as ../shared/peers/setup_postfix_dovecot.sh gives
    Dovecot by default), puts --fill messages of --fill-size octets into
    user1's INBOX (../shared/peers/mailbench.py's own make_message, written
    straight into the Maildir), then:

      1. runs mailbench.py's `imap` phase against it: SELECT, `UID FETCH
         1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)`, full-body fetch
         MB/s, SEARCH SUBJECT and SEARCH BODY (imaplib and a raw client),
         LOGIN/LOGOUT rate with 20 clients — the figures Dovecot was
         measured with (docs/benchmarks.md);
      2. opens --idle connections (default 1000, several counts may be
         given: 1000,10000) that log in as user2..user20, SELECT INBOX and
         IDLE, and reports the server's RSS before and with them, and per
         connection; then checks that a delivery reaches every idler.

    The first FETCH of ENVELOPE parses every message (and writes the
    summary cache, imap/cache.py); mailbench's three runs show the cold
    and warm figures (min/max).

    A benchmark, not a test: run it on a quiet machine.

Usage:
    python bench/imap_bench.py [--fill 10000] [--fill-size 5120] [--idle 1000,10000]
                               [--runs 3] [--port N] [--smtp-port N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAILBENCH = ROOT.parent / "shared" / "peers" / "mailbench.py"
PASSWORD = "benchpass"


def load_mailbench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mailbench", MAILBENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_site(workdir: Path, port: int, smtp_port: int) -> Path:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    users = "".join(f"user{i}@example.test:{{PLAIN}}{PASSWORD}::::::\n" for i in range(1, 21))
    (workdir / "users").write_text(users)
    (workdir / "users").chmod(0o600)
    cfg = workdir / "postoffice.toml"
    cfg.write_text(
        'hostname = "bench.example.test"\n'
        f'state_dir = "{workdir}/state"\n'
        f'config_dir = "{workdir}"\n'
        'local_domains = ["example.test", "localhost"]\n'
        f'[smtp]\nlisten = ["127.0.0.1:{smtp_port}"]\n'
        "[pop3]\nlisten = []\n"
        f'[imap]\nlisten = ["127.0.0.1:{port}"]\nmax_connections = 30000\n'
        "max_connections_per_ip = 0\nmax_connections_per_user = 0\n"
        "[auth]\nfailure_delay = 0.0\n"
        '[log]\nlevel = "warning"\nfile = ""\n'
    )
    return cfg


def fill(workdir: Path, user: str, count: int, size: int) -> float:
    """`count` messages straight into the user's Maildir new/ (no fsync: setup only)."""
    mb = load_mailbench()
    maildir = workdir / "state" / "mail" / "example.test" / user
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    base = int(time.time()) - count
    for i in range(count):
        data = mb.make_message(i, "sender@example.test", f"{user}@example.test", size)
        name = f"{base + i}.M{i}P{os.getpid()}.bench,S={len(data)},W={len(data)}"
        path = maildir / "new" / name
        path.write_bytes(data.replace(b"\r\n", b"\n"))
        os.utime(path, (base + i, base + i))
    return time.monotonic() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def idlers(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    sem = asyncio.Semaphore(200)

    async def one(i: int) -> None:
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
            await r.readline()
            user = f"user{2 + i % 19}@example.test"
            w.write(f"a1 LOGIN {user} {PASSWORD}\r\na2 SELECT INBOX\r\na3 IDLE\r\n".encode())
            while not (await r.readline()).startswith(b"+ "):
                pass
            conns.append((r, w))

    await asyncio.gather(*(one(i) for i in range(count)))
    return conns


async def idle_phase(port: int, smtp_port: int, pid: int, counts: list[int]) -> list[str]:
    out = []
    for count in counts:
        before = rss_kib(pid)
        t0 = time.monotonic()
        conns = await idlers(port, count)
        setup = time.monotonic() - t0
        await asyncio.sleep(2.0)  # let the pollers settle
        with_them = rss_kib(pid)
        cpu = _cpu_seconds(pid)
        await asyncio.sleep(10.0)
        idle_cpu = (_cpu_seconds(pid) - cpu) / 10.0
        # One delivery per user: every idler must hear EXISTS.
        t1 = time.monotonic()
        r, w = await asyncio.open_connection("127.0.0.1", smtp_port)
        await r.readline()
        rcpts = "".join(f"RCPT TO:<user{n}@example.test>\r\n" for n in range(2, 21))
        w.write(b"EHLO bench\r\nMAIL FROM:<s@example.test>\r\n" + rcpts.encode() + b"DATA\r\n")
        for _ in range(2 + 19 + 1 + 5):
            line = await r.readline()
            if line.startswith(b"354"):
                break
        w.write(b"Subject: wake up\r\n\r\nnew mail\r\n.\r\nQUIT\r\n")
        woke = 0

        async def wait_exists(reader: asyncio.StreamReader) -> bool:
            while True:
                line = await reader.readline()
                if not line:
                    return False
                if line.endswith(b"EXISTS\r\n"):
                    return True

        results = await asyncio.wait_for(
            asyncio.gather(*(wait_exists(cr) for cr, _ in conns), return_exceptions=True), 60
        )
        woke = sum(1 for x in results if x is True)
        notify = time.monotonic() - t1
        for _, cw in conns:
            cw.write(b"DONE\r\na4 LOGOUT\r\n")
        for _, cw in conns:
            cw.close()
        w.close()
        per = (with_them - before) / max(count, 1)
        line = (
            f"FIGURE imap.idle_rss.c{count} median={with_them / 1024:.1f} MiB "
            f"before={before / 1024:.1f}MiB per_connection={per:.1f}KiB setup={setup:.1f}s "
            f"woke={woke}/{count} in {notify:.2f}s idle_cpu={idle_cpu * 100:.1f}%"
        )
        print(line, flush=True)
        out.append(line)
        await asyncio.sleep(1.0)
    return out


@contextlib.contextmanager
def serving(cfg: Path, workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`postoffice serve` until the block ends (log in WORKDIR/serve.log)."""
    with open(workdir / "serve.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "postoffice", "-c", str(cfg), "serve"], stderr=log, cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.1)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/postoffice-imap-bench")
    ap.add_argument("--port", type=int, default=0, help="IMAP port (default: a free one)")
    ap.add_argument("--smtp-port", type=int, default=0, help="SMTP port (default: a free one)")
    ap.add_argument("--fill", type=int, default=10000)
    ap.add_argument("--fill-size", type=int, default=5120)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", default="1000", help="IDLE connection counts, e.g. 1000,10000")
    ap.add_argument("--no-mailbench", action="store_true")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    args.port = args.port or free_port()
    args.smtp_port = args.smtp_port or free_port()
    cfg = make_site(workdir, args.port, args.smtp_port)
    took = fill(workdir, "user1", args.fill, args.fill_size)
    print(f"filled user1 with {args.fill} messages in {took:.1f}s", flush=True)
    results: list[str] = []
    if not args.no_mailbench:
        with serving(cfg, workdir, args.port):
            users = ",".join(f"user{i}@example.test" for i in range(3, 21))
            cmd = [
                sys.executable, str(MAILBENCH), "--only", "imap",
                "--imap", f"127.0.0.1:{args.port}", "--user", "user1@example.test",
                "--password", PASSWORD, "--login-users", users, "--runs", str(args.runs),
                "--rss", "ours=postoffice", "--quiet-wait", "20",
            ]  # fmt: skip
            print("+", " ".join(cmd), flush=True)
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            sys.stderr.write(done.stderr[-6000:])
            results += [x for x in done.stdout.splitlines() if x.startswith("FIGURE")]
            print("\n".join(results), flush=True)
    counts = [int(x) for x in args.idle.split(",") if x]
    for count in counts:  # a fresh server for each count: its RSS is the idlers' alone
        with serving(cfg, workdir, args.port) as proc:
            results += asyncio.run(idle_phase(args.port, args.smtp_port, proc.pid, [count]))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results" / f"imap-{stamp}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(results) + "\n")
    print(f"results in {out}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
