"""policy/engine — the policy decisions of one SMTP session: connect, MAIL, RCPT.

Description:
    PolicyEngine combines the per-IP rules (policy/tcprules.py), the
    limits (policy/limits.py), the access database (policy/access.py), DNS
    blocklists (policy/dnsbl.py), relay-domains and the recipient checks
    (policy/relay.py, routing/) into one answer per SMTP stage. It does no
    I/O but DNS questions (through dns.Resolver) and map lookups; the
    session (smtp/session.py) sends the replies.

        state = await engine.new_client(ip)         # reverse DNS, confirmed
        verdict = await engine.on_connect(state)    # before the greeting
        ... AUTH succeeded: state.authenticated = "user@example.com"
        verdict = await engine.on_mail(state, sender)       # each MAIL FROM
        verdict = await engine.on_rcpt(state, recipient)    # each RCPT TO
        engine.on_disconnect(state)                 # once, when it closes

    A Verdict has a kind, the Reply to send, a reason for the log and, for
    an accepted local recipient, the routing Resolution:
        accept    go on (connect: send the usual 220 greeting; MAIL: 250;
                  RCPT: a local recipient, `resolution` says where to)
        relay     RCPT only: a recipient in another domain that this
                  client may relay to (`resolution` from routing when a
                  router is configured: mailertable, smart host, MX)
        reject    a 5xx reply. At connect it is a 554 (RFC 5321 §3.1): send
                  it instead of the greeting, then answer 503 to every
                  command but QUIT (or the refusal again, as sendmail does)
        defer     a 4xx reply; a 421 (`verdict.closes`) means: send it and
                  close the connection (limits, RFC 5321 §3.8)
        discard   answer positively (the reply is a 2xx) but drop the whole
                  message at the end of DATA and log it with the reason:
                  sendmail's DISCARD (seed 002: the sender sees success).
                  Once a verdict of the transaction is discard, the later
                  ones are too; RSET/a new MAIL starts afresh.
    `verdict.decision` converts to policy.relay.Decision for code written
    against RecipientPolicy.check_rcpt. DATA needs nothing from the engine.

    Connect (in this order):
      1. tcprules: a deny rule is 554 5.7.1 "Access denied" (qmail's
         tcpserver closes instead); the rule's settings stay in the state
         (RELAYCLIENT, RBLSMTPD, limits, anything else in `state.env`).
      2. limits: concurrent connections and connection rate per client,
         421 4.7.0 (the rule's MAXCONNIP / MAXCONNRATE override).
      3. access `Connect:` (name, then address): REJECT/ERROR refuse, DISCARD
         discards everything the client sends, OK/RELAY skip step 4.
      4. RBLSMTPD set and not empty refuses as rblsmtpd(1) does; set and
         empty skips the blocklists; otherwise the DNS blocklists (not for
         trusted networks or RELAYCLIENT clients): listed is 554 5.7.1 with
         the list's TXT, or a log line only in `warn` mode.
    MAIL:
      1. the message rate: 451 4.7.1 when over [policy]
         max_messages_per_hour (MAXMSGHOUR);
      2. the null sender is always accepted (RFC 5321 §4.5.5);
      3. an authenticated client with [auth] sender_login_binding: the
         sender must belong to the login (policy/sender_login.py: its own
         address, addresses routing to its mailbox alone, sender_login_map),
         else 553 5.7.1 "<S>... Sender address not owned by user LOGIN";
      4. access `From:` (user@domain, user@, domain): REJECT 550 5.7.1,
         ERROR its reply, DISCARD discards the message, OK/RELAY accept
         (and, with delay_checks, skip the delayed connect checks);
      5. without an access entry and with accept_unresolvable_domains off,
         the sender domain must resolve (MX, else A/AAAA): NXDOMAIN is
         553 5.1.8 "Domain of sender address <x> does not exist", DNS
         trouble 451 4.1.8 "... does not resolve", a null MX 550 5.7.27
         (RFC 7505 §4.2). Not asked for local domains, nor for clients
         that may relay (trusted, RELAYCLIENT, authenticated, Connect:
         RELAY): like Postfix's permit_mynetworks before
         reject_unknown_sender_domain.
    RCPT:
      1. with blacklist_recipients, access `To:` (user@domain, user@ for
         local domains, domain): REJECT 550 5.2.1 "Mailbox disabled for
         this recipient", ERROR its reply, DISCARD discards;
      2. a local domain: routing decides (aliases, virtusertable, users):
         accept, or its refusal (550 5.1.1 User unknown);
      3. another domain is relayed when (first that holds, as sendmail's
         Rcpt_ok then Relay_ok): the domain is in relay-domains (and its
         subdomains with relay_entire_domain, which also covers subdomains
         of local domains); access `To:domain RELAY`; promiscuous_relay;
         the client authenticated; RELAYCLIENT from tcprules; the client is
         in [relay] trusted_networks; access `Connect:` RELAY for its
         address or confirmed name; relay-domains lists its address (a
         network such as `192.168.0`) or confirmed name (not: its name is
         a local domain — sendmail's class w rule; the host itself is
         trusted only through trusted_networks); with relay_based_on_MX, an MX of the domain is
         this host (DNS trouble: 451 4.4.0). Otherwise 550 5.7.1
         "<addr>... Relaying denied", with sendmail's ". IP name possibly
         forged [ip]" or ". IP name lookup failed [ip]" when the client's
         name was not confirmed (seed 002).
      The address is normalised first: a source route is dropped (RFC 5321
      §3.6.1, Appendix C: only the final mailbox counts), the domain folded
      to lower case and one trailing dot removed (more is a syntax error).
      `%`, `!` and quoted local parts containing `@` are local parts:
      routing never forwards them (routing/resolve.py), so
      user%other.example@local is a local user that does not exist, and
      "user@other.example"@remote.example is relaying like any other.
      An address literal is local only when local_domains lists it
      ("[192.0.2.1]"); otherwise it is another domain.
    delay_checks (sendmail FEATURE(delay_checks)): rejections of the
      connect stage (access, blocklists) and of MAIL (access From:,
      unresolvable domain) are answered at RCPT instead, after the
      recipient's own checks, unless the client authenticated; an access
      From: OK/RELAY for the sender skips the delayed connect rejection.
      tcprules denies and limits are never delayed.

    Client names: new_client() asks PTR, then A/AAAA of that name
    (policy/client_name.py); only a forward-confirmed name is used for
    decisions, otherwise the client is `[ip]` there and "name [ip] (may be
    forged)" in Received: (`state.received_from`), as sendmail writes it.

    Listeners: new_client(ip, listener=KIND) with KIND smtp, submission or
    qmtp (policy/listener.py). The kind's overrides ([smtp.policy],
    [submission.policy]) change the limits (a tcprules MAXCONNIP,
    MAXCONNRATE, MAXMSGHOUR still wins), turn the blocklists or the access
    database off, and the limits count per kind of listener.

Security:
    Everything the client says is untrusted; the client's name counts only
    when forward-confirmed. Relaying is never a default: promiscuous_relay
    is logged as an error when the engine starts. A blocklist or sender
    domain that cannot be checked never makes the engine allow more than
    without it: blocklist failures let mail through (they must never block
    mail), sender domain trouble defers.

Config:
    local_domains, hostname, [relay] trusted_networks, [maps] access,
    relay_domains, safe_files, [policy] (all keys), [routing]
    recipient_delimiter (access +detail lookups), [auth]
    sender_login_binding, sender_login_map.

See also:
    sendmail cf/README "ANTI-SPAM CONFIGURATION CONTROL" and "Delay all
    checks", cf/m4/proto.m4 (check_relay, check_mail, check_rcpt); qmail
    tcprules(1), rblsmtpd(1), qmail-smtpd(8); RFC 5321 §3.1, §3.6, §4.5.5;
    RFC 5782; RFC 7505; seeds 002 and 004.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from postoffice.config.schema import Config, PolicyConfig
from postoffice.dns import DnsError, DnsPermFail, DnsTempFail, Resolver
from postoffice.maps.interfaces import Map
from postoffice.maps.registry import EmptyMap, open_map
from postoffice.policy.access import (
    ACCESS_DENIED,
    MAILBOX_DISABLED,
    AccessMap,
    AccessResult,
    Action,
    domain_keys,
    ip_keys,
    split_address,
)
from postoffice.policy.client_name import client_name
from postoffice.policy.dnsbl import DnsBlocklist, rblsmtpd_reply
from postoffice.policy.limits import ConnectionLimits
from postoffice.policy.listener import SMTP, ListenerRules, listener_rules, rules_for
from postoffice.policy.relay import (
    Decision,
    RecipientPolicy,
    normalise_recipient,
    routing_trick_note,
)
from postoffice.policy.sender_login import SenderLogins
from postoffice.policy.tcprules import DEFAULT_RULE, Rule, TcpRules
from postoffice.routing.targets import Resolution
from postoffice.smtp import replies
from postoffice.smtp.replies import Reply

log = logging.getLogger("postoffice.policy")

GREETING_OK: Final = Reply(code=220, enhanced="2.0.0", text="Ready")
CONNECT_DENIED: Final = Reply(code=554, enhanced="5.7.1", text="Access denied")
# sendmail Basic_check_mail (cf/m4/proto.m4) and RFC 3463 X.1.8 "bad sender's system address".
R = Reply.of
SENDER_NXDOMAIN: Final = R(553, "5.1.8", "Domain of sender address does not exist")
SENDER_TEMPFAIL: Final = R(451, "4.1.8", "Domain of sender address does not resolve")
SENDER_NULL_MX: Final = R(550, "5.7.27", "Sender address has null MX")  # RFC 7505 §4.2
SENDER_UNQUALIFIED: Final = R(553, "5.5.4", "Domain name required for sender address")
RECIPIENT_REQUIRED: Final = R(553, "5.1.3", "User address required")
MX_TEMPFAIL: Final = R(451, "4.4.0", "Can not check MX records for recipient host")
SENDER_NOT_OWNED: Final = R(553, "5.7.1", "Sender address not owned by user")


class Kind(enum.Enum):
    ACCEPT = "accept"
    RELAY = "relay"
    REJECT = "reject"
    DEFER = "defer"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """One policy answer: what to do, the reply, why (for the log), and where to."""

    kind: Kind
    reply: Reply
    reason: str = ""
    resolution: Resolution | None = None

    @property
    def accepted(self) -> bool:
        """The client gets a positive reply (accept, relay, discard)."""
        return self.kind in (Kind.ACCEPT, Kind.RELAY, Kind.DISCARD)

    @property
    def closes(self) -> bool:
        """A 421: send it and close the connection."""
        return self.reply.code == 421

    @property
    def decision(self) -> Decision:
        """The same answer as a relay.Decision (RecipientPolicy's type)."""
        return Decision(
            reply=self.reply, local=self.kind is Kind.ACCEPT, resolution=self.resolution
        )


def _first(*limits: int | None) -> int | None:
    """The first limit that is set (None: the ConnectionLimits default)."""
    return next((n for n in limits if n is not None), None)


def _accept(reply: Reply, reason: str = "", resolution: Resolution | None = None) -> Verdict:
    return Verdict(kind=Kind.ACCEPT, reply=reply, reason=reason, resolution=resolution)


def _discard(reply: Reply, reason: str) -> Verdict:
    return Verdict(kind=Kind.DISCARD, reply=reply, reason=reason)


def _refusal(reply: Reply, reason: str, resolution: Resolution | None = None) -> Verdict:
    kind = Kind.DEFER if reply.is_transient else Kind.REJECT
    return Verdict(kind=kind, reply=reply, reason=reason, resolution=resolution)


def _greeting_form(verdict: Verdict) -> Verdict:
    """At connection time only 554 and 421 may replace the 220 (RFC 5321 §4.3.2)."""
    reply = verdict.reply
    if reply.code in (421, 554) or verdict.accepted:
        return verdict
    if reply.is_transient:
        new = Reply(code=421, enhanced=reply.enhanced or "4.7.0", text=reply.text)
    else:
        new = Reply(code=554, enhanced=reply.enhanced or "5.7.1", text=reply.text)
    return Verdict(kind=verdict.kind, reply=new, reason=verdict.reason)


@dataclass(slots=True)
class ClientState:
    """What the engine knows about one connection. The session creates it
    (new_client), sets `authenticated` after a successful AUTH, and passes
    it to every call; the engine keeps its findings in the other fields."""

    ip: str
    listener: str = SMTP  # the kind of listener (policy/listener.py)
    hostname: str | None = None  # the PTR name, confirmed or not
    name_confirmed: bool = False
    authenticated: str = ""
    rule: Rule = DEFAULT_RULE
    refused: Verdict | None = None  # the connect refusal (not delayed)
    discard: str = ""  # the connection's mail is discarded: why
    deferred_connect: Verdict | None = None
    deferred_mail: Verdict | None = None
    sender: str | None = None
    sender_accepted: bool = False  # access From: OK/RELAY
    tx_discard: str = ""  # this transaction is discarded: why
    counted: bool = False  # registered with the limits (on_disconnect undoes it)
    notes: list[str] = field(default_factory=list)

    @property
    def confirmed_name(self) -> str | None:
        return self.hostname if self.name_confirmed else None

    @property
    def client_name(self) -> str:
        """sendmail's ${client_name}: the confirmed name, else `[ip]`."""
        return self.hostname if self.hostname and self.name_confirmed else f"[{self.ip}]"

    @property
    def received_from(self) -> str:
        """For Received: "name [ip]", "name [ip] (may be forged)" or "[ip]"."""
        if not self.hostname:
            return f"[{self.ip}]"
        forged = "" if self.name_confirmed else " (may be forged)"
        return f"{self.hostname} [{self.ip}]{forged}"

    @property
    def env(self) -> dict[str, str]:
        """The tcprules settings for this client (RELAYCLIENT, DATABYTES ...)."""
        return self.rule.environment

    @property
    def relay_client(self) -> bool:
        return self.rule.relay_client


# --- the engine -------------------------------------------------------------------


class PolicyEngine:
    """The session's policy at connect, MAIL and RCPT (see the module doc)."""

    def __init__(
        self,
        *,
        local_domains: Iterable[str],
        user_exists: Callable[[str], bool],
        resolve: Callable[[str], Resolution] | None = None,
        trusted_networks: Iterable[str] = (),
        hostname: str = "",
        access: AccessMap | None = None,
        relay_domains: Map | None = None,
        tcprules: TcpRules | None = None,
        resolver: Resolver | None = None,
        limits: ConnectionLimits | None = None,
        options: PolicyConfig | None = None,
        sender_logins: SenderLogins | None = None,
        listeners: Mapping[str, ListenerRules] | None = None,
    ) -> None:
        self.options = options if options is not None else PolicyConfig()
        self.listeners = dict(listeners or {})  # by kind; absent: the defaults
        self.sender_logins = sender_logins  # None: [auth] sender_login_binding is off
        self.recipients = RecipientPolicy(
            local_domains=local_domains,
            user_exists=user_exists,
            trusted_networks=trusted_networks,
            resolve=resolve,
        )
        self._resolve = resolve
        self.hostname = hostname.lower().rstrip(".")
        self._our_names = self.recipients.local_domains | ({self.hostname} - {""})
        self.access = access if access is not None else AccessMap(EmptyMap("access"))
        self._no_access = AccessMap(EmptyMap("access"))  # listeners with access = false
        self.relay_domains: Map = (
            relay_domains if relay_domains is not None else EmptyMap("relay_domains")
        )
        self.tcprules = tcprules if tcprules is not None else TcpRules(EmptyMap("tcprules"))
        self.resolver = resolver
        self.limits = limits if limits is not None else ConnectionLimits()
        zones = self.options.dnsbl_zones
        self.dnsbl = (
            DnsBlocklist(resolver, zones, mode=self.options.dnsbl_mode)
            if resolver is not None and zones
            else None
        )
        self._stats: Counter[str] = Counter()
        if self.options.promiscuous_relay:
            log.error(
                "policy: promiscuous_relay is on: this host relays mail for anyone "
                "(an open relay); turn [policy] promiscuous_relay off on the Internet"
            )

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        resolver: Resolver | None,
        user_exists: Callable[[str], bool],
        resolve: Callable[[str], Resolution] | None = None,
        clock: Callable[[], float] = time.monotonic,
        maps: Mapping[str, Map] | None = None,
        tcprules: TcpRules | None = None,
    ) -> PolicyEngine:
        """The engine the configuration describes. `maps` ("access",
        "relay_domains") and `tcprules` replace the files (tests)."""
        p, m = config.policy, config.maps
        given = dict(maps or {})
        access = (
            given["access"]
            if "access" in given
            else open_map("access", m.access, safe_files=m.safe_files)
        )
        relay_domains = (
            given["relay_domains"]
            if "relay_domains" in given
            else open_map(
                "relay_domains", m.relay_domains, safe_files=m.safe_files, allow_empty=True
            )
        )
        if tcprules is None:
            tcprules = (
                TcpRules.open(p.tcprules, safe_files=m.safe_files)
                if p.tcprules
                else TcpRules(EmptyMap("tcprules"))
            )
        limits = ConnectionLimits(
            max_connections_per_ip=p.max_connections_per_ip,
            max_connection_rate=p.max_connection_rate,
            max_messages_per_hour=p.max_messages_per_hour,
            clock=clock,
        )
        sender_logins = None
        if config.auth.sender_login_binding:
            login_map = (
                given["sender_login_map"]
                if "sender_login_map" in given
                else open_map(
                    "sender_login_map", config.auth.sender_login_map, safe_files=m.safe_files
                )
            )
            sender_logins = SenderLogins(
                login_map=login_map,
                resolve=resolve,
                local_domains=config.local_domains,
                recipient_delimiter=config.routing.recipient_delimiter,
            )
        return cls(
            local_domains=config.local_domains,
            user_exists=user_exists,
            resolve=resolve,
            trusted_networks=config.relay.trusted_networks,
            hostname=config.hostname,
            access=AccessMap(access, detail_delimiter=config.routing.recipient_delimiter or "+"),
            relay_domains=relay_domains,
            tcprules=tcprules,
            resolver=resolver,
            limits=limits,
            options=p,
            sender_logins=sender_logins,
            listeners=listener_rules(config),
        )

    # -- housekeeping ------------------------------------------------------------

    def reload_if_changed(self) -> bool:
        """Re-read changed access, relay-domains and tcprules files (callers throttle)."""
        changed = [
            self.access.reload_if_changed(),
            self.relay_domains.reload_if_changed(),
            self.tcprules.reload_if_changed(),
            self.sender_logins is not None and self.sender_logins.reload_if_changed(),
        ]
        return any(changed)

    def problems(self) -> list[str]:
        logins = self.sender_logins.problems() if self.sender_logins is not None else []
        return [
            *self.access.problems(),
            *self.relay_domains.problems(),
            *self.tcprules.problems(),
            *logins,
        ]

    def statistics(self) -> dict[str, int]:
        stats = dict(self._stats)
        stats.update({f"limits_{k}": v for k, v in self.limits.statistics().items()})
        if self.dnsbl is not None:
            stats.update({f"dnsbl_{k}": v for k, v in self.dnsbl.statistics().items()})
        return stats

    def _count(self, stage: str, verdict: Verdict) -> Verdict:
        self._stats[f"{stage}_{verdict.kind.value}"] += 1
        return verdict

    # -- connect -----------------------------------------------------------------

    async def new_client(
        self,
        ip: str,
        *,
        listener: str = SMTP,
        hostname: str | None = None,
        confirmed: bool = False,
    ) -> ClientState:
        """The state of a new connection on a kind of listener (policy/listener.py);
        its name from reverse DNS unless given."""
        if hostname is None:
            hostname, confirmed = await client_name(self.resolver, ip)
        confirmed = confirmed and bool(hostname)
        return ClientState(ip=ip, listener=listener, hostname=hostname, name_confirmed=confirmed)

    def listener_rules(self, state: ClientState) -> ListenerRules:
        """What the client's listener changes ([smtp.policy], [submission.policy])."""
        return rules_for(self.listeners, state.listener)

    def _access(self, state: ClientState) -> AccessMap:
        """The access database, or an empty one where the listener turns it off."""
        return self.access if self.listener_rules(state).access else self._no_access

    async def on_connect(self, state: ClientState) -> Verdict:
        """Before the greeting: accept (send 220), reject (554), defer (421, close)."""
        rule = self.tcprules.match(state.ip, state.confirmed_name)
        state.rule = rule
        if not rule.allow:
            verdict = Verdict(kind=Kind.REJECT, reply=CONNECT_DENIED, reason=rule.describe())
            state.refused = verdict
            return self._count("connect", verdict)
        # Trusted networks are exempt from the per-client limits (Postfix's
        # smtpd_client_event_limit_exceptions = $mynetworks).
        trusted = self.recipients.is_trusted(state.ip)
        here = self.listener_rules(state)  # the rule's limits, else the listener's, else [policy]
        over = (
            None
            if trusted
            else self.limits.allow_connect(
                state.ip,
                max_connections=_first(rule.limit("MAXCONNIP"), here.max_connections_per_ip),
                max_rate=_first(rule.limit("MAXCONNRATE"), here.max_connection_rate),
                group=state.listener,
            )
        )
        if over is not None:
            verdict = _refusal(over, f"limit: {over.text}")
            state.refused = verdict
            return self._count("connect", verdict)
        self.limits.connected(state.ip, group=state.listener)
        state.counted = True
        found = await self._connect_checks(state)
        if found is None:
            return self._count("connect", _accept(GREETING_OK))
        if found.kind is Kind.ACCEPT:
            return self._count("connect", found)
        if self.options.delay_checks:
            state.deferred_connect = found
            return self._count("connect", _accept(GREETING_OK, f"delayed to RCPT: {found.reason}"))
        if found.kind is Kind.DISCARD:
            state.discard = found.reason
            return self._count("connect", found)
        state.refused = found
        return self._count("connect", _greeting_form(found))

    async def _connect_checks(self, state: ClientState) -> Verdict | None:
        """Access Connect:, RBLSMTPD, blocklists: a verdict that is not plain accept, or None."""
        found = self._access(state).check_connect(state.ip, state.confirmed_name)
        if found is not None:
            self._note_problem(found)
            if found.action is Action.DISCARD:
                return _discard(GREETING_OK, found.describe())
            if found.refuses:
                return _refusal(found.reply or ACCESS_DENIED, found.describe())
            if found.accepts:
                return _accept(GREETING_OK, found.describe())
        rbl = state.rule.rblsmtpd
        if rbl:
            return _refusal(rblsmtpd_reply(rbl), f"RBLSMTPD from {state.rule.describe()}")
        if rbl is not None or self.dnsbl is None or not self.listener_rules(state).dnsbl:
            return None
        if state.rule.relay_client or self.recipients.is_trusted(state.ip):
            return None
        listing = await self.dnsbl.check(state.ip)
        if listing is None:
            return None
        if not listing.enforce:
            log.warning("policy: dnsbl (warn only): %s", listing.reason)
            state.notes.append(f"dnsbl: {listing.reason}")
            return None
        return _refusal(listing.reply, f"dnsbl: {listing.reason}")

    def on_disconnect(self, state: ClientState) -> None:
        """The connection closed: release its place in the concurrency count."""
        if state.counted:
            self.limits.disconnected(state.ip, group=state.listener)
            state.counted = False

    # -- MAIL --------------------------------------------------------------------

    async def on_mail(self, state: ClientState, sender: str) -> Verdict:
        """MAIL FROM (a normalised reverse-path, "" for <>)."""
        state.sender, state.sender_accepted = sender, False
        state.deferred_mail, state.tx_discard = None, ""
        if state.refused is not None:
            return self._count("mail", state.refused)
        if state.discard:
            return self._count("mail", _discard(replies.SENDER_OK, state.discard))
        over = (
            None
            if self.recipients.is_trusted(state.ip)
            else self.limits.allow_message(
                state.ip,
                max_messages=_first(
                    state.rule.limit("MAXMSGHOUR"), self.listener_rules(state).max_messages_per_hour
                ),
                group=state.listener,
            )
        )
        if over is not None:
            return self._count("mail", _refusal(over, f"limit: {over.text}"))
        if not sender:  # RFC 5321 §4.5.5: the null reverse-path MUST be accepted
            return self._count("mail", _accept(replies.SENDER_OK, "null sender"))
        if self.sender_logins is not None and state.authenticated:
            login = state.authenticated
            if not self.sender_logins.owner(login, sender):
                text = f"{replies.echo(sender)}... {SENDER_NOT_OWNED.text} {login}"
                verdict = _refusal(SENDER_NOT_OWNED.with_text(text), f"not owned by {login}")
                return self._count("mail", verdict)
        verdict = await self._sender_checks(state, sender)
        if verdict.kind is Kind.DISCARD:
            state.tx_discard = verdict.reason
        elif not verdict.accepted and self.options.delay_checks and not state.authenticated:
            state.deferred_mail = verdict
            reason = f"delayed to RCPT: {verdict.reason}"
            verdict = _accept(replies.SENDER_OK, reason)
        return self._count("mail", verdict)

    async def _sender_checks(self, state: ClientState, sender: str) -> Verdict:
        ok = _accept(replies.SENDER_OK)
        found = self._access(state).check_from(sender)
        if found is not None:
            self._note_problem(found)
            if found.action is Action.DISCARD:
                return _discard(replies.SENDER_OK, found.describe())
            if found.refuses:
                return _refusal(found.reply or ACCESS_DENIED, found.describe())
            state.sender_accepted = True
            return _accept(replies.SENDER_OK, found.describe())
        _local, domain = split_address(sender)
        if not domain:
            if self._client_relay_reason(state):
                return ok
            text = f"{SENDER_UNQUALIFIED.text} {replies.echo(sender)}"
            return _refusal(SENDER_UNQUALIFIED.with_text(text), "unqualified sender")
        if (
            self.options.accept_unresolvable_domains
            or self.resolver is None
            or domain in self._our_names
            or self._client_relay_reason(state)
        ):
            return ok
        try:
            await self.resolver.mx(domain)
        except DnsTempFail as e:
            text = f"Domain of sender address {replies.echo(sender)} does not resolve"
            return _refusal(SENDER_TEMPFAIL.with_text(text), e.reason)
        except DnsPermFail as e:
            if e.reply.enhanced == "5.1.10":  # a null MX (dns.NULL_MX), RFC 7505 §4.2
                return _refusal(SENDER_NULL_MX, e.reason)
            text = f"Domain of sender address {replies.echo(sender)} does not exist"
            return _refusal(SENDER_NXDOMAIN.with_text(text), e.reason)
        return ok

    # -- RCPT --------------------------------------------------------------------

    async def on_rcpt(self, state: ClientState, recipient: str) -> Verdict:
        """RCPT TO (a forward-path, normalised or not; "postmaster" allowed)."""
        if state.refused is not None:
            return self._count("rcpt", state.refused)
        discard = state.tx_discard or state.discard
        if discard:
            return self._count("rcpt", _discard(replies.RECIPIENT_OK, discard))
        address = normalise_recipient(recipient)
        if address is None:
            text = f"{replies.echo(recipient)}... Bad recipient address syntax"
            verdict = _refusal(replies.BAD_RCPT_SYNTAX.with_text(text), "bad recipient syntax")
            return self._count("rcpt", verdict)
        if not address:
            return self._count("rcpt", _refusal(RECIPIENT_REQUIRED, "empty recipient"))
        verdict = await self._recipient_checks(state, address)
        if verdict.accepted and verdict.kind is not Kind.DISCARD:
            verdict = self._delayed(state, verdict)
        if verdict.kind is Kind.DISCARD:
            state.tx_discard = verdict.reason
        return self._count("rcpt", verdict)

    def _delayed(self, state: ClientState, verdict: Verdict) -> Verdict:
        """delay_checks: the MAIL and connect rejections, now (cf/README "Delay all checks")."""
        if not self.options.delay_checks or state.authenticated:
            return verdict
        if state.deferred_mail is not None:
            return state.deferred_mail
        if state.deferred_connect is not None and not state.sender_accepted:
            found = state.deferred_connect
            if found.kind is Kind.DISCARD:
                return _discard(replies.RECIPIENT_OK, found.reason)
            return found
        return verdict

    async def _recipient_checks(self, state: ClientState, address: str) -> Verdict:
        local_part, domain = split_address(address)
        is_local = not domain or self.recipients.is_local_domain(domain)
        if self.options.blacklist_recipients:
            found = self._access(state).check_to(address, local=is_local)
            if found is not None:
                self._note_problem(found)
                if found.action is Action.DISCARD:
                    return _discard(replies.RECIPIENT_OK, found.describe())
                if found.action is Action.REJECT:
                    text = f"{replies.echo(address)}... {MAILBOX_DISABLED.text}"
                    return _refusal(MAILBOX_DISABLED.with_text(text), found.describe())
                if found.refuses:
                    return _refusal(found.reply or ACCESS_DENIED, found.describe())
        if is_local:
            decision = self.recipients.check_rcpt(address, client_ip=state.ip)
            if decision.accepted:
                return _accept(decision.reply, "local", decision.resolution)
            reason = f"local recipient refused{routing_trick_note(local_part)}"
            return _refusal(decision.reply, reason, decision.resolution)
        why = self._domain_relay_reason(state, domain) or self._client_relay_reason(state)
        if not why and self.options.relay_based_on_mx:
            found_mx = await self._mx_is_ours(domain)
            if isinstance(found_mx, Verdict):
                return found_mx
            why = found_mx
        if not why:
            return self._relay_denied(state, address, local_part)
        resolution = self._resolve(address) if self._resolve is not None else None
        refusal = resolution.refusal if resolution is not None else None
        if refusal is not None:  # mailertable error:, a broken route
            return _refusal(refusal.reply, f"relay ({why}) refused by routing", resolution)
        reason = f"relay: {why}"
        return Verdict(
            kind=Kind.RELAY, reply=replies.RECIPIENT_OK, reason=reason, resolution=resolution
        )

    def _relay_denied(self, state: ClientState, address: str, local_part: str) -> Verdict:
        suffix = ""
        if state.hostname and not state.name_confirmed:
            suffix = f". IP name possibly forged [{state.ip}]"
        elif not state.hostname:
            suffix = f". IP name lookup failed [{state.ip}]"
        text = f"{replies.echo(address)}... Relaying denied{suffix}"
        reason = f"relaying denied for {state.client_name}{routing_trick_note(local_part)}"
        return Verdict(kind=Kind.REJECT, reply=replies.RELAY_DENIED.with_text(text), reason=reason)

    def _in_relay_domains(self, name: str) -> str:
        """The relay-domains entry covering a domain, host or `[ip]` ("" when none)."""
        if not len(self.relay_domains):
            return ""
        keys = domain_keys(name) if self.options.relay_entire_domain else [name.lower()]
        for key in keys:
            entry = self.relay_domains.lookup(key)
            if entry is not None:
                return f"relay-domains {key} ({entry.where})"
        return ""

    def _domain_relay_reason(self, state: ClientState, domain: str) -> str:
        """Recipient side: relay-domains, relay_entire_domain, access To: RELAY."""
        why = self._in_relay_domains(domain)
        if why:
            return why
        if self.options.relay_entire_domain:
            for parent in domain_keys(domain)[1:]:
                if self.recipients.is_local_domain(parent):
                    return f"relay_entire_domain: subdomain of {parent}"
        found = self._access(state).check_relay_to(domain)
        if found is not None and found.action is Action.RELAY:
            return found.describe()
        return ""

    def _client_relay_reason(self, state: ClientState) -> str:
        """Client side: why this client may relay ("" when it may not)."""
        if self.options.promiscuous_relay:
            return "promiscuous_relay"
        if state.authenticated:
            return f"authenticated as {state.authenticated}"
        if state.rule.relay_client:
            return f"RELAYCLIENT from {state.rule.describe()}"
        if self.recipients.is_trusted(state.ip):
            return f"trusted network {state.ip}"
        found = self._access(state).check_connect_ip(state.ip)
        if found is not None and found.action is Action.RELAY:
            return found.describe()
        name = state.confirmed_name
        if name:
            found = self._access(state).check_connect_host(name)
            if found is not None and found.action is Action.RELAY:
                return found.describe()
        if len(self.relay_domains):
            for key in ip_keys(state.ip):
                entry = self.relay_domains.lookup(key.lower())
                if entry is not None:
                    return f"relay-domains {key} ({entry.where})"
            if name:
                why = self._in_relay_domains(name)
                if why:
                    return why
        # sendmail also relays for a client whose name is in class w ("this host");
        # here the host itself is governed by [relay] trusted_networks alone, so
        # that leaving loopback out of trusted_networks really closes it.
        if name and self.options.relay_entire_domain:
            for parent in domain_keys(name)[1:]:
                if self.recipients.is_local_domain(parent):
                    return f"relay_entire_domain: client in {parent}"
        return ""

    async def _mx_is_ours(self, domain: str) -> str | Verdict:
        """relay_based_on_MX: "" / the reason, or a defer on DNS trouble."""
        if self.resolver is None or domain.startswith("["):
            return ""
        try:
            hosts = await self.resolver.mx(domain)
        except DnsTempFail as e:
            text = f"{MX_TEMPFAIL.text} {domain}"
            return _refusal(MX_TEMPFAIL.with_text(text), e.reason)
        except DnsError:
            return ""
        for host in hosts:
            if not host.implicit and host.host in self._our_names:
                return f"relay_based_on_MX: {domain} MX {host.host}"
        return ""

    def _note_problem(self, found: AccessResult) -> None:
        if found.problem:
            log.warning("policy: %s: %s", found.where, found.problem)


__all__ = [
    "CONNECT_DENIED",
    "GREETING_OK",
    "ClientState",
    "Kind",
    "PolicyEngine",
    "Verdict",
    "client_name",
]
