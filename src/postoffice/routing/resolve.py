"""resolve — one recipient → delivery targets, with a trace of every map and file consulted.

Description:
    `Router.resolve(address)` follows sendmail's order (ruleset 0, then
    recipient(), alias(), forward(); seed 002) and qmail's per-user files
    (seed 004). It never delivers and never touches the queue; it reads
    the maps it was given and, for system users, their home directories.

    1. Normalise: angle brackets and a source route (`@a,@b:`) are
       dropped (RFC 5321 §3.6.1, Appendix C), the domain is folded to lower
       case and loses a trailing dot (RFC 5321 §2.4); the local part is
       kept as written — quoted local parts stay quoted, and `%` and `!`
       are plain characters: the %-hack and UUCP bang paths are never
       routed (RFC 5321 §3.6.1 discourages them; relaying through them
       would make an open relay). A bare `postmaster` (RFC 5321 §4.1.1.3)
       is this host's postmaster.
    2. A qualified address in a local domain goes through the
       virtusertable (routing/virtual.py): an `error:` value refuses it,
       anything else is resolved again from step 2, like sendmail's
       `$>Recurse` — so the result is aliased when it is local and looked
       up in the virtusertable again when it is in a virtual domain ("sendmail
       does multiple lookups, so one line can reference another",
       sendmail 4th ed. FEATURE(virtusertable)). This is seed 002's
       precedence: an expansion that lands in a virtual domain is handled
       by the virtusertable and is not aliased by its local part while an
       entry matches. A value that maps an address to itself is delivered
       locally (sendmail's _VIRTUSER_STOP_ONE_LEVEL_RECURSION_) instead of
       looping.
    3. A local name is looked up in the aliases (routing/aliases.py):
       lists, `:include:` files, "|command" and /file targets (run as
       `[delivery] default_user`), remote addresses, `\\user`, and the
       list owner (`owner-LIST` becomes Resolution.envelope_sender when
       that list's expansion is the whole resolution). Missing
       `MAILER-DAEMON` and `postmaster` aliases are supplied (mailer-daemon
       → postmaster → root, or the postmaster mailbox when there is no
       root), logged once, as every sendmail aliases file is required to
       have them.
    4. A system user (`[delivery] system_users`) that no alias claimed
       follows ~/.qmail files (routing/dotqmail.py) or else ~/.forward
       (routing/forward.py); their programs and files run as the user.
    5. The mailbox (routing/users.py): a virtual user's from `[delivery]
       mailbox`, a system user's ~/Maildir/ or `[delivery]
       system_mailbox`; anyone else is refused: 550 5.1.1 "<addr>... User
       unknown" (sendmail's words, recipient.c).
    6. Any other domain: mailertable (routing/mailertable.py), then
       `[routing] smart_host`, then the domain's MX (RFC 5321 §5.1).

    Loops and floods. An address met again on its own expansion path is a
    loop (TraceStep "loop"). sendmail's self_reference() (recipient.c)
    decides what happens: walking up from that address towards the
    recipient, the first one that is a real user has it delivered to its
    mailbox, without aliases or .forward — so `dl: dl, lee` (seed 002)
    and a .forward naming its own user deliver to the mailbox. With no
    user on the path the branch is dropped with a logged error, and when
    nothing is left the recipient is refused with 554 5.4.6
    "aliasing/forwarding loop broken" (recipient.c testselfdestruct). An
    address already expanded elsewhere in the same resolution is a
    duplicate and expanded once (sendmail's "duplicate suppressed"), and
    equal targets are delivered once. Expansion is at most `max_depth`
    hops deep (20: sendmail's MaxAliasRecursion is 10 alias levels; here
    virtusertable and include hops count too) — deeper branches become
    554 5.4.6 "aliasing/forwarding loop broken (N aliases deep; M max)" —
    and yields at most `max_targets` targets (10,000) after at most
    MAX_VISITS addresses: beyond that the whole recipient is refused with
    554 5.4.6 and an error is logged. Every path is bounded; nothing
    recurses without a depth check.

Security:
    The address is the client's: it selects map keys and, for system
    users, file names inside their home directories (routing/users.py and
    routing/dotqmail.py check every name). Programs and files never run
    as root: a Program or File whose user is root (uid 0) is refused with
    550 5.7.1 and a logged error. Programs, files and :include:s can come
    only from the aliases file, :include: files, .forward and .qmail —
    never from the virtusertable or mailertable, whose values carry the
    client's %1 (sendmail: "Cannot mail directly to programs").

Config:
    local_domains, hostname; [maps] aliases, virtusertable, mailertable,
    safe_files; [routing] recipient_delimiter, smart_host, forward_files,
    dotqmail; [delivery] mailbox, system_users, system_mailbox,
    default_user.

See also:
    routing/targets.py, routing/virtual.py, routing/aliases.py,
    routing/forward.py, routing/dotqmail.py, routing/users.py,
    routing/mailertable.py; sendmail recipient.c, alias.c, cf/README;
    dot-qmail(5); RFC 5321 §2.4, §3.6.1, §4.1.1.3, §5.1.
"""

from __future__ import annotations

import importlib
import logging
import os
import pwd
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from postoffice.config.schema import Config
from postoffice.maps.interfaces import Map, MapEntry, MemoryMap
from postoffice.routing import aliases as alias_rules
from postoffice.routing import mailertable as mailertable_rules
from postoffice.routing import virtual as virtual_rules
from postoffice.routing.aliases import Addr, MapTools, default_tools, parse_address
from postoffice.routing.dotqmail import DotQmail, read_dotqmail
from postoffice.routing.forward import forward_paths, parse_forward, read_home_file
from postoffice.routing.targets import (
    File,
    Mailbox,
    Program,
    Refusal,
    Remote,
    Resolution,
    Target,
    TraceStep,
)
from postoffice.routing.users import (
    GetPwNam,
    PasswdEntry,
    UnsafeName,
    fill_mailbox,
    is_quoted,
    lookup_system,
    splits,
    system_mailbox,
    unquote,
)
from postoffice.smtp import replies
from postoffice.smtp.replies import Reply

log = logging.getLogger(__name__)

MAX_DEPTH = 20
MAX_TARGETS = 10_000
MAX_VISITS = 50_000  # addresses looked at in one resolution
MAX_TRACE = 20_000  # trace steps kept in one resolution
MAX_DETAIL = 1_000  # characters of one trace step's detail

USER_UNKNOWN = Reply(code=550, enhanced="5.1.1", text="User unknown")
LOOP_BROKEN = Reply(code=554, enhanced="5.4.6", text="aliasing/forwarding loop broken")
NOT_AS_ROOT = Reply(code=550, enhanced="5.7.1", text="Cannot run programs or write files as root")
NO_PROGRAMS = Reply(code=550, enhanced="5.7.1", text="Cannot mail directly to programs")
NO_FILES = Reply(code=550, enhanced="5.7.1", text="Cannot mail directly to files")
NO_INCLUDES = Reply(code=550, enhanced="5.7.1", text="Cannot mail directly to :include:s")
INCLUDE_UNREADABLE = Reply(code=550, enhanced="5.2.4", text="Cannot open mailing list")
UNSAFE_PATH = Reply(code=550, enhanced="5.7.1", text="Unsafe delivery path")
HOME_FILE_PROBLEM = Reply(code=451, enhanced="4.3.0", text="Mailbox configuration problem")

# Where program, file and :include: targets may come from (see Security).
_RUNNABLE_ORIGINS = frozenset({"aliases", "include", "forward"})


@dataclass(frozen=True, slots=True)
class _Ctx:
    """Where a target list came from, and who its programs and files run as."""

    origin: str  # recipient, virtusertable, aliases, include, forward, dotqmail, mailertable
    run_as: str = ""
    home: str = ""
    sole: bool = True  # every target of the resolution descends from here
    uid: int | None = None  # the .forward's user: may own its :include: files


class _Overflow(Exception):
    """The expansion grew past its limits; the recipient is refused."""


def _map_or_empty(maps: Mapping[str, Map], name: str) -> Map:
    found = maps.get(name)
    return found if found is not None else MemoryMap(name, {})


def _target_key(t: Target) -> tuple[str, ...]:
    if isinstance(t, Mailbox):
        return ("mailbox", t.spec)
    if isinstance(t, Program):
        return ("program", t.command, t.user)
    if isinstance(t, File):
        return ("file", t.path, t.user)
    if isinstance(t, Remote):
        return ("remote", t.address, t.nexthop)
    return ("refusal", t.address, str(t.reply.code))


class Router:
    """Resolves recipients (see the module manual). Pure given its maps."""

    def __init__(
        self,
        config: Config,
        *,
        user_exists: Callable[[str], bool],
        maps: Mapping[str, Map],
        getpwnam: GetPwNam = pwd.getpwnam,
        tools: MapTools | None = None,
        max_depth: int = MAX_DEPTH,
        max_targets: int = MAX_TARGETS,
    ) -> None:
        self.config = config
        # (an empty map is falsy: test for None, or a map that is empty now never reloads)
        self.aliases = _map_or_empty(maps, "aliases")
        self.virtusertable = _map_or_empty(maps, "virtusertable")
        self.mailertable = _map_or_empty(maps, "mailertable")
        self.user_exists = user_exists
        self.getpwnam = getpwnam
        self.max_depth = max_depth
        self.max_targets = max_targets
        self._tools = tools
        hostname = config.hostname.lower().removesuffix(".")
        domains = {d.lower().removesuffix(".") for d in config.local_domains}
        if hostname:
            domains.add(hostname)
        self._local = frozenset(domains)
        self.home_domain = hostname or (config.local_domains[0] if config.local_domains else "")
        self.home_domain = self.home_domain.lower().removesuffix(".") or "localhost"
        self.delimiter = config.routing.recipient_delimiter
        self._defaults_logged: set[str] = set()
        self._stats = {"resolved": 0, "refused": 0, "loops": 0, "overflows": 0}

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        user_exists: Callable[[str], bool],
        maps: Mapping[str, Map] | None = None,
        getpwnam: GetPwNam = pwd.getpwnam,
        tools: MapTools | None = None,
        max_depth: int = MAX_DEPTH,
        max_targets: int = MAX_TARGETS,
    ) -> Router:
        """A router for `config`; `maps` None opens [maps] aliases, virtusertable, mailertable."""
        if maps is None:
            registry: Any = importlib.import_module("postoffice.maps.registry")
            opened: dict[str, Map] = {}
            for name in ("aliases", "virtusertable", "mailertable"):
                path = getattr(config.maps, name)
                opened[name] = (
                    registry.open_map(
                        name, path, aliases=name == "aliases", safe_files=config.maps.safe_files
                    )
                    if path
                    else MemoryMap(name, {})
                )
            maps = opened
        return cls(
            config,
            user_exists=user_exists,
            maps=maps,
            getpwnam=getpwnam,
            tools=tools,
            max_depth=max_depth,
            max_targets=max_targets,
        )

    @property
    def tools(self) -> MapTools:
        if self._tools is None:
            self._tools = default_tools()
        return self._tools

    def is_local_domain(self, domain: str) -> bool:
        """True for this host's domains (and "" — a bare local name is local)."""
        d = domain.lower().removesuffix(".")
        return not d or d in self._local

    def reload_if_changed(self) -> bool:
        """Re-read every map that changed on disk; True when any did."""
        changed = False
        for m in (self.aliases, self.virtusertable, self.mailertable):
            changed = m.reload_if_changed() or changed
        return changed

    def statistics(self) -> dict[str, int]:
        return dict(self._stats)

    def resolve(self, address: str) -> Resolution:
        """The targets and trace for one recipient (see the module manual)."""
        self._stats["resolved"] += 1
        addr = parse_address(address, self.home_domain)
        if addr is None:
            self._stats["refused"] += 1
            reply = replies.BAD_RCPT_SYNTAX.with_text(
                f"{replies.echo(address)}... Bad recipient address syntax"
            )
            step = TraceStep(rule="normalise", detail=f"{address[:256]!r}: not an address")
            return Resolution(
                recipient=address, targets=(Refusal(address=address, reply=reply),), trace=(step,)
            )
        walk = _Walk(self)
        if not addr.qualified:  # RFC 5321 §4.1.1.3: a bare local part (postmaster) is ours
            walk.step("normalise", f"{address}: a local name of {addr.domain}")
        elif addr.text != address:
            walk.step("normalise", f"{address} -> {addr.text}")
        else:
            walk.step("normalise", address)
        recipient = addr.text if addr.qualified else address
        try:
            walk.expand(addr, 0, _Ctx("recipient"))
        except _Overflow as e:
            self._stats["overflows"] += 1
            self._stats["refused"] += 1
            log.error("routing: %s: %s", addr.text, e)
            reply = LOOP_BROKEN.with_text(f"{replies.echo(addr.text)}... {e}")
            walk.step("error", str(e))
            return Resolution(
                recipient=recipient,
                targets=(Refusal(address=addr.text, reply=reply),),
                trace=tuple(walk.trace),
            )
        targets = tuple(walk.targets.values())
        if walk.loops:
            self._stats["loops"] += 1
        if not targets:
            if walk.loops:
                reply = LOOP_BROKEN.with_text(
                    f"{replies.echo(addr.text)}... aliasing/forwarding loop broken"
                )
            else:
                reply = USER_UNKNOWN.with_text(
                    f"{replies.echo(addr.text)}... no valid recipients in expansion"
                )
            walk.step("error", reply.text)
            targets = (Refusal(address=addr.text, reply=reply),)
        if all(isinstance(t, Refusal) for t in targets):
            self._stats["refused"] += 1
        return Resolution(
            recipient=recipient,
            targets=targets,
            trace=tuple(walk.trace),
            envelope_sender=walk.envelope_sender,
        )

    def log_default_once(self, name: str, detail: str) -> None:
        if name not in self._defaults_logged:
            self._defaults_logged.add(name)
            log.warning("routing: no %s alias: %s", name, detail)


class _Walk:
    """The state of one resolution: targets so far, trace, expansion path."""

    def __init__(self, router: Router) -> None:
        self.r = router
        self.targets: dict[tuple[str, ...], Target] = {}
        self.trace: list[TraceStep] = []
        self.path: list[tuple[Any, ...]] = []
        self.path_nodes: list[Addr | None] = []  # None for :include: markers
        self.on_path: set[tuple[Any, ...]] = set()
        self.seen: set[tuple[Any, ...]] = set()
        self.visits = 0
        self.loops = 0
        self.envelope_sender: str | None = None
        self._pw: dict[str, PasswdEntry | None] = {}

    # --- bookkeeping ---------------------------------------------------------------

    def step(self, rule: str, detail: str, file: str = "", line: int = 0) -> None:
        if len(detail) > MAX_DETAIL:
            detail = f"{detail[:MAX_DETAIL]}... ({len(detail)} characters)"
        if len(self.trace) < MAX_TRACE:
            self.trace.append(TraceStep(rule=rule, detail=detail, file=file, line=line))
        elif len(self.trace) == MAX_TRACE:
            self.trace.append(TraceStep(rule="error", detail="trace truncated"))

    def map_step(self, rule: str, detail: str, entry: MapEntry) -> None:
        self.step(rule, detail, entry.file, entry.line)

    def add(self, target: Target) -> None:
        key = _target_key(target)
        if key in self.targets:
            return
        if len(self.targets) >= self.r.max_targets:
            raise _Overflow(f"expansion too large (more than {self.r.max_targets} targets)")
        self.targets[key] = target

    def refuse(self, address: str, reply: Reply, why: str) -> None:
        self.step("error", f"{address}: {why}")
        self.add(Refusal(address=address, reply=reply))

    def passwd(self, name: str) -> PasswdEntry | None:
        name = unquote(name).lower()
        if name not in self._pw:
            self._pw[name] = lookup_system(self.r.getpwnam, name)
        return self._pw[name]

    def push(self, key: tuple[Any, ...], node: Addr | None) -> None:
        self.path.append(key)
        self.path_nodes.append(node)
        self.on_path.add(key)
        self.seen.add(key)

    def pop(self) -> None:
        self.on_path.discard(self.path.pop())
        self.path_nodes.pop()

    # --- the walk ---------------------------------------------------------------------

    def expand(self, addr: Addr, depth: int, ctx: _Ctx) -> None:
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise _Overflow(f"expansion too large (more than {MAX_VISITS} addresses)")
        key = addr.key
        if key in self.on_path:
            self.loop(addr)
            return
        if key in self.seen:
            self.step("duplicate", f"{addr.text}: duplicate suppressed")
            return
        if depth > self.r.max_depth:
            self.too_deep(addr, depth)
            return
        self.push(key, addr)
        try:
            self.route(addr, depth, ctx)
        finally:
            self.pop()

    def too_deep(self, addr: Addr, depth: int) -> None:
        text = f"aliasing/forwarding loop broken ({depth} aliases deep; {self.r.max_depth} max)"
        log.error("routing: %s: %s", addr.text, text)
        self.refuse(addr.text, LOOP_BROKEN.with_text(text), text)

    def loop(self, addr: Addr) -> None:
        """sendmail's self_reference(): deliver to the first real user up the path."""
        self.loops += 1
        chain = [addr, *(n for n in reversed(self.path_nodes) if n is not None)]
        for node in chain:
            if node.qualified and not self.r.is_local_domain(node.domain):
                continue
            virtual = self.find_virtual(node)
            system = None if virtual is not None else self.find_system(node)
            if virtual is None and system is None:
                continue
            self.step("loop", f"{addr.text}: already on the expansion path: delivered to the "
                      f"mailbox of {node.text} (sendmail self_reference)")  # fmt: skip
            if virtual is not None:
                self.virtual_mailbox(node, *virtual)
            elif system is not None:
                self.system_mailbox(node, system[0], "loop")
            return
        self.step("loop", f"{addr.text}: aliasing/forwarding loop with no mailbox on it: dropped")
        log.error("routing: aliasing/forwarding loop at %s (path %s)", addr.text,
                  " -> ".join(n.text for n in self.path_nodes if n is not None))  # fmt: skip

    def route(self, addr: Addr, depth: int, ctx: _Ctx) -> None:
        if addr.qualified and not self.r.is_local_domain(addr.domain):
            self.route_remote(addr, depth, ctx)
            return
        if addr.qualified and not addr.direct:
            match = virtual_rules.lookup(
                self.r.virtusertable,
                addr.local,
                addr.domain,
                self.r.delimiter,
                default_error=USER_UNKNOWN,
            )
            if match is not None:
                self.virtual(addr, match, depth, ctx)
                return
        self.local_form(addr, depth, ctx)

    def local_form(self, addr: Addr, depth: int, ctx: _Ctx) -> None:
        """A qualified local address past the virtusertable is its local name: both
        forms stand on the path, so `dl: dl, lee` meets `dl` again at once."""
        if not addr.qualified:
            self.route_local(addr, depth, ctx)
            return
        local = replace(addr, qualified=False)
        key = local.key
        if key in self.on_path:
            self.loop(local)
            return
        if key in self.seen:
            self.step("duplicate", f"{addr.text}: duplicate suppressed")
            return
        self.push(key, local)
        try:
            self.route_local(local, depth, ctx)
        finally:
            self.pop()

    def virtual(self, addr: Addr, match: virtual_rules.VirtualMatch, depth: int, ctx: _Ctx) -> None:
        entry = match.entry
        if match.refusal is not None:
            self.map_step("virtusertable", f"{addr.text} -> {entry.value}", entry)
            self.add(Refusal(address=addr.text, reply=match.refusal))
            return
        targets = self.r.tools.parse_targets(match.value)
        self.map_step("virtusertable", f"{addr.text} ({match.key}) -> {match.value}", entry)
        if len(targets) == 1:
            child = parse_address(targets[0], addr.domain)
            if child is not None and child.key == addr.key:
                self.step("virtusertable", f"{addr.text}: maps to itself: delivered locally")
                self.local_form(addr, depth, ctx)
                return
        child_ctx = _Ctx("virtusertable", sole=ctx.sole and len(targets) == 1)
        self.expand_targets(targets, addr, depth, child_ctx)

    def route_local(self, addr: Addr, depth: int, ctx: _Ctx) -> None:
        if not addr.direct:
            entry = alias_rules.lookup(self.r.aliases, addr.local, self.r.delimiter)
            if entry is not None:
                self.alias(addr, entry, depth, ctx)
                return
        self.deliver_user(addr, depth, ctx)

    def alias(self, addr: Addr, entry: MapEntry, depth: int, ctx: _Ctx) -> None:
        targets = self.r.tools.parse_targets(entry.value)
        self.map_step("aliases", f"{addr.local} ({entry.key}) -> {entry.value}", entry)
        if ctx.sole and self.envelope_sender is None:
            found = alias_rules.owner(self.r.aliases, entry.key, addr.domain)
            if found is not None:
                self.envelope_sender = found[0]
                self.map_step("aliases", f"owner-{entry.key}: envelope sender {found[0]}", found[1])
        run_as = self.r.config.delivery.default_user
        child_ctx = _Ctx("aliases", run_as=run_as, sole=ctx.sole and len(targets) == 1)
        self.expand_targets(targets, addr, depth, child_ctx)

    def expand_targets(self, targets: list[str], parent: Addr, depth: int, ctx: _Ctx) -> None:
        """Each target of a list (aliases, :include:, .forward, virtusertable)."""
        for target in targets:
            kind, value = alias_rules.classify(target)
            if kind in ("address", "direct"):
                child = parse_address(value, parent.domain)
                if child is None:
                    self.step("error", f"{parent.text}: not an address: {target[:256]!r}")
                    continue
                if kind == "direct":
                    child = replace(child, direct=True)
                self.expand(child, depth + 1, ctx)
            elif ctx.origin not in _RUNNABLE_ORIGINS:
                reply = {"program": NO_PROGRAMS, "file": NO_FILES}.get(kind, NO_INCLUDES)
                self.refuse(parent.text, reply, f"{ctx.origin} may not name {kind}s: {target!r}")
            elif kind == "include":
                self.include(value, parent, depth, ctx)
            elif kind == "program":
                self.runnable("program", value, parent.text, ctx.run_as, ctx.home, ctx.origin)
            else:
                self.runnable("file", value, parent.text, ctx.run_as, ctx.home, ctx.origin)

    def include(self, path: str, parent: Addr, depth: int, ctx: _Ctx) -> None:
        """sendmail's :include: — a list kept in a file (aliases and .forward only)."""
        if not path.startswith("/") or "\x00" in path:
            self.refuse(parent.text, INCLUDE_UNREADABLE, f"bad :include: path {path!r}")
            return
        path = os.path.normpath(path)
        key: tuple[Any, ...] = ("include", path)
        if key in self.on_path:
            self.loops += 1
            self.step("loop", f":include:{path} includes itself: dropped", path)
            log.error("routing: :include: loop at %s for %s", path, parent.text)
            return
        if key in self.seen:
            self.step("duplicate", f":include:{path}: duplicate suppressed", path)
            return
        if depth + 1 > self.r.max_depth:
            self.too_deep(parent, depth + 1)
            return
        safe = self.r.config.maps.safe_files
        if ctx.uid is None:
            found, problems = self.r.tools.read_include(path, safe_files=safe)
        else:
            found, problems = self.r.tools.read_include(
                path, safe_files=safe, allowed_uids=frozenset({ctx.uid})
            )
        for problem in problems:
            self.step("error", problem, path)
            log.warning("routing: %s: %s", parent.text, problem)
        self.step("include", f"{parent.text}: :include:{path} -> {', '.join(found)}", path)
        if not found and problems:
            self.add(Refusal(address=parent.text, reply=INCLUDE_UNREADABLE))
            return
        self.push(key, None)
        try:
            child_ctx = replace(ctx, origin="include", sole=ctx.sole and len(found) == 1)
            self.expand_targets(found, parent, depth + 1, child_ctx)
        finally:
            self.pop()

    def runnable(
        self, kind: str, value: str, address: str, user: str, home: str, rule: str
    ) -> None:
        """A Program or File target, unless it would run as root."""
        if not value or "\x00" in value or "\n" in value:
            self.step("error", f"{address}: empty or malformed {kind} {value[:256]!r}")
            return
        if kind == "file":
            if not os.path.isabs(value):
                self.refuse(address, UNSAFE_PATH, f"file target not absolute: {value!r}")
                return
            value = os.path.normpath(value)
        pw = self.passwd(user) if user else None
        if not user or user == "root" or (pw is not None and pw.pw_uid == 0):
            log.error("routing: %s: %s %r would run as root: refused", address, kind, value)
            self.refuse(address, NOT_AS_ROOT, f"{kind} {value!r} would run as root ({user!r})")
            return
        if rule not in ("forward", "dotqmail"):  # those name each line themselves
            shown = f"|{value}" if kind == "program" else value
            self.step(rule, f"{address} -> {shown} (as {user})")
        if kind == "program":
            self.add(Program(address=address, command=value, user=user, home=home))
        else:
            self.add(File(address=address, path=value, user=user))

    # --- users and mailboxes ------------------------------------------------------------

    def find_virtual(self, addr: Addr) -> tuple[str, str] | None:
        """(local, domain) of the virtual user `addr` is (user+detail: user), or None.

        A bare local name (from an alias, .forward ...) is tried in the domain it
        came from, then in this host's domain (sendmail qualifies it with $j),
        then as a domain-less user of the users file."""
        exists = self.r.user_exists
        domains = [addr.domain]
        if not addr.qualified and self.r.home_domain != addr.domain:
            domains.append(self.r.home_domain)
        for name in (addr.local, *(u for u, _ in splits(addr.local, self.r.delimiter))):
            name = unquote(name)
            for domain in domains:
                if exists(f"{name}@{domain}"):
                    return name, domain
            if exists(name):
                return name, addr.domain
        return None

    def find_system(self, addr: Addr) -> tuple[PasswdEntry, str] | None:
        """(account, detail) for `addr` among the system users, or None."""
        if not self.r.config.delivery.system_users:
            return None
        pw = self.passwd(addr.local)
        if pw is not None:
            return pw, ""
        for user, detail in splits(addr.local, self.r.delimiter):
            pw = self.passwd(user)
            if pw is not None:
                return pw, detail
        return None

    def virtual_mailbox(self, addr: Addr, local: str, domain: str) -> None:
        template = self.r.config.delivery.mailbox
        try:
            spec = fill_mailbox(template, local, domain)
        except UnsafeName as e:
            self.refuse(addr.text, replies.MAILBOX_NAME_INVALID, str(e))
            return
        address = f"{addr.local}@{domain}"
        self.step("mailbox", f"{addr.text}: virtual user {local}@{domain} (users file) -> {spec}")
        self.add(Mailbox(address=address, spec=spec))

    def system_mailbox(self, addr: Addr, pw: PasswdEntry, why: str) -> None:
        try:
            spec = system_mailbox(pw, self.r.config.delivery.system_mailbox)
        except UnsafeName as e:
            self.refuse(addr.text, replies.MAILBOX_NAME_INVALID, str(e))
            return
        self.step("mailbox", f"{addr.text}: system user {pw.pw_name} ({why}) -> {spec}")
        self.add(Mailbox(address=addr.text, spec=spec, user=pw.pw_name))

    def deliver_user(self, addr: Addr, depth: int, ctx: _Ctx) -> None:
        virtual = self.find_virtual(addr)
        if virtual is not None:
            self.virtual_mailbox(addr, *virtual)
            return
        system = self.find_system(addr)
        if system is not None:
            self.deliver_system(addr, system[0], system[1], depth, ctx)
            return
        if not addr.direct and self.builtin_alias(addr, depth, ctx):
            return
        text = f"{replies.echo(addr.text)}... User unknown"
        self.refuse(addr.text, USER_UNKNOWN.with_text(text), "user unknown")

    def builtin_alias(self, addr: Addr, depth: int, ctx: _Ctx) -> bool:
        """The MAILER-DAEMON and postmaster aliases every aliases file must have."""
        name = unquote(addr.local).lower()
        if name == "mailer-daemon":
            self.r.log_default_once(name, "mailer-daemon -> postmaster")
            self.step("aliases", "mailer-daemon -> postmaster (built-in: no MAILER-DAEMON alias)",
                      "(built-in)")  # fmt: skip
            self.expand(Addr("postmaster", addr.domain, False), depth + 1, ctx)
            return True
        if name != "postmaster":
            return False
        root = Addr("root", addr.domain, False)
        has_root = (
            alias_rules.lookup(self.r.aliases, "root", "") is not None
            or self.find_virtual(root) is not None
            or self.find_system(root) is not None
        )
        if has_root:
            self.r.log_default_once(name, "postmaster -> root")
            self.step("aliases", "postmaster -> root (built-in: no postmaster alias)", "(built-in)")
            self.expand(root, depth + 1, ctx)
            return True
        self.r.log_default_once(name, "postmaster -> the postmaster mailbox")
        self.step("aliases", "postmaster: built-in: no postmaster alias and no root: "
                  "the postmaster mailbox", "(built-in)")  # fmt: skip
        self.virtual_mailbox(addr, "postmaster", addr.domain)
        return True

    def deliver_system(
        self, addr: Addr, pw: PasswdEntry, detail: str, depth: int, ctx: _Ctx
    ) -> None:
        home = pw.pw_dir
        usable_home = bool(home) and os.path.isabs(home) and home != "/"
        cfg = self.r.config
        if not addr.direct and not is_quoted(addr.local) and usable_home:
            check = self.r.tools.check_file if cfg.maps.safe_files else None
            if cfg.routing.dotqmail:
                dq = read_dotqmail(home, detail, uid=pw.pw_uid, check_file=check)
                if dq is not None and dq.status != "empty":
                    self.dotqmail(addr, pw, dq, depth, ctx)
                    return
                if dq is not None:
                    self.step("dotqmail", f"{addr.text}: empty: default delivery", dq.path)
                    self.system_mailbox(addr, pw, "default delivery")
                    return
            if cfg.routing.forward_files and self.forward(addr, pw, detail, depth, ctx, check):
                return
        self.system_mailbox(addr, pw, "no .forward" if usable_home else "no home directory")

    def forward(
        self,
        addr: Addr,
        pw: PasswdEntry,
        detail: str,
        depth: int,
        ctx: _Ctx,
        check: Callable[..., str | None] | None,
    ) -> bool:
        """Follow the user's .forward; False when there is none to follow."""
        for path in forward_paths(pw.pw_dir, detail=detail, hostname=self.r.config.hostname):
            hf = read_home_file(path, uid=pw.pw_uid, check_file=check)
            if hf.status == "missing":
                continue
            if hf.status != "ok":
                self.step("error", f"{addr.text}: {hf.status} .forward ignored: {hf.problem}", path)
                log.warning("routing: %s: %s ignored: %s", addr.text, path, hf.problem)
                continue
            if hf.problem:
                self.step("error", hf.problem, path)
            found = parse_forward(hf.text, self.r.tools.parse_targets)
            if not found:
                self.step("forward", f"{addr.text}: no targets: ignored", path)
                return False
            for target, line in found:
                self.step("forward", f"{addr.text} -> {target}", path, line)
            sole = ctx.sole and len(found) == 1
            child_ctx = _Ctx("forward", run_as=pw.pw_name, home=pw.pw_dir, sole=sole, uid=pw.pw_uid)
            self.expand_targets([t for t, _ in found], addr, depth, child_ctx)
            return True
        return False

    def dotqmail(self, addr: Addr, pw: PasswdEntry, dq: DotQmail, depth: int, ctx: _Ctx) -> None:
        for problem in dq.problems:
            self.step("error", problem, dq.path)
        if dq.status == "unsafe":
            log.warning("routing: %s: %s: %s", addr.text, dq.path, "; ".join(dq.problems))
            self.refuse(addr.text, HOME_FILE_PROBLEM, f"unusable {os.path.basename(dq.path)}")
            return
        home, user = pw.pw_dir, pw.pw_name
        if not dq.instructions:
            self.step("dotqmail", f"{addr.text}: no delivery instructions: discarded", dq.path)
            self.runnable("file", "/dev/null", addr.text, user, home, "dotqmail")
            return
        forwards = [i for i in dq.instructions if i.kind == "forward"]
        if dq.owner and ctx.sole and self.envelope_sender is None:
            self.envelope_sender = f"{addr.local}-owner@{addr.domain}"
            self.step("dotqmail", f"envelope sender {self.envelope_sender}", f"{dq.path}-owner")
        child_ctx = _Ctx(
            "dotqmail", run_as=user, home=home, sole=ctx.sole and len(dq.instructions) == 1
        )
        for ins in dq.instructions:
            self.step("dotqmail", f"{addr.text} -> {ins.value}", dq.path, ins.line)
            if ins.kind == "program":
                self.runnable("program", ins.value, addr.text, user, home, "dotqmail")
            elif ins.kind == "mbox":
                path = os.path.join(home, ins.value)
                self.runnable("file", path, addr.text, user, home, "dotqmail")
            elif ins.kind == "maildir":
                path = os.path.normpath(os.path.join(home, ins.value))
                if os.path.commonpath([path, os.path.normpath(home)]) != os.path.normpath(home):
                    self.refuse(addr.text, UNSAFE_PATH, f"maildir outside the home: {path}")
                else:
                    self.add(Mailbox(address=addr.text, spec=f"maildir:{path}", user=user))
        for ins in forwards:
            child = parse_address(ins.value, addr.domain)
            if child is None:
                self.step("error", f"{addr.text}: not an address: {ins.value[:256]!r}", dq.path)
                continue
            self.expand(child, depth + 1, child_ctx)

    # --- other domains ---------------------------------------------------------------

    def route_remote(self, addr: Addr, depth: int, ctx: _Ctx) -> None:
        route = mailertable_rules.lookup(self.r.mailertable, addr.domain)
        if route is not None:
            detail = f"{addr.domain} ({route.key}) -> {route.entry.value}"
            self.map_step("mailertable", detail, route.entry)
            if route.kind == "error" and route.reply is not None:
                if route.mailer != "error":
                    log.error("routing: mailertable %s: unknown mailer %r", route.entry.where,
                              route.mailer)  # fmt: skip
                self.add(Refusal(address=addr.text, reply=route.reply))
            elif route.kind == "local":
                child = parse_address(route.user or addr.local, self.r.home_domain)
                if child is None:
                    self.refuse(addr.text, USER_UNKNOWN, f"bad local: user {route.user!r}")
                    return
                self.expand(child, depth + 1, _Ctx("mailertable", sole=ctx.sole))
            else:
                self.add(Remote(address=addr.text, nexthop=route.nexthop))
            return
        smart_host = self.r.config.routing.smart_host
        if smart_host:
            self.step("smart_host", f"{addr.text} -> {smart_host}")
            self.add(Remote(address=addr.text, nexthop=smart_host))
            return
        self.step("mx", f"{addr.text}: MX of {addr.domain}")
        self.add(Remote(address=addr.text, nexthop=""))
