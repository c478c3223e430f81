"""FakeClock: a clock for tests that moves only when told to.

Description:
    A callable returning seconds since the epoch, usable wherever
    production code takes `clock: Callable[[], float] = time.time`
    (queue/manager.py, smtp/session.py):

        clock = FakeClock()            # 2027-01-15 08:00:00 UTC
        manager = QueueManager(..., clock=clock)
        clock.advance(300)
        await manager.run_due()

    Nothing sleeps: code that computes waits from the clock sees time pass
    only through advance() and set().

See also:
    testing/memory_spool.py, CONVENTIONS.md §12 (no sleeps in tests).
"""

from __future__ import annotations

DEFAULT_START = 1_800_000_000.0  # a fixed, recognisable instant: 2027-01-15 08:00:00 UTC


class FakeClock:
    """A manual clock: `clock()` is the time, `advance(s)` moves it forward."""

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now

    @property
    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds` (>= 0); the new time."""
        if seconds < 0:
            raise ValueError("a FakeClock does not go backwards; use set()")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        """Jump to `when` (backwards too: to test a stepped clock)."""
        self._now = float(when)

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
