"""The queue manager: delivers committed mail, retries what was deferred, removes what is done.

Description:
    QueueManager(spool, agents, transport_for, config, clock=time.time,
    *, backoff=None, on_bounce=None, on_delay=None, on_success=None)
    keeps an in-memory schedule (queue id -> due time) that is only ever a
    cache of the spool: it is rebuilt from the spool at start-up
    (`spool.recover()`), refreshed by a full scan every `run_interval`
    seconds and by a scan of active/ whenever another process pulls the
    trigger, and every attempt re-reads the envelope from the spool first
    (a message held, released or deleted by the administrator meanwhile is
    noticed).

    An attempt groups the pending recipients by `transport_for(envelope,
    recipient)` ("local", "smtp", ...), gives each group to its
    DeliveryAgent (groups run concurrently) and applies the outcomes:

        Delivered -> recipient DELIVERED   status=sent
        Deferred  -> recipient PENDING     status=deferred
        Bounced   -> recipient BOUNCED     status=bounced

    A transport without an agent defers with `451 4.4.1 No route to
    deliver to (remote delivery not available)`: remote mail stays queued,
    with that reason in mailq, until remote delivery exists. Then: nothing
    pending -> `spool.remove` and `QID: removed`; something pending ->
    attempts+1, next_attempt from queue/backoff.py (by default with 10 %
    deterministic jitter, and never sooner than 1 s), `spool.update(...,
    deferred=True)`. A message queued longer than max_lifetime has its
    pending recipients bounced (`status=expired, returned to sender`).

    Notifications (RFC 3464 DSNs, made by queue/bounce.py's Notifier),
    each hook an `async (envelope, recipients)` called *before* the
    envelope is saved, with the envelope as it will be saved:

        on_bounce   the recipients bounced (or expired) in this attempt;
                    without a hook a log line says that no DSN was sent
        on_success  the recipients delivered in this attempt whose NOTIFY
                    names SUCCESS (RFC 3461 §4.1)
        on_delay    once per message: at the first deferral at least
                    `warn_after` seconds after arrival (warn_after > 0), the
                    pending recipients whose NOTIFY allows DELAY (no NOTIFY
                    does: message/dsn.wants_dsn). The envelope then records
                    `warned` (the time) in the queue file, so a restart
                    never warns twice; when the hook fails nothing is
                    recorded and the next deferral tries again. A message
                    that expires in the same attempt gets its bounce only.

    A hook that raises TempFail (the spool could not take the DSN) is
    logged as `QID: sender ... notification not queued: reason`; any other
    exception is a bug, logged with its traceback; neither stops the queue.

    Delivery is at-least-once (RFC 5321 §6.1): a crash, or a stop() that
    interrupts an attempt, between an agent's success and the envelope
    update makes the next attempt deliver again; nothing makes it deliver
    zero times. A spool error while saving keeps the new envelope in memory
    so the next attempt does not repeat recipients already done.

    At most `delivery_concurrency` messages are attempted at once. Time
    comes only from `clock` and waits are computed from it, so tests drive
    the manager with a FakeClock and `await run_due()` instead of sleeping.

    Log lines (logger "postoffice.mail", Postfix's shape):

        QID: to=<bob@example.org>, relay=local, delay=0.12, delays=0.01/0/0/0.11,
            dsn=2.0.0, status=sent (250 2.0.0 delivered to maildir)
        QID: to=<x@remote.example>, relay=none, delay=3.1, delays=3.1/0/0/0, dsn=4.4.1,
            status=deferred (451 4.4.1 No route to deliver to (remote delivery not available))
        QID: removed

    delays=a/b/c/d: a = arrival until this attempt began, b = in the
    manager until the agent was called, c = connection set-up (not yet
    reported by agents: 0), d = the agent's time.

    API:
        await start()              recover the spool, schedule, watch the trigger
        submit_nowait(envelope)    a message just committed: attempt it now
        wakeup_nowait()            look for new messages in active/ (the trigger)
        await run_due(now=None)    attempt what is due; return when idle
        await run_queue(force=False)  rescan the spool, then run_due (`sendmail -q`;
                                   force: every queued message, `postqueue -f`)
        await wait_idle()          until no attempt is running
        await stop(timeout=30.0)   stop scheduling; let attempts finish, bounded
        statistics()               QueueStatistics

States:
    scheduled (in memory, due at a time) -> running -> removed, or
    scheduled again at next_attempt; a held message leaves the schedule.

Security:
    Runs in the server process as the mail user; what an agent may do is
    the agent's business. Assumes one queue manager per spool.

Config:
    [queue] min_backoff, max_backoff, max_lifetime, warn_after, run_interval,
    delivery_concurrency.

See also:
    queue/spool.py, queue/backoff.py, queue/interfaces.py, queue/bounce.py,
    RFC 5321 §4.5.4.1 (retry strategy), §6.1 (reliable delivery, reporting
    failures), RFC 3461 §4.1 (NOTIFY), RFC 3463 (status codes).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from postoffice.config.schema import QueueConfig
from postoffice.errors import TempFail
from postoffice.message.dsn import wants_dsn
from postoffice.queue.backoff import Backoff
from postoffice.queue.envelope import Envelope, EnvelopeRecipient, RcptState
from postoffice.queue.interfaces import (
    QUEUE_STATES,
    Bounced,
    Deferred,
    Delivered,
    DeliveryAgent,
    ManagedSpool,
    Outcome,
    QueueEntry,
    QueueState,
)
from postoffice.smtp.replies import Reply

log = logging.getLogger("postoffice.mail")
_LOCAL_LOG = logging.getLogger("postoffice.delivery.local")

# RFC 3463 §3.5: X.4.1 "No answer from host" is the closest code for "no route yet".
NO_ROUTE = Reply(
    code=451, enhanced="4.4.1", text="No route to deliver to (remote delivery not available)"
)
AGENT_FAILED = Reply(code=451, enhanced="4.3.0", text="Internal error in the delivery agent")
EXPIRED_STATUS = "4.4.7"  # RFC 3463 §3.5: delivery time expired
_MIN_RETRY = 1.0  # seconds; a floor under the backoff so that nothing can spin

BounceHook = Callable[[Envelope, Sequence[EnvelopeRecipient]], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStatistics:
    scheduled: int  # messages waiting for their time
    running: int  # messages being attempted now
    attempts: int  # message attempts since start
    delivered: int  # recipients
    deferred: int  # recipient deferrals
    bounced: int  # recipients (expired ones included)
    expired: int  # messages
    removed: int  # messages
    errors: int  # spool errors and agent bugs


def format_delay(seconds: float) -> str:
    """A delay as Postfix logs it: 0, 0.12, 3.5, 42."""
    if seconds <= 0:
        return "0"
    if seconds >= 10:
        return str(round(seconds))
    text = f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2f}"
    return text.rstrip("0").rstrip(".") or "0"


def status_text(outcome: Outcome) -> str:
    """`250 2.0.0 delivered to maildir`: the reply code and status, then the detail."""
    reply = outcome.reply
    text = (outcome.detail or reply.text).replace("\r", " ").replace("\n", " ")
    return " ".join(p for p in (str(reply.code), reply.enhanced, text) if p)


def _dsn(reply: Reply) -> str:
    return reply.enhanced or f"{reply.code // 100}.0.0"


class QueueManager:
    """Schedules and runs delivery attempts for the messages in a spool."""

    def __init__(
        self,
        spool: ManagedSpool,
        agents: Mapping[str, DeliveryAgent],
        transport_for: Callable[[Envelope, EnvelopeRecipient], str],
        config: QueueConfig,
        clock: Callable[[], float] = time.time,
        *,
        backoff: Backoff | None = None,
        on_bounce: BounceHook | None = None,
        on_delay: BounceHook | None = None,
        on_success: BounceHook | None = None,
    ) -> None:
        self._spool = spool
        self._agents = agents
        self._transport_for = transport_for
        self._config = config
        self._clock = clock
        self._backoff = backoff or Backoff.from_config(config, jitter=0.1)
        self._on_bounce = on_bounce
        self._on_delay = on_delay
        self._on_success = on_success
        self._limit = max(1, config.delivery_concurrency)
        self._when: dict[str, float] = {}  # scheduled, not running: qid -> due time
        self._heap: list[tuple[float, str]] = []  # (due, qid); stale when _when disagrees
        self._running: dict[str, asyncio.Task[float | None]] = {}
        self._unsaved: dict[str, Envelope] = {}  # newer than the spool's copy
        self._wake = asyncio.Event()
        self._scan_active = False
        self._last_scan = 0.0
        self._started = False
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None
        self._n = dict.fromkeys(
            ("attempts", "delivered", "deferred", "bounced", "expired", "removed", "errors"), 0
        )

    # --- life cycle ----------------------------------------------------------

    async def start(self) -> None:
        """Recover the spool, schedule what it holds, watch the trigger, run the timer."""
        if self._started:
            return
        self._started = True
        envelopes = await asyncio.to_thread(self._spool.recover)
        now = self._clock()
        for env in envelopes:
            self._schedule(env.queue_id, env.next_attempt)
        self._last_scan = now
        logging.getLogger("postoffice.queue").info(
            "queue manager started: %d messages queued", len(envelopes)
        )
        try:
            self._unwatch = self._spool.watch_trigger(self.wakeup_nowait)
        except OSError as e:
            log.warning("cannot watch the queue trigger (%s): new mail waits for a queue scan", e)
        self._loop_task = asyncio.create_task(self._timer(), name="queue-manager")

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop scheduling; give running attempts `timeout` seconds, then cancel them.

        An interrupted attempt leaves its envelope as it was: the next start retries it.
        """
        self._stopping = True
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        running = set(self._running.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=max(0.0, timeout))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                log.warning("queue manager stopped: %d attempts interrupted", len(pending))

    # --- feeding the schedule --------------------------------------------------

    def submit_nowait(self, envelope: Envelope) -> None:
        """A message was just committed: attempt it as soon as a slot is free."""
        if self._stopping:
            return  # it stays in active/: the next start finds it
        now = self._clock()
        self._schedule(envelope.queue_id, now)
        if self._started:
            self._dispatch(now)

    def wakeup_nowait(self) -> None:
        """Look into active/ soon (another process committed a message)."""
        self._scan_active = True
        self._wake.set()

    def _schedule(self, qid: str, when: float) -> None:
        if qid in self._running:
            return  # the attempt reschedules it when it ends
        old = self._when.get(qid)
        if old is not None and old <= when:
            return
        self._when[qid] = when
        heapq.heappush(self._heap, (when, qid))
        self._wake.set()

    def _unschedule(self, qid: str) -> None:
        self._when.pop(qid, None)  # its heap entry is now stale

    def _peek(self) -> tuple[float, str] | None:
        while self._heap:
            when, qid = self._heap[0]
            if self._when.get(qid) == when:
                return when, qid
            heapq.heappop(self._heap)
        return None

    def _absorb(self, entries: list[QueueEntry], now: float) -> None:
        """Take a spool scan into the schedule (new messages, holds)."""
        for entry in entries:
            qid = entry.envelope.queue_id
            if qid in self._running:
                continue
            if entry.state == "hold":
                self._unschedule(qid)
            elif entry.state == "active":
                # New, or requeued by `postoffice queue requeue|flush`, `sendmail -q`,
                # ETRN: whatever waits in active/ is due now, whatever the old schedule said.
                if self._when.get(qid, now + 1) > now:
                    self._schedule(qid, now)
            elif qid not in self._when:
                self._schedule(qid, entry.envelope.next_attempt)

    async def _scan(self, states: tuple[QueueState, ...]) -> None:
        try:
            entries = await asyncio.to_thread(self._spool.entries, states)
        except OSError as e:
            self._n["errors"] += 1
            log.error("queue scan failed: %s", e)
            return
        self._absorb(entries, self._clock())

    # --- running attempts --------------------------------------------------------

    def _dispatch(self, now: float, skip: set[str] | None = None) -> list[str]:
        """Start attempts for what is due at `now`, up to the concurrency limit."""
        started: list[str] = []
        held_back: list[tuple[float, str]] = []
        while len(self._running) < self._limit and not self._stopping:
            top = self._peek()
            if top is None or top[0] > now:
                break
            heapq.heappop(self._heap)
            if skip is not None and top[1] in skip:
                held_back.append(top)
                continue
            del self._when[top[1]]
            self._start_attempt(top[1])
            started.append(top[1])
        for item in held_back:
            heapq.heappush(self._heap, item)
        return started

    def _start_attempt(self, qid: str) -> None:
        task = asyncio.create_task(self._attempt(qid), name=f"deliver-{qid}")
        self._running[qid] = task
        task.add_done_callback(lambda t: self._finished(qid, t))

    def _finished(self, qid: str, task: asyncio.Task[float | None]) -> None:
        if self._running.get(qid) is task:
            del self._running[qid]
        if task.cancelled():
            pass  # stop(): the envelope is as it was; the next start retries
        elif task.exception() is not None:
            self._n["errors"] += 1
            log.error("%s: delivery attempt failed", qid, exc_info=task.exception())
            self._schedule(qid, self._clock() + max(_MIN_RETRY, self._backoff.min_backoff))
        elif (due := task.result()) is not None:
            self._schedule(qid, due)
        if not self._stopping:
            self._dispatch(self._clock())

    async def run_due(self, now: float | None = None) -> int:
        """Attempt every message due at `now` (default: the clock), each at most once.

        Returns when no attempt is running any more; the number of attempts started.
        """
        now = self._clock() if now is None else now
        attempted: set[str] = set()
        while True:
            attempted.update(self._dispatch(now, skip=attempted))
            if not self._running:
                return len(attempted)
            await asyncio.wait(set(self._running.values()), return_when=asyncio.FIRST_COMPLETED)

    async def run_queue(self, *, force: bool = False) -> int:
        """A queue run: rescan the spool and attempt what is due (force: all of it)."""
        now = self._clock()
        await self._scan(QUEUE_STATES)
        self._last_scan = now
        if force:
            for qid in list(self._when):
                self._schedule(qid, now)
        return await self.run_due(now)

    async def wait_idle(self) -> None:
        """Wait until no attempt is running (attempts they start included)."""
        while self._running:
            await asyncio.wait(set(self._running.values()))

    async def _timer(self) -> None:
        """The background loop: scans and due times, sleeping on the clock in between."""
        interval = max(1.0, self._config.run_interval)
        while not self._stopping:
            self._wake.clear()
            now = self._clock()
            if not 0 <= now - self._last_scan < interval:  # due, or the clock stepped back
                self._last_scan = now
                self._scan_active = False
                await self._scan(QUEUE_STATES)
            elif self._scan_active:
                self._scan_active = False
                await self._scan(("active",))
            now = self._clock()
            self._dispatch(now)
            wait = interval - (now - self._last_scan)
            top = self._peek()
            if top is not None and len(self._running) < self._limit:
                wait = min(wait, top[0] - now)
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.01, min(wait, interval)))
            except TimeoutError:
                pass

    # --- one attempt ---------------------------------------------------------------

    async def _attempt(self, qid: str) -> float | None:
        """One delivery attempt; when to try again (None: removed, held or gone)."""
        t0 = self._clock()
        try:
            entry = self._spool.load(qid)
        except OSError as e:
            self._n["errors"] += 1
            log.error("%s: cannot read queue file: %s", qid, e)
            return t0 + max(_MIN_RETRY, self._backoff.min_backoff)
        unsaved = self._unsaved.pop(qid, None)
        if entry is None or entry.state == "hold":
            return None  # removed or held meanwhile: release or a scan brings it back
        env = entry.envelope
        if unsaved is not None and unsaved.attempts > env.attempts:
            env = unsaved
        self._n["attempts"] += 1
        if env.done:
            return await self._remove(env)
        routes: dict[str, list[int]] = {}
        for i, rcpt in enumerate(env.recipients):
            if rcpt.state is RcptState.PENDING:
                routes.setdefault(self._route(env, rcpt), []).append(i)
        results = await asyncio.gather(
            *(
                self._deliver(name, env, [env.recipients[i] for i in ix])
                for name, ix in routes.items()
            )
        )
        new = list(env.recipients)
        bounced: list[int] = []
        delivered: list[int] = []
        last_reason = ""
        for ix, (outcomes, started, ended) in zip(routes.values(), results, strict=True):
            delays = (started - env.arrival_time, started - t0, 0.0, ended - started)
            for i, outcome in zip(ix, outcomes, strict=True):
                new[i], text = self._apply(
                    qid, env.recipients[i], outcome, ended - env.arrival_time, delays
                )
                if isinstance(outcome, Bounced):
                    bounced.append(i)
                elif isinstance(outcome, Deferred):
                    last_reason = text
                else:
                    delivered.append(i)
        now = self._clock()
        pending = [i for i, r in enumerate(new) if r.state is RcptState.PENDING]
        if pending and self._backoff.expired(arrival_time=env.arrival_time, now=now):
            self._expire(env, new, pending)
            bounced.extend(pending)
        after = replace(
            env,
            recipients=tuple(new),
            attempts=env.attempts + 1,
            last_reason=last_reason or env.last_reason,
        )
        if bounced:
            await self._bounce(after, [new[i] for i in sorted(bounced)])
        if self._on_success is not None:
            asked = [new[i] for i in sorted(delivered) if wants_dsn(new[i].notify, "success")]
            if asked:
                await self._notify(self._on_success, "delivery status", after, asked)
        if after.done:
            return await self._remove(after)
        return await self._defer(await self._warn(after, now), now)

    def _apply(
        self,
        qid: str,
        rcpt: EnvelopeRecipient,
        outcome: Outcome,
        delay: float,
        delays: tuple[float, float, float, float],
    ) -> tuple[EnvelopeRecipient, str]:
        """Log one outcome; the recipient's new state and the status text."""
        text = status_text(outcome)
        if isinstance(outcome, Delivered):
            status, state, counter = "sent", RcptState.DELIVERED, "delivered"
        elif isinstance(outcome, Bounced):
            status, state, counter = "bounced", RcptState.BOUNCED, "bounced"
        else:
            status, state, counter = "deferred", RcptState.PENDING, "deferred"
        self._n[counter] += 1
        # Postfix logs a delivery under the agent's name (local, smtp), others under qmgr.
        agent_log = _LOCAL_LOG if outcome.relay == "local" else log
        agent_log.info(
            "%s: to=<%s>, relay=%s, delay=%s, delays=%s, dsn=%s, status=%s (%s)",
            qid, rcpt.address, outcome.relay, format_delay(delay),
            "/".join(format_delay(d) for d in delays), _dsn(outcome.reply), status, text,
        )  # fmt: skip
        return replace(rcpt, state=state, reason=text, relay=outcome.relay), text

    def _expire(self, env: Envelope, new: list[EnvelopeRecipient], pending: list[int]) -> None:
        """Too long in the queue (max_lifetime): bounce what is still pending."""
        self._n["expired"] += 1
        for i in pending:
            self._n["bounced"] += 1
            last = new[i].reason or "no attempt succeeded"
            reason = f"{EXPIRED_STATUS} Message expired in the queue (last: {last})"
            new[i] = replace(new[i], state=RcptState.BOUNCED, reason=reason)
        log.info("%s: from=<%s>, status=expired, returned to sender", env.queue_id, env.sender)

    async def _defer(self, env: Envelope, now: float) -> float:
        due = self._backoff.next_attempt(
            now=now, arrival_time=env.arrival_time, attempts=env.attempts, queue_id=env.queue_id
        )
        env = replace(env, next_attempt=max(due, now + _MIN_RETRY))
        try:
            await self._spool.update(env, deferred=True)
        except TempFail as e:
            self._n["errors"] += 1
            self._unsaved[env.queue_id] = env
            log.error("%s: cannot save the queue file: %s", env.queue_id, e.reason)
        return env.next_attempt

    def _route(self, env: Envelope, rcpt: EnvelopeRecipient) -> str:
        try:
            return self._transport_for(env, rcpt)
        except Exception:  # a bug in routing must not lose or stall the message
            self._n["errors"] += 1
            log.exception("%s: routing <%s> failed", env.queue_id, rcpt.address)
            return ""

    async def _deliver(
        self, name: str, env: Envelope, rcpts: list[EnvelopeRecipient]
    ) -> tuple[list[Outcome], float, float]:
        started = self._clock()
        agent = self._agents.get(name)
        outcomes: list[Outcome]
        if agent is None:
            outcomes = [Deferred(recipient=r, reply=NO_ROUTE, relay="none") for r in rcpts]
            return outcomes, started, self._clock()
        try:
            outcomes = list(await agent.deliver(env, rcpts))
        except Exception:  # exceptions are bugs (CONVENTIONS §8); the mail stays queued
            self._n["errors"] += 1
            log.exception("%s: delivery agent %r failed", env.queue_id, name)
            outcomes = []
        if len(outcomes) != len(rcpts):
            if outcomes:
                self._n["errors"] += 1
                log.error(
                    "%s: agent %r returned %d outcomes for %d recipients",
                    env.queue_id, name, len(outcomes), len(rcpts),
                )  # fmt: skip
            outcomes = outcomes[: len(rcpts)] + [
                Deferred(recipient=r, reply=AGENT_FAILED, relay=name)
                for r in rcpts[len(outcomes) :]
            ]
        return outcomes, started, self._clock()

    async def _bounce(self, env: Envelope, rcpts: list[EnvelopeRecipient]) -> None:
        if self._on_bounce is None:
            log.info(
                "%s: sender non-delivery notification: not sent, no DSN hook (%d recipients)",
                env.queue_id, len(rcpts),
            )  # fmt: skip
            return
        await self._notify(self._on_bounce, "non-delivery", env, rcpts)

    async def _warn(self, env: Envelope, now: float) -> Envelope:
        """queue.warn_after: one delay DSN per message, recorded in the envelope."""
        warn_after = self._config.warn_after
        if (
            self._on_delay is None
            or warn_after <= 0
            or env.warned
            or now - env.arrival_time < warn_after
        ):
            return env
        asked = [r for r in env.pending if wants_dsn(r.notify, "delay")]
        if asked and not await self._notify(self._on_delay, "delay", env, asked):
            return env  # not recorded: the next deferral tries again
        return replace(env, warned=now)

    async def _notify(
        self, hook: BounceHook, what: str, env: Envelope, rcpts: list[EnvelopeRecipient]
    ) -> bool:
        """Call a notification hook; whether it succeeded (failures are logged, never raised)."""
        try:
            await hook(env, rcpts)
        except TempFail as e:
            self._n["errors"] += 1
            log.error("%s: sender %s notification not queued: %s", env.queue_id, what, e.reason)
            return False
        except Exception:  # a bug in the notifier must not stall the queue
            self._n["errors"] += 1
            log.exception("%s: sender %s notification failed", env.queue_id, what)
            return False
        return True

    async def _remove(self, env: Envelope) -> float | None:
        try:
            await self._spool.remove(env.queue_id)
        except TempFail as e:
            self._n["errors"] += 1
            self._unsaved[env.queue_id] = env
            log.error("%s: cannot remove the queue file: %s", env.queue_id, e.reason)
            return self._clock() + max(_MIN_RETRY, self._backoff.min_backoff)
        self._n["removed"] += 1
        log.info("%s: removed", env.queue_id)
        return None

    def statistics(self) -> QueueStatistics:
        n = self._n
        return QueueStatistics(
            scheduled=len(self._when),
            running=len(self._running),
            attempts=n["attempts"],
            delivered=n["delivered"],
            deferred=n["deferred"],
            bounced=n["bounced"],
            expired=n["expired"],
            removed=n["removed"],
            errors=n["errors"],
        )
