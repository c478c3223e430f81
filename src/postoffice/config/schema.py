"""The configuration schema: every key, its type, its default and its documentation.

Description:
    Frozen dataclasses, one per TOML table. Every field carries a `doc`
    in its metadata; `python -m postoffice.config.docs` renders
    docs/config.md from this file and a test fails when that file is stale.
    Values that depend on the environment (hostname, config_dir, the
    local-host-names file) are resolved by config/load.py, never here:
    this module is pure (layer 0).

    Placeholders: path-valued keys may use `{state_dir}` and `{config_dir}`;
    `[delivery] mailbox` also `{user}`, `{domain}` and `{address}`.

See also:
    config/load.py, docs/config.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _f(default: Any, doc: str, *, path: bool = False) -> Any:
    """A key with its default and doc; `path=True`: {state_dir}/{config_dir} are
    expanded and a relative path is made absolute by config/load.py."""
    meta = {"doc": doc, "path": path}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerPolicyConfig:
    """[smtp.policy], [submission.policy] — overrides of [policy] on one kind of listener.

    A key left out keeps the value of [policy] (or the listener's default).
    [smtp.policy] applies to [smtp] listen and qmtp_listen, [submission.policy]
    to [submission] listen and tls_listen. Connections are counted per kind of
    listener (smtp, submission, qmtp), as Postfix's anvil counts per service.
    """

    max_connections_per_ip: int | None = _f(
        None, "Concurrent connections from one client address on this listener (0: no limit)."
    )
    max_connection_rate: int | None = _f(
        None, "New connections per minute from one client address (0: no limit)."
    )
    max_messages_per_hour: int | None = _f(
        None, "Messages per hour from one client address (0: no limit)."
    )
    dnsbl: bool | None = _f(
        None, "Look clients up in [policy] dnsbl_zones (false: no blocklist checks here)."
    )
    access: bool | None = _f(
        None, "Consult the access database (false: no Connect:/From:/To: entries apply here)."
    )
    require_auth: bool | None = _f(
        None,
        "AUTH before MAIL (530 5.7.0 otherwise; QMTP cannot authenticate and refuses all). "
        "Default: true on [submission], false on [smtp].",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    """[smtp] — the SMTP listener (RFC 5321)."""

    listen: tuple[str, ...] = _f(
        ("127.0.0.1:2525",),
        "Addresses to listen on, as `host:port` or `[ipv6]:port`. Port 25 needs root.",
    )
    qmtp_listen: tuple[str, ...] = _f(
        (),
        "QMTP listener addresses (qmail's protocol, port 209), e.g. 127.0.0.1:209; none.",
    )
    etrn: bool = _f(
        False,
        "Offer ETRN (RFC 1985): a client may ask for a queue run for a domain (for "
        "intermittently connected hosts; off by default, as anyone may ask).",
    )
    banner: str = _f("ESMTP postoffice", "Text after the hostname in the 220 greeting.")
    vrfy: str = _f(
        "cannot",
        "VRFY behaviour: `cannot` answers 252 without disclosing anything, `on` checks "
        "local users (250/550), `off` answers 502.",
    )
    expn: bool = _f(False, "Answer EXPN (otherwise 502 5.5.1).")
    max_connections: int = _f(500, "Concurrent SMTP connections; more get 421 4.7.0.")
    command_timeout: float = _f(
        300.0, "Seconds to wait for a command (RFC 5321 §4.5.3.2.7: at least 5 minutes)."
    )
    data_timeout: float = _f(
        180.0, "Seconds to wait for each block of message data (RFC 5321 §4.5.3.2.5: 3 minutes)."
    )
    max_errors: int = _f(20, "Protocol errors in one session before it is closed with 421.")
    policy: ListenerPolicyConfig = field(
        default_factory=ListenerPolicyConfig, metadata={"doc": "[smtp.policy]"}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    """[limits] — sizes and counts."""

    max_message_size: int = _f(
        35 * 1024 * 1024, "Largest message accepted, in octets (advertised as SIZE, RFC 1870)."
    )
    max_recipients: int = _f(1000, "Recipients per message; more get 452 4.5.3.")
    max_hops: int = _f(
        25, "Received: headers a message may carry before it is refused as a loop (554 5.4.6)."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    """[relay] — who may send to non-local domains (full access control comes later)."""

    trusted_networks: tuple[str, ...] = _f(
        ("127.0.0.0/8", "::1/128"),
        "Client networks (CIDR) allowed to relay to any domain.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryConfig:
    """[delivery] — local delivery."""

    mailbox: str = _f(
        "maildir:{state_dir}/mail/{domain}/{user}",
        "Where local mail goes: `maildir:PATH` or `mbox:PATH`, with the placeholders "
        "{state_dir}, {config_dir}, {user}, {domain} and {address}.",
    )
    direct: bool = _f(
        True,
        "Deliver to local mailboxes during the SMTP transaction: when every recipient "
        "is a local mailbox and the message is small, it is written and fsynced into the "
        "mailboxes before the 250 reply and never enters the queue (anything that fails "
        "is queued as usual).",
    )
    direct_max_size: int = _f(
        256 * 1024, "Largest message (octets) delivered directly; larger ones are queued."
    )
    direct_max_recipients: int = _f(16, "Most recipients of a directly delivered message.")
    system_users: bool = _f(
        False,
        "Deliver to system accounts (/etc/passwd) too: mbox in system_mailbox, or "
        "~/Maildir/ when it exists.",
    )
    system_mailbox: str = _f(
        "mbox:/var/spool/mail/{user}", "Mailbox of system users without ~/Maildir/."
    )
    default_user: str = _f(
        "nobody", "The user that pipe and file targets of the aliases file run as (never root)."
    )
    program_dir: str = _f(
        "{config_dir}/smrsh",
        "Programs that |command targets may run are those in this directory (smrsh's role).",
        path=True,
    )
    any_program: bool = _f(
        False, "Allow |command targets to run any program, not only those in program_dir."
    )
    program_timeout: float = _f(
        600.0, "Seconds a |command or file delivery may take before it is killed (deferred)."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MapsConfig:
    """[maps] — the sendmail-format map files (empty string: no such map)."""

    aliases: str = _f("{config_dir}/aliases", "The aliases file (/etc/aliases syntax).", path=True)
    virtusertable: str = _f(
        "{config_dir}/virtusertable", "Virtual users: user@domain or @domain → target.", path=True
    )
    genericstable: str = _f(
        "{config_dir}/genericstable", "Sender rewriting for outgoing mail.", path=True
    )
    mailertable: str = _f("{config_dir}/mailertable", "Routes for non-local domains.", path=True)
    access: str = _f(
        "{config_dir}/access", "The access database (used by access control).", path=True
    )
    relay_domains: str = _f(
        "{config_dir}/relay-domains", "Domains this host relays for, one per line.", path=True
    )
    safe_files: bool = _f(
        True,
        "Refuse map, aliases, :include: and .forward files writable by group or others, "
        "or owned by a user other than root, the server's user or the file's user.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingConfig:
    """[routing] — how recipients resolve and how senders are rewritten."""

    recipient_delimiter: str = _f(
        "+", "Separates user and detail in user+detail@domain (qmail uses '-'); empty: none."
    )
    smart_host: str = _f(
        "", "Send all non-local mail to this host ([host] or host:port: no MX lookup)."
    )
    forward_files: bool = _f(True, "Honour ~/.forward of system users.")
    dotqmail: bool = _f(True, "Honour ~/.qmail, ~/.qmail-EXT and ~/.qmail-default of system users.")
    masquerade_as: str = _f("", "Rewrite this host's name in sender addresses to this domain.")
    masquerade_domains: tuple[str, ...] = _f(
        (), "Further domains whose sender addresses are masqueraded."
    )
    masquerade_entire_domain: bool = _f(False, "Masquerade subdomains of masquerade_domains too.")
    masquerade_envelope: bool = _f(False, "Masquerade the envelope sender as well as headers.")
    exposed_users: tuple[str, ...] = _f(("root",), "Users never masqueraded.")
    generics_domains: tuple[str, ...] = _f(
        (), "Domains whose senders genericstable rewrites (default: local_domains)."
    )
    generics_envelope: bool = _f(False, "Apply genericstable to the envelope sender too.")


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """[tls] — the server's certificate (STARTTLS on [smtp], implicit TLS on [submissions])."""

    cert: str = _f("", "PEM certificate chain file (empty: no TLS offered).", path=True)
    key: str = _f("", "PEM private key file.", path=True)
    min_version: str = _f("TLSv1.2", "Oldest TLS version accepted: TLSv1.2 or TLSv1.3.")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    """[auth] — SMTP AUTH (RFC 4954) and the user database."""

    mechanisms: tuple[str, ...] = _f(
        ("PLAIN", "LOGIN", "SCRAM-SHA-256", "CRAM-MD5"),
        "SASL mechanisms offered (CRAM-MD5 only for users whose stored scheme allows it).",
    )
    require_tls: bool = _f(
        True, "Offer AUTH only after STARTTLS (or on implicit TLS), except on loopback."
    )
    system_accounts: bool = _f(
        False, "Authenticate system accounts from /etc/shadow too (needs root)."
    )
    failure_delay: float = _f(2.0, "Seconds before answering a failed AUTH; doubles per client.")
    max_failure_delay: float = _f(15.0, "Longest delay after repeated failures from one client.")
    sender_login_binding: bool = _f(
        False,
        "Authenticated users may use as MAIL FROM only their own address (and its "
        "+detail forms), the addresses that route to their mailbox alone (aliases, "
        "virtusertable) and those sender_login_map gives them; others get 553 5.7.1.",
    )
    sender_login_map: str = _f(
        "{config_dir}/sender-login-map",
        "Postfix smtpd_sender_login_maps format: a sender address (user@domain, user, "
        "@domain) and the logins that may use it, separated by commas or spaces.",
        path=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmissionConfig:
    """[submission] — the message submission listeners (RFC 6409, RFC 8314)."""

    listen: tuple[str, ...] = _f(
        (), "Submission (port 587, STARTTLS, AUTH required before MAIL); none by default."
    )
    tls_listen: tuple[str, ...] = _f(
        (), "Submissions (port 465, implicit TLS, RFC 8314 §3.3); none by default."
    )
    policy: ListenerPolicyConfig = field(
        default_factory=ListenerPolicyConfig, metadata={"doc": "[submission.policy]"}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapConfig:
    """[imap] — the IMAP listener (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1)."""

    listen: tuple[str, ...] = _f(
        ("127.0.0.1:2143",),
        "IMAP addresses (STARTTLS when [tls] is set); port 143 needs root.",
    )
    idle_timeout: float = _f(
        1800.0,
        "Seconds a logged-in client may stay silent, IDLE included, before it is "
        "logged out (RFC 9051 §5.4: at least 30 minutes; smaller values are refused).",
    )
    login_timeout: float = _f(60.0, "Seconds a client that has not logged in yet may stay silent.")
    require_tls: bool = _f(
        True,
        "LOGIN and AUTHENTICATE only after STARTTLS (or on [imaps]), except on loopback; "
        "LOGINDISABLED is advertised before (RFC 9051 §6.2.3).",
    )
    max_line: int = _f(
        65536, "Longest command line in octets, literals excluded (RFC 7162 §4: at least 8192)."
    )
    max_literal: int = _f(
        50 * 1024 * 1024,
        "Largest APPEND message in octets, advertised as APPENDLIMIT (RFC 7889); "
        "larger literals are refused before a byte of them is read.",
    )
    max_connections: int = _f(5000, "Concurrent IMAP connections in all; more get BYE.")
    max_connections_per_ip: int = _f(
        100, "Concurrent IMAP connections from one client address (0: no limit)."
    )
    max_connections_per_user: int = _f(
        20,
        "Concurrent logged-in IMAP sessions of one user from one address "
        "(Dovecot's mail_max_userip_connections; 0: no limit).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapsConfig:
    """[imaps] — IMAP over implicit TLS (RFC 8314 §3.3, port 993)."""

    listen: tuple[str, ...] = _f(
        (), "IMAPS addresses (implicit TLS, needs [tls] cert and key); none by default."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Pop3Config:
    """[pop3] — the POP3 listener (RFC 1939, RFC 2449, RFC 2595, RFC 5034)."""

    listen: tuple[str, ...] = _f(
        ("127.0.0.1:2110",),
        "POP3 addresses (STLS when [tls] is set); port 110 needs root.",
    )
    autologout: float = _f(
        600.0,
        "Seconds a client may stay silent before the connection is closed without an "
        "update (RFC 1939 §3: at least 10 minutes; smaller values are refused).",
    )
    delete_on_retr: bool = _f(
        False, "Delete every message retrieved with RETR at the end of the session (QUIT)."
    )
    require_tls: bool = _f(
        True,
        "USER/PASS and AUTH PLAIN/LOGIN only after STLS (or on [pop3s]), except on "
        "loopback (RFC 2595 §2.1); APOP, CRAM-MD5 and SCRAM-SHA-256 are always offered.",
    )
    max_connections: int = _f(500, "Concurrent POP3 connections in all; more get -ERR [SYS/TEMP].")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pop3sConfig:
    """[pop3s] — POP3 over implicit TLS (RFC 8314 §3.3, port 995)."""

    listen: tuple[str, ...] = _f(
        (), "POP3S addresses (implicit TLS, needs [tls] cert and key); none by default."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """[policy] — the access database, relay options, per-IP rules, limits, blocklists."""

    tcprules: str = _f(
        "{config_dir}/tcprules",
        "qmail tcprules-style per-IP rules (allow, deny, RELAYCLIENT).",
        path=True,
    )
    delay_checks: bool = _f(
        False, "sendmail's delay_checks: apply connect/MAIL rejections at RCPT."
    )
    blacklist_recipients: bool = _f(
        False, "Apply access To:/user entries with REJECT to recipients."
    )
    accept_unresolvable_domains: bool = _f(
        False,
        "Accept MAIL FROM domains that do not resolve (off: 553 for NXDOMAIN, 451 on DNS trouble).",
    )
    promiscuous_relay: bool = _f(False, "Relay for anyone. Never do this on the Internet.")
    relay_based_on_mx: bool = _f(False, "Relay for domains whose MX points to this host.")
    relay_entire_domain: bool = _f(False, "Relay for subdomains of relay-domains entries too.")
    dnsbl_zones: tuple[str, ...] = _f((), "DNS blocklist zones (e.g. zen.example.org).")
    dnsbl_mode: str = _f("reject", "`reject` listed clients, or only `warn` in the log.")
    max_connections_per_ip: int = _f(
        50, "Concurrent connections from one client address (0: no limit; trusted networks exempt)."
    )
    max_connection_rate: int = _f(
        0, "New connections per minute from one client address (0: no limit, Postfix's default)."
    )
    max_messages_per_hour: int = _f(0, "Messages per hour from one client address (0: no limit).")


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsConfig:
    """[dns] — the resolver (postoffice is a DNS client only)."""

    nameservers: tuple[str, ...] = _f(
        (), "Name servers as IP or IP:port (default: those of /etc/resolv.conf)."
    )
    timeout: float = _f(5.0, "Seconds for one DNS query, all retries included.")
    cache_size: int = _f(10000, "Answers kept in the resolver's cache (by their TTL).")


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpClientConfig:
    """[smtp_client] — delivery to other MTAs (RFC 5321 client)."""

    port: int = _f(25, "Port of the MX hosts (tests point it at a fake MX).")
    helo_name: str = _f("", "Name in EHLO/HELO (default: hostname).")
    connect_timeout: float = _f(
        30.0, "Seconds to connect (RFC 5321 §4.5.3.2: the greeting wait is 5 min)."
    )
    command_timeout: float = _f(300.0, "Seconds to wait for a reply (RFC 5321 §4.5.3.2).")
    data_timeout: float = _f(
        600.0, "Seconds to wait for the reply to the end of data (§4.5.3.2.6: 10 min)."
    )
    max_recipients: int = _f(100, "Recipients per transaction (RFC 5321 §4.5.3.1.8: at least 100).")
    max_messages_per_connection: int = _f(100, "Messages sent over one connection before QUIT.")
    max_connections: int = _f(100, "Outgoing connections at once, in all.")
    max_connections_per_destination: int = _f(
        10, "Outgoing connections to one destination at once."
    )
    tls: str = _f(
        "may",
        "STARTTLS policy: `none`, `may` (opportunistic, the default), `encrypt` (required), "
        "`verify` (required, certificate verified against the host name).",
    )
    tls_policy: dict[str, str] = _f(  # noqa: RUF009 - _f makes a default_factory
        {}, "Per-destination STARTTLS policy: domain or [host] → none | may | encrypt | verify."
    )
    smart_host_user: str = _f("", "SMTP AUTH user for the smart host (empty: no AUTH).")
    smart_host_password: str = _f("", "SMTP AUTH password for the smart host.")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """[queue] — retries of temporary failures."""

    min_backoff: float = _f(300.0, "Seconds before the first retry of a deferred message.")
    max_backoff: float = _f(4 * 3600.0, "Longest wait between two delivery attempts, in seconds.")
    run_interval: float = _f(
        60.0, "Seconds between scans of the deferred queue for messages due again."
    )
    max_lifetime: float = _f(
        5 * 86400.0, "Seconds a message may stay queued before it is returned (5 days)."
    )
    warn_after: float = _f(
        4 * 3600.0, "Seconds after which the sender gets one delay warning (0: never)."
    )
    delivery_concurrency: int = _f(20, "Deliveries running at the same time.")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """[log] — the mail log (Postfix's line shape, queue id first)."""

    file: str = _f("{state_dir}/log/maillog", "Mail log file; empty for stderr only.")
    level: str = _f("info", "Least severe level logged: debug, info, warning, error.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The top level of postoffice.toml."""

    hostname: str = _f("", "This host's name, in greetings and Received: (default: the FQDN).")
    state_dir: str = _f("./postoffice-data", "Where the queue, mailboxes and logs live.")
    config_dir: str = _f(
        "",
        "Where map files (users, local-host-names, aliases …) are read "
        "(default: the config file's folder, or state_dir when there is none).",
    )
    local_domains: tuple[str, ...] = _f(
        (),
        "Domains this host receives mail for (default: localhost and hostname), plus every "
        "line of config_dir/local-host-names.",
    )
    users_file: str = _f(
        "{config_dir}/users", "The virtual users, a Dovecot-compatible passwd-file."
    )
    smtp: SmtpConfig = field(default_factory=SmtpConfig, metadata={"doc": "[smtp]"})
    limits: LimitsConfig = field(default_factory=LimitsConfig, metadata={"doc": "[limits]"})
    relay: RelayConfig = field(default_factory=RelayConfig, metadata={"doc": "[relay]"})
    maps: MapsConfig = field(default_factory=MapsConfig, metadata={"doc": "[maps]"})
    routing: RoutingConfig = field(default_factory=RoutingConfig, metadata={"doc": "[routing]"})
    dns: DnsConfig = field(default_factory=DnsConfig, metadata={"doc": "[dns]"})
    tls: TlsConfig = field(default_factory=TlsConfig, metadata={"doc": "[tls]"})
    auth: AuthConfig = field(default_factory=AuthConfig, metadata={"doc": "[auth]"})
    submission: SubmissionConfig = field(
        default_factory=SubmissionConfig, metadata={"doc": "[submission]"}
    )
    policy: PolicyConfig = field(default_factory=PolicyConfig, metadata={"doc": "[policy]"})
    imap: ImapConfig = field(default_factory=ImapConfig, metadata={"doc": "[imap]"})
    imaps: ImapsConfig = field(default_factory=ImapsConfig, metadata={"doc": "[imaps]"})
    pop3: Pop3Config = field(default_factory=Pop3Config, metadata={"doc": "[pop3]"})
    pop3s: Pop3sConfig = field(default_factory=Pop3sConfig, metadata={"doc": "[pop3s]"})
    smtp_client: SmtpClientConfig = field(
        default_factory=SmtpClientConfig, metadata={"doc": "[smtp_client]"}
    )
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig, metadata={"doc": "[delivery]"})
    queue: QueueConfig = field(default_factory=QueueConfig, metadata={"doc": "[queue]"})
    log: LogConfig = field(default_factory=LogConfig, metadata={"doc": "[log]"})
    # Where the configuration came from ("" = embedded defaults); set by load.py.
    source: str = field(default="", metadata={"doc": "", "internal": True})


SECTIONS: dict[str, type] = {
    "smtp": SmtpConfig,
    "limits": LimitsConfig,
    "relay": RelayConfig,
    "maps": MapsConfig,
    "routing": RoutingConfig,
    "dns": DnsConfig,
    "tls": TlsConfig,
    "auth": AuthConfig,
    "submission": SubmissionConfig,
    "policy": PolicyConfig,
    "imap": ImapConfig,
    "imaps": ImapsConfig,
    "pop3": Pop3Config,
    "pop3s": Pop3sConfig,
    "smtp_client": SmtpClientConfig,
    "delivery": DeliveryConfig,
    "queue": QueueConfig,
    "log": LogConfig,
}
