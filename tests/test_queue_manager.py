"""QueueManager: immediate delivery, deferral and retry on a fake clock, bounces, limits, stop."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from postoffice.config.schema import QueueConfig
from postoffice.errors import TempFail
from postoffice.message.dsn import parse_dsn
from postoffice.queue.backoff import Backoff
from postoffice.queue.bounce import Notifier
from postoffice.queue.envelope import Envelope, EnvelopeRecipient, RcptState
from postoffice.queue.interfaces import Bounced, Deferred, Delivered, Outcome
from postoffice.queue.mailq import format_mailq
from postoffice.queue.manager import NO_ROUTE, QueueManager, format_delay
from postoffice.queue.spool import FileSpool
from postoffice.smtp.replies import Reply
from postoffice.testing.clock import FakeClock
from postoffice.testing.memory_spool import MemorySpool

OK = Reply(code=250, enhanced="2.0.0", text="Ok")
LATER = Reply(code=451, enhanced="4.2.0", text="Mailbox busy")
NO_USER = Reply(code=550, enhanced="5.1.1", text="User unknown")

Decide = Callable[[Envelope, EnvelopeRecipient], str]  # "sent", "deferred" or "bounced"


@dataclass
class FakeAgent:
    """A DeliveryAgent whose answers come from `decide`; can be made to wait."""

    decide: Decide = lambda env, r: "sent"
    gate: asyncio.Event | None = None
    calls: list[tuple[str, list[str]]] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def deliver(
        self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
    ) -> list[Outcome]:
        self.calls.append((envelope.queue_id, [r.address for r in recipients]))
        self.called.set()
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.running -= 1
        out: list[Outcome] = []
        for r in recipients:
            verdict = self.decide(envelope, r)
            if verdict == "sent":
                out.append(Delivered(recipient=r, reply=OK, detail="delivered to maildir"))
            elif verdict == "deferred":
                out.append(Deferred(recipient=r, reply=LATER, relay="local"))
            else:
                out.append(Bounced(recipient=r, reply=NO_USER, relay="local"))
        return out


def transport(env: Envelope, rcpt: EnvelopeRecipient) -> str:
    return "local" if rcpt.address.endswith("@example.test") else "smtp"


CONFIG = QueueConfig(
    min_backoff=300, max_backoff=3600, max_lifetime=5 * 86400, delivery_concurrency=20
)


@dataclass
class Rig:
    spool: MemorySpool
    clock: FakeClock
    agent: FakeAgent
    manager: QueueManager
    backoff: Backoff

    async def commit(
        self, *rcpts: str, sender: str = "alice@example.test", submit: bool = True
    ) -> Envelope:
        """Commit a message and hand it to the manager, as the SMTP session does."""
        msg = self.spool.begin()
        msg.write(b"Subject: test\r\n\r\nhello\r\n")
        env = Envelope(
            queue_id=msg.queue_id,
            sender=sender,
            recipients=tuple(EnvelopeRecipient(address=r) for r in rcpts),
            arrival_time=self.clock(),
            size=msg.size,
        )
        await self.spool.commit(msg, env)
        if submit:
            self.manager.submit_nowait(env)
        return env

    async def settle(self) -> None:
        await self.manager.wait_idle()

    def stored(self, qid: str) -> Envelope:
        entry = self.spool.load(qid)
        assert entry is not None
        return entry.envelope


def make_rig(
    config: QueueConfig = CONFIG,
    decide: Decide | None = None,
    **kw: object,
) -> Rig:
    spool = MemorySpool()
    clock = FakeClock()
    agent = FakeAgent() if decide is None else FakeAgent(decide=decide)
    manager = QueueManager(spool, {"local": agent}, transport, config, clock, **kw)  # type: ignore[arg-type]
    return Rig(spool, clock, agent, manager, Backoff.from_config(config, jitter=0.1))


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.manager.stop(timeout=0)


@pytest.fixture
def mail_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="postoffice.mail")
    caplog.set_level(logging.INFO, logger="postoffice.delivery.local")
    return caplog


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    names = ("postoffice.mail", "postoffice.delivery.local")
    return [r.getMessage() for r in caplog.records if r.name in names]


async def test_immediate_delivery(rigs: list[Rig], mail_log: pytest.LogCaptureFixture) -> None:
    rig = make_rig()
    rigs.append(rig)
    await rig.manager.start()
    env = await rig.commit("bob@example.test", "carol@example.test", submit=False)
    rig.clock.advance(0.25)
    rig.manager.submit_nowait(env)
    await rig.manager.wait_idle()
    assert rig.agent.calls == [(env.queue_id, ["bob@example.test", "carol@example.test"])]
    assert rig.spool.messages == {}
    log = lines(mail_log)
    assert log[-1] == f"{env.queue_id}: removed"
    sent = re.compile(
        rf"^{env.queue_id}: to=<bob@example\.test>, relay=local, delay=0\.25, "
        r"delays=0\.25/0/0/0, dsn=2\.0\.0, status=sent \(250 2\.0\.0 delivered to maildir\)$"
    )
    assert any(sent.match(line) for line in log), log
    st = rig.manager.statistics()
    assert (st.attempts, st.delivered, st.removed, st.running, st.scheduled) == (1, 2, 1, 0, 0)


async def test_deferral_backoff_and_retry(
    rigs: list[Rig], mail_log: pytest.LogCaptureFixture
) -> None:
    tries: dict[str, int] = {}

    def decide(env: Envelope, r: EnvelopeRecipient) -> str:
        tries[r.address] = tries.get(r.address, 0) + 1
        return "sent" if tries[r.address] >= 3 else "deferred"

    rig = make_rig(decide=decide)
    rigs.append(rig)
    await rig.manager.start()
    t0 = rig.clock()
    env = await rig.commit("bob@example.test")
    qid = env.queue_id
    await rig.settle()
    stored = rig.stored(qid)
    assert rig.spool.state(qid) == "deferred"
    assert stored.attempts == 1
    assert stored.next_attempt == t0 + rig.backoff.delay(1, qid)
    assert 270 <= stored.next_attempt - t0 <= 300  # 300 s less up to 10 % jitter
    assert stored.recipients[0].reason == "451 4.2.0 Mailbox busy"
    assert stored.last_reason == "451 4.2.0 Mailbox busy"
    assert "status=deferred (451 4.2.0 Mailbox busy)" in lines(mail_log)[-1]

    assert await rig.manager.run_due() == 0  # not yet
    rig.clock.set(stored.next_attempt - 1)
    assert await rig.manager.run_due() == 0
    rig.clock.set(stored.next_attempt)
    assert await rig.manager.run_due() == 1
    second = rig.stored(qid)
    assert second.attempts == 2
    assert second.next_attempt == rig.clock() + rig.backoff.delay(2, qid)  # doubled
    assert 540 <= second.next_attempt - rig.clock() <= 600

    rig.clock.set(second.next_attempt)
    assert await rig.manager.run_due() == 1
    assert rig.spool.messages == {}
    assert len(rig.agent.calls) == 3


async def test_unknown_transport_defers_with_a_reason(
    rigs: list[Rig], mail_log: pytest.LogCaptureFixture
) -> None:
    rig = make_rig()
    rigs.append(rig)
    await rig.manager.start()
    env = await rig.commit("x@remote.example")
    await rig.settle()
    assert rig.agent.calls == []
    stored = rig.stored(env.queue_id)
    reason = "451 4.4.1 No route to deliver to (remote delivery not available)"
    assert stored.recipients[0].reason == reason == str(NO_ROUTE)
    assert stored.last_reason == reason
    assert rig.spool.state(env.queue_id) == "deferred"
    assert re.search(
        r"to=<x@remote\.example>, relay=none, delay=0, delays=0/0/0/0, dsn=4\.4\.1, "
        r"status=deferred \(451 4\.4\.1 No route to deliver to "
        r"\(remote delivery not available\)\)$",
        lines(mail_log)[-1],
    )
    out = format_mailq(rig.spool.entries())
    assert f"(Deferred: {reason})" in out and "<x@remote.example>" in out


async def test_partial_success_retries_only_the_rest(rigs: list[Rig]) -> None:
    rig = make_rig()
    rigs.append(rig)
    await rig.manager.start()
    env = await rig.commit("bob@example.test", "x@remote.example", "carol@example.test")
    await rig.settle()
    stored = rig.stored(env.queue_id)
    assert [r.state for r in stored.recipients] == [
        RcptState.DELIVERED, RcptState.PENDING, RcptState.DELIVERED,
    ]  # fmt: skip
    assert stored.recipients[0].reason == "250 2.0.0 delivered to maildir"
    assert [r.address for r in stored.pending] == ["x@remote.example"]
    # Remote delivery appears; the retry gives it only the pending recipient.
    remote = FakeAgent()
    rig.manager._agents = {"local": rig.agent, "smtp": remote}
    rig.clock.set(stored.next_attempt)
    await rig.manager.run_due()
    assert remote.calls == [(env.queue_id, ["x@remote.example"])]
    assert len(rig.agent.calls) == 1
    assert rig.spool.messages == {}


async def test_bounces_are_marked_and_handed_to_the_hook(
    rigs: list[Rig], mail_log: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[Envelope, list[EnvelopeRecipient]]] = []

    async def on_bounce(env: Envelope, rcpts: Sequence[EnvelopeRecipient]) -> None:
        seen.append((env, list(rcpts)))

    def decide(env: Envelope, r: EnvelopeRecipient) -> str:
        return "bounced" if r.address.startswith("nobody") else "deferred"

    rig = make_rig(decide=decide, on_bounce=on_bounce)
    rigs.append(rig)
    await rig.manager.start()
    env = await rig.commit("nobody@example.test", "bob@example.test")
    await rig.settle()
    stored = rig.stored(env.queue_id)
    assert stored.recipients[0].state is RcptState.BOUNCED
    assert stored.recipients[0].reason == "550 5.1.1 User unknown"
    assert stored.recipients[1].state is RcptState.PENDING
    assert len(seen) == 1 and [r.address for r in seen[0][1]] == ["nobody@example.test"]
    assert seen[0][0].recipients == stored.recipients  # the hook sees the new states
    assert any("dsn=5.1.1, status=bounced (550 5.1.1 User unknown)" in x for x in lines(mail_log))
    # A later attempt does not bounce it again.
    rig.clock.set(stored.next_attempt)
    await rig.manager.run_due()
    assert len(seen) == 1


async def test_without_a_hook_a_log_line_says_no_dsn_was_sent(
    rigs: list[Rig], mail_log: pytest.LogCaptureFixture
) -> None:
    rig = make_rig(decide=lambda env, r: "bounced")
    rigs.append(rig)
    await rig.manager.start()
    env = await rig.commit("nobody@example.test")
    await rig.settle()
    assert rig.spool.messages == {}  # nothing pending: removed
    log = lines(mail_log)
    assert any("non-delivery notification: not sent" in x for x in log)
    assert log[-1] == f"{env.queue_id}: removed"


async def test_expiry_bounces_what_is_pending(
    rigs: list[Rig], mail_log: pytest.LogCaptureFixture
) -> None:
    bounced: list[EnvelopeRecipient] = []

    async def on_bounce(env: Envelope, rcpts: Sequence[EnvelopeRecipient]) -> None:
        bounced.extend(rcpts)

    config = QueueConfig(min_backoff=3600, max_backoff=86400, max_lifetime=2 * 86400)
    rig = make_rig(config, decide=lambda env, r: "deferred", on_bounce=on_bounce)
    rigs.append(rig)
    await rig.manager.start()
    env = await rig.commit("bob@example.test")
    attempts = 0
    while rig.spool.messages:
        attempts += 1
        assert await rig.manager.run_due() == (0 if attempts == 1 else 1)
        if rig.spool.messages:
            nxt = rig.stored(env.queue_id).next_attempt
            assert nxt <= env.arrival_time + config.max_lifetime  # never past the expiry
            rig.clock.set(nxt)
    assert 3 < attempts < 10
    assert rig.clock() == env.arrival_time + config.max_lifetime
    assert [r.address for r in bounced] == ["bob@example.test"]
    assert bounced[0].reason.startswith("4.4.7 Message expired in the queue (last: 451 4.2.0")
    assert any(
        x == f"{env.queue_id}: from=<alice@example.test>, status=expired, returned to sender"
        for x in lines(mail_log)
    )
    assert rig.manager.statistics().expired == 1


async def test_concurrency_is_bounded(rigs: list[Rig]) -> None:
    config = QueueConfig(delivery_concurrency=3)
    rig = make_rig(config)
    rigs.append(rig)
    rig.agent.gate = asyncio.Event()
    await rig.manager.start()
    envs = [await rig.commit(f"u{i}@example.test") for i in range(10)]
    while rig.agent.running < 3:
        await asyncio.sleep(0)
    assert rig.manager.statistics().running == 3
    assert rig.manager.statistics().scheduled == 7
    rig.agent.gate.set()
    await rig.manager.wait_idle()
    assert rig.agent.max_running == 3
    assert len(rig.agent.calls) == 10 and rig.spool.messages == {}
    # Queue ids sort by arrival: the oldest went first.
    assert [c[0] for c in rig.agent.calls] == sorted(e.queue_id for e in envs)


async def test_stop_lets_running_deliveries_finish(rigs: list[Rig]) -> None:
    rig = make_rig()
    rigs.append(rig)
    rig.agent.gate = asyncio.Event()
    await rig.manager.start()
    await rig.commit("bob@example.test")
    await rig.agent.called.wait()
    stopping = asyncio.create_task(rig.manager.stop(timeout=60))
    await asyncio.sleep(0)
    assert not stopping.done()
    late = await rig.commit("late@example.test")  # not attempted: it waits for the next start
    rig.agent.gate.set()
    await stopping
    assert list(rig.spool.messages) == [late.queue_id]
    assert len(rig.agent.calls) == 1


async def test_stop_timeout_interrupts_and_the_next_start_delivers(rigs: list[Rig]) -> None:
    rig = make_rig()
    rigs.append(rig)
    rig.agent.gate = asyncio.Event()
    await rig.manager.start()
    env = await rig.commit("bob@example.test")
    await rig.agent.called.wait()
    await rig.manager.stop(timeout=0)
    assert rig.stored(env.queue_id) == env  # untouched: at-least-once
    assert rig.spool.state(env.queue_id) == "active"
    again = QueueManager(rig.spool, {"local": FakeAgent()}, transport, CONFIG, rig.clock)
    await again.start()
    await again.run_due()
    await again.stop()
    assert rig.spool.messages == {}


async def test_start_recovers_active_and_deferred_but_not_held(rigs: list[Rig]) -> None:
    rig = make_rig()
    rigs.append(rig)
    now = rig.clock()

    def env(n: int, **kw: object) -> Envelope:
        return Envelope(
            queue_id=f"1K0SK030FWT00AK5000{n}YS",
            sender="a@example.test",
            recipients=(EnvelopeRecipient(address=f"r{n}@example.test"),),
            arrival_time=now - 1000,
            **kw,  # type: ignore[arg-type]
        )

    rig.spool.put(env(0), b"x", "active")
    rig.spool.put(env(1, attempts=1, next_attempt=now + 500), b"x", "deferred")
    rig.spool.put(env(2, attempts=1, next_attempt=now - 5), b"x", "deferred")
    rig.spool.put(env(3), b"x", "hold")
    await rig.manager.start()
    assert await rig.manager.run_due() == 2
    assert sorted(c[1][0] for c in rig.agent.calls) == ["r0@example.test", "r2@example.test"]
    rig.clock.advance(500)
    assert await rig.manager.run_due() == 1
    assert await rig.manager.run_queue(force=True) == 0  # the held one is left alone
    assert list(rig.spool.messages) == [env(3).queue_id]


async def test_hold_and_release_while_scheduled(rigs: list[Rig]) -> None:
    rig = make_rig(decide=lambda env, r: "deferred")
    rigs.append(rig)
    await rig.manager.start()
    env = await rig.commit("bob@example.test")
    await rig.settle()
    assert await rig.spool.hold(env.queue_id)
    rig.clock.set(rig.stored(env.queue_id).next_attempt)
    assert await rig.manager.run_due() == 1  # attempted: finds it held, drops it
    assert len(rig.agent.calls) == 1 and rig.manager.statistics().scheduled == 0
    rig.agent.decide = lambda env, r: "sent"
    rig.agent.called.clear()
    assert await rig.spool.release(env.queue_id)  # pulls the trigger: the manager looks
    await asyncio.wait_for(rig.agent.called.wait(), 10)
    await rig.manager.wait_idle()
    assert rig.spool.messages == {}


async def test_run_queue_force_attempts_everything(rigs: list[Rig]) -> None:
    rig = make_rig(decide=lambda env, r: "deferred")
    rigs.append(rig)
    await rig.manager.start()
    for i in range(3):
        await rig.commit(f"u{i}@example.test", submit=False)  # found by the queue run
    assert await rig.manager.run_queue() == 3
    assert await rig.manager.run_queue() == 0  # nothing due
    assert await rig.manager.run_queue(force=True) == 3  # sendmail -q / postqueue -f
    assert all(e.envelope.attempts == 2 for e in rig.spool.entries())


async def test_spool_error_keeps_the_new_state_in_memory(rigs: list[Rig]) -> None:
    rig = make_rig()
    rigs.append(rig)
    await rig.manager.start()
    rig.spool.fail_next_update()
    env = await rig.commit("bob@example.test", "x@remote.example")
    await rig.settle()
    assert rig.stored(env.queue_id) == env  # the spool still has the old envelope
    assert rig.manager.statistics().errors == 1
    rig.manager._agents = {"local": rig.agent, "smtp": FakeAgent()}
    rig.clock.advance(3600)
    await rig.manager.run_due()
    assert rig.agent.calls == [(env.queue_id, ["bob@example.test"])]  # not delivered twice
    assert rig.spool.messages == {}


async def test_failed_remove_is_retried(rigs: list[Rig]) -> None:
    rig = make_rig()
    rigs.append(rig)
    await rig.manager.start()
    rig.spool.fail_next_remove()
    env = await rig.commit("bob@example.test")
    await rig.settle()
    assert env.queue_id in rig.spool.messages
    rig.clock.advance(CONFIG.min_backoff)
    await rig.manager.run_due()
    assert rig.spool.messages == {} and len(rig.agent.calls) == 1


async def test_buggy_agents_and_routing_do_not_lose_mail(
    rigs: list[Rig], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def deliver(
            self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
        ) -> list[Outcome]:
            raise RuntimeError("bug")

    class Short:
        async def deliver(
            self, envelope: Envelope, recipients: Sequence[EnvelopeRecipient]
        ) -> list[Outcome]:
            return []

    def route(env: Envelope, r: EnvelopeRecipient) -> str:
        if r.address.startswith("crash"):
            raise KeyError(r.address)
        return r.address.split("@")[0]

    spool, clock = MemorySpool(), FakeClock()
    manager = QueueManager(spool, {"broken": Broken(), "short": Short()}, route, CONFIG, clock)
    rig = Rig(spool, clock, FakeAgent(), manager, Backoff())
    rigs.append(rig)
    await manager.start()
    env = await rig.commit("broken@x", "short@x", "crash@x", submit=False)
    assert await manager.run_queue() == 1
    stored = rig.stored(env.queue_id)
    assert [r.state for r in stored.recipients] == [RcptState.PENDING] * 3
    assert stored.recipients[0].reason.startswith("451 4.3.0")
    assert stored.recipients[2].reason.startswith("451 4.4.1")
    assert manager.statistics().errors == 2  # the exception and the routing bug
    assert "RuntimeError: bug" in caplog.text


async def test_run_due_attempts_each_message_once(rigs: list[Rig]) -> None:
    config = QueueConfig(min_backoff=0, max_backoff=0)
    rig = make_rig(config, decide=lambda env, r: "deferred")
    rigs.append(rig)
    env = await rig.commit("bob@example.test", submit=False)
    await rig.manager.start()  # finds it in the spool
    assert await rig.manager.run_due(rig.clock() + 10) == 1  # rescheduled 1 s later: not again
    assert rig.stored(env.queue_id).next_attempt == rig.clock() + 1
    assert len(rig.agent.calls) == 1


async def test_trigger_from_another_spool_user(tmp_path: Path, rigs: list[Rig]) -> None:
    """End to end on disk: another process commits and pulls the trigger."""
    spool = FileSpool(tmp_path)
    clock = FakeClock()
    agent = FakeAgent()
    manager = QueueManager(spool, {"local": agent}, transport, CONFIG, clock)
    rigs.append(Rig(MemorySpool(), clock, agent, manager, Backoff()))
    await manager.start()
    sendmail = FileSpool(tmp_path)  # as the sendmail command would
    msg = sendmail.begin()
    msg.write(b"Subject: hi\r\n\r\nhi\r\n")
    env = Envelope(
        queue_id=msg.queue_id,
        sender="root@example.test",
        recipients=(EnvelopeRecipient(address="bob@example.test"),),
        arrival_time=clock(),
    )
    await sendmail.commit(msg, env)
    sendmail.pull_trigger()
    sendmail.close()
    await asyncio.wait_for(agent.called.wait(), 10)
    await manager.wait_idle()
    assert agent.calls == [(env.queue_id, ["bob@example.test"])]
    assert spool.entries() == []
    await manager.stop()
    spool.close()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0"), (-1, "0"), (0.004, "0"), (0.12, "0.12"), (0.1, "0.1"), (1.23, "1.2"),
     (3.5, "3.5"), (9.96, "10"), (42.4, "42"), (7029.6, "7030")],
)  # fmt: skip
def test_format_delay(seconds: float, text: str) -> None:
    assert format_delay(seconds) == text


# --- notifications over time: delay warnings, bounces, success DSNs (queue/bounce.py) ------

DSN_HOST = "example.test"  # so that postmaster@example.test is delivered by the local agent
Sent = list[tuple[float, Envelope, bytes]]  # (when, DSN envelope, DSN content)


async def commit_rcpts(rig: Rig, *rcpts: EnvelopeRecipient, submit: bool = True) -> Envelope:
    """Commit a message with recipients as given (NOTIFY etc.)."""
    msg = rig.spool.begin()
    msg.write(b"Subject: test\r\n\r\nhello\r\n")
    env = Envelope(
        queue_id=msg.queue_id, sender="alice@example.test", recipients=rcpts,
        arrival_time=rig.clock(), size=msg.size,
    )  # fmt: skip
    await rig.spool.commit(msg, env)
    if submit:
        rig.manager.submit_nowait(env)
    return env


def make_notified_rig(
    config: QueueConfig, sent: Sent, decide: Decide | None = None
) -> tuple[Rig, Notifier]:
    """A rig whose manager has a real Notifier; `sent` records every DSN queued."""
    spool = MemorySpool()
    clock = FakeClock()
    managers: list[QueueManager] = []

    def submit(env: Envelope) -> None:
        sent.append((clock(), env, spool.body(env.queue_id)))
        managers[0].submit_nowait(env)

    notifier = Notifier(
        spool, hostname=DSN_HOST, clock=clock, submit=submit, max_lifetime=config.max_lifetime
    )
    agent = FakeAgent() if decide is None else FakeAgent(decide=decide)
    manager = QueueManager(
        spool, {"local": agent}, transport, config, clock,
        on_bounce=notifier.on_bounce, on_delay=notifier.on_delay,
        on_success=notifier.on_success,
    )  # fmt: skip
    managers.append(manager)
    return Rig(spool, clock, agent, manager, Backoff.from_config(config, jitter=0.1)), notifier


async def run_until_empty(rig: Rig, limit: float) -> int:
    """Run every retry as its time comes (the clock jumps), until the queue is empty."""
    runs = 0
    while rig.spool.messages:
        due = min(e.envelope.next_attempt for e in rig.spool.messages.values())
        rig.clock.set(max(due, rig.clock()))
        assert rig.clock() <= limit, "the queue did not empty in time"
        await rig.manager.run_due()
        runs += 1
    return runs


async def test_an_unreachable_domain_gets_one_delay_warning_and_one_bounce(
    rigs: list[Rig], mail_log: pytest.LogCaptureFixture
) -> None:
    """Issue 4: exactly one warning after warn_after (4 h), one bounce at max_lifetime (5 d)."""
    config = QueueConfig(
        min_backoff=300, max_backoff=3600, max_lifetime=5 * 86400, warn_after=4 * 3600
    )
    sent: Sent = []
    rig, notifier = make_notified_rig(config, sent)
    rigs.append(rig)
    await rig.manager.start()
    env = await rig.commit("x@unreachable.example")  # no agent for it: always deferred
    await rig.settle()
    runs = await run_until_empty(rig, env.arrival_time + 6 * 86400)
    assert runs > 100  # hourly retries for five days
    assert [dsn_env.notification for _, dsn_env, _ in sent] == ["delay", "failure"]
    (t_warn, warning, warn_data), (t_bounce, bounce, bounce_data) = sent
    assert 4 * 3600 <= t_warn - env.arrival_time < 4 * 3600 + config.max_backoff
    assert t_bounce - env.arrival_time == config.max_lifetime
    for dsn_env in (warning, bounce):
        assert dsn_env.sender == ""
        assert [r.address for r in dsn_env.recipients] == ["alice@example.test"]
    # Both notifications were delivered to the sender by the local agent, then removed.
    assert rig.agent.calls == [
        (warning.queue_id, ["alice@example.test"]),
        (bounce.queue_id, ["alice@example.test"]),
    ]
    assert rig.spool.commits == [env.queue_id, warning.queue_id, bounce.queue_id]

    (delayed,) = parse_dsn(warn_data).recipients
    assert (delayed.final_recipient, delayed.action, delayed.status) == (
        "x@unreachable.example", "delayed", "4.4.1",
    )  # fmt: skip
    assert delayed.will_retry_until == "Wed, 20 Jan 2027 08:00:00 +0000"
    report = parse_dsn(bounce_data)
    (failed,) = report.recipients
    assert (failed.action, failed.status) == ("failed", "4.4.7")
    assert failed.diagnostic_code == f"smtp; {NO_ROUTE}"
    assert report.returned_type == "message/rfc822"
    msg = email.message_from_bytes(bounce_data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"

    st = notifier.statistics()
    assert (st.delay, st.failure, st.postmaster) == (1, 1, 0)
    log = lines(mail_log)
    assert f"{env.queue_id}: from=<alice@example.test>, status=expired, returned to sender" in log


async def test_the_warning_is_recorded_and_survives_a_restart(
    tmp_path: Path, rigs: list[Rig]
) -> None:
    warned: list[tuple[float, list[str]]] = []
    clock = FakeClock()

    async def on_delay(env: Envelope, rcpts: Sequence[EnvelopeRecipient]) -> None:
        warned.append((clock(), [r.address for r in rcpts]))

    config = QueueConfig(min_backoff=600, max_backoff=3600, warn_after=3600)
    spool = FileSpool(tmp_path, durable=False)
    try:
        manager = QueueManager(spool, {}, transport, config, clock, on_delay=on_delay)
        await manager.start()
        msg = spool.begin()
        msg.write(b"Subject: x\r\n\r\nx\r\n")
        env = Envelope(
            queue_id=msg.queue_id, sender="alice@example.test",
            recipients=(EnvelopeRecipient(address="x@remote.example"),),
            arrival_time=clock(),
        )  # fmt: skip
        await spool.commit(msg, env)
        manager.submit_nowait(env)
        await manager.wait_idle()
        for _ in range(4):
            entry = spool.load(env.queue_id)
            assert entry is not None
            clock.set(entry.envelope.next_attempt)
            await manager.run_due()
        assert len(warned) == 1
        entry = spool.load(env.queue_id)
        assert entry is not None and entry.envelope.warned == warned[0][0]
        assert warned[0][0] - env.arrival_time >= 3600
        await manager.stop()

        # A new manager (a restart) reads `warned` from the queue file: no second warning.
        again = QueueManager(spool, {}, transport, config, clock, on_delay=on_delay)
        rigs.append(Rig(MemorySpool(), clock, FakeAgent(), again, Backoff()))
        await again.start()
        for _ in range(5):
            entry = spool.load(env.queue_id)
            assert entry is not None
            clock.set(entry.envelope.next_attempt)
            await again.run_due()
        assert len(warned) == 1
    finally:
        spool.close()


async def test_delay_warnings_follow_notify(rigs: list[Rig]) -> None:
    calls: list[list[str]] = []

    async def on_delay(env: Envelope, rcpts: Sequence[EnvelopeRecipient]) -> None:
        calls.append([r.address for r in rcpts])

    config = QueueConfig(min_backoff=3600, max_backoff=3600, warn_after=3600)
    rig = make_rig(config, on_delay=on_delay)
    rigs.append(rig)
    await rig.manager.start()
    mixed = await commit_rcpts(
        rig,
        EnvelopeRecipient(address="never@remote.example", notify=frozenset({"NEVER"})),
        EnvelopeRecipient(address="default@remote.example"),
        EnvelopeRecipient(address="delay@remote.example", notify=frozenset({"DELAY"})),
        EnvelopeRecipient(address="failure@remote.example", notify=frozenset({"FAILURE"})),
    )
    never = await commit_rcpts(
        rig, EnvelopeRecipient(address="n@remote.example", notify=frozenset({"NEVER"}))
    )
    await rig.settle()
    assert calls == []  # not yet 1 h old
    rig.clock.advance(3600)
    await rig.manager.run_due()
    assert calls == [["default@remote.example", "delay@remote.example"]]
    # Nobody asked for a warning: none was sent, and the question is settled for good.
    assert rig.stored(never.queue_id).warned == rig.clock()
    assert rig.stored(mixed.queue_id).warned == rig.clock()
    rig.clock.advance(3600)
    await rig.manager.run_due()
    assert len(calls) == 1


async def test_warn_after_zero_never_warns(rigs: list[Rig]) -> None:
    calls: list[Envelope] = []

    async def on_delay(env: Envelope, rcpts: Sequence[EnvelopeRecipient]) -> None:
        calls.append(env)

    config = QueueConfig(min_backoff=3600, max_backoff=3600, max_lifetime=86400, warn_after=0)
    rig = make_rig(config, on_delay=on_delay)
    rigs.append(rig)
    await rig.manager.start()
    await rig.commit("x@remote.example")
    await rig.settle()
    await run_until_empty(rig, rig.clock() + 2 * 86400)
    assert calls == []


async def test_an_expiring_message_gets_its_bounce_not_also_a_warning(rigs: list[Rig]) -> None:
    events: list[str] = []

    async def on_delay(env: Envelope, rcpts: Sequence[EnvelopeRecipient]) -> None:
        events.append("delay")

    async def on_bounce(env: Envelope, rcpts: Sequence[EnvelopeRecipient]) -> None:
        events.append("bounce")

    # The only retry after arrival falls at the expiry time, past warn_after.
    config = QueueConfig(min_backoff=7200, max_backoff=7200, max_lifetime=7200, warn_after=3600)
    backoff = Backoff.from_config(config)  # no jitter: the retry is exactly at the expiry
    rig = make_rig(config, on_delay=on_delay, on_bounce=on_bounce, backoff=backoff)
    rigs.append(rig)
    await rig.manager.start()
    await rig.commit("x@remote.example")
    await rig.settle()
    await run_until_empty(rig, rig.clock() + 86400)
    assert events == ["bounce"]


async def test_a_failed_warning_is_tried_again_at_the_next_deferral(
    rigs: list[Rig], mail_log: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []

    async def on_delay(env: Envelope, rcpts: Sequence[EnvelopeRecipient]) -> None:
        calls.append(rig.clock())
        if len(calls) == 1:
            raise TempFail(reply=LATER, reason="injected: disk full")

    config = QueueConfig(min_backoff=3600, max_backoff=3600, warn_after=3600)
    rig = make_rig(config, on_delay=on_delay)
    rigs.append(rig)
    await rig.manager.start()
    env = await rig.commit("x@remote.example")
    await rig.settle()
    for _ in range(4):
        rig.clock.set(rig.stored(env.queue_id).next_attempt)
        await rig.manager.run_due()
    assert len(calls) == 2
    assert rig.stored(env.queue_id).warned == calls[1]
    assert any(
        x == f"{env.queue_id}: sender delay notification not queued: injected: disk full"
        for x in lines(mail_log)
    )
    assert rig.manager.statistics().errors == 1


async def test_success_notifications_only_for_notify_success(rigs: list[Rig]) -> None:
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    async def on_success(env: Envelope, rcpts: Sequence[EnvelopeRecipient]) -> None:
        seen.append((env.queue_id, [(r.address, r.relay) for r in rcpts]))

    rig = make_rig(on_success=on_success)
    rigs.append(rig)
    await rig.manager.start()
    env = await commit_rcpts(
        rig,
        EnvelopeRecipient(address="bob@example.test", notify=frozenset({"SUCCESS", "FAILURE"})),
        EnvelopeRecipient(address="carol@example.test"),
        EnvelopeRecipient(address="dave@example.test", notify=frozenset({"NEVER"})),
    )
    await rig.settle()
    assert seen == [(env.queue_id, [("bob@example.test", "local")])]
    assert rig.spool.messages == {}


async def test_success_dsn_end_to_end(rigs: list[Rig]) -> None:
    sent: Sent = []
    rig, _ = make_notified_rig(CONFIG, sent)
    rigs.append(rig)
    await rig.manager.start()
    await commit_rcpts(
        rig, EnvelopeRecipient(address="bob@example.test", notify=frozenset({"SUCCESS"}))
    )
    await rig.settle()
    ((_, dsn_env, data),) = sent
    assert dsn_env.notification == "success"
    (r,) = parse_dsn(data).recipients
    assert (r.final_recipient, r.action, r.status) == ("bob@example.test", "delivered", "2.0.0")
    assert rig.spool.messages == {}  # the DSN was delivered to alice too


async def test_bounce_loops_end_at_the_postmaster(
    rigs: list[Rig], caplog: pytest.LogCaptureFixture
) -> None:
    """Everything bounces: the DSN's failure goes once to the postmaster, then is dropped."""
    caplog.set_level(logging.INFO, logger="postoffice.queue.bounce")
    sent: Sent = []
    rig, notifier = make_notified_rig(CONFIG, sent, decide=lambda env, r: "bounced")
    rigs.append(rig)
    await rig.manager.start()
    await rig.commit("nobody@example.test")
    await rig.settle()
    assert rig.spool.messages == {}
    assert [(e.notification, e.recipients[0].address) for _, e, _ in sent] == [
        ("failure", "alice@example.test"),
        ("double-bounce", f"postmaster@{DSN_HOST}"),
    ]
    copy = sent[1][1]
    assert f"{copy.queue_id}: undeliverable postmaster notification discarded" in [
        r.getMessage() for r in caplog.records
    ]
    st = notifier.statistics()
    assert (st.failure, st.postmaster, st.discarded) == (1, 1, 1)
