"""The composition root: builds spool, maps, policy, agents and listeners from a Config.

Description:
    The only place concrete classes are wired together (DESIGN.md). `App`
    owns one asyncio loop's worth of services:

        FileSpool ── QueueManager ── LocalAgent (Maildir/mbox)
            │
        SmtpServer ── SmtpSession ── RecipientPolicy (UserDB, trusted networks)
            └── TlsReloader ([tls]: STARTTLS, implicit TLS on submissions)

    `serve()` runs until SIGTERM/SIGINT, then stops cleanly: listeners
    close, idle clients get 421, running transactions and deliveries finish
    (bounded). SIGHUP reloads the configuration and the users file without
    dropping connections; a broken new configuration is logged and the old
    one stays in force; SIGHUP also loads the [tls] certificate again (a
    broken new one is logged and the old one kept), and a changed
    certificate file is noticed without a signal (net/tls.py).

    Listeners: [smtp] listen ("listening for SMTP on ..."), [submission]
    listen ("listening for submission on ...", STARTTLS, RFC 6409) and
    tls_listen ("listening for submissions on ...", implicit TLS, RFC 8314
    §3.3), [smtp] qmtp_listen, [pop3] listen ("listening for POP3 on ...",
    STLS) and [pop3s] listen ("listening for POP3S on ...", implicit TLS),
    [imap] listen ("listening for IMAP on ...", STARTTLS) and [imaps] listen
    ("listening for IMAPS on ...", implicit TLS).

Security:
    Runs as whoever starts it; the default listens on 127.0.0.1:2525 and
    relays for loopback only.

See also:
    cli/serve.py, smtp/server.py, queue/manager.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pwd
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from postoffice.auth.backend import AuthBackend
from postoffice.auth.passwd_file import UserDB
from postoffice.auth.shadow import ShadowDB
from postoffice.auth.throttle import FailureThrottle
from postoffice.cli.queue import flush_for_etrn
from postoffice.config.load import load_config, parse_listen_address
from postoffice.config.schema import Config
from postoffice.delivery.error import ErrorAgent
from postoffice.delivery.file import FileAgent
from postoffice.delivery.lmtp import LmtpAgent
from postoffice.delivery.local import LocalAgent
from postoffice.delivery.pipe import ProgramAgent
from postoffice.delivery.qmtp import QmtpAgent
from postoffice.delivery.smtp import RemoteAgent
from postoffice.dns import Resolver
from postoffice.errors import ConfigError
from postoffice.imap.server import ImapServer
from postoffice.imap.session import ImapDeps
from postoffice.maps.registry import open_map
from postoffice.net.tls import TlsReloader
from postoffice.observe.log import reopen as reopen_log
from postoffice.policy.engine import PolicyEngine
from postoffice.policy.relay import RecipientPolicy
from postoffice.pop3.server import Pop3Server
from postoffice.pop3.session import Pop3Deps
from postoffice.queue.bounce import Notifier
from postoffice.queue.envelope import Envelope, EnvelopeRecipient
from postoffice.queue.interfaces import DeliveryAgent
from postoffice.queue.manager import QueueManager
from postoffice.queue.spool import FileSpool
from postoffice.routing.generics import SenderRewriter
from postoffice.routing.local import LocalRouter
from postoffice.routing.resolve import Router
from postoffice.routing.targets import from_spec, transport
from postoffice.routing.users import locate_mailbox
from postoffice.smtp.qmtp import QmtpServer, start_qmtp_server
from postoffice.smtp.qmtp_session import QmtpIntake
from postoffice.smtp.server import SmtpServer
from postoffice.smtp.session import SessionDeps
from postoffice.store.opener import StoreOpener

log = logging.getLogger("postoffice.master")


@dataclass(slots=True)
class _Maps:
    users: UserDB
    policy: RecipientPolicy
    router: LocalRouter
    resolver: Router


class App:
    """Everything `postoffice serve` runs, on the current event loop."""

    def __init__(self, config: Config, *, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.tls = TlsReloader.from_config(config.tls)  # ConfigError: one line at start
        if config.submission.tls_listen and self.tls is None:
            raise ConfigError("needs tls.cert and tls.key", key="submission.tls_listen")
        if config.imaps.listen and self.tls is None:
            raise ConfigError("needs tls.cert and tls.key", key="imaps.listen")
        if config.pop3s.listen and self.tls is None:
            raise ConfigError("needs tls.cert and tls.key", key="pop3s.listen")
        if config.pop3.autologout < 600:  # RFC 1939 §3: "at least 10 minutes"
            raise ConfigError("must be at least 600 seconds (RFC 1939 §3)", key="pop3.autologout")
        self.spool = FileSpool(config.state_dir, io_threads=4)
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="postoffice-io")
        self.maps = self._build_maps(config)
        # Readers (POP3, IMAP) find mailboxes exactly where delivery writes them.
        self.stores = StoreOpener(
            lambda login: locate_mailbox(
                login,
                mailbox_template=config.delivery.mailbox,
                user_exists=self._user_exists,
                system_users=config.delivery.system_users,
                system_template=config.delivery.system_mailbox,
                getpwnam=pwd.getpwnam,
            ),
            index_dir=os.path.join(config.state_dir, "index"),
            hostname=config.hostname,
        )
        self.local = LocalAgent(
            self.spool.open_body,
            config.delivery.mailbox,
            hostname=config.hostname,
            executor=self.executor,
        )
        delivery = config.delivery
        agents: dict[str, DeliveryAgent] = {
            "local": self.local,
            "pipe": ProgramAgent(
                self.spool.open_body,
                hostname=config.hostname,
                program_dir=delivery.program_dir,
                any_program=delivery.any_program,
                timeout=delivery.program_timeout,
                default_user=delivery.default_user,
                recipient_delimiter=config.routing.recipient_delimiter,
            ),
            "file": FileAgent(
                self.spool.open_body,
                hostname=config.hostname,
                timeout=delivery.program_timeout,
                default_user=delivery.default_user,
            ),
            "error": ErrorAgent(),
        }
        # Mail leaving the host: DNS MX (or mailertable / smart_host) and the ESMTP
        # client; genericstable and masquerading rewrite its sender (issue 3).
        self.resolver = Resolver.from_config(config.dns)
        self.genericstable = open_map(
            "genericstable", config.maps.genericstable, safe_files=config.maps.safe_files
        )
        self.remote = RemoteAgent(
            self.resolver,
            self.spool.open_body,
            config,
            rewriter=SenderRewriter.from_config(config, self.genericstable),
        )
        agents["smtp"] = self.remote
        client = config.smtp_client
        agents["lmtp"] = LmtpAgent(
            open_body=self.spool.open_body,
            hostname=client.helo_name or config.hostname,
            connect_timeout=client.connect_timeout,
            timeout=client.command_timeout,
            data_timeout=client.data_timeout,
        )
        agents["qmtp"] = QmtpAgent(
            open_body=self.spool.open_body,
            connect_timeout=client.connect_timeout,
            timeout=client.data_timeout,
        )
        # RFC 3464 DSNs: bounces, delay warnings, success reports (queue/bounce.py).
        self.notifier = Notifier(
            self.spool,
            hostname=config.hostname,
            clock=time.time,
            submit=lambda envelope: self.manager.submit_nowait(envelope),
            max_lifetime=config.queue.max_lifetime,
        )
        self.manager = QueueManager(
            self.spool,
            agents,
            self._transport_for,
            config.queue,
            on_bounce=self.notifier.on_bounce,
            on_delay=self.notifier.on_delay,
            on_success=self.notifier.on_success,
        )
        self.auth_backend = self._build_auth(config)
        self.policy_engine = self._build_policy(config)
        self.smtp = SmtpServer(self._deps())
        self.pop3 = Pop3Server(self._pop3_deps())
        self.imap = ImapServer(self._imap_deps())
        self.bound: list[tuple[str, int]] = []
        self._stop = asyncio.Event()
        self._map_watcher: asyncio.Task[None] | None = None
        self.qmtp: list[QmtpServer] = []

    # -- wiring -----------------------------------------------------------------

    def _build_maps(self, config: Config) -> _Maps:
        users = UserDB.load(config.users_file)
        resolver = Router.from_config(config, user_exists=self._user_exists)
        policy = RecipientPolicy(
            local_domains=config.local_domains,
            user_exists=self._user_exists,
            trusted_networks=config.relay.trusted_networks,
            resolve=resolver.resolve,
        )
        router = LocalRouter(local_domains=config.local_domains, hostname=config.hostname)
        return _Maps(users=users, policy=policy, router=router, resolver=resolver)

    def _build_policy(self, config: Config) -> PolicyEngine:
        """The access database, tcprules, blocklists and limits (policy/engine.py)."""
        return PolicyEngine.from_config(
            config,
            resolver=self.resolver,
            user_exists=self._user_exists,
            resolve=self.maps.resolver.resolve,
        )

    def _build_auth(self, config: Config) -> AuthBackend:
        """SMTP AUTH against the users file (and /etc/shadow when configured)."""
        system_verify = None
        if config.auth.system_accounts:
            try:
                system_verify = ShadowDB.load().verify
            except OSError as e:
                log.error("[auth] system_accounts: cannot read the shadow file: %s", e)
        return AuthBackend(
            users=lambda: self.maps.users,
            throttle=FailureThrottle.from_config(config.auth),
            hostname=config.hostname,
            system_verify=system_verify,
        )

    def _user_exists(self, address: str) -> bool:
        """Always the current users file: sessions that outlive a SIGHUP reload
        keep their router and policy, and must still see users added since."""
        return self.maps.users.exists(address)

    def _transport_for(self, envelope: Envelope, recipient: EnvelopeRecipient) -> str:
        if recipient.target:
            try:
                return transport(from_spec(recipient.address, recipient.target))
            except ValueError:
                return "error"
        return self.maps.router.transport_for(envelope, recipient)

    async def _watch_maps(self) -> None:
        """Changed users and map files take effect without a restart (checked each second)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                users = self.maps.users.reload_if_changed()
                routes = self.maps.resolver.reload_if_changed()
                routes = self.policy_engine.reload_if_changed() or routes
            except (ConfigError, OSError) as e:
                log.error("reloading maps failed, keeping the previous ones: %s", e)
                continue
            if users or routes:
                log.info("maps reloaded (users=%s, routing maps=%s)", users, routes)

    def _pop3_deps(self) -> Pop3Deps:
        """POP3 (RFC 1939): the same users, failure throttle and certificate as SMTP."""
        return Pop3Deps(
            config=self.config,
            auth=self.auth_backend,
            open_inbox=self.stores.inbox,
            tls_context=self.tls.context if self.tls is not None else None,
        )

    def _imap_deps(self, previous: ImapDeps | None = None) -> ImapDeps:
        """IMAP (RFC 9051): the same users, throttle, certificate and stores as POP3.
        What sessions share across reloads (\\Recent claims, summary caches, IDLE
        watchers, per-user counts) is kept from the `previous` deps."""

        def run(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
            return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

        deps = ImapDeps(
            config=self.config,
            open_store=self.stores.store,
            auth=self.auth_backend,
            tls_context=self.tls.context if self.tls is not None else None,
            run=run,
        )
        if previous is not None:
            p = previous
            deps = dataclasses.replace(
                deps,
                claims=p.claims,
                caches=p.caches,
                watch=p.watch,
                users=p.users,
            )
        return deps

    def _deps(self) -> SessionDeps:
        return SessionDeps(
            config=self.config,
            policy=self.maps.policy,
            spool=self.spool,
            submit=self.manager.submit_nowait,
            qualify=self.maps.router.qualify,
            deliver_now=self.local.deliver_content if self.config.delivery.direct else None,
            direct_max_size=self.config.delivery.direct_max_size,
            direct_max_recipients=self.config.delivery.direct_max_recipients,
            flush_domain=flush_for_etrn(self.spool) if self.config.smtp.etrn else None,
            tls_context=self.tls.context if self.tls is not None else None,
            auth=self.auth_backend if self.config.auth.mechanisms else None,
            policy_engine=self.policy_engine,
        )

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self.manager.start()  # recovers the spool and watches its trigger
        self._map_watcher = asyncio.create_task(self._watch_maps(), name="map-watcher")
        listen = [parse_listen_address(s) for s in self.config.smtp.listen]
        self.bound = await self.smtp.start(listen)
        for host, port in self.bound:
            log.info("listening for SMTP on %s", _join(host, port))
        submission = self.config.submission
        for spec in submission.listen:  # RFC 6409 (587): STARTTLS when [tls] is set
            if self.tls is None:
                log.warning("submission on %s without [tls]: STARTTLS is not offered", spec)
            bound = await self.smtp.start([parse_listen_address(spec)], submission=True)
            for host, port in bound:
                log.info("listening for submission on %s", _join(host, port))
        for spec in submission.tls_listen:  # RFC 8314 §3.3 (465): implicit TLS
            assert self.tls is not None  # checked in __init__
            bound = await self.smtp.start(
                [parse_listen_address(spec)], ssl_context=self.tls.context, submission=True
            )
            for host, port in bound:
                log.info("listening for submissions on %s", _join(host, port))
        for spec in self.config.pop3.listen:  # RFC 1939 (110): STLS when [tls] is set
            bound = await self.pop3.start([parse_listen_address(spec)])
            for host, port in bound:
                log.info("listening for POP3 on %s", _join(host, port))
        for spec in self.config.pop3s.listen:  # RFC 8314 §3.3 (995): implicit TLS
            assert self.tls is not None  # checked in __init__
            bound = await self.pop3.start(
                [parse_listen_address(spec)], ssl_context=self.tls.context
            )
            for host, port in bound:
                log.info("listening for POP3S on %s", _join(host, port))
        for spec in self.config.imap.listen:  # RFC 9051 (143): STARTTLS when [tls] is set
            bound = await self.imap.start([parse_listen_address(spec)])
            for host, port in bound:
                log.info("listening for IMAP on %s", _join(host, port))
        for spec in self.config.imaps.listen:  # RFC 8314 §3.3 (993): implicit TLS
            assert self.tls is not None  # checked in __init__
            bound = await self.imap.start(
                [parse_listen_address(spec)], ssl_context=self.tls.context
            )
            for host, port in bound:
                log.info("listening for IMAPS on %s", _join(host, port))
        limits = self.config.limits
        for spec in self.config.smtp.qmtp_listen:
            host, port = parse_listen_address(spec)
            intake = QmtpIntake(lambda: self.smtp.deps)
            server = await start_qmtp_server(
                intake,
                host,
                port,
                max_message_size=limits.max_message_size,
                max_recipients=limits.max_recipients,
                gate=intake,  # tcprules, limits, access Connect:, blocklists
            )
            self.qmtp.append(server)
            for qhost, qport in server.addresses:
                log.info("listening for QMTP on %s", _join(qhost, qport))
        log.info(
            "postoffice started: hostname=%s, state_dir=%s, local_domains=%s",
            self.config.hostname, self.config.state_dir, ",".join(self.config.local_domains),
        )  # fmt: skip

    async def stop(self) -> None:
        log.info("stopping")
        if self._map_watcher is not None:
            self._map_watcher.cancel()
        await self.smtp.stop()
        await self.pop3.stop()
        await self.imap.stop()
        for qmtp in self.qmtp:
            await qmtp.stop()
        await self.manager.stop()
        await self.remote.close()
        self.executor.shutdown(wait=True)
        self.spool.close()
        log.info("stopped")

    def reload(self) -> None:
        """SIGHUP: reopen the log, re-read config and maps; keep the old ones on error."""
        reopen_log()
        try:
            new = load_config(self.config_path)
            maps = self._build_maps(new)
        except (ConfigError, OSError) as e:
            log.error("reload failed, keeping the running configuration: %s", e)
            self._reload_tls(self.config)
            return
        if (
            new.smtp.listen != self.config.smtp.listen
            or new.submission.listen != self.config.submission.listen
            or new.submission.tls_listen != self.config.submission.tls_listen
            or new.pop3.listen != self.config.pop3.listen
            or new.pop3s != self.config.pop3s
            or new.imap.listen != self.config.imap.listen
            or new.imaps != self.config.imaps
            or new.state_dir != self.config.state_dir
        ):
            log.warning("reload: listen addresses and state_dir change only on restart")
        self.config = new
        self.maps = maps
        try:
            self.policy_engine = self._build_policy(new)
        except (ConfigError, OSError) as e:
            log.error("reload: keeping the previous access policy: %s", e)
        self._reload_tls(new)
        self.smtp.set_deps(self._deps())
        self.pop3.set_deps(self._pop3_deps())
        self.imap.set_deps(self._imap_deps(self.imap.deps))
        log.info("reloaded configuration from %s", new.source or "embedded defaults")

    def _reload_tls(self, config: Config) -> None:
        """SIGHUP: the certificate files again (or other ones); errors are logged."""
        tls = config.tls
        if self.tls is not None:
            self.tls.configure(tls.cert, tls.key, min_version=tls.min_version)
        elif tls.cert:
            try:
                self.tls = TlsReloader.from_config(tls)
            except ConfigError as e:
                log.error("TLS not enabled: %s", e)

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self) -> None:
        """Start, run until SIGTERM/SIGINT, stop. SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        # Handlers first: a supervisor may signal as soon as the port answers.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(sig)
            await self.stop()


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def install_event_loop_policy() -> None:
    """Use uvloop when installed (DESIGN.md), unless POSTOFFICE_NO_UVLOOP is set."""
    if os.environ.get("POSTOFFICE_NO_UVLOOP"):
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
