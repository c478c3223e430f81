"""Commit throughput of FileSpool on this disk, with 1 and 20 concurrent committers.

Prints commits/s and how many directory fsyncs group commit saved; asserts
only that concurrent commits share directory fsyncs (no timing assertions).
Run: pytest -s -m slow tests/test_queue_bench.py
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.spool import FileSpool

BODY = b"Subject: bench\r\n\r\n" + b"x" * 4000 + b"\r\n"  # a typical 4 KB message
COMMITS = 200


async def committer(spool: FileSpool, n: int) -> None:
    for _ in range(n):
        msg = spool.begin()
        msg.write(BODY)
        env = Envelope(
            queue_id=msg.queue_id,
            sender="a@example.test",
            recipients=(EnvelopeRecipient(address="b@example.test"),),
            arrival_time=time.time(),
        )
        await spool.commit(msg, env)


@pytest.mark.slow
@pytest.mark.parametrize("committers", [1, 20])
async def test_commit_rate(tmp_path: Path, committers: int) -> None:
    spool = FileSpool(tmp_path)
    try:
        start = time.perf_counter()
        await asyncio.gather(*(committer(spool, COMMITS // committers) for _ in range(committers)))
        elapsed = time.perf_counter() - start
        st = spool.statistics()
    finally:
        spool.close()
    assert st.commits == COMMITS and st.dir_fsync_requests == 2 * COMMITS
    print(
        f"\n{committers:2d} committers: {COMMITS / elapsed:6.0f} commits/s, "
        f"{st.file_fsyncs} file fsyncs, {st.dir_fsyncs} directory fsyncs "
        f"for {st.dir_fsync_requests} asked"
    )
    if committers > 1:
        assert st.dir_fsyncs < st.dir_fsync_requests  # shared
