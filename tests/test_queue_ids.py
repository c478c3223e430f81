"""Queue ids: fixed width, file-name safe, sorted by time, unique."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from postoffice.queue.ids import LENGTH, is_queue_id, new_queue_id, queue_id_time

# Microsecond times from 1970 to 2200 (floats keep microseconds exactly up to ~2255).
times = st.integers(min_value=0, max_value=7_258_118_400 * 1_000_000).map(lambda us: us / 1e6)


def test_shape() -> None:
    qid = new_queue_id()
    assert len(qid) == LENGTH == 22
    assert is_queue_id(qid)
    assert qid == qid.upper() and qid.isalnum()
    assert not set(qid) & set("ILOU")


@given(times)
def test_time_round_trips(t: float) -> None:
    assert abs(queue_id_time(new_queue_id(t)) - t) < 1e-6


@given(times, times)
def test_sorts_by_time(a: float, b: float) -> None:
    qa, qb = new_queue_id(a), new_queue_id(b)
    if round(a * 1e6) < round(b * 1e6):
        assert qa < qb
    elif round(a * 1e6) > round(b * 1e6):
        assert qa > qb


@given(st.lists(times, min_size=2, max_size=50))
def test_unique_even_at_the_same_instant(ts: list[float]) -> None:
    same = [new_queue_id(ts[0]) for _ in range(len(ts))]
    mixed = [new_queue_id(t) for t in ts]
    assert len(set(same)) == len(same)
    assert len(set(mixed + same)) == len(mixed) + len(same)


def test_unique_in_a_burst() -> None:
    ids = [new_queue_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    # Sorted, unless the system clock was stepped back meanwhile.
    assert ids == sorted(ids) or any(
        queue_id_time(a) > queue_id_time(b) for a, b in itertools.pairwise(ids)
    )


def test_unique_across_processes() -> None:
    code = (
        "from postoffice.queue.ids import new_queue_id as n\n"
        "print(' '.join(n(1.8e9) for _ in range(200)))"
    )
    outs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(3)
    ]
    here = [new_queue_id(1.8e9) for _ in range(200)]
    every = [q for out in outs for q in out] + here
    assert len(set(every)) == len(every) == 800
    assert os.getpid()  # the pid is part of the id: other processes differ in it


@given(st.text(max_size=30))
def test_is_queue_id_rejects_other_text(s: str) -> None:
    if is_queue_id(s):
        assert len(s) == LENGTH and s.isascii() and s.upper() == s
    for bad in ("", "../../etc/passwd", "a" * LENGTH, "I" * LENGTH, new_queue_id() + "X"):
        assert not is_queue_id(bad)
