"""policy/sender_login — which MAIL FROM addresses an authenticated login may use.

Description:
    With `[auth] sender_login_binding` on, a client that authenticated as
    LOGIN may give MAIL FROM:<S> only when S belongs to LOGIN. S belongs
    to LOGIN when the first of these that holds says so:

      1. S is LOGIN itself (an address login, compared without regard to
         case), or S is LOGIN with a +detail (`alice+lists@example.org`
         for `alice@example.org`; [routing] recipient_delimiter);
      2. the sender login map (`[auth] sender_login_map`) lists LOGIN as an
         owner of S: Postfix's smtpd_sender_login_maps format, one entry
         a line, the sender address, then the logins that own it,
         separated by commas and/or white space:

             # sender            logins that may use it
             info@example.org    alice@example.org, bob@example.org
             sales@example.org   carol@example.org
             @example.net        admin@example.org       # any address there
             root                alice@example.org       # root@ a local domain

         Lookup order, first entry found decides: `user+detail@domain`,
         `user@domain`, `user` (only when the domain is a local domain),
         `@domain`. Keys are matched without regard to case (the map's
         keys are folded, as makemap does); logins as written, then
         without regard to case. The file may be compiled with
         `postoffice makemap` like the other maps and is re-read when it
         changes;
      3. S routes to LOGIN's mailbox alone: S is in a local domain and
         routing (routing/resolve.py: virtusertable, aliases, users)
         delivers it to LOGIN's mailbox and nowhere else — an alias
         `info: alice` or a virtusertable line `info@example.org alice`
         makes info@example.org alice's to send from. A list that reaches
         several people (`team: alice, bob`), a program, a file or a
         remote address belongs to nobody this way: name its senders in
         the map. A system account login (`bob`, from /etc/shadow) owns
         the mailboxes routing gives to system user bob.

    The null reverse-path `<>` is always allowed (RFC 5321 §4.5.5; RFC
    8098 MDNs and vacation replies use it). An address that belongs to
    nobody is refused at MAIL with

        553 5.7.1 <S>... Sender address not owned by user LOGIN

    (Postfix's reject_sender_login_mismatch answers 553 5.7.1 as well).

    API:
        logins = SenderLogins(login_map=Map, resolve=Router.resolve,
                              local_domains=..., recipient_delimiter="+")
        logins.owner(login, sender) -> str   why S belongs to LOGIN, "" if not
        logins.reload_if_changed(); logins.problems()
        parse_logins(value) -> tuple[str, ...]  a map value's logins

Security:
    The sender address is the client's: it selects map keys and a routing
    lookup (the same lookup any RCPT TO may cause), nothing else. Routing
    ownership requires every target to be the login's own mailbox, so an
    address that also reaches others never becomes the login's.

Config:
    [auth] sender_login_binding, sender_login_map; local_domains,
    [routing] recipient_delimiter.

See also:
    Postfix postconf(5) smtpd_sender_login_maps, reject_sender_login_mismatch;
    RFC 4954 §5 (the authorization identity), RFC 6409 §6.1 (an MSA may
    check the sender); policy/engine.py (applies it at MAIL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from postoffice.maps.interfaces import Map, MapEntry
from postoffice.routing.targets import Mailbox, Resolution

_SEPARATORS = re.compile(r"[\s,]+")


def parse_logins(value: str) -> tuple[str, ...]:
    """The login names of one map value (separated by commas and/or white space)."""
    return tuple(word for word in _SEPARATORS.split(value.strip()) if word)


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.rstrip(".").lower()


class SenderLogins:
    """Which senders a login owns (see the module doc)."""

    def __init__(
        self,
        *,
        login_map: Map,
        resolve: Callable[[str], Resolution] | None,
        local_domains: Iterable[str],
        recipient_delimiter: str = "+",
    ) -> None:
        self.login_map = login_map
        self._resolve = resolve
        self._local = frozenset(d.lower().rstrip(".") for d in local_domains)
        self._delimiter = recipient_delimiter

    def owner(self, login: str, sender: str) -> str:
        """Why `sender` belongs to `login` (for the log), or "" when it does not."""
        if not sender:
            return "null sender"  # RFC 5321 §4.5.5
        local, domain = _split(sender)
        base = self._without_detail(local)
        if "@" in login:
            login_local, login_domain = _split(login)
            if domain == login_domain and base.lower() == login_local.lower():
                return "the login's own address"
        entry = self._map_entry(local, base, domain)
        if entry is not None:
            owners = parse_logins(entry.value)
            if login in owners or login.lower() in (o.lower() for o in owners):
                return f"{self.login_map.name} {entry.key} ({entry.where})"
        if domain in self._local and self._resolve is not None:
            resolution = self._resolve(sender)
            if self._mailbox_of(login, resolution):
                return "routes to the login's mailbox"
        return ""

    def _without_detail(self, local: str) -> str:
        d = self._delimiter
        if d and not local.startswith('"') and d in local:
            head = local.split(d, 1)[0]
            if head:
                return head
        return local

    def _map_entry(self, local: str, base: str, domain: str) -> MapEntry | None:
        """Postfix's order: user+detail@domain, user@domain, user (local), @domain."""
        keys: list[str] = []
        if domain:
            keys.append(f"{local}@{domain}")
            if base != local:
                keys.append(f"{base}@{domain}")
            if domain in self._local:
                keys.append(base)
            keys.append(f"@{domain}")
        else:
            keys += [local, base] if base != local else [local]
        for key in keys:
            entry = self.login_map.lookup(key.lower())
            if entry is not None:
                return entry
        return None

    @staticmethod
    def _mailbox_of(login: str, resolution: Resolution) -> bool:
        """Every target is `login`'s mailbox (a virtual user's address, a system user's name)."""
        targets = resolution.targets
        if not targets or resolution.refusal is not None:
            return False
        folded = login.lower()
        for target in targets:
            if not isinstance(target, Mailbox):
                return False
            if target.address.lower() != folded and not (target.user and target.user == login):
                return False
        return True

    def reload_if_changed(self) -> bool:
        return self.login_map.reload_if_changed()

    def problems(self) -> list[str]:
        return self.login_map.problems()


__all__ = ["SenderLogins", "parse_logins"]
