"""mailertable — sendmail's routes for domains that are not local.

Description:
    For a recipient domain that is not local, the mailertable names the
    next hop. Keys are tried from the most to the least qualified
    (cf/README, USING MAILERTABLES and FEATURE(mailertable)):

        host.sub.example.com    the domain itself
        .sub.example.com        any name under sub.example.com
        .example.com
        .com
        .                       any domain not covered by other keys

    Keys are folded to lower case. Address literals (`[192.0.2.1]`) are
    not looked up: sendmail sends them straight on ("numeric internet
    spec", proto.m4 Parse1). Values are `mailer:host`:

        smtp:[mx.example.net]   send to that host, no MX lookup
        smtp:host.example.net   send to that host's MX
        esmtp: smtp8: dsmtp: relay:   the same for postoffice (one SMTP client)
        lmtp:host:port, lmtp:unix:/path, qmtp:host   LMTP (RFC 2033) / QMTP delivery
        smtp:                   the recipient domain's MX
        local:user              deliver locally to `user`
        local:                  deliver locally to the original local part
        error:D.S.N:CODE text   refuse (routing/virtual.py parse_error)
        error:CODE text

    In a dot-key match `%1` in the host is the wildcarded part of the name
    ("anything" in anything.my.domain). Any other mailer is a
    configuration error: the recipient is deferred (451 4.3.5, RFC 3463
    X.3.5 "system incorrectly configured") where sendmail would bounce with
    "554 5.3.5 unknown mailer", so that a typo costs a delay, not mail.

Config:
    [maps] mailertable.

See also:
    sendmail cf/README, cf/m4/proto.m4 (MailerToTriple), routing/resolve.py
    (then smart_host, then MX), RFC 5321 §5.1 (MX lookup).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from postoffice.maps.interfaces import Map, MapEntry
from postoffice.routing.virtual import is_error, parse_error
from postoffice.smtp.replies import Reply

REMOTE_MAILERS = frozenset({"smtp", "esmtp", "smtp8", "dsmtp", "relay", "lmtp", "qmtp"})
# Mailers with a transport of their own: the next hop keeps the mailer name
# ("lmtp:host:port", "qmtp:host"), see routing/targets.transport().
OWN_TRANSPORT = frozenset({"lmtp", "qmtp"})
NO_SUCH_HOST = Reply(code=550, enhanced="5.1.2", text="Host unknown")
UNKNOWN_MAILER = Reply(code=451, enhanced="4.3.5", text="Mail routing misconfigured")
MAX_LABELS = 127  # a DNS name has at most 127 labels (RFC 1035 §2.3.4: 255 octets)


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """What the mailertable says for a domain."""

    kind: Literal["remote", "local", "error"]
    key: str
    entry: MapEntry
    nexthop: str = ""  # remote: "[host]", "host", "host:port" or "" (MX)
    user: str = ""  # local: the local name ("" = the original local part)
    reply: Reply | None = None  # error (and a misconfigured mailer)
    mailer: str = ""


def keys(domain: str) -> list[tuple[str, str]]:
    """(key, %1) in lookup order: the domain, then `.parent` suffixes, then `.`."""
    domain = domain.lower().rstrip(".")
    out = [(domain, "")]
    labels = domain.split(".")[:MAX_LABELS]
    for i in range(1, len(labels)):
        out.append(("." + ".".join(labels[i:]), ".".join(labels[:i])))
    out.append((".", domain))
    return out


def parse_value(value: str, wildcard: str) -> tuple[str, str]:
    """(mailer, host) of a `mailer:host` value, %1 replaced by the wildcarded part."""
    mailer, sep, host = value.strip().partition(":")
    if not sep:
        return "", value.strip()
    host = host.strip().replace("%1", wildcard)
    return mailer.strip().lower(), host


def lookup(mailertable: Map, domain: str) -> Route | None:
    """The route for `domain`, or None when no key matches (or it is a literal)."""
    if not domain or domain.startswith("["):
        return None
    for key, wildcard in keys(domain):
        entry = mailertable.lookup(key)
        if entry is None:
            continue
        if is_error(entry.value):
            reply = parse_error(entry.value, default=NO_SUCH_HOST)
            return Route(kind="error", key=key, entry=entry, reply=reply, mailer="error")
        mailer, host = parse_value(entry.value, wildcard)
        if mailer == "local":
            return Route(kind="local", key=key, entry=entry, user=host, mailer=mailer)
        if mailer in REMOTE_MAILERS and not any(c.isspace() for c in host):
            nexthop = f"{mailer}:{host}" if mailer in OWN_TRANSPORT else host
            return Route(kind="remote", key=key, entry=entry, nexthop=nexthop, mailer=mailer)
        return Route(kind="error", key=key, entry=entry, reply=UNKNOWN_MAILER, mailer=mailer)
    return None
