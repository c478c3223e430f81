"""routing.generics — the genericstable: sender addresses of outgoing mail mapped to public ones.

Description:
    sendmail's FEATURE(`genericstable') (cf/README, FEATURES): "addresses
    with a domain listed in class {G} [are] looked up in a map and turned
    into another ("generic") form, which can change both the domain name
    and the user name". Seed 002's example, with generics_domains being
    local-host-names:

        lee@linux102.example.com     dl@qq.com
        test@linux102.example.com    yangmei@tonk.com

    rewrites a From: lee@linux102.example.com to From: dl@qq.com. Only
    the headers are rewritten ("被重写的是信头而不是信封": delivery is not
    affected, only replies are), unless `[routing] generics_envelope` is on.

    `Generics(table, domains=, hostname=, envelope=False)` or
    `Generics.from_config(config, table)`; `table` is the genericstable Map
    (maps/interfaces.py; None = no table, nothing is rewritten).

    lookup(addr) -> GenericsMatch | None
        Which entry applies, trying the keys in sendmail's order (cf/README
        and cf/m4/proto.m4 ruleset 93):
          1. `user+detail@domain`, the full address;
          2. for `user+detail`: `user+*@domain` (%1 = detail), then
             `user@domain`;
          3. `@domain` (%1 = the whole local part) — a catch-all for a
             domain, e.g. `@old.example  %1@new.example`;
          4. the bare local part `user+detail`, then `user+*` (%1 =
             detail), then `user`.
        Only addresses whose domain is in `domains` (class {G};
        `[routing] generics_domains`, default local_domains) are looked up,
        and unqualified ones, which are looked up as `user@hostname` and
        then `user` (proto.m4: `*LOCAL*` is keyed with $j; the @domain key
        is not tried for them). Keys are tried as written, then in lower
        case (sendmail's hash maps fold keys unless built with `makemap
        -f`); the domain is always lower case. In the value `%1` is the
        argument above, `%0` the key that matched, `%%` a percent sign.

    rewrite_address(addr) / rewrite_headers(block) /
    rewrite_envelope_sender(addr)
        genericstable alone: a qualified result replaces the address; an
        unqualified result ("new user address does not include a domain")
        is qualified with hostname. rewrite_headers rewrites the originator
        fields (routing/masquerade.py SENDER_FIELDS: "The same types of
        addresses as for masquerading are looked up, i.e., only header
        sender addresses", cf/README); rewrite_envelope_sender applies the
        table only when `envelope` is on.

    Order with masquerading — `SenderRewriter(generics=, masquerade=)`,
    `SenderRewriter.from_config(config, genericstable)`:
        as in proto.m4 ruleset 93 (MasqHdr), the genericstable comes first.
        A match that yields a qualified address is final — it is returned
        without masquerading ("found qualified": `$@`). A match that
        yields an unqualified user is qualified "in the standard manner,
        i.e., using $j or the masquerade name" (cf/README), that is, it
        goes through masquerading as an unqualified address. An address
        the table does not match is masqueraded as usual.
        header_address(addr), rewrite_headers(block): the header sender
        rewriting. envelope_sender(addr): the MAIL FROM rewriting — the
        genericstable only with generics_envelope, masquerading only with
        masquerade_envelope (sendmail turns both on with the single
        FEATURE(`masquerade_envelope'); postoffice has a key for each);
        with neither, an unqualified sender is only qualified with
        hostname. trace(addr, envelope=False) returns the result with the
        TraceStep of every rule that changed it (`postoffice explain`).

Security:
    Pure given its Map. A table value that is not a plausible address
    (whitespace, control characters, angle brackets, more than one "@"
    outside quotes) is ignored rather than written into a header or the
    envelope.

Config:
    [maps] genericstable; [routing] generics_domains, generics_envelope
    and the masquerade keys (routing/masquerade.py); hostname,
    local_domains.

See also:
    sendmail cf/README (FEATURE genericstable, generics_entire_domain,
    masquerade_envelope), cf/m4/proto.m4 ruleset 93; RFC 5322 §3.6.2
    (originator fields); routing/masquerade.py; maps/interfaces.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from postoffice.config.schema import Config
from postoffice.maps.interfaces import Map, MapEntry
from postoffice.routing.masquerade import Masquerade, rewrite_sender_fields
from postoffice.routing.targets import TraceStep

__all__ = ["Generics", "GenericsMatch", "SenderRewriter"]

_DETAIL = "+"  # sendmail's genericstable always uses "+" (cf/README: 'The "+detail"')
_PERCENT = re.compile(r"%([0-9%])")
_UNSAFE = re.compile(r"[\x00-\x20\x7f<>(),;:\\]")


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericsMatch:
    """The genericstable entry that applies to an address."""

    address: str  # the address looked up (qualified)
    key: str  # the key that matched
    result: str  # the value with %0/%1 substituted; may be unqualified
    file: str = ""
    line: int = 0

    @property
    def qualified(self) -> bool:
        return "@" in self.result

    def step(self, new: str) -> TraceStep:
        detail = f"{self.address} -> {new} (key {self.key})"
        return TraceStep(rule="genericstable", detail=detail, file=self.file, line=self.line)


def _substitute(value: str, key: str, arg: str) -> str:
    def one(m: re.Match[str]) -> str:
        c = m.group(1)
        if c == "%":
            return "%"
        if c == "0":
            return key
        if c == "1":
            return arg
        return ""

    return _PERCENT.sub(one, value)


def _plausible(addr: str) -> bool:
    """A map value usable as an address: one "@" at most outside a leading quoted part."""
    if not addr or addr.startswith("@") or addr.endswith("@"):
        return False
    local, at, domain = addr.rpartition("@")
    if not at:
        local, domain = addr, ""
    if domain and _UNSAFE.search(domain):
        return False
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        inner = local[1:-1]
        return not re.search(r"[\x00-\x1f\x7f]", inner)
    return not _UNSAFE.search(local) and "@" not in local and '"' not in local


class Generics:
    """sendmail's genericstable (see the module documentation)."""

    __slots__ = ("_domains", "envelope", "hostname", "table")

    def __init__(
        self,
        table: Map | None,
        *,
        domains: Iterable[str],
        hostname: str = "",
        envelope: bool = False,
    ) -> None:
        self.table = table
        self._domains = frozenset(d.strip().lower().rstrip(".") for d in domains if d.strip())
        self.hostname = hostname.strip().lower().rstrip(".")
        self.envelope = envelope

    @classmethod
    def from_config(cls, config: Config, table: Map | None) -> Generics:
        """generics_domains (default: local_domains), hostname, generics_envelope."""
        r = config.routing
        return cls(
            table,
            domains=r.generics_domains or config.local_domains,
            hostname=config.hostname,
            envelope=r.generics_envelope,
        )

    def applies_to(self, domain: str) -> bool:
        return domain.strip().lower().rstrip(".") in self._domains

    def _get(self, key: str) -> MapEntry | None:
        assert self.table is not None
        entry = self.table.lookup(key)
        if entry is None and key.lower() != key:
            entry = self.table.lookup(key.lower())
        return entry

    def _candidates(self, local: str, domain: str, qualified: bool) -> list[tuple[str, str]]:
        """(key, %1) in sendmail's order (proto.m4 ruleset 93)."""
        out = [(f"{local}@{domain}", "")]
        user, plus, detail = local.partition(_DETAIL)
        if plus and user:
            out += [(f"{user}{_DETAIL}*@{domain}", detail), (f"{user}@{domain}", "")]
        if qualified:
            out.append((f"@{domain}", local))
        out.append((local, ""))
        if plus and user:
            out += [(f"{user}{_DETAIL}*", detail), (user, "")]
        return out

    def lookup(self, addr: str) -> GenericsMatch | None:
        """The entry for `addr`, or None (not in generics_domains, or no key matches)."""
        if self.table is None or not addr:
            return None
        at = addr.rfind("@")
        if at < 0:
            if not self.hostname:
                return None
            local, domain, qualified = addr, self.hostname, False
        else:
            local, domain, qualified = addr[:at], addr[at + 1 :].lower().rstrip("."), True
            if not local or not self.applies_to(domain):
                return None
        for key, arg in self._candidates(local, domain, qualified):
            entry = self._get(key)
            if entry is None:
                continue
            result = _substitute(entry.value.strip(), entry.key, arg)
            if not _plausible(result):
                continue
            return GenericsMatch(
                address=f"{local}@{domain}",
                key=entry.key,
                result=result,
                file=entry.file,
                line=entry.line,
            )
        return None

    def trace_address(self, addr: str) -> tuple[str, tuple[TraceStep, ...]]:
        match = self.lookup(addr)
        if match is None:
            return addr, ()
        new = match.result
        if not match.qualified and self.hostname:
            new = f"{new}@{self.hostname}"
        return new, (match.step(new),)

    def rewrite_address(self, addr: str) -> str:
        """One header sender address through the genericstable alone."""
        return self.trace_address(addr)[0]

    def rewrite_headers(self, header_block: bytes) -> bytes:
        return rewrite_sender_fields(header_block, self.rewrite_address)

    def rewrite_envelope_sender(self, addr: str) -> str:
        """The envelope sender: rewritten only when `envelope` (generics_envelope) is on."""
        return self.rewrite_address(addr) if self.envelope else addr


class SenderRewriter:
    """genericstable, then masquerading: the sender as it leaves the host."""

    __slots__ = ("generics", "hostname", "masquerade")

    def __init__(
        self,
        *,
        generics: Generics | None = None,
        masquerade: Masquerade | None = None,
        hostname: str = "",
    ) -> None:
        self.generics = generics
        self.masquerade = masquerade
        self.hostname = hostname.strip().lower().rstrip(".")

    @classmethod
    def from_config(cls, config: Config, genericstable: Map | None) -> SenderRewriter:
        return cls(
            generics=Generics.from_config(config, genericstable),
            masquerade=Masquerade.from_config(config),
            hostname=config.hostname,
        )

    def trace(self, addr: str, *, envelope: bool = False) -> tuple[str, tuple[TraceStep, ...]]:
        """The rewritten address and the steps that changed it.

        envelope=False: as a header sender address; True: as the envelope
        sender (MAIL FROM)."""
        if not addr:
            return addr, ()
        steps: list[TraceStep] = []
        g = self.generics
        if g is not None and (g.envelope or not envelope):
            match = g.lookup(addr)
            if match is not None:
                if match.qualified:
                    return match.result, (match.step(match.result),)
                addr = match.result  # unqualified: qualified below, $j or the masquerade name
                steps.append(match.step(addr))
        m = self.masquerade
        if m is not None:
            new, more = m.trace_envelope_sender(addr) if envelope else m.trace_address(addr)
        elif "@" not in addr and self.hostname:
            new = f"{addr}@{self.hostname}"
            more = (TraceStep(rule="qualify", detail=f"{addr} -> {new}"),)
        else:
            new, more = addr, ()
        return new, (*steps, *more)

    def header_address(self, addr: str) -> str:
        """One header sender address as it leaves the host."""
        return self.trace(addr)[0]

    def envelope_sender(self, addr: str) -> str:
        """The envelope sender as it leaves the host."""
        return self.trace(addr, envelope=True)[0]

    def rewrite_headers(self, header_block: bytes) -> bytes:
        """The header block with its sender fields rewritten (genericstable, masquerading)."""
        return rewrite_sender_fields(header_block, self.header_address)
