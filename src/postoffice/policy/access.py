"""policy/access — sendmail's access database: who may connect, send, receive and relay.

Description:
    The `access` map (config_dir/access, sendmail's /etc/mail/access) holds
    one entry per line, a key and a value, in makemap's text format (or its
    compiled `.db`, maps/registry.py):

        # key                          value
        Connect:localhost              RELAY
        127.0.0.1                      RELAY
        192.168.0                      RELAY
        IPv6:2001:db8                  REJECT
        Connect:[192.0.2.7]            OK
        qq.com                         DISCARD
        From:spammer@example.com       REJECT
        From:FREE.STEALTH.MAILER@      ERROR:550 Spam not accepted
        To:friend.example              RELAY
        To:badlocaluser@               ERROR:5.2.1:550 Mailbox disabled for badlocaluser
        From:cyberspammer.com          ERROR:"550 We don't accept mail from spammers"

    Keys (sendmail cf/README, "ANTI-SPAM CONFIGURATION CONTROL"):
      - an IPv4 address or network, leftmost octets: `192.168.0.1`,
        `192.168.0`, `192.168`, `192`;
      - an IPv6 address or network, prefixed `IPv6:`: `IPv6:2001:db8::1`,
        `IPv6:2001:db8` (leftmost groups; written without leading zeros as
        sendmail prints them, or zero-padded: both are tried);
      - a host or domain name, matching the host and every host below it:
        `example.com` matches `mx.example.com` and `a.b.example.com`;
      - `[192.0.2.7]` / `[IPv6:2001:db8::7]`: the "name" of a client whose
        address has no confirmed name (sendmail's ${client_name} is then the
        bracketed address), networks as for plain addresses: `[192.0.2]`;
      - `user@domain` (a full address; `user+detail@domain` is tried as
        written, then as `user+*@domain`, then as `user@domain`), `user@`
        (a local part in any domain, the `@` is required), `domain`.
    Tags say where a key applies: `Connect:` the client's address and name,
    `From:` the envelope sender, `To:` the envelope recipient. Every lookup
    tries the tagged key first, then the untagged one (cf/README: "it will
    be tried first with the corresponding tag in front, then (as fallback
    to enable backward compatibility) without any tag"), so an untagged key
    applies everywhere. Keys are looked up in lower case (makemap folds
    keys; the maps keep them folded).

    Values (cf/README, "The value part of the map can contain"), case
    insensitive keywords:
        OK        accept, even where another check would refuse (e.g. an
                  unresolvable sender domain); not a permission to relay.
        RELAY     accept and allow relaying (Connect: the client may relay;
                  To: mail to that domain is relayed); an implicit OK.
        REJECT    refuse: 550 5.7.1 "Access denied" (for a blocked
                  recipient 550 5.2.1 "Mailbox disabled for this recipient",
                  sendmail's confRCPTREJ_MSG).
        DISCARD   accept and silently drop the whole message (seed 002: the
                  client sees success; the mail log records the discard).
        SKIP      stop this search without a result: the default applies
                  (`Connect:128.32 RELAY` + `Connect:128.32.2 SKIP` relays
                  for 128.32 except 128.32.2).
        ERROR:D.S.N:### text, ERROR:D.S.N:"### text", ERROR:### text,
        ERROR:"### text", and the deprecated "### text" / ### text
                  refuse with that reply: a 4xx code defers, a 5xx refuses.
                  Without D.S.N the enhanced code is X.0.0 of the reply's
                  class (sendmail used 5.0.0 even for 4xx, which cf/README
                  itself warns is wrong).
    QUARANTINE:text is recognised and ignored (no quarantine here yet); any
    other value is a broken entry: it refuses (fail closed, as sendmail
    turns an unknown value into an error reply) and problems() says why.

    Precedence: the most specific entry wins, as sendmail's rulesets search
    (cf/m4/proto.m4 LookUpDomain "D", LookUpAddress "A", LookUpFull "F",
    LookUpUser "U", SearchList):
      - Connect: the client's name first (the confirmed host name, else
        `[ip]`), the host itself then each parent domain (longest first);
        then, when the name found nothing or SKIP, the address itself then
        ever shorter networks (Basic_check_relay: ${client_name} before
        ${client_addr}).
      - From: `user@domain` (with the +detail variants), then `user@`, then
        the domain and its parents (Basic_check_mail: <F:...> <U:...>
        <D:...>). Note: `user@` comes before the domain, as sendmail
        searches, so `From:postmaster@ OK` beats `From:spam.example REJECT`.
      - To: `user@domain`, then `user@` only for local domains, then the
        domain and its parents (Rcpt_ok with blocklist_recipients).
      - At every step the tagged key before the untagged one.

    API:
        AccessMap(map, *, detail_delimiter="+")
            check_connect(ip, hostname=None) -> AccessResult | None
                name (or "[ip]" when hostname is None) then address.
            check_connect_ip(ip), check_connect_host(name)
            check_from(sender) -> AccessResult | None   (None for <>)
            check_to(recipient, *, local=False) -> AccessResult | None
            check_relay_to(domain) -> AccessResult | None
                the To: lookup of the relay decision (domain and parents).
            problems(): the map's broken lines and every entry whose value is
                broken (for `postoffice config check`).
        AccessResult(action, reply, key, entry): what matched, where
            (`result.where` is the entry's file:line), `describe()` for logs.
        parse_value(text) -> AccessValue: one right-hand side (pure).
        ip_keys(ip), domain_keys(domain), bracket_keys(ip): the candidate
            keys, most specific first (pure).

Security:
    Every input is the client's (address, name, envelope addresses). The
    name is used only when it was confirmed by a forward lookup (the engine
    passes None otherwise), so a client that controls its reverse zone
    cannot claim a RELAY host name. Keys are built, never parsed from the
    client as patterns; a lookup is a dictionary or SQLite query.

Config:
    [maps] access (the file), safe_files.

See also:
    sendmail cf/README "ANTI-SPAM CONFIGURATION CONTROL" and cf/m4/proto.m4;
    policy/engine.py (where each check is used), maps/registry.py,
    RFC 3463 (enhanced status codes), seed 002 (the access examples).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from postoffice.maps.interfaces import Map, MapEntry
from postoffice.smtp.replies import Reply

# cf/m4/proto.m4: REJECT in check_relay/check_mail -> "550 5.7.1 Access denied".
ACCESS_DENIED: Final = Reply(code=550, enhanced="5.7.1", text="Access denied")
# cf/m4/proto.m4 confRCPTREJ_MSG (blocklist_recipients REJECT): 550 5.2.1.
MAILBOX_DISABLED: Final = Reply(
    code=550, enhanced="5.2.1", text="Mailbox disabled for this recipient"
)

TAG_CONNECT: Final = "connect"
TAG_FROM: Final = "from"
TAG_TO: Final = "to"


class Action(enum.Enum):
    """What an access entry says."""

    OK = "OK"
    RELAY = "RELAY"
    REJECT = "REJECT"
    DISCARD = "DISCARD"
    SKIP = "SKIP"
    ERROR = "ERROR"
    IGNORED = "IGNORED"  # QUARANTINE:, not supported: as if there were no entry


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessValue:
    """A parsed right-hand side; `problem` says what was wrong with a broken one."""

    action: Action
    reply: Reply | None = None
    problem: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessResult:
    """The entry that decided a check: its action and reply, the key and the line."""

    action: Action
    reply: Reply | None
    key: str
    entry: MapEntry
    problem: str = ""

    @property
    def where(self) -> str:
        return self.entry.where

    @property
    def accepts(self) -> bool:
        """OK or RELAY."""
        return self.action in (Action.OK, Action.RELAY)

    @property
    def refuses(self) -> bool:
        """REJECT or ERROR (a reply to send instead of accepting)."""
        return self.action in (Action.REJECT, Action.ERROR)

    def describe(self) -> str:
        """ "access connect:192.168.0 RELAY (/etc/postoffice/access:3)" for the log."""
        return f"access {self.key} {self.entry.value} ({self.where})"


# --- values -----------------------------------------------------------------------

_KEYWORDS: Final = {a.value: a for a in (Action.OK, Action.RELAY, Action.REJECT, Action.DISCARD)}
# RFC 3463 §2: class "." subject "." detail; subject and detail 1-3 digits.
_DSN_RE: Final = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3}):(.*)\Z", re.DOTALL)
_CODE_RE: Final = re.compile(r"([2-5]\d\d)(?:[ \t-](.*))?\Z", re.DOTALL)


def parse_value(text: str) -> AccessValue:
    """One access right-hand side (see the module doc); never raises."""
    value = text.strip()
    upper = value.upper()
    action = _KEYWORDS.get(upper)
    if action is not None:
        return AccessValue(action=action)
    if upper == "SKIP":
        return AccessValue(action=Action.SKIP)
    if upper.startswith("QUARANTINE:"):
        return AccessValue(
            action=Action.IGNORED, problem="QUARANTINE is not supported; entry ignored"
        )
    if upper.startswith("ERROR:"):
        return _error_value(value[6:], value)
    if value[:1] == '"' or value[:1].isdigit():  # deprecated "### text"
        return _error_value(value, value)
    return AccessValue(
        action=Action.REJECT,
        reply=ACCESS_DENIED,
        problem=f"unknown value {value[:60]!r} (expected OK, RELAY, REJECT, DISCARD, SKIP "
        "or ERROR:...); refusing",
    )


def _error_value(rest: str, whole: str) -> AccessValue:
    enhanced = ""
    dsn = _DSN_RE.match(rest)
    if dsn is not None:
        enhanced = f"{dsn.group(1)}.{int(dsn.group(2))}.{int(dsn.group(3))}"
        rest = dsn.group(4)
    rest = rest.strip()
    if len(rest) >= 2 and rest[0] == '"' and rest[-1] == '"':
        rest = rest[1:-1].strip()
    code = _CODE_RE.match(rest)
    if code is None or code.group(1)[0] not in "45":
        return AccessValue(
            action=Action.REJECT,
            reply=ACCESS_DENIED,
            problem=f"bad error value {whole[:60]!r} (expected ERROR:[D.S.N:]4xx/5xx text); "
            "refusing",
        )
    number = int(code.group(1))
    klass = code.group(1)[0]
    problem = ""
    if enhanced and enhanced[0] != klass:
        problem = f"status {enhanced} does not match reply code {number}; using class {klass}"
        enhanced = klass + enhanced[1:]
    text = " ".join((code.group(2) or "").split()) or ACCESS_DENIED.text
    reply = Reply(code=number, enhanced=enhanced or f"{klass}.0.0", text=text)
    return AccessValue(action=Action.ERROR, reply=reply, problem=problem)


# --- candidate keys ---------------------------------------------------------------


def _ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _unique(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def ip_keys(ip: str) -> list[str]:
    """Access keys for a client address, most specific first: `192.0.2.1`,
    `192.0.2`, `192.0`, `192`; `IPv6:2001:db8::1`, then the leftmost 8..1
    groups without and with leading zeros. [] for a non-address."""
    addr = _ip(ip)
    if addr is None:
        return []
    if isinstance(addr, ipaddress.IPv4Address):
        octets = str(addr).split(".")
        return [".".join(octets[:n]) for n in range(4, 0, -1)]
    full = addr.exploded.split(":")  # 8 groups of 4 hex digits
    short = [g.lstrip("0") or "0" for g in full]
    keys = [f"IPv6:{addr.compressed}"]
    for n in range(8, 0, -1):
        keys.append("IPv6:" + ":".join(short[:n]))
        keys.append("IPv6:" + ":".join(full[:n]))
    return _unique(keys)


def bracket_keys(ip: str) -> list[str]:
    """The `[ip]` client names, most specific first: `[192.0.2.1]`, `[192.0.2]` ..."""
    return [f"[{key}]" for key in ip_keys(ip)]


def domain_keys(domain: str) -> list[str]:
    """A host or domain and its parents: `a.b.example` `b.example` `example`."""
    domain = domain.strip().rstrip(".").lower()
    if not domain:
        return []
    if domain.startswith("["):  # an address literal: its bracketed networks
        return bracket_keys(domain[1:-1].removeprefix("IPv6:").removeprefix("ipv6:"))
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels)) if labels[i]]


def _detail_forms(local: str, delimiter: str) -> list[str]:
    """`user+detail`, `user+*`, `user` (proto.m4 F and U); `user` alone without detail."""
    if delimiter and delimiter in local and not local.startswith('"'):
        user = local.split(delimiter, 1)[0]
        if user:
            return [local, f"{user}{delimiter}*", user]
    return [local]


def split_address(address: str) -> tuple[str, str]:
    """(local part, domain) at the last `@` (right for quoted local parts);
    the domain lower-cased without its trailing dot."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.rstrip(".").lower()


# --- the map ----------------------------------------------------------------------


class _Skip:
    """A SKIP entry was found: end this search without a result."""


_SKIPPED: Final = _Skip()


class AccessMap:
    """sendmail's access database over any Map (see the module doc)."""

    def __init__(self, map: Map, *, detail_delimiter: str = "+") -> None:
        self._map = map
        self._delimiter = detail_delimiter

    @property
    def map(self) -> Map:
        return self._map

    def problems(self) -> list[str]:
        """The map's broken lines, and entries whose value is broken or ignored."""
        found = self._map.problems()
        entries = getattr(self._map, "entries", None)
        if callable(entries):
            for entry in entries():
                if isinstance(entry, MapEntry):
                    problem = parse_value(entry.value).problem
                    if problem:
                        found.append(f"{entry.where}: {entry.key}: {problem}")
        return found

    def reload_if_changed(self) -> bool:
        return self._map.reload_if_changed()

    def __len__(self) -> int:
        return len(self._map)

    # -- the searches ------------------------------------------------------------

    def _search(self, tag: str, keys: Iterable[str]) -> AccessResult | _Skip | None:
        """The first entry among `keys`, each tried as `tag:key` then `key`."""
        if not len(self._map):
            return None
        for key in keys:
            for candidate in (f"{tag}:{key}", key):
                folded = candidate.lower()
                entry = self._map.lookup(folded)
                if entry is None:
                    continue
                value = parse_value(entry.value)
                if value.action is Action.SKIP:
                    return _SKIPPED
                if value.action is Action.IGNORED:
                    continue
                reply = value.reply
                if value.action is Action.REJECT and reply is None:
                    reply = ACCESS_DENIED
                return AccessResult(
                    action=value.action,
                    reply=reply,
                    key=folded,
                    entry=entry,
                    problem=value.problem,
                )
        return None

    def _first(self, tag: str, *searches: Iterable[str]) -> AccessResult | None:
        for keys in searches:
            found = self._search(tag, keys)
            if isinstance(found, _Skip):
                return None
            if found is not None:
                return found
        return None

    def check_connect_host(self, name: str) -> AccessResult | None:
        """`Connect:` entries for a client name (a host name or `[ip]`)."""
        found = self._search(TAG_CONNECT, domain_keys(name))
        return None if isinstance(found, _Skip) else found

    def check_connect_ip(self, ip: str) -> AccessResult | None:
        """`Connect:` entries for a client address and its networks."""
        found = self._search(TAG_CONNECT, ip_keys(ip))
        return None if isinstance(found, _Skip) else found

    def check_connect(self, ip: str, hostname: str | None = None) -> AccessResult | None:
        """The client: its confirmed name (else `[ip]`) first, then its address."""
        found = self.check_connect_host(hostname or f"[{ip}]")
        return found if found is not None else self.check_connect_ip(ip)

    def _address_searches(self, address: str, *, with_user: bool) -> list[list[str]]:
        local, domain = split_address(address)
        searches: list[list[str]] = []
        if domain:
            searches.append([f"{form}@{domain}" for form in _detail_forms(local, self._delimiter)])
        if with_user or not domain:
            searches.append([f"{form}@" for form in _detail_forms(local, self._delimiter)])
        if domain:
            searches.append(domain_keys(domain))
        return searches

    def check_from(self, sender: str) -> AccessResult | None:
        """`From:` entries: user@domain, user@, then domain and parents; None for <>."""
        if not sender:
            return None
        return self._first(TAG_FROM, *self._address_searches(sender, with_user=True))

    def check_to(self, recipient: str, *, local: bool = False) -> AccessResult | None:
        """`To:` entries for blocklist_recipients: user@domain, user@ (local
        domains only), then domain and parents."""
        if not recipient:
            return None
        return self._first(TAG_TO, *self._address_searches(recipient, with_user=local))

    def check_relay_to(self, domain: str) -> AccessResult | None:
        """`To:` entries for a recipient domain and its parents (relaying to it)."""
        return self._first(TAG_TO, domain_keys(domain))


__all__ = [
    "ACCESS_DENIED",
    "MAILBOX_DISABLED",
    "AccessMap",
    "AccessResult",
    "AccessValue",
    "Action",
    "bracket_keys",
    "domain_keys",
    "ip_keys",
    "parse_value",
    "split_address",
]
