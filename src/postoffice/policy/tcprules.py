"""policy/tcprules — qmail's per-IP rules (tcprules/tcpserver): allow, deny, settings.

Description:
    The rules file (config_dir/tcprules, qmail's /etc/tcp.smtp) says, per
    client address or host name, whether a connection is accepted and
    which environment it gets, in tcprules(1)'s format:

        # tcp.smtp
        127.:allow,RELAYCLIENT=""
        10.0.0.:allow,RELAYCLIENT="",MAXCONNIP="50"
        192.168.1.1-99:deny
        =mx.partner.example:allow,RELAYCLIENT=""
        =.dialup.example:allow,RBLSMTPD="-Dynamic addresses may not send mail here"
        203.0.113.7:allow,RBLSMTPD=""
        :allow

    A rule is one line: an address, a colon, `allow` or `deny`, then any
    number of `,NAME="value"` settings, without spaces. The quotes may be
    any character repeated: `NAME=/va"lue/` (tcprules(1)). Lines starting
    with `#` and blank lines are ignored; trailing blanks are dropped. The
    colon ending the address is the first one followed by `allow` or `deny`,
    so IPv6 addresses need no quoting (`::1:allow`).

    Addresses:
        1.2.3.4          one IPv4 address
        1.2.3.  1.2.  1. an IPv4 network by leftmost octets (ends with a dot)
        1.2.3.37-53      a range in one octet: short for 1.2.3.37 ... 1.2.3.53
                         (tcprules expands it; the top is capped at 255);
                         `10.1-3.` is 10.1. 10.2. 10.3.
        10.0.0.0/8       CIDR (ucspi-tcp6's extension): expanded to octet
                         prefixes, at most 256 of them (`172.16.0.0/12` is
                         172.16. ... 172.31.)
        ::1  2001:db8::5 one IPv6 address (compressed form, lower case)
        2001:db8:        an IPv6 prefix of the compressed form (ends with ':')
        =mx.example.com  the client's host name
        =.example.com    any host name ending in .example.com
        =                any client with a host name
        (empty)          every client: the default rule
    Host names are the client's name from reverse DNS confirmed by a
    forward lookup (tcpserver -p, "paranoid"): an unconfirmed name matches
    no `=` rule. `user@...` (ident, RFC 1413) rules are accepted but never
    match: postoffice does not ask ident.

    Matching, as tcpserver does (tcprules(1) "ADDRESSES"), the first found
    in this order: the address; `=host`; ever shorter prefixes of the
    address ending with `.` (IPv6: `:`); ever shorter suffixes of the host
    name starting with a dot, preceded by `=`; `=`; the empty address.
    IPv4-mapped IPv6 addresses are matched as IPv4. No rule at all (no
    file, or nothing matched and no default) allows the connection with no
    settings, as tcpserver without -x. When an address appears twice the
    first line wins (cdb returns the first record) and the second is listed
    by problems().

    Settings postoffice reads (others are kept in `Rule.env` for the
    session, e.g. DATABYTES):
        RELAYCLIENT   set (to anything, usually ""): the client may relay
                      (qmail-smtpd(8)); the value is not appended to
                      recipients as qmail does.
        RBLSMTPD      rblsmtpd(1): set and empty, no DNS blocklist lookups
                      for this client; set and not empty, the client is
                      refused with that text: a leading `-` makes it
                      permanent (553), otherwise temporary (451).
        MAXCONNIP     concurrent connections from one address (0: no limit)
        MAXCONNRATE   new connections per minute from one address (0: none)
        MAXMSGHOUR    messages per hour from one address (0: no limit)
                      (these three override [policy] max_connections_per_ip,
                      max_connection_rate and max_messages_per_hour; the
                      first is the name of the widely used tcpserver limits
                      patch; the others are postoffice's.)

    Broken lines (no `:allow`/`:deny`, an unterminated value, a bad range,
    a limit that is not a number) are skipped and listed by problems() as
    "file:line: message" (tcprules refuses the whole file instead; here the
    rest keeps working and `postoffice config check` shows the problem).

    API:
        parse_tcprules(data, *, file) -> ParsedMap   (pure, never raises)
        parse_instructions(text) -> (allow, env)     (ValueError when broken)
        TcpRules(map) over a Map whose values are instructions;
        TcpRules.open(path, *, safe_files=True, log=True): the text file,
            kept in memory and re-read when it changes (reload_if_changed);
        TcpRules.match(ip, hostname=None) -> Rule: the rule that applies
            (Rule.allow, .env, .relay_client, .rblsmtpd, .limit(name),
            .where = file:line).

Security:
    The address and the (confirmed) host name are the client's; they only
    select keys. A deny is answered by the engine with 554 5.7.1 (qmail's
    tcpserver just closes the connection).

Config:
    [policy] tcprules (the file); [maps] safe_files.

See also:
    tcprules(1), tcpserver(1), rblsmtpd(1), qmail-smtpd(8) (RELAYCLIENT),
    seed 004; policy/engine.py, policy/limits.py, policy/dnsbl.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from postoffice.maps.interfaces import Map, MapEntry
from postoffice.maps.text import ParsedMap, TextMap, split_lines

LIMIT_NAMES: Final = ("MAXCONNIP", "MAXCONNRATE", "MAXMSGHOUR")
MAX_EXPANSION: Final = 256
_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INSTRUCTION_RE: Final = re.compile(r":(allow|deny)(?=,|\Z)")
_ADDRESS_CHARS_RE: Final = re.compile(r"[0-9A-Za-z.:=@/_-]*\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """The rule that applies to a client: allow or deny, and its settings."""

    address: str  # the key that matched ("" for the default rule)
    allow: bool
    env: tuple[tuple[str, str], ...] = ()
    file: str = ""
    line: int = 0

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else "(no rule)"

    @property
    def relay_client(self) -> bool:
        """RELAYCLIENT is set: the client may relay (qmail-smtpd(8))."""
        return any(name == "RELAYCLIENT" for name, _ in self.env)

    @property
    def rblsmtpd(self) -> str | None:
        """The RBLSMTPD setting, None when unset (rblsmtpd(1))."""
        for name, value in self.env:
            if name == "RBLSMTPD":
                return value
        return None

    def limit(self, name: str) -> int | None:
        """A per-rule limit (MAXCONNIP, MAXCONNRATE, MAXMSGHOUR), None when unset."""
        for key, value in self.env:
            if key == name:
                return int(value)
        return None

    def describe(self) -> str:
        what = "allow" if self.allow else "deny"
        shown = self.address if self.address else "(default)"
        return f"tcprules {shown}:{what} ({self.where})"


DEFAULT_RULE: Final = Rule(address="", allow=True)
"""No rules file, or no rule matched and no default rule: allow, no settings."""


def parse_instructions(text: str) -> tuple[bool, tuple[tuple[str, str], ...]]:
    """`allow,NAME="v",...` -> (allow, settings); ValueError saying what is wrong."""
    if text.startswith("allow"):
        allow, rest = True, text[5:]
    elif text.startswith("deny"):
        allow, rest = False, text[4:]
    else:
        raise ValueError("expected allow or deny after the address")
    env: list[tuple[str, str]] = []
    while rest:
        if rest[0] != ",":
            raise ValueError(f"expected ',NAME=\"value\"' at {rest[:20]!r}")
        name, eq, after = rest[1:].partition("=")
        if not eq:
            raise ValueError(f"setting {name[:30]!r} has no '='")
        if _NAME_RE.match(name) is None:
            raise ValueError(f"bad setting name {name[:30]!r}")
        if not after:
            raise ValueError(f'setting {name} has no value (write {name}="")')
        quote, after = after[0], after[1:]
        end = after.find(quote)
        if end < 0:
            raise ValueError(f"setting {name}: value not closed by {quote!r}")
        value = after[:end]
        if name in LIMIT_NAMES and not (value.isascii() and value.isdigit()):
            raise ValueError(f"setting {name}: {value[:20]!r} is not a number")
        env.append((name, value))
        rest = after[end + 1 :]
    return allow, tuple(env)


def _split_rule(line: str) -> tuple[str, str]:
    """(address, instructions): the colon is the first one before allow/deny."""
    match = _INSTRUCTION_RE.search(line)
    if match is None:
        raise ValueError("no ':allow' or ':deny'")
    return line[: match.start()], line[match.start() + 1 :]


def _expand_cidr(address: str) -> list[str]:
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        raise ValueError(f"bad network {address!r}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError("CIDR is supported for IPv4 only; write an IPv6 prefix ending with ':'")
    if net.prefixlen == 0:
        return [""]
    octets = (net.prefixlen + 7) // 8
    count = 1 << (octets * 8 - net.prefixlen)
    if count > MAX_EXPANSION:
        raise ValueError(f"{address} expands to {count} rules (at most {MAX_EXPANSION})")
    base = int(net.network_address) >> (32 - octets * 8)
    keys = []
    for i in range(count):
        value = base + i
        parts = [str((value >> (8 * (octets - 1 - j))) & 255) for j in range(octets)]
        keys.append(".".join(parts) + ("" if octets == 4 else "."))
    return keys


def _expand_range(address: str) -> list[str]:
    """tcprules' `1.2.3.37-53`: a range in the component holding the dash."""
    dash = address.index("-")
    left = address.rfind(".", 0, dash) + 1
    right = address.find(".", dash)
    right = len(address) if right < 0 else right
    low, high = address[left:dash], address[dash + 1 : right]
    if not (low.isascii() and low.isdigit() and high.isascii() and high.isdigit()):
        raise ValueError(f"bad range {address!r}")
    bottom, top = int(low), min(int(high), 255)
    if bottom > top:
        raise ValueError(f"empty range {address!r}")
    return [f"{address[:left]}{n}{address[right:]}" for n in range(bottom, top + 1)]


def expand_address(address: str) -> list[str]:
    """The keys one rule address stands for (ranges and CIDR expanded); ValueError."""
    if _ADDRESS_CHARS_RE.match(address) is None:
        raise ValueError(f"bad address {address[:40]!r}")
    if "=" in address or "@" in address:
        return [address.lower()]
    if "/" in address:
        return _expand_cidr(address)
    if "-" in address:
        return _expand_range(address)
    return [address.lower()]


def parse_tcprules(data: bytes | str, *, file: str) -> ParsedMap:
    """A tcprules file: entries by (expanded) address, value the instructions."""
    entries: dict[str, MapEntry] = {}
    problems: list[str] = []
    for number, text, _raw in split_lines(data):
        where = f"{file}:{number}"
        if text is None:
            problems.append(f"{where}: not valid UTF-8; line skipped")
            continue
        line = text.strip(" \t")
        if not line or line.startswith("#"):
            continue
        try:
            address, instructions = _split_rule(line)
            parse_instructions(instructions)
            keys = expand_address(address)
        except ValueError as e:
            problems.append(f"{where}: {e}; line skipped")
            continue
        if "@" in address:
            problems.append(f"{where}: {address}: ident rules (user@) never match here")
        for key in keys:
            previous = entries.get(key)
            if previous is not None:
                problems.append(
                    f"{where}: {key or '(default)'}: duplicate address; "
                    f"the rule at line {previous.line} is used"
                )
                continue
            entries[key] = MapEntry(key=key, value=instructions, file=file, line=number)
    return ParsedMap(entries=entries, problems=tuple(problems))


def _parse_file(data: bytes, file: str) -> ParsedMap:
    return parse_tcprules(data, file=file)


def candidate_keys(ip: str, hostname: str | None = None) -> list[str]:
    """The addresses tcpserver tries for a client, in its order (tcprules(1))."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        addr = None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    text = addr.compressed if addr is not None else ip.lower()
    sep = ":" if isinstance(addr, ipaddress.IPv6Address) else "."
    host = hostname.rstrip(".").lower() if hostname else ""
    keys = [text]
    if host:
        keys.append(f"={host}")
    end = len(text)
    while (end := text.rfind(sep, 0, end)) >= 0:
        keys.append(text[: end + 1])  # prefixes ending with the separator, longest first
    if host:
        dot = host.find(".")
        while dot >= 0:
            keys.append(f"={host[dot:]}")
            dot = host.find(".", dot + 1)
        keys.append("=")
    keys.append("")
    return list(dict.fromkeys(keys))


class TcpRules:
    """Per-client rules over a Map of address -> instructions (see the module doc)."""

    def __init__(self, rules: Map) -> None:
        self._map = rules

    @classmethod
    def open(cls, path: str, *, safe_files: bool = True, log: bool = True) -> TcpRules:
        """The rules in `path` (missing: no rules), re-read by reload_if_changed()."""
        rules = TextMap(
            "tcprules", path, safe_files=safe_files, parse=_parse_file, what="tcprules", log=log
        )
        return cls(rules)

    @classmethod
    def from_text(cls, text: str, *, file: str = "tcprules") -> TcpRules:
        """Rules held in memory (tests, built-in defaults)."""
        return cls(_MemoryRules(parse_tcprules(text, file=file)))

    @property
    def map(self) -> Map:
        return self._map

    def problems(self) -> list[str]:
        return self._map.problems()

    def reload_if_changed(self) -> bool:
        return self._map.reload_if_changed()

    def __len__(self) -> int:
        return len(self._map)

    def match(self, ip: str, hostname: str | None = None) -> Rule:
        """The rule for a client (hostname: its confirmed name, or None)."""
        if not len(self._map):
            return DEFAULT_RULE
        for key in candidate_keys(ip, hostname):
            entry = self._map.lookup(key)
            if entry is None:
                continue
            try:
                allow, env = parse_instructions(entry.value)
            except ValueError:
                continue  # a compiled map holding a line the parser would skip
            return Rule(address=key, allow=allow, env=env, file=entry.file, line=entry.line)
        return DEFAULT_RULE


class _MemoryRules:
    """A parsed rules file held in memory."""

    def __init__(self, parsed: ParsedMap) -> None:
        self._entries: Mapping[str, MapEntry] = parsed.entries
        self._problems = list(parsed.problems)

    @property
    def name(self) -> str:
        return "tcprules"

    def lookup(self, key: str) -> MapEntry | None:
        return self._entries.get(key.lower())

    def problems(self) -> list[str]:
        return list(self._problems)

    def reload_if_changed(self) -> bool:
        return False

    def __len__(self) -> int:
        return len(self._entries)


__all__ = [
    "DEFAULT_RULE",
    "LIMIT_NAMES",
    "Rule",
    "TcpRules",
    "candidate_keys",
    "expand_address",
    "parse_instructions",
    "parse_tcprules",
]
