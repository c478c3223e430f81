"""auth/throttle — slow down password guessing: a failure delay per client address that doubles.

Description:
    FailureThrottle(base=2.0, cap=15.0, max_entries=10000, forget_after=600.0,
                    clock=time.monotonic)

    failed(ip) -> float
        Record a failed authentication from `ip` and return how long to
        wait before sending the failure reply: `base` for the first
        failure, doubling with each further one, never more than `cap`
        (Dovecot's auth_failure_delay is 2 s; 15 s is its usual ceiling).
    delay_for(ip) -> float
        The delay the failures recorded for `ip` call for now (the value the
        last failed() returned), 0.0 when there are none.
    succeeded(ip)
        A success from `ip` forgets its failures.
    statistics() -> dict[str, int]

    Failures older than `forget_after` seconds (by the injected clock) no
    longer count. Addresses are grouped the way an attacker holds them: an
    IPv6 client by its /64 network, an IPv4-mapped IPv6 address as IPv4;
    anything that is not an IP address is used as given (e.g. a Unix
    socket peer). Memory is bounded: at most `max_entries` clients are
    remembered, the least recently seen are forgotten first (LRU).

    The caller sleeps (asyncio.sleep) before answering a failure and
    applies the delay to every kind of failure alike, so timing does not
    tell an unknown user from a wrong password. Only failures are delayed:
    a client that knows its password is never slowed down.

Config:
    [auth] failure_delay (base), max_failure_delay (cap) — FailureThrottle.from_config.

See also:
    Dovecot auth_failure_delay; smtp/session.py, pop3/, imap/ (the callers);
    postoffice.testing.FakeClock.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from postoffice.config.schema import AuthConfig

__all__ = ["FailureThrottle", "client_key"]


def client_key(ip: str) -> str:
    """The key failures are counted under: IPv6 /64, IPv4, or the text as given."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(addr) >> 64 << 64, 64)))
    return str(addr)


@dataclass(slots=True)
class _Entry:
    failures: int
    last: float


class FailureThrottle:
    """Per-client failure delays (see the module docstring)."""

    def __init__(
        self,
        *,
        base: float = 2.0,
        cap: float = 15.0,
        max_entries: int = 10_000,
        forget_after: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if base < 0 or cap < 0 or max_entries < 1 or forget_after <= 0:
            raise ValueError("FailureThrottle: negative delay, no room, or no memory span")
        self._base = base
        self._cap = max(cap, base)
        self._max = max_entries
        self._forget = forget_after
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._failed = 0
        self._evicted = 0

    @classmethod
    def from_config(
        cls, config: AuthConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> FailureThrottle:
        return cls(base=config.failure_delay, cap=config.max_failure_delay, clock=clock)

    def _delay(self, failures: int) -> float:
        if failures <= 0 or self._base == 0:
            return 0.0
        # base * 2**(n-1), capped; the exponent is bounded so it never overflows.
        return min(self._cap, self._base * 2.0 ** min(failures - 1, 64))

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.last >= self._forget:
            del self._entries[key]
            return None
        return entry

    def delay_for(self, ip: str) -> float:
        """The delay the recorded failures of `ip` call for (0.0 without any)."""
        key = client_key(ip)
        with self._lock:
            entry = self._live(key, self._clock())
            return self._delay(entry.failures if entry is not None else 0)

    def failed(self, ip: str) -> float:
        """Record a failure from `ip`; the delay before answering it."""
        key = client_key(ip)
        now = self._clock()
        with self._lock:
            self._failed += 1
            entry = self._live(key, now)
            if entry is None:
                entry = self._entries[key] = _Entry(failures=0, last=now)
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
                    self._evicted += 1
            else:
                self._entries.move_to_end(key)
            entry.failures += 1
            entry.last = now
            return self._delay(entry.failures)

    def succeeded(self, ip: str) -> None:
        """A success from `ip`: forget its failures."""
        with self._lock:
            self._entries.pop(client_key(ip), None)

    def statistics(self) -> dict[str, int]:
        """Counters: clients (remembered now), failed (ever), evicted (by the LRU bound)."""
        with self._lock:
            return {
                "clients": len(self._entries),
                "failed": self._failed,
                "evicted": self._evicted,
            }
