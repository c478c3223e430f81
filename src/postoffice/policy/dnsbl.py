"""policy/dnsbl — DNS blocklists: is this client listed, and what does the list say?

Description:
    A DNS blocklist (DNSBL, RFC 5782) publishes listed addresses as names
    under its zone. For the client 192.0.2.99 and the zone
    `zen.example.org` the question is the A record of
    `99.2.0.192.zen.example.org` (RFC 5782 §2.1: the octets reversed); for
    2001:db8::1 the 32 nibbles reversed, dot-separated (§2.4). An A record
    in 127.0.0.0/8 means listed (§2.3, 127.0.0.2 by convention); a TXT
    record at the same name says why (§2.1), and is shown to the client as
    rblsmtpd(1) shows it ("451 <the TXT>"), here inside the reply:

        554 5.7.1 Rejected: 192.0.2.99 listed at zen.example.org: <TXT>

    (sendmail's FEATURE(dnsbl) text, "Rejected: IP-ADDRESS listed at
    SERVER", followed by the TXT when there is one.)

    DnsBlocklist(resolver, zones, *, mode="reject")
        check(ip) -> Listing | None   (async)
            asks every zone at once and returns the listing of the first
            zone, in configured order, that lists the client; None when
            none does. Listing(ip, zone, addresses, text, reply, enforce):
            `enforce` is False in mode "warn" (the engine only logs).
        statistics() -> {checks, listed, failures}
    query_name(ip, zone) -> str: the name asked (RFC 5782 §2.1, §2.4).
    rblsmtpd_reply(value) -> Reply: the refusal an RBLSMTPD setting from
        the per-IP rules means (rblsmtpd(1): a leading "-" is a permanent
        553 5.7.1, anything else a temporary 451 4.7.1).

    A blocklist that fails never blocks mail: a timeout, SERVFAIL or any
    other DNS trouble is logged (warning, naming the zone) and the zone is
    treated as not listing the client, as rblsmtpd does after its timeout
    and sendmail's dnsbl does by default. Answers outside 127.0.0.0/8 are
    ignored with a warning (a wildcarded or hijacked zone), as are
    127.255.255.0/24 answers, which large lists use as error codes ("query
    refused", "over quota") rather than listings: treating those as
    listings would refuse all mail.

Cache:
    The resolver's (dns.py): answers by their TTL, NXDOMAIN by the zone's
    SOA (RFC 2308), failures for 30 seconds, so a client that reconnects
    costs no new query and a dead list is not asked on every connection.

Security:
    The TXT text is the list operator's: only printable ASCII is kept,
    white space collapsed, at most 200 characters, so it cannot break a
    reply line or the log. Loopback and link-local clients are never
    looked up (RFC 5782 §5 reserves 127.0.0.1 as "never listed").

Config:
    [policy] dnsbl_zones, dnsbl_mode (`reject` or `warn`).

See also:
    RFC 5782 (DNS blacklists and whitelists), rblsmtpd(1), sendmail
    cf/README FEATURE(dnsbl), dns.py, policy/engine.py (the connect stage).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from postoffice.dns import DnsError, DnsPermFail, Resolver, a_label
from postoffice.errors import ConfigError
from postoffice.smtp.replies import Reply

log = logging.getLogger("postoffice.policy")

MODES: Final = ("reject", "warn")
MAX_TEXT: Final = 200
LISTED_NET: Final = ipaddress.IPv4Network("127.0.0.0/8")
ERROR_NET: Final = ipaddress.IPv4Network("127.255.255.0/24")
# RFC 3463 X.7.1 "Delivery not authorized, message refused".
LISTED: Final = Reply(code=554, enhanced="5.7.1", text="Rejected")
RBLSMTPD_TEMPORARY: Final = Reply(code=451, enhanced="4.7.1", text="")
RBLSMTPD_PERMANENT: Final = Reply(code=553, enhanced="5.7.1", text="")


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """A client listed by a blocklist: where, with which codes, and why."""

    ip: str
    zone: str
    addresses: tuple[str, ...]
    text: str
    reply: Reply
    enforce: bool = True

    @property
    def reason(self) -> str:
        """For the log: "192.0.2.99 listed at zen.example.org (127.0.0.2: TXT)"."""
        why = f": {self.text}" if self.text else ""
        return f"{self.ip} listed at {self.zone} ({', '.join(self.addresses)}{why})"


def clean_text(text: str) -> str:
    """Printable ASCII only, white space collapsed, at most MAX_TEXT characters."""
    kept = "".join(c if " " <= c <= "~" else " " for c in text)
    kept = " ".join(kept.split())
    return kept if len(kept) <= MAX_TEXT else kept[: MAX_TEXT - 3] + "..."


def query_name(ip: str, zone: str) -> str:
    """The name to ask: reversed octets (RFC 5782 §2.1) or nibbles (§2.4) + zone."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        labels = str(addr).split(".")
    else:
        labels = list(addr.exploded.replace(":", ""))
    return ".".join(reversed(labels)) + "." + zone.rstrip(".")


def rblsmtpd_reply(value: str) -> Reply:
    """The refusal of a non-empty RBLSMTPD setting (rblsmtpd(1))."""
    if value.startswith("-"):
        text = clean_text(value[1:]) or "Access denied"
        return RBLSMTPD_PERMANENT.with_text(text)
    return RBLSMTPD_TEMPORARY.with_text(clean_text(value) or "Try again later")


def _never_listed(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_link_local or addr.is_unspecified


class DnsBlocklist:
    """Checks clients against DNS blocklist zones (see the module doc)."""

    def __init__(self, resolver: Resolver, zones: Sequence[str], *, mode: str = "reject") -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r} (reject or warn)", key="policy.dnsbl_mode")
        checked = []
        for zone in zones:
            try:
                checked.append(a_label(zone))
            except DnsError:
                raise ConfigError(f"bad zone {zone!r}", key="policy.dnsbl_zones") from None
        self._resolver = resolver
        self.zones: tuple[str, ...] = tuple(dict.fromkeys(checked))
        self.mode = mode
        self._stats = {"checks": 0, "listed": 0, "failures": 0}

    def statistics(self) -> dict[str, int]:
        return dict(self._stats)

    async def check(self, ip: str) -> Listing | None:
        """The first zone (in configured order) listing `ip`, or None."""
        if not self.zones or _never_listed(ip):
            return None
        self._stats["checks"] += 1
        found = await asyncio.gather(*(self._ask(ip, zone) for zone in self.zones))
        for listing in found:
            if listing is not None:
                self._stats["listed"] += 1
                return listing
        return None

    async def _ask(self, ip: str, zone: str) -> Listing | None:
        name = query_name(ip, zone)
        try:
            answers = await self._resolver.addresses(name)
        except DnsPermFail:
            return None  # NXDOMAIN: not listed
        except DnsError as e:
            self._stats["failures"] += 1
            log.warning("dnsbl %s: lookup failed, not blocking %s: %s", zone, ip, e.reason)
            return None
        codes = []
        for answer in answers:
            try:
                addr = ipaddress.ip_address(answer)
            except ValueError:
                continue
            if not isinstance(addr, ipaddress.IPv4Address) or addr not in LISTED_NET:
                if isinstance(addr, ipaddress.IPv4Address):
                    log.warning("dnsbl %s: answer %s for %s is not in 127/8", zone, addr, ip)
                continue
            if addr in ERROR_NET:
                log.warning("dnsbl %s: error code %s for %s; not blocking", zone, addr, ip)
                continue
            codes.append(str(addr))
        if not codes:
            return None
        text = ""
        try:
            texts = await self._resolver.txt(name)
        except DnsError:
            texts = []
        if texts:
            text = clean_text(texts[0])
        shown = f"Rejected: {ip} listed at {zone}" + (f": {text}" if text else "")
        return Listing(
            ip=ip,
            zone=zone,
            addresses=tuple(sorted(codes)),
            text=text,
            reply=LISTED.with_text(clean_text(shown)),
            enforce=self.mode == "reject",
        )


__all__ = [
    "LISTED",
    "MODES",
    "DnsBlocklist",
    "Listing",
    "clean_text",
    "query_name",
    "rblsmtpd_reply",
]
