"""aliases — sendmail's aliases(5) as routing uses it: keys, target kinds, list owners.

Description:
    The aliases map (maps/aliases.py reads the file) is keyed by local
    names, folded to lower case (sendmail folds alias keys). For a local
    part `user+detail` the keys are tried in sendmail's order (cf/m4/
    proto.m4, ruleset 5 "deal with plussed users so aliases work nicely"):

        user+detail     the whole local part
        user+*          any detail of user
        user            the user itself (the detail is dropped)

    with the configured recipient delimiter in place of "+", and, when a
    local part holds several delimiters, each division (routing/users.py
    `splits`, the longest user first). A quoted local part is never
    aliased (sendmail recipient.c: `if (!quoted ...) alias(...)`).

    One right-hand side is a list of targets (maps.aliases.parse_targets
    splits it); `classify` names the kind of each, as sendmail's ruleset
    0 does for the prog, file and include mailers:

        "|command" or |command     a program (sendmail's prog mailer)
        /path                      a file, appended to
        :include:/path             more targets, read from a file
        \\user                     the local user itself: no aliasing, no
                                   .forward (sendmail: a quoted name)
        anything else              an address (local name or user@domain)

    A list may have an owner: after expanding LIST, sendmail looks up
    `owner-LIST` and makes it the envelope sender of the expansion, so
    that bounces go to the list's keeper (alias.c: "Look for owner of
    alias"); an owner value holding any of `,:/|"` is replaced by the
    address owner-LIST itself.

    The helpers routing needs from maps/ (the aliases grammar, :include:
    files, sendmail's safe-file checks) are gathered in `MapTools`, filled
    from maps/aliases.py and maps/safefile.py on first use, or given by
    tests.

    `parse_address` reads one address of a target list (or the RCPT
    address) into an `Addr`: angle brackets and a source route
    (`@a,@b:user@domain`, RFC 5321 §3.6.1 and Appendix C) are dropped, the
    domain is lower-cased without its trailing dot (RFC 5321 §2.4), the
    local part is kept as written — quoted or not, `%` and `!` included
    (never routed). A name without a domain is a local name; it keeps the
    domain of the address it was expanded from, for user lookups.

Security:
    Program and file targets from the aliases file run as
    `[delivery] default_user` (sendmail's DefaultUser), never root:
    routing/resolve.py refuses them when that user has uid 0.

Config:
    [routing] recipient_delimiter.

See also:
    aliases(5), sendmail alias.c and recipient.c, cf/README (FEATURES),
    maps/aliases.py, routing/resolve.py.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from postoffice.maps.interfaces import Map, MapEntry
from postoffice.routing.users import is_quoted, splits

Kind = Literal["address", "program", "file", "include", "direct"]

# A list owner value with any of these is not an address: use owner-LIST (alias.c).
_NOT_AN_OWNER = frozenset(',:/|"')
_DOMAIN = re.compile(r"(?:\[[^\[\]\\\s]+\]|[^\s@<>()\[\],;:\\\"]+)\Z")
_BAD_LOCAL = re.compile(r"[\x00-\x20\x7f<>(),;:\\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class MapTools:
    """What routing uses from maps/: the aliases grammar and safe-file checks.

    parse_targets(value) -> list[str]: one right-hand side into targets.
    read_include(path, *, safe_files) -> (targets, problems): an :include: file.
    check_file(path, allowed_uids=...) -> problem or None: sendmail's safefile.
    """

    parse_targets: Callable[[str], list[str]]
    read_include: Callable[..., tuple[list[str], list[str]]]
    check_file: Callable[..., str | None]


def default_tools() -> MapTools:
    """The real helpers from maps/ (imported when first needed)."""
    aliases: Any = importlib.import_module("postoffice.maps.aliases")
    safefile: Any = importlib.import_module("postoffice.maps.safefile")
    return MapTools(
        parse_targets=aliases.parse_targets,
        read_include=aliases.read_include,
        check_file=safefile.check_file,
    )


def alias_keys(local: str, delimiter: str) -> list[str]:
    """The keys to try for `local`, in sendmail's order (see the manual above)."""
    key = local.lower()
    keys = [key]
    for user, _detail in splits(key, delimiter):
        keys.append(f"{user}{delimiter}*")
        keys.append(user)
    return keys


def lookup(aliases: Map, local: str, delimiter: str) -> MapEntry | None:
    """The alias entry for the local name `local`, or None (quoted names: None)."""
    if not local or is_quoted(local):
        return None
    entry = aliases.lookup(local.lower())
    if entry is not None or not delimiter or delimiter not in local:
        return entry
    for key in alias_keys(local, delimiter)[1:]:
        entry = aliases.lookup(key)
        if entry is not None:
            return entry
    return None


def owner(aliases: Map, key: str, domain: str) -> tuple[str, MapEntry] | None:
    """(envelope sender, entry) from `owner-KEY`, or None when the list has no owner."""
    if key.startswith("owner-"):
        return None
    entry = aliases.lookup(f"owner-{key}")
    if entry is None:
        return None
    value = entry.value.strip()
    if not value or any(c in _NOT_AN_OWNER for c in value) or any(c.isspace() for c in value):
        value = f"owner-{key}"
    if "@" not in value:
        value = f"{value}@{domain}" if domain else value
    return value, entry


def _unquote_whole(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if inner[:1] in ("|", "/") or inner[:9].lower() == ":include:":
            return inner.replace('\\"', '"')
    return text


def classify(target: str) -> tuple[Kind, str]:
    """(kind, value) of one target of an aliases or .forward list (see the manual)."""
    text = _unquote_whole(target.strip())
    if text.startswith("|"):
        return "program", text[1:].strip()
    if text.startswith("/"):
        return "file", text
    if text[:9].lower() == ":include:":
        return "include", text[9:].strip()
    if text.startswith("\\"):
        return "direct", text[1:].strip()
    return "address", text


@dataclass(frozen=True, slots=True)
class Addr:
    """An address during resolution: `qualified` False for a bare local name
    (its domain is then the one it came from, for user lookups)."""

    local: str
    domain: str
    qualified: bool
    direct: bool = False  # "\user": no aliases, no .forward/.qmail

    @property
    def text(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def key(self) -> tuple[str, str, bool, bool]:
        local = self.local if is_quoted(self.local) else self.local.lower()
        return (local, self.domain, self.qualified, self.direct)


def parse_address(text: str, default_domain: str) -> Addr | None:
    """An address from a map or file (or RCPT), normalised; None when it is not one."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text.startswith("@"):  # a source route: RFC 5321 §3.6.1, Appendix C
        colon = text.find(":")
        if colon < 0:
            return None
        text = text[colon + 1 :]
    if not text or _CONTROL.search(text):
        return None
    if text.startswith('"'):
        end, i = -1, 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == '"':
                end = i
                break
            i += 1
        if end < 0:
            return None
        local, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith("@"):
            return None
        domain = rest[1:]
        qualified = bool(rest)
    else:
        local, at, domain = text.rpartition("@")
        if not at:
            local, domain, qualified = text, "", False
        else:
            qualified = True
        if not local or _BAD_LOCAL.search(local) or '"' in local:
            return None
    if qualified:
        domain = domain.lower().removesuffix(".")
        if not domain or not _DOMAIN.match(domain) or domain.startswith("."):
            return None
        return Addr(local, domain, True)
    return Addr(local, default_domain, False)
