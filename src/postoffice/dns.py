"""dns: the one resolver — MX, addresses, PTR and TXT lookups with a TTL cache.

Description:
    Every DNS question postoffice asks goes through one Resolver built from
    the [dns] section (app.py makes it; delivery, policy and the servers
    share it). It wraps one dnspython asynchronous resolver and turns every
    outcome into either a value or one of two exceptions:

        DnsTempFail   SERVFAIL, REFUSED, timeout, network error: defer and
                      retry later (reply 451 4.4.3, RFC 3463 "directory
                      server failure").
        DnsPermFail   NXDOMAIN, a null MX, no address at all, a name that
                      cannot exist: bounce (5.1.2, 556 5.1.10 or 5.4.4).

    Both carry `reason` (for the log, names the query) and `reply` (what a
    client or a DSN may show), and are also errors.TempFail / PermFail, so
    code that handles those handles DNS failures too. No dnspython
    exception escapes this module.

    mx(domain) follows RFC 5321 §5.1: the MX hosts sorted by preference,
    in random order among equal preferences (load spreading, §5.1 "MUST
    randomize"), duplicates kept once at their best preference. A domain
    without MX records but with A or AAAA records has an implicit MX of
    preference 0 naming the domain itself (`implicit=True`). A null MX
    (RFC 7505: a single MX "." of preference 0; any MX set whose every
    target is ".") means the domain accepts no mail: DnsPermFail with
    556 5.1.10 (RFC 7505 §4.1, RFC 7504). RFC 7505 §3 forbids mixing a null
    MX with other MX records; when a domain does, the "." targets are
    ignored and the real hosts used. CNAMEs are followed (§5.1: "the
    resulting name is processed as if it were the initial name"). Choosing
    among the hosts, dropping our own name and lower preferences (§5.1),
    is the delivery agent's job.

    addresses(host) returns the host's IPv6 addresses, then its IPv4
    addresses (the RFC 6724 §2.1 default policy table ranks IPv6 above
    IPv4; the caller tries them in order, so a host without IPv6 only pays
    one failed connect), each family shuffled (as Postfix's
    smtp_randomize_addresses) and deduplicated. AAAA and A are asked at
    once; when one of them fails temporarily and the other has addresses,
    those are returned. Address literals ("[192.0.2.1]", "[IPv6:2001:db8::1]",
    RFC 5321 §4.1.3) and bare IP addresses are returned as the bare address
    without a query.

    ptr(ip) returns the first PTR name of an address or None on any
    failure (for Received: fields and logs; it is never a decision).
    txt(name) returns each TXT record's character-strings joined (RFC 7208
    §3.3), decoded as UTF-8 with replacement.

    Names: non-ASCII domains are converted to A-labels (IDNA 2008 with
    UTS #46 mapping when the `idna` package is installed, else IDNA 2003,
    as dnspython chooses); results are lower-case, without the final dot.
    A name that cannot exist (empty label, label over 63 octets, name over
    255, invalid IDNA) is DnsPermFail 5.1.2. Queries never use the
    resolv.conf search list: mail domains are always absolute.

Cache:
    Answers are kept by (name, type) until their TTL runs out, on the
    injectable clock (tests use FakeClock), in at most `cache_size`
    entries (least recently used dropped first; 0 disables the cache).
    Identical questions asked at the same time share one query.

        positive answers      the smallest TTL of the answer and its CNAME
                              chain, at most one hour.
        NXDOMAIN and NODATA   RFC 2308 §5: min(SOA TTL, SOA minimum) of the
                              SOA in the authority section, at most one hour
                              (RFC 2308 §5 suggests a cap of 1 to 3 hours);
                              without an SOA not cached (RFC 2308 §5 "SHOULD
                              NOT be cached").
        SERVFAIL, timeouts    30 seconds (RFC 2308 §7.1 allows at most five
                              minutes). Long enough that a queue run holding
                              many messages for one broken domain waits for
                              the timeout once, not once per message; short
                              enough that the next retry, minutes later,
                              asks again.

    The cache is a convenience in front of the local recursive resolver a
    mail server should have, not a replacement for it.

Statistics:
    statistics() returns queries (questions sent to the name servers, one
    per cache miss; dnspython's retries and TCP fallback not counted),
    cache_hits (questions answered from the cache or by a query already
    under way), temp_failures and perm_failures (queries that ended in a
    temporary failure, or in NXDOMAIN) and cache_entries.

Security:
    Trusts the configured name servers (use a local validating resolver;
    DNSSEC and DANE are not checked here). Names in reasons are escaped
    by dnspython (non-printable octets as \\DDD), so a hostile name cannot
    forge log lines. Reply texts never contain names or exception text.

Config:
    [dns] nameservers ("ip", "ip:port" or "[ipv6]:port"; empty: those of
    /etc/resolv.conf, or 127.0.0.1 when it has none, as the C library
    does), timeout (seconds for one lookup, all retries included),
    cache_size.

See also:
    RFC 5321 §5.1 (locating the target host), RFC 7505 (null MX), RFC 7504,
    RFC 2308 (negative caching), RFC 6724 (address ordering), RFC 3463
    (enhanced status codes), testing/fake_dns.py (the fake server the
    tests use), delivery/smtp.py (the main user).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from postoffice.config.schema import DnsConfig
from postoffice.errors import ConfigError, PermFail, PostofficeError, TempFail
from postoffice.smtp.replies import Reply

# RFC 3463 X.4.3 "Directory server failure".
DNS_TEMP_FAILURE: Final = Reply(code=451, enhanced="4.4.3", text="Temporary DNS failure")
# RFC 3463 X.1.2 "Bad destination system address".
NO_SUCH_DOMAIN: Final = Reply(code=550, enhanced="5.1.2", text="Domain does not exist")
NO_MAIL_DOMAIN: Final = Reply(code=550, enhanced="5.1.2", text="Domain has no mail server")
INVALID_DOMAIN: Final = Reply(code=550, enhanced="5.1.2", text="Invalid domain name")
# RFC 7505 §4.1: reply code 556 (RFC 7504) with status 5.1.10.
NULL_MX: Final = Reply(code=556, enhanced="5.1.10", text="Domain does not accept mail")
# RFC 3463 X.4.4 "Unable to route".
NO_ADDRESS: Final = Reply(code=550, enhanced="5.4.4", text="Mail server has no address")

MAX_POSITIVE_TTL: Final = 3600
MAX_NEGATIVE_TTL: Final = 3600  # RFC 2308 §5
TEMP_FAILURE_TTL: Final = 30  # RFC 2308 §7.1 allows up to 300
MAX_TRY_TIMEOUT: Final = 2.0  # one attempt at one server, before retrying

# IDNA 2008 + UTS #46 when the idna package is installed, else IDNA 2003
# (dnspython's own choice, made explicit so the fake server agrees).
_IDNA: Final = (
    dns.name.IDNA_2008_Practical if dns.name.have_idna_2008 else dns.name.IDNA_2003_Practical
)


class DnsError(PostofficeError):
    """A lookup failed; `reason` is for the log, `reply` for the client or DSN."""

    reason: str
    reply: Reply

    def __init__(self, reason: str, reply: Reply) -> None:
        Exception.__init__(self, reason)
        self.reason = reason
        self.reply = reply


class DnsTempFail(DnsError, TempFail):
    """SERVFAIL, REFUSED, timeout or network error: defer (4.4.3)."""

    def __init__(self, reason: str, reply: Reply = DNS_TEMP_FAILURE) -> None:
        DnsError.__init__(self, reason, reply)


class DnsPermFail(DnsError, PermFail):
    """NXDOMAIN, null MX, no address, invalid name: bounce (5.1.2, 5.1.10, 5.4.4)."""

    def __init__(self, reason: str, reply: Reply = NO_SUCH_DOMAIN) -> None:
        DnsError.__init__(self, reason, reply)


@dataclass(frozen=True, slots=True, kw_only=True)
class MxHost:
    """One mail exchanger: its preference and host name (A-labels, lower case,
    no final dot; an address literal for a literal domain)."""

    preference: int
    host: str
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class _Answer:
    """The outcome of one (name, type) question, as cached."""

    status: Literal["ok", "nxdomain", "temp"]
    records: tuple[dns.rdata.Rdata, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    answer: _Answer


_Key = tuple[dns.name.Name, dns.rdatatype.RdataType]


class Resolver:
    """MX, address, PTR and TXT lookups with a TTL cache (see the module doc)."""

    def __init__(
        self,
        *,
        nameservers: Sequence[str] = (),
        timeout: float = 5.0,
        cache_size: int = 10000,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not timeout > 0:
            raise ConfigError("must be more than 0 seconds", key="dns.timeout")
        if cache_size < 0:
            raise ConfigError("must not be negative", key="dns.cache_size")
        servers = [_parse_nameserver(text) for text in nameservers]
        if servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers]
        else:
            try:
                resolver = dns.asyncresolver.Resolver(configure=True)
            except (dns.exception.DNSException, OSError):
                # No usable /etc/resolv.conf: ask a local resolver, as libc does.
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = ["127.0.0.1"]
        resolver.cache = None  # ours, on our clock
        resolver.lifetime = timeout
        resolver.timeout = min(MAX_TRY_TIMEOUT, timeout)
        resolver.retry_servfail = False
        self._resolver = resolver
        self._timeout = float(timeout)
        self._cache_size = cache_size
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._cache: OrderedDict[_Key, _Entry] = OrderedDict()
        self._inflight: dict[_Key, asyncio.Task[_Answer]] = {}
        self._stats = {"queries": 0, "cache_hits": 0, "temp_failures": 0, "perm_failures": 0}

    @classmethod
    def from_config(cls, config: DnsConfig) -> Resolver:
        return cls(
            nameservers=config.nameservers, timeout=config.timeout, cache_size=config.cache_size
        )

    # -- lookups ---------------------------------------------------------------

    async def mx(self, domain: str) -> list[MxHost]:
        """The mail exchangers of a domain, in the order to try them (RFC 5321 §5.1)."""
        literal = _parse_literal(domain)
        if literal is not None:
            return [MxHost(preference=0, host=literal[0], implicit=True)]
        name = to_name(domain)
        text = _text(name)
        answer = await self._lookup(name, dns.rdatatype.MX)
        _raise_for(answer, NO_SUCH_DOMAIN)
        exchanges = [(rd.preference, rd.exchange) for rd in answer.records if isinstance(rd, MX)]
        if exchanges:
            best: dict[str, int] = {}
            for preference, exchange in exchanges:
                if exchange != dns.name.root:  # RFC 7505 §3: "." is no host
                    host = _text(exchange)
                    best[host] = min(preference, best.get(host, preference))
            if not best:
                raise DnsPermFail(f"{text}: null MX, the domain accepts no mail", NULL_MX)
            hosts = list(best.items())
            self._rng.shuffle(hosts)
            hosts.sort(key=lambda item: item[1])  # stable: equal preferences stay shuffled
            return [MxHost(preference=pref, host=host) for host, pref in hosts]
        # RFC 5321 §5.1: no MX, so the domain itself is an implicit MX of preference 0.
        try:
            await self.addresses(text)
        except DnsPermFail as exc:
            raise DnsPermFail(f"{text}: no MX, A or AAAA records", NO_MAIL_DOMAIN) from exc
        return [MxHost(preference=0, host=text, implicit=True)]

    async def addresses(self, host: str) -> list[str]:
        """IPv6 then IPv4 addresses of a host, each family shuffled; literals as-is."""
        ip = _parse_ip(host)
        if ip is not None:
            return [ip]
        name = to_name(host)
        v6, v4 = await asyncio.gather(
            self._lookup(name, dns.rdatatype.AAAA), self._lookup(name, dns.rdatatype.A)
        )
        found: list[str] = []
        for answer, kind in ((v6, AAAA), (v4, A)):
            family = list(
                dict.fromkeys(rd.address for rd in answer.records if isinstance(rd, kind))
            )
            self._rng.shuffle(family)
            found.extend(family)
        if found:
            return found
        for answer in (v6, v4):
            _raise_for(answer, NO_ADDRESS, temp_only=True)
        for answer in (v6, v4):
            _raise_for(answer, NO_ADDRESS)
        raise DnsPermFail(f"{_text(name)}: no A or AAAA records", NO_ADDRESS)

    async def ptr(self, ip: str) -> str | None:
        """The name of an address (first PTR record), None on any failure."""
        try:
            addr = ipaddress.ip_address(ip)
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            name = dns.reversename.from_address(str(addr))
        except (ValueError, dns.exception.DNSException):
            return None
        answer = await self._lookup(name, dns.rdatatype.PTR)
        for rd in answer.records:
            if isinstance(rd, PTR) and rd.target != dns.name.root:
                return _text(rd.target)
        return None

    async def txt(self, name: str) -> list[str]:
        """The TXT records of a name, each one's strings joined; [] when there are none."""
        qname = to_name(name)
        answer = await self._lookup(qname, dns.rdatatype.TXT)
        _raise_for(answer, NO_SUCH_DOMAIN)
        return [
            b"".join(rd.strings).decode("utf-8", "replace")
            for rd in answer.records
            if isinstance(rd, TXT)
        ]

    # -- housekeeping ----------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        return {**self._stats, "cache_entries": len(self._cache)}

    def clear_cache(self) -> None:
        self._cache.clear()

    # -- the cache and the query -----------------------------------------------

    async def _lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Answer:
        key = (name, rdtype)
        entry = self._cache.get(key)
        if entry is not None:
            if self._clock() < entry.expires:
                self._cache.move_to_end(key)
                self._stats["cache_hits"] += 1
                return entry.answer
            del self._cache[key]
        task = self._inflight.get(key)
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            self._stats["cache_hits"] += 1
        else:
            task = asyncio.get_running_loop().create_task(self._query(name, rdtype))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        # shield: one caller giving up must not cancel the others' query.
        return await asyncio.shield(task)

    def _landed(self, key: _Key, task: asyncio.Task[_Answer]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    async def _query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Answer:
        self._stats["queries"] += 1
        what = f"{_text(name)}/{dns.rdatatype.to_text(rdtype)}"
        try:
            result = await self._resolver.resolve(
                name, rdtype, search=False, lifetime=self._timeout, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            self._stats["perm_failures"] += 1
            answer = _Answer("nxdomain", reason=f"{what}: no such domain (NXDOMAIN)")
            responses = exc.responses()  # type: ignore[no-untyped-call]
            ttl = min(_negative_ttl(responses.values()), MAX_NEGATIVE_TTL)
        except dns.resolver.YXDOMAIN:
            self._stats["perm_failures"] += 1
            answer = _Answer("nxdomain", reason=f"{what}: name too long after DNAME (YXDOMAIN)")
            ttl = 0
        except dns.resolver.LifetimeTimeout:
            answer = _Answer("temp", reason=f"{what}: timed out after {self._timeout:g}s")
            self._stats["temp_failures"] += 1
            ttl = TEMP_FAILURE_TTL
        except dns.resolver.NoNameservers:
            answer = _Answer("temp", reason=f"{what}: no name server answered (SERVFAIL, REFUSED)")
            self._stats["temp_failures"] += 1
            ttl = TEMP_FAILURE_TTL
        except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
            # ChainTooLong (a CNAME loop), FormError, a network error, ...
            answer = _Answer("temp", reason=f"{what}: {type(exc).__name__}")
            self._stats["temp_failures"] += 1
            ttl = TEMP_FAILURE_TTL
        else:
            records = tuple(result.rrset) if result.rrset is not None else ()
            answer = _Answer("ok", records=records)
            if records:
                ttl = min(result.chaining_result.minimum_ttl, MAX_POSITIVE_TTL)
            else:  # NODATA: negative caching by the SOA, RFC 2308 §5
                ttl = min(_negative_ttl([result.response]), MAX_NEGATIVE_TTL)
        self._store((name, rdtype), answer, ttl)
        return answer

    def _store(self, key: _Key, answer: _Answer, ttl: float) -> None:
        if ttl <= 0 or self._cache_size == 0:
            return
        self._cache[key] = _Entry(self._clock() + ttl, answer)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


# -- names ---------------------------------------------------------------------


def to_name(text: str) -> dns.name.Name:
    """A domain as an absolute dnspython Name (IDNA A-labels); DnsPermFail
    (5.1.2) when it cannot be a domain name."""
    try:
        name = dns.name.from_text(text, origin=dns.name.root, idna_codec=_IDNA)
    except (dns.exception.DNSException, ValueError):  # UnicodeError is a ValueError
        raise DnsPermFail(f"invalid domain name {text!r}", INVALID_DOMAIN) from None
    if name == dns.name.root:
        raise DnsPermFail(f"invalid domain name {text!r}", INVALID_DOMAIN)
    return name


def a_label(domain: str) -> str:
    """The ASCII form of a domain as it is queried: A-labels, lower case, no
    final dot ("Bücher.Example." → "xn--bcher-kva.example")."""
    return _text(to_name(domain))


def _text(name: dns.name.Name) -> str:
    return name.canonicalize().to_text(omit_final_dot=True)


def _raise_for(answer: _Answer, nx_reply: Reply, *, temp_only: bool = False) -> None:
    if answer.status == "temp":
        raise DnsTempFail(answer.reason)
    if answer.status == "nxdomain" and not temp_only:
        raise DnsPermFail(answer.reason, nx_reply)


def _negative_ttl(responses: Iterable[dns.message.Message]) -> int:
    """RFC 2308 §5: min(SOA TTL, SOA minimum) of a negative answer's SOA, 0 without one."""
    ttls: list[int] = []
    for response in responses:
        if not isinstance(response, dns.message.QueryMessage):
            continue
        if not any(rrset.rdtype == dns.rdatatype.SOA for rrset in response.authority):
            continue
        try:
            ttls.append(response.resolve_chaining().minimum_ttl)
        except (dns.exception.DNSException, KeyError):
            continue
    return min(ttls) if ttls else 0


# -- literals and name servers -------------------------------------------------


def _parse_literal(text: str) -> tuple[str, str] | None:
    """RFC 5321 §4.1.3 address literal → (canonical literal, bare address);
    None when text is not a literal; DnsPermFail when it is a bad one."""
    if not text.startswith("["):
        return None
    bad = DnsPermFail(f"invalid address literal {text!r}", INVALID_DOMAIN)
    if not text.endswith("]"):
        raise bad
    body = text[1:-1]
    if body[:5].lower() == "ipv6:":
        try:
            ip6 = ipaddress.IPv6Address(body[5:])
        except ValueError:
            raise bad from None
        if ip6.scope_id is not None:
            raise bad
        return f"[IPv6:{ip6.compressed}]", ip6.compressed
    parts = body.split(".")
    # Snum = 1*3DIGIT (leading zeros allowed, unlike ipaddress).
    if len(parts) != 4 or not all(1 <= len(p) <= 3 and p.isascii() and p.isdigit() for p in parts):
        raise bad
    if any(int(p) > 255 for p in parts):
        raise bad
    ip4 = ".".join(str(int(p)) for p in parts)
    return f"[{ip4}]", ip4


def _parse_ip(host: str) -> str | None:
    """The bare address of a literal or of an IP address given as a host name."""
    literal = _parse_literal(host)
    if literal is not None:
        return literal[1]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        return None
    return addr.compressed


def _parse_nameserver(text: str) -> tuple[str, int]:
    """ "192.0.2.53", "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:5353"."""
    bad = ConfigError(
        f"bad name server {text!r} (expected ip, ip:port or [ipv6]:port)", key="dns.nameservers"
    )
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise bad
        port = rest[1:] or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise bad from None
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise bad
    return ip.compressed, int(port)
