"""Relay throughput to a local sink: postoffice next to Postfix (issue 4).

Description:
    Measures how fast an MTA passes mail on: messages for a non-local
    domain arrive from a trusted loopback client and are relayed to a smart
    host that throws them away. Per run, on loopback only:

    1. a sink on an ephemeral port: Postfix's `smtp-sink -c` (its running
       counters "sess=N quit=N mesg=N" are read from its output), or, when
       smtp-sink is missing (or --python-sink), this script's own asyncio
       sink in a subprocess printing the same counters;
    2. the relay: `postoffice serve` on a fresh site under --workdir with
       `[routing] smart_host = "[127.0.0.1]:SINKPORT"` and otherwise the
       defaults; then a PRIVATE Postfix instance (own config, queue and
       data directories under --workdir, smtpd on an ephemeral port,
       `relayhost = [127.0.0.1]:SINKPORT`, the settings of
       ../shared/peers/setup_postfix_dovecot.sh otherwise, Postfix's
       defaults for concurrency and connection caching). The machine's own
       Postfix is not touched;
    3. the load: `smtp-source -s SESSIONS -m N -l SIZE` (one message per
       connection), or a built-in asyncio client when smtp-source is
       missing;
    4. figures: relayed msg/s = N / (time from the first connection until
       the sink has counted N messages); accepted msg/s (until the load
       generator is done); connections the relay opened to the sink (the
       sink's session count once the relay is stopped and every connection
       to the sink is closed); the most connections to the sink open at
       once (sampled from /proc/net/tcp every 0.2 s); the relay's CPU per
       message (its process tree, reaped children included).

    Every figure is the median of --runs runs (3), printed as
    `FIGURE name median=... unit min=... max=... n=...` lines like
    ../shared/peers/mailbench.py, and a Markdown table for
    docs/benchmarks.md. Raw lines go to bench/results/ (not committed).
    Before each run the script waits (at most --quiet-wait seconds) for
    the machine to be nearly idle. A benchmark, not a test.

Security:
    Needs root for the Postfix part (master(8) starts as root; smtp-sink
    then drops to nobody). Listens and connects on 127.0.0.1 only.

Usage:
    python bench/relay_bench.py [--messages 5000] [--sessions 20] [--size 5120]
        [--runs 3] [--workdir /var/tmp/postoffice-relay-bench] [--only postoffice,postfix]
        [--python-sink] [--python-source] [--quiet-wait 20]

See also:
    bench/smtp_bench.py (SMTP in → Maildir), docs/benchmarks.md,
    tests/test_interop_postfix.py (the private Postfix instance, as a test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COUNTERS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")
CLK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ helpers


def tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    path = Path("/usr/sbin") / name
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connectable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def tree_cpu(root_pid: int) -> float:
    """CPU seconds of a process and its descendants, reaped children included."""
    parent: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        times[pid] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    total = 0
    for pid, ticks in times.items():
        p = pid
        while p and p != root_pid:
            p = parent.get(p, 0)
        if p == root_pid:
            total += ticks
    return total / CLK


def established_to(port: int) -> int:
    """Connections to 127.0.0.1:port that are ESTABLISHED on the server side."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split(None, 4)
            if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def sysstat() -> tuple[int, int]:
    """(all, idle) CPU ticks of the machine so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]


def busy_since(start: tuple[int, int]) -> float:
    """Percent of the machine's CPU time that was busy since `start` (sysstat())."""
    (t0, i0), (t1, i1) = start, sysstat()
    return 100 * (1 - (i1 - i0) / max(1, t1 - t0))


def busy_seconds_since(start: tuple[int, int]) -> float:
    """CPU seconds the machine was busy since `start` (sysstat()), all CPUs."""
    (t0, i0), (t1, i1) = start, sysstat()
    return ((t1 - t0) - (i1 - i0)) / CLK


def own_cpu() -> float:
    """CPU seconds of this script and its reaped children (the load generator)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_quiet(max_wait: float) -> None:
    """Wait (bounded) until the machine is nearly idle, so other load skews less."""
    if max_wait <= 0:
        return
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        start = sysstat()
        time.sleep(0.5)
        if busy_since(start) < 15:
            return
    print("# machine not quiet, running anyway", file=sys.stderr)


def emit(name: str, values: list[float], unit: str, details: str = "") -> str:
    if not values:
        line = f"FIGURE {name} median=NA {unit} n=0 {details}".rstrip()
    else:
        med = statistics.median(values)
        rsd = (
            f" rsd={100 * statistics.pstdev(values) / med:.1f}%" if len(values) > 1 and med else ""
        )
        line = (
            f"FIGURE {name} median={med:.4g} {unit} min={min(values):.4g} "
            f"max={max(values):.4g} n={len(values)}{rsd} {details}"
        ).rstrip()
    print(line, flush=True)
    return line


# ------------------------------------------------------------------ the sink


class Sink:
    """smtp-sink -c (or the Python sink) on 127.0.0.1:port; its counters, read live."""

    def __init__(self, python: bool) -> None:
        self.port = free_port()
        exe = tool("smtp-sink")
        if python or not exe:
            self.kind = "python-sink"
            cmd = [sys.executable, __file__, "--serve-sink", str(self.port)]
        else:
            self.kind = "smtp-sink"
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            cmd = [exe, "-c", *user, f"127.0.0.1:{self.port}", "1024"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.sess = self.quit = self.mesg = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not wait_until(lambda: connectable(self.port), 10):
            self.stop()
            raise RuntimeError(f"{self.kind} did not start on port {self.port}")
        # connectable() itself was one session
        wait_until(lambda: self.sess >= 1, 5)
        self.base_sess = self.sess

    def _read(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            buf += chunk
            found = COUNTERS.findall(buf)
            buf = buf[-200:]
            if found:
                with self._cond:
                    self.sess, self.quit, self.mesg = (int(x) for x in found[-1])
                    self._cond.notify_all()

    def wait_messages(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.mesg < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def sessions(self) -> int:
        return self.sess - self.base_sess

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        self._reader.join(5)


async def _sink_session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: dict[str, int]
) -> None:
    def report() -> None:
        sys.stdout.write(f"sess={counts['sess']} quit={counts['quit']} mesg={counts['mesg']}\r")
        sys.stdout.flush()

    writer.write(b"220 pysink ESMTP\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-pysink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n")
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                while await reader.readline() not in (b".\r\n", b""):
                    pass
                counts["mesg"] += 1
                report()
                writer.write(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"QUIT":
                counts["quit"] += 1
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            else:
                writer.write(b"250 2.0.0 Ok\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        counts["sess"] += 1
        report()
        writer.close()


def serve_sink(port: int) -> None:
    """The Python sink (when smtp-sink is missing): smtp-sink -c's counters on stdout."""
    counts = {"sess": 0, "quit": 0, "mesg": 0}

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _sink_session(r, w, counts), "127.0.0.1", port, limit=1 << 20, backlog=1024
        )
        async with server:
            await server.serve_forever()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())


# ------------------------------------------------------------------ the load


def make_message(size: int) -> bytes:
    head = (
        b"From: <sender@example.test>\r\nTo: <rcpt@sink.test>\r\nSubject: relay bench\r\n"
        b"Message-ID: <relay.bench@example.test>\r\n\r\n"
    )
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n"
    body = (line * (size // len(line) + 1))[: max(size - len(head) - 2, 0)] + b"\r\n"
    return head + body


async def python_source(port: int, total: int, sessions: int, size: int) -> int:
    """smtp-source's job when it is missing: one message per connection."""
    message = make_message(size)
    state = {"next": 0, "ok": 0}

    async def reply(reader: asyncio.StreamReader) -> int:
        while line := await reader.readline():
            if line[3:4] != b"-":
                return int(line[:3])
        raise ConnectionError("closed")

    async def worker() -> None:
        while state["next"] < total:
            state["next"] += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await reply(reader)
                for cmd in (
                    b"EHLO source\r\n",
                    b"MAIL FROM:<sender@example.test>\r\n",
                    b"RCPT TO:<rcpt@sink.test>\r\n",
                    b"DATA\r\n",
                    message + b".\r\n",
                ):
                    writer.write(cmd)
                    code = await reply(reader)
                    if code >= 400:
                        raise RuntimeError(f"{cmd[:10]!r}: {code}")
                state["ok"] += 1
                writer.write(b"QUIT\r\n")
                await reply(reader)
            finally:
                writer.close()

    await asyncio.gather(*(worker() for _ in range(sessions)))
    return state["ok"]


def push(port: int, args: argparse.Namespace) -> None:
    source = tool("smtp-source")
    if source and not args.python_source:
        cmd = [source, "-s", str(args.sessions), "-m", str(args.messages), "-l", str(args.size)]
        cmd += ["-f", "sender@example.test", "-t", "rcpt@sink.test", f"127.0.0.1:{port}"]
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, timeout=3600)
    else:
        ok = asyncio.run(python_source(port, args.messages, args.sessions, args.size))
        if ok != args.messages:
            raise RuntimeError(f"only {ok} of {args.messages} messages accepted")


# ------------------------------------------------------------------ the relays


class PostofficeRelay:
    name = "postoffice"

    def __init__(self, workdir: Path, sink_port: int) -> None:
        site = workdir / "postoffice"
        if site.exists():
            shutil.rmtree(site)
        site.mkdir(parents=True)
        (site / "users").write_text("")
        (site / "users").chmod(0o600)
        self.port = free_port()
        cfg = site / "postoffice.toml"
        cfg.write_text(
            'hostname = "relay.example.test"\n'
            f'state_dir = "{site}/state"\n'
            f'config_dir = "{site}"\n'
            'local_domains = ["example.test", "localhost"]\n'
            f'[smtp]\nlisten = ["127.0.0.1:{self.port}"]\nmax_connections = 1000\n'
            "[pop3]\nlisten = []\n[imap]\nlisten = []\n"  # only SMTP is measured here
            f'[routing]\nsmart_host = "[127.0.0.1]:{sink_port}"\n'
            '[log]\nlevel = "info"\nfile = ""\n'
        )
        self.log = site / "serve.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "postoffice", "-c", str(cfg), "serve"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        if not wait_until(lambda: connectable(self.port) or self.proc.poll() is not None, 30):
            raise RuntimeError(f"postoffice did not start; see {self.log}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"postoffice exited; see {self.log}")
        self.pid = self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


POSTFIX_SERVICES = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
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
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class PostfixRelay:
    """A private Postfix instance under workdir/postfix relaying everything to the sink."""

    name = "postfix"

    def __init__(self, workdir: Path, sink_port: int) -> None:
        postfix = tool("postfix")
        assert postfix
        self.postfix = postfix
        self.root = workdir / "postfix"
        if self.root.exists():
            shutil.rmtree(self.root)
        self.conf = self.root / "etc"
        for sub in ("etc", "spool", "data"):
            (self.root / sub).mkdir(parents=True)
        owner = pwd.getpwnam("postfix")
        os.chown(self.root / "data", owner.pw_uid, owner.pw_gid)
        self.port = free_port()
        # As ../shared/peers/setup_postfix_dovecot.sh configures the machine's Postfix.
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.root / "spool",
            "data_directory": self.root / "data",
            "myhostname": "pfrelay.example.test",
            "mydomain": "example.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[127.0.0.1]:{sink_port}",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "message_size_limit": "52428800",
            "alias_maps": "",
            "alias_database": "",
            "smtputf8_enable": "no",
            "default_process_limit": "200",
            "smtp_dns_support_level": "disabled",
            "biff": "no",
            "maillog_file": self.root / "maillog",
            "maillog_file_prefixes": self.root,
        }
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.conf / "master.cf").write_text(POSTFIX_SERVICES.format(port=self.port))
        for command in ("check", "start"):
            with open(self.root / "postfix-command.out", "a") as out:
                code = subprocess.run(
                    [postfix, "-c", str(self.conf), command],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60, check=False,
                ).returncode  # fmt: skip
            if code != 0:
                raise RuntimeError(f"postfix {command} failed; see {self.root}/maillog")
        if not wait_until(lambda: connectable(self.port), 30):
            raise RuntimeError(f"Postfix did not start; see {self.root}/maillog")
        self.pid = int((self.root / "spool" / "pid" / "master.pid").read_text().split()[0])

    def stop(self) -> None:
        with open(self.root / "postfix-command.out", "a") as out:
            subprocess.run(
                [self.postfix, "-c", str(self.conf), "stop"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60, check=False,
            )  # fmt: skip
        if not wait_until(lambda: not alive(self.pid), 30):
            os.kill(self.pid, signal.SIGKILL)  # the master this script started


def postfix_unusable() -> str | None:
    if not tool("postfix") or not tool("postconf"):
        return "Postfix is not installed"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix user"
    return None


# ------------------------------------------------------------------ one run


@dataclass
class Run:
    relayed_rate: float
    accepted_rate: float
    connections: int
    peak_connections: int
    cpu_ms_per_msg: float
    machine_busy: float
    other_cpu: float


FIGURES = (
    ("relayed_rate", "msg/s"),
    ("accepted_rate", "msg/s"),
    ("connections", "conn"),
    ("peak_connections", "conn"),
    ("cpu_ms_per_msg", "ms"),
    ("machine_busy", "%"),
    ("other_cpu", "s"),
)


def one_run(
    relay_class: type[PostofficeRelay] | type[PostfixRelay], args: argparse.Namespace
) -> Run:
    workdir = Path(args.workdir)
    sink = Sink(args.python_sink)
    relay: PostofficeRelay | PostfixRelay | None = None
    try:
        relay = relay_class(workdir, sink.port)
        wait_quiet(args.quiet_wait)
        peak = [0]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.2):
                peak[0] = max(peak[0], established_to(sink.port))

        sampler = threading.Thread(target=sample, daemon=True)
        cpu0, machine0 = tree_cpu(relay.pid), sysstat()
        sink0, own0 = tree_cpu(sink.proc.pid), own_cpu()
        t0 = time.monotonic()
        sampler.start()
        push(relay.port, args)
        t_accepted = time.monotonic() - t0
        complete = sink.wait_messages(args.messages, args.timeout)
        t_relayed = time.monotonic() - t0
        cpu, busy = tree_cpu(relay.pid) - cpu0, busy_since(machine0)
        # CPU used by neither the relay, the sink nor the load generator: other load.
        other = busy_seconds_since(machine0) - cpu
        other -= tree_cpu(sink.proc.pid) - sink0 + own_cpu() - own0
        sampling.set()
        sampler.join()
        if not complete:
            raise RuntimeError(f"{relay.name}: only {sink.mesg} of {args.messages} at the sink")
        relay.stop()
        relay = None
        # Every connection the relay opened has ended once none is left established.
        if not wait_until(lambda: established_to(sink.port) == 0, 30):
            print("# connections to the sink still open after the relay stopped", file=sys.stderr)
        time.sleep(0.2)  # the sink's last counter update
        return Run(
            relayed_rate=args.messages / t_relayed,
            accepted_rate=args.messages / t_accepted,
            connections=sink.sessions(),
            peak_connections=peak[0],
            cpu_ms_per_msg=1000 * cpu / args.messages,
            machine_busy=busy,
            other_cpu=max(0.0, other),
        )
    finally:
        if relay is not None:
            relay.stop()
        sink.stop()


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default="/var/tmp/postoffice-relay-bench")
    ap.add_argument("--only", default="postoffice,postfix")
    ap.add_argument("--python-sink", action="store_true", help="the Python sink, not smtp-sink")
    ap.add_argument(
        "--python-source", action="store_true", help="the Python client, not smtp-source"
    )
    ap.add_argument("--quiet-wait", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for one run to finish")
    ap.add_argument("--serve-sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_sink:
        serve_sink(args.serve_sink)
        return 0
    relays: list[type[PostofficeRelay] | type[PostfixRelay]] = []
    for name in args.only.split(","):
        if name == "postoffice":
            relays.append(PostofficeRelay)
        elif name == "postfix":
            why = postfix_unusable()
            if why:
                print(f"# Postfix skipped: {why}", file=sys.stderr)
            else:
                relays.append(PostfixRelay)
    sink_kind = "python-sink" if args.python_sink or not tool("smtp-sink") else "smtp-sink"
    source_kind = "python" if args.python_source or not tool("smtp-source") else "smtp-source"
    print(
        f"# {args.messages} messages x {args.size} bytes, {args.sessions} sessions "
        f"({source_kind}) -> relay -> {sink_kind}; median of {args.runs}",
        file=sys.stderr,
    )
    # Runs alternate between the relays, so that load drifting over time hits both alike.
    runs: dict[str, list[Run]] = {r.name: [] for r in relays}
    for i in range(args.runs):
        for relay_class in relays:
            run = one_run(relay_class, args)
            print(f"# {relay_class.name} run {i}: {run}", file=sys.stderr, flush=True)
            runs[relay_class.name].append(run)
    lines: list[str] = []
    details = f"msgs={args.messages} sink={sink_kind} source={source_kind}"
    for relay_name, relay_runs in runs.items():
        for key, unit in FIGURES:
            values = [float(getattr(r, key)) for r in relay_runs]
            name = f"relay.{relay_name}.size{args.size}.c{args.sessions}.{key}"
            lines.append(emit(name, values, unit, details))
    print("\n| figure (median of runs, min–max) | " + " | ".join(runs) + " |")
    print("| --- |" + " --- |" * len(runs))
    for key, unit in FIGURES:
        cells = []
        for relay_runs in runs.values():
            v = [float(getattr(r, key)) for r in relay_runs]
            cells.append(f"{statistics.median(v):.4g} ({min(v):.4g}–{max(v):.4g})")
        print(f"| {key} ({unit}) | " + " | ".join(cells) + " |")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"relay-{stamp}.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
