"""Recipient policy: is this recipient ours, may this client relay to it?

Description:
    The one place the SMTP session asks "accept this RCPT?". A recipient
    whose domain is local must name an existing user (or postmaster, which
    RFC 5321 §4.5.1 says every domain must accept); anything else is relay,
    allowed only to clients in `[relay] trusted_networks`. The full access
    database (access map, AUTH, per-IP rules) replaces the decision behind
    this same interface in a later issue: `RecipientPolicy.check_rcpt`.

    normalise_recipient(recipient) and routing_trick_note(local_part) are the
    address handling policy/engine.py's relay decision starts from: the
    source route dropped, the domain folded; `%`, `!` and quoted `@` in a
    local part are noted for the log, never routed.

Security:
    The default trusts loopback only; relaying for the world is never a
    default (CONVENTIONS.md, "what to avoid").

Config:
    local_domains, [relay] trusted_networks.

See also:
    RFC 5321 §3.6.2 (mail relaying), §4.5.1 (postmaster), RFC 3463 (5.7.1);
    policy/engine.py (the full decision: access, tcprules, relay-domains).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from postoffice.address import AddressError, parse_domain
from postoffice.routing.targets import Resolution
from postoffice.smtp import replies
from postoffice.smtp.replies import Reply

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What to do with one recipient; `local` says where it will be delivered,
    `resolution` where exactly (when a router was consulted)."""

    reply: Reply
    local: bool = False
    resolution: Resolution | None = None

    @property
    def accepted(self) -> bool:
        return self.reply.is_positive


class RecipientPolicy:
    """Local-user and relay checks for RCPT TO (RFC 5321 §3.6.2)."""

    def __init__(
        self,
        *,
        local_domains: Iterable[str],
        user_exists: Callable[[str], bool],
        trusted_networks: Iterable[str],
        resolve: Callable[[str], Resolution] | None = None,
    ) -> None:
        self.local_domains = frozenset(d.lower().rstrip(".") for d in local_domains)
        self._user_exists = user_exists
        self._resolve = resolve
        self._trusted = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_networks)
        self._trust_cache: dict[str, bool] = {}

    def is_local_domain(self, domain: str) -> bool:
        return domain.lower().rstrip(".") in self.local_domains

    def is_trusted(self, client_ip: str) -> bool:
        cached = self._trust_cache.get(client_ip)
        if cached is not None:
            return cached
        try:
            addr = ipaddress.ip_address(client_ip.split("%", 1)[0])
        except ValueError:
            trusted = False
        else:
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            trusted = any(addr.version == n.version and addr in n for n in self._trusted)
        if len(self._trust_cache) < 10000:
            self._trust_cache[client_ip] = trusted
        return trusted

    def check_rcpt(
        self, recipient: str, *, client_ip: str, authenticated: bool = False
    ) -> Decision:
        """Decide on one (normalised) recipient address."""
        local_part, _, domain = recipient.rpartition("@")
        if not local_part:  # bare "postmaster" (RFC 5321 §4.1.1.3)
            return Decision(reply=replies.RECIPIENT_OK, local=True)
        if self.is_local_domain(domain):
            if self._resolve is not None:
                # routing/ decides: aliases, virtusertable, users (issue 3).
                resolution = self._resolve(recipient)
                refusal = resolution.refusal
                if refusal is not None:
                    return Decision(reply=refusal.reply, resolution=resolution)
                if resolution.targets:
                    return Decision(reply=replies.RECIPIENT_OK, local=True, resolution=resolution)
            elif local_part.lower() == "postmaster" or self._user_exists(recipient):
                return Decision(reply=replies.RECIPIENT_OK, local=True)
            # RFC 3463 §3.2 X.1.1: bad destination mailbox address
            return Decision(
                reply=replies.USER_UNKNOWN.with_text(f"{replies.echo(recipient)}... User unknown")
            )
        # RFC 4954 §1 / RFC 6409 §5: an authenticated client may relay.
        if authenticated or self.is_trusted(client_ip):
            routed = self._resolve(recipient) if self._resolve is not None else None
            refused = routed.refusal if routed is not None else None
            if refused is not None:  # mailertable error:
                return Decision(reply=refused.reply, resolution=routed)
            return Decision(reply=replies.RECIPIENT_OK, local=False, resolution=routed)
        # RFC 3463 §3.8 X.7.1: delivery not authorized
        return Decision(
            reply=replies.RELAY_DENIED.with_text(f"{replies.echo(recipient)}... Relaying denied")
        )


def normalise_recipient(recipient: str) -> str | None:
    """A forward-path as the checks see it: no angle brackets, no source route,
    the domain in lower case without its trailing dot. "" for an empty path,
    None for a syntax error; "postmaster" stays bare (RFC 5321 §4.1.1.3)."""
    addr = recipient.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    if not addr:
        return ""
    if addr.startswith("@"):  # RFC 5321 §3.6.1, Appendix C: only the mailbox counts
        colon = addr.find(":")
        if colon < 0:
            return None
        addr = addr[colon + 1 :]
    if addr.lower() == "postmaster":
        return "postmaster"
    local, at, domain = addr.rpartition("@")
    if not at or not local:
        return None
    try:
        domain = parse_domain(domain, smtputf8=True)
    except AddressError:
        return None
    return f"{local}@{domain}"


def routing_trick_note(local_part: str) -> str:
    """For the log: what in a local part looks like a routing trick."""
    signs = [
        what
        for what, present in (
            ("%-hack", "%" in local_part),
            ("bang path", "!" in local_part),
            ("quoted @", local_part.startswith('"') and "@" in local_part),
        )
        if present
    ]
    return f" (local part with {', '.join(signs)}: never routed)" if signs else ""
