"""Shared fixtures: a configured state directory, and a live `postoffice serve`.

The live server runs as a subprocess (`python -m postoffice serve`) on an
ephemeral loopback port; its bound address is read from the log line
"listening for SMTP on HOST:PORT". Nothing here sleeps for a fixed time:
waits poll a condition with a deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOSTNAME = "mail.example.test"
DOMAIN = "example.test"
PASSWORD = "secret-pw"
DEFAULT_USERS = ("alice@example.test", "bob@example.test")


def plain_users_file(path: Path, users: tuple[str, ...] | list[str]) -> None:
    # {PLAIN} keeps tests fast; hashing is covered by the auth tests.
    path.write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in users))
    path.chmod(0o600)


@dataclass
class Site:
    """A configuration directory with postoffice.toml, users and a state dir."""

    root: Path
    config: Path
    state: Path
    extra: dict[str, str] = field(default_factory=dict)

    def maildir(self, address: str) -> Path:
        local, _, domain = address.partition("@")
        return self.state / "mail" / domain / local

    def delivered(self, address: str) -> list[Path]:
        new = self.maildir(address) / "new"
        return sorted(new.iterdir()) if new.is_dir() else []


def make_site(
    root: Path,
    *,
    users: tuple[str, ...] | list[str] = DEFAULT_USERS,
    domains: tuple[str, ...] = ("localhost", DOMAIN, HOSTNAME),
    extra_toml: str = "",
) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    state = root / "state"
    toml = (
        f'hostname = "{HOSTNAME}"\n'
        f'state_dir = "{state}"\n'
        f'config_dir = "{root}"\n'
        f"local_domains = {list(domains)!r}\n".replace("'", '"')
        + '[log]\nfile = "{state_dir}/log/maillog"\nlevel = "info"\n'
        # Tests never query real DNS: a closed loopback port fails at once (temporary).
        + ("" if "[dns]" in extra_toml else '[dns]\nnameservers = ["127.0.0.1:1"]\ntimeout = 1.0\n')
        # IMAP listens on 127.0.0.1:2143 by default: tests take an ephemeral port.
        + ("" if "[imap]" in extra_toml else '[imap]\nlisten = ["127.0.0.1:0"]\n')
        # POP3 likewise listens on 127.0.0.1:2110 by default.
        + ("" if "[pop3]" in extra_toml else '[pop3]\nlisten = ["127.0.0.1:0"]\n')
        + extra_toml
    )
    cfg = root / "postoffice.toml"
    cfg.write_text(toml)
    plain_users_file(root / "users", users)
    return Site(root=root, config=cfg, state=state)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path / "site")


class LiveServer:
    """A running `postoffice serve` subprocess."""

    def __init__(self, site: Site, *, env: dict[str, str] | None = None) -> None:
        self.site = site
        self.lines: list[str] = []
        self._cond = threading.Condition()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postoffice", "-c", str(site.config), "serve",
             "--listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=full_env,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        m = self.wait_for(r"listening for SMTP on (\S+):(\d+)", timeout=30)
        self.host, self.port = m.group(1), int(m.group(2))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, *, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and seen == len(self.lines)):
                    tail = "\n".join(self.lines[-20:])
                    raise AssertionError(f"no log line matching {pattern!r}:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout)
        self._reader.join(timeout)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code


@pytest.fixture
def live_server(site: Site) -> Iterator[LiveServer]:
    server = LiveServer(site)
    try:
        yield server
    finally:
        server.stop()


def wait_until(check: Callable[[], bool], *, timeout: float = 10.0) -> bool:
    """Poll `check` until true or the deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return check()


# Programs the end-to-end tests drive (Debian packages). `.ci/run` installs
# them and sets POSTOFFICE_REQUIRE_CLIENTS=1: then a missing one fails the test
# instead of skipping it, so CI cannot pass with the real-client tests unrun.
def need_programs(*names: str, package: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (Debian package {package})"
    if os.environ.get("POSTOFFICE_REQUIRE_CLIENTS") == "1":
        pytest.fail(message)
    pytest.skip(message)
