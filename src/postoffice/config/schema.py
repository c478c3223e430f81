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


def _f(default: Any, doc: str) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    """[smtp] — the SMTP listener (RFC 5321)."""

    listen: tuple[str, ...] = _f(
        ("127.0.0.1:2525",),
        "Addresses to listen on, as `host:port` or `[ipv6]:port`. Port 25 needs root.",
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
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig, metadata={"doc": "[delivery]"})
    queue: QueueConfig = field(default_factory=QueueConfig, metadata={"doc": "[queue]"})
    log: LogConfig = field(default_factory=LogConfig, metadata={"doc": "[log]"})
    # Where the configuration came from ("" = embedded defaults); set by load.py.
    source: str = field(default="", metadata={"doc": "", "internal": True})


SECTIONS: dict[str, type] = {
    "smtp": SmtpConfig,
    "limits": LimitsConfig,
    "relay": RelayConfig,
    "delivery": DeliveryConfig,
    "queue": QueueConfig,
    "log": LogConfig,
}
