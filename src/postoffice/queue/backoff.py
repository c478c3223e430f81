"""Retry schedule: when to try a deferred message again, and when to give up.

Description:
    After the n-th failed attempt (n = 1, 2, …) a message waits

        min(max_backoff, min_backoff * 2**(n-1))

    seconds, shortened by up to `jitter` (a fraction, 0 ≤ jitter < 1) so
    that messages deferred together by one outage do not all come back in
    the same second. The jitter is a hash of (seed, queue id, attempt), not
    a random draw: the schedule is a pure function and tests can predict it.
    Jitter only shortens a wait, so max_backoff stays a true upper bound.

    A message is expired once it has been queued `max_lifetime` seconds;
    its pending recipients are then returned to the sender. The last wait
    is cut short so that the final attempt happens at the expiry time, not
    up to max_backoff after it.

    Backoff.from_config(config, *, jitter=0.0, seed="") -> Backoff
    Backoff.delay(attempts, queue_id="") -> float
    Backoff.next_attempt(*, now, arrival_time, attempts, queue_id="") -> float
    Backoff.expired(*, arrival_time, now) -> bool

Config:
    [queue] min_backoff, max_backoff, max_lifetime.

See also:
    RFC 5321 §4.5.4.1 (retry strategy: wait between attempts, give up after
    4-5 days; the default first retry after 5 minutes is Postfix's, more
    eager than the RFC's 30 minutes, and grows to it within three attempts),
    queue/manager.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from postoffice.config.schema import QueueConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """An exponential, capped retry schedule with deterministic jitter."""

    min_backoff: float = 300.0
    max_backoff: float = 4 * 3600.0
    max_lifetime: float = 5 * 86400.0
    jitter: float = 0.0
    seed: str = ""

    def __post_init__(self) -> None:
        if self.min_backoff < 0 or self.max_backoff < self.min_backoff:
            raise ValueError("need 0 <= min_backoff <= max_backoff")
        if self.max_lifetime < 0:
            raise ValueError("max_lifetime must not be negative")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")

    @classmethod
    def from_config(cls, config: QueueConfig, *, jitter: float = 0.0, seed: str = "") -> Backoff:
        return cls(
            min_backoff=config.min_backoff,
            max_backoff=config.max_backoff,
            max_lifetime=config.max_lifetime,
            jitter=jitter,
            seed=seed,
        )

    def _fraction(self, queue_id: str, attempts: int) -> float:
        """A number in [0, 1) fixed by (seed, queue id, attempts)."""
        digest = hashlib.blake2b(
            f"{self.seed}\0{queue_id}\0{attempts}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2**64

    def delay(self, attempts: int, queue_id: str = "") -> float:
        """Seconds to wait after the `attempts`-th failed attempt (attempts >= 1)."""
        n = max(1, attempts)
        # 2**(n-1) overflows a float past n ≈ 1024; the cap is reached long before.
        growth = 2.0 ** min(n - 1, 64)
        base = min(self.max_backoff, self.min_backoff * growth)
        if self.jitter:
            base *= 1.0 - self.jitter * self._fraction(queue_id, n)
        return base

    def next_attempt(
        self, *, now: float, arrival_time: float, attempts: int, queue_id: str = ""
    ) -> float:
        """When to try again after the `attempts`-th failure at time `now`.

        Never later than the expiry time (unless that has passed already: then `now`).
        """
        due = now + self.delay(attempts, queue_id)
        return min(due, max(now, arrival_time + self.max_lifetime))

    def expired(self, *, arrival_time: float, now: float) -> bool:
        """Whether a message that arrived at `arrival_time` is too old to retry at `now`."""
        return now - arrival_time >= self.max_lifetime
