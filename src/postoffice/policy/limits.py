"""policy/limits — per-client limits: concurrent connections, connection rate, message rate.

Description:
    One ConnectionLimits object per listener group counts, per client
    address, what Postfix's anvil(8) counts:

        allow_connect(ip, *, max_connections=None, max_rate=None) -> Reply | None
            None when a new connection from `ip` is within the limits (and
            then counts it towards the rate); otherwise the refusal:
                421 4.7.0 Too many connections from your address, try again later
                421 4.7.0 Connection rate limit exceeded for your address, try again later
            (421 closes the connection, RFC 5321 §3.8 and §4.2.2).
        connected(ip) / disconnected(ip)
            the connection was opened / closed: the concurrency count.
            Call connected() after an allowed allow_connect() and
            disconnected() exactly once for each connected().
        allow_message(ip, *, max_messages=None) -> Reply | None
            at MAIL FROM: None when one more message is within the hourly
            limit (and counts it), else
                451 4.7.1 Message rate limit exceeded for your address, try again later
            (counted at MAIL FROM, as anvil counts smtpd's "message
            delivery requests", so RSET-and-MAIL loops count too).
        statistics() -> {clients, connections, refused_concurrency,
                         refused_rate, refused_messages}

    The keyword arguments override the configured limit for one client
    (the per-IP rules: tcprules MAXCONNIP, MAXCONNRATE, MAXMSGHOUR, and
    the listener overrides of policy/listener.py). A limit of 0 means no
    limit. `group` (every method takes it; "" by default) counts apart:
    the policy engine passes the kind of listener (smtp, submission,
    qmtp), so each kind has its own counts, as anvil(8) counts per service.

    Rates are token buckets: a client may make `limit` connections at
    once, then one more every window/limit seconds (a connection rate of 60
    per minute refills one connection a second); an idle client is back to
    the full allowance after one window. Refused attempts take no token.

    Clients are counted by address; IPv6 clients by their /64
    (`ipv6_prefix`), the block one subscriber is usually given, so
    walking through a /64 does not escape the limits. IPv4-mapped IPv6
    addresses count as the IPv4 address.

Memory:
    Bounded: at most `max_clients` buckets per limit (least recently used
    dropped first: the oldest are the most refilled, and a full bucket is
    the same as none), full buckets are dropped as they are seen, and the
    concurrency table holds only clients with open connections.

Config:
    [policy] max_connections_per_ip, max_connection_rate (per minute),
    max_messages_per_hour.

See also:
    Postfix anvil(8), smtpd_client_connection_count_limit,
    smtpd_client_connection_rate_limit, smtpd_client_message_rate_limit;
    tcpserver -c / the MAXCONNIP patch; RFC 5321 §4.2.2, RFC 3463 (X.7.0,
    X.7.1); policy/engine.py, policy/tcprules.py.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from postoffice.smtp.replies import Reply

TOO_MANY_FROM_YOU: Final = Reply(
    code=421, enhanced="4.7.0", text="Too many connections from your address, try again later"
)
CONNECTION_RATE: Final = Reply(
    code=421,
    enhanced="4.7.0",
    text="Connection rate limit exceeded for your address, try again later",
)
MESSAGE_RATE: Final = Reply(
    code=451, enhanced="4.7.1", text="Message rate limit exceeded for your address, try again later"
)
MINUTE: Final = 60.0
HOUR: Final = 3600.0
_PRUNE_PER_CALL: Final = 8


def client_key(ip: str, ipv6_prefix: int = 64) -> str:
    """What a client is counted as: the IPv4 address, or the IPv6 /prefix."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, ipv6_prefix), strict=False))
    return str(addr)


class _Buckets:
    """Token buckets by client, at most `size` of them (LRU)."""

    def __init__(self, window: float, size: int) -> None:
        self.window = window
        self.size = size
        self._buckets: OrderedDict[str, tuple[float, float, int]] = OrderedDict()

    def take(self, key: str, limit: int, now: float) -> bool:
        """One token for `key` if it has one; False when the limit is reached."""
        if limit <= 0:
            return True
        tokens = self._level(key, limit, now)
        if tokens < 1.0:
            return False
        self._buckets[key] = (tokens - 1.0, now, limit)
        self._buckets.move_to_end(key)
        self._prune(now)
        return True

    def _level(self, key: str, limit: int, now: float) -> float:
        state = self._buckets.get(key)
        if state is None:
            return float(limit)
        tokens, then, _ = state
        elapsed = max(0.0, now - then)  # a clock stepped backwards refills nothing
        return min(float(limit), tokens + elapsed * limit / self.window)

    def _prune(self, now: float) -> None:
        for _ in range(_PRUNE_PER_CALL):
            if not self._buckets:
                return
            key, (tokens, then, limit) = next(iter(self._buckets.items()))
            full = tokens + max(0.0, now - then) * limit / self.window >= limit
            if not full and len(self._buckets) <= self.size:
                return
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class ConnectionLimits:
    """Per-client connection and message limits (see the module doc)."""

    def __init__(
        self,
        *,
        max_connections_per_ip: int = 0,
        max_connection_rate: int = 0,
        max_messages_per_hour: int = 0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
        ipv6_prefix: int = 64,
    ) -> None:
        self.max_connections_per_ip = max(0, max_connections_per_ip)
        self.max_connection_rate = max(0, max_connection_rate)
        self.max_messages_per_hour = max(0, max_messages_per_hour)
        self._clock = clock
        self._ipv6_prefix = ipv6_prefix
        self._open: dict[str, int] = {}
        self._rates = _Buckets(MINUTE, max_clients)
        self._messages = _Buckets(HOUR, max_clients)
        self._stats = {"refused_concurrency": 0, "refused_rate": 0, "refused_messages": 0}

    def _key(self, ip: str, group: str) -> str:
        key = client_key(ip, self._ipv6_prefix)
        return f"{group} {key}" if group else key

    def open_connections(self, ip: str, *, group: str = "") -> int:
        return self._open.get(self._key(ip, group), 0)

    def allow_connect(
        self,
        ip: str,
        *,
        max_connections: int | None = None,
        max_rate: int | None = None,
        group: str = "",
    ) -> Reply | None:
        """None when a new connection is allowed (its rate token taken), else a 421."""
        key = self._key(ip, group)
        limit = self.max_connections_per_ip if max_connections is None else max_connections
        if limit > 0 and self._open.get(key, 0) >= limit:
            self._stats["refused_concurrency"] += 1
            return TOO_MANY_FROM_YOU
        rate = self.max_connection_rate if max_rate is None else max_rate
        if not self._rates.take(key, rate, self._clock()):
            self._stats["refused_rate"] += 1
            return CONNECTION_RATE
        return None

    def connected(self, ip: str, *, group: str = "") -> None:
        key = self._key(ip, group)
        self._open[key] = self._open.get(key, 0) + 1

    def disconnected(self, ip: str, *, group: str = "") -> None:
        key = self._key(ip, group)
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def allow_message(
        self, ip: str, *, max_messages: int | None = None, group: str = ""
    ) -> Reply | None:
        """None when one more message this hour is allowed (and counted), else a 451."""
        limit = self.max_messages_per_hour if max_messages is None else max_messages
        if not self._messages.take(self._key(ip, group), limit, self._clock()):
            self._stats["refused_messages"] += 1
            return MESSAGE_RATE
        return None

    def statistics(self) -> dict[str, int]:
        return {
            "clients": len(self._open),
            "connections": sum(self._open.values()),
            "rate_buckets": len(self._rates),
            "message_buckets": len(self._messages),
            **self._stats,
        }


__all__ = [
    "CONNECTION_RATE",
    "MESSAGE_RATE",
    "TOO_MANY_FROM_YOU",
    "ConnectionLimits",
    "client_key",
]
