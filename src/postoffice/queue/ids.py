"""Queue ids: names for queued messages that sort by arrival time and never repeat.

Description:
    A queue id is 22 characters of Crockford base32 (digits and upper-case
    letters without I, L, O, U), so it is safe as a file name, in a log line
    and in a `Received:` header:

        TTTTTTTTTTT PPPPP SSSS RR
        │           │     │    └ 10 random bits (a clock stepped back, a pid reused)
        │           │     └ 20 bits of a per-process counter
        │           └ 25 bits of the process id (Linux pid_max is at most 2**22)
        └ 55 bits of microseconds since the epoch (good until the year 3111)

    Fixed width and a big-endian time first mean that sorting ids as strings
    sorts them by the time they were made, as Postfix's long queue ids do;
    the pid and the counter make ids from two processes, or two messages in
    the same microsecond, differ; the random bits cover a pid reused after a
    restart while the clock was stepped back. No state is kept on disk.

    new_queue_id(now=None) -> str       a fresh id (now: seconds since the epoch)
    queue_id_time(qid) -> float         the time an id was made, in seconds
    is_queue_id(s) -> bool              whether s has the shape of a queue id

Security:
    Pure; ids are not secret and not meant to be unguessable.

See also:
    queue/spool.py (file names), queue/envelope.py, DESIGN.md "The spool".
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
_VALUE = {c: i for i, c in enumerate(ALPHABET)}

_TIME_CHARS = 11
_PID_CHARS = 5
_SEQ_CHARS = 4
_RAND_CHARS = 2
LENGTH = _TIME_CHARS + _PID_CHARS + _SEQ_CHARS + _RAND_CHARS

_counter = itertools.count()  # next() is atomic under the GIL: safe across threads
# The random characters only separate processes that reuse a pid (containers,
# restarts): a seeded PRNG serves, and costs no getrandom(2) per message.
_rng = random.Random(secrets.randbits(64))
os.register_at_fork(after_in_child=lambda: _rng.seed(secrets.randbits(64)))


def _encode(value: int, width: int) -> str:
    """`value` modulo 32**width as `width` base32 digits, most significant first."""
    out = []
    for _ in range(width):
        out.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def _decode(text: str) -> int:
    value = 0
    for c in text:
        value = (value << 5) | _VALUE[c]
    return value


def new_queue_id(now: float | None = None) -> str:
    """A new queue id for time `now` (default: the current time)."""
    t = time.time() if now is None else now
    micros = max(0, round(t * 1_000_000))
    if micros >= 32**_TIME_CHARS:
        raise ValueError(f"time {t} is out of range for a queue id")
    return (
        _encode(micros, _TIME_CHARS)
        + _encode(os.getpid(), _PID_CHARS)
        + _encode(next(_counter), _SEQ_CHARS)
        + _encode(_rng.getrandbits(5 * _RAND_CHARS), _RAND_CHARS)
    )


def is_queue_id(s: str) -> bool:
    """True when `s` has the exact shape of a queue id (length and alphabet)."""
    return len(s) == LENGTH and all(c in _VALUE for c in s)


def queue_id_time(qid: str) -> float:
    """The time, in seconds since the epoch, at which `qid` was made."""
    if not is_queue_id(qid):
        raise ValueError(f"not a queue id: {qid!r}")
    return _decode(qid[:_TIME_CHARS]) / 1_000_000
