"""cli/explain — `postoffice explain ADDRESS [--sender S]`: the whole route of an address.

Description:
    postoffice [-c FILE] explain ADDRESS [--sender SENDER]

    Resolves ADDRESS as the server would (routing/resolve.py, with the
    configured maps and the users file) and prints:

        route of ADDRESS
          RULE: DETAIL (FILE:LINE)          one line per TraceStep: every map
          ...                               and file consulted, in order
        targets
          mailbox ADDR: maildir:/path (user U)
          program ADDR: |command (as user U)
          file ADDR: /path (as user U)
          remote ADDR: via MX of DOMAIN | via [host] | via smart host [host]
          refused ADDR: 550 5.1.1 User unknown
        verdict: deliverable (N targets) | refused: CODE ENH TEXT

    An unqualified ADDRESS (`root`) is qualified with hostname first, as
    sendmail does for a bare local name.

    With --sender, also the sender as it would leave this host: each step
    of the rewriting (genericstable with its file and line, masquerading;
    routing/generics.py SenderRewriter) and the result for the header
    (From:, Sender:, Reply-To: ...) and for the envelope (MAIL FROM).

    Helpers shared with `sendmail -bv` / `-bt` (cli/addrtest.py):
    `build_router(config)`, `open_named_map(config, name)` (MAP_NAMES:
    sendmail's map names and the file names), `sender_rewriter(config)`,
    `qualify(address, hostname)`, `check_address(address)`,
    `describe_target(target, resolution)`, `mailer_of(target, resolution)`
    (sendmail's mailer/host/user triple of a target), `target_name(target)`
    and `ruleset_zero(target, resolution)` (`$# mailer $@ host $: user`).

Exit status:
    0 when the address is deliverable (not every target is a refusal; a
    discard counts as deliverable), 1 when it is refused or on an error;
    errors are one line `postoffice: ...` (cli/main.py).

Config:
    Everything routing reads ([maps], [routing], [delivery], users_file,
    local_domains, hostname).

See also:
    routing/resolve.py, routing/targets.py, routing/generics.py,
    routing/masquerade.py, cli/addrtest.py (sendmail -bv / -bt),
    sendmail's -bv and -bt modes.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from postoffice.cli.main import load_config_from_args
from postoffice.config.schema import Config
from postoffice.routing.targets import (
    File,
    Mailbox,
    Program,
    Refusal,
    Remote,
    Resolution,
    Target,
)

if TYPE_CHECKING:
    from postoffice.maps.registry import FileMap
    from postoffice.routing.generics import SenderRewriter


class RouterLike(Protocol):
    """What the tools need of routing/resolve.py's Router."""

    def resolve(self, address: str) -> Resolution: ...


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "explain",
        help="show how an address is routed (and how a sender is rewritten)",
        description="Print every step of the route of ADDRESS: each map and file that "
        "matched with its line, the final targets and the next hop; with --sender, the "
        "sender address as it would leave this host (genericstable, masquerading).",
    )
    p.add_argument("address", metavar="ADDRESS", help="the recipient address to explain")
    p.add_argument("--sender", metavar="SENDER", help="also show how SENDER is rewritten")
    p.set_defaults(func=run)


# --- shared with cli/addrtest.py -------------------------------------------------------


def build_router(config: Config) -> RouterLike:
    """routing/resolve.py's Router for `config`, with the users file's users."""
    from postoffice.auth.passwd_file import UserDB
    from postoffice.routing.resolve import Router

    users = UserDB.load(config.users_file)
    router: RouterLike = Router.from_config(config, user_exists=users.exists)
    return router


# sendmail's map names (`/map` in -bt, K lines in sendmail.cf) and the file names.
MAP_NAMES: dict[str, str] = {
    "aliases": "aliases",
    "virtusertable": "virtusertable",
    "virtuser": "virtusertable",
    "genericstable": "genericstable",
    "generics": "genericstable",
    "mailertable": "mailertable",
    "access": "access",
    "relay-domains": "relay_domains",
    "relay_domains": "relay_domains",
}


def open_named_map(config: Config, name: str) -> FileMap | None:
    """The map `name` (a MAP_NAMES key) as configured, or None for an unknown name.

    A map whose path is empty or whose file is missing is an empty map
    (maps/registry.py)."""
    from postoffice.maps.registry import open_map

    key = MAP_NAMES.get(name.lower())
    if key is None:
        return None
    path: str = getattr(config.maps, key)
    return open_map(
        key.replace("_", "-"),
        path,
        aliases=key == "aliases",
        allow_empty=key == "relay_domains",
        safe_files=config.maps.safe_files,
        log=False,
    )


def sender_rewriter(config: Config) -> SenderRewriter:
    """genericstable + masquerading as configured (routing/generics.py)."""
    from postoffice.routing.generics import SenderRewriter

    table = open_named_map(config, "genericstable")
    return SenderRewriter.from_config(config, table)


def qualify(address: str, hostname: str) -> str:
    """A bare local name gets this host's name (sendmail treats `root` as local)."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    if address and "@" not in address and hostname:
        return f"{address}@{hostname}"
    return address


_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f]")


def check_address(address: str) -> str | None:
    """Why `address` cannot be looked at, or None when it can."""
    if not address:
        return "empty address"
    if _BAD_ADDRESS.search(address.strip()):
        return "white space or control characters in the address"
    if len(address) > 1000:
        return "address too long"
    return None


@dataclass(frozen=True, slots=True)
class Mailer:
    """sendmail's view of a target: `$# mailer $@ host $: user`."""

    mailer: str
    host: str
    user: str

    def parse_line(self) -> str:
        """As -bt /parse and -bv print it: `mailer M, host H, user U`."""
        if self.host:
            return f"mailer {self.mailer}, host {self.host}, user {self.user}"
        return f"mailer {self.mailer}, user {self.user}"

    def triple(self) -> str:
        """As ruleset 0 returns it: `$# M $@ H $: U`."""
        host = f" $@ {self.host}" if self.host else ""
        return f"$# {self.mailer}{host} $: {self.user}"


def _command(target: Program) -> str:
    return "|" + target.command.removeprefix("|")


def _via_smart_host(resolution: Resolution) -> bool:
    return any(step.rule == "smart_host" for step in resolution.trace)


def _reply_text(target: Refusal) -> str:
    return " ".join(target.reply.text.split()) or "refused"


def mailer_of(target: Target, resolution: Resolution) -> Mailer:
    """The sendmail mailer, host and user of a target.

    local (user: the system user, or the virtual user's address), esmtp or
    relay (host: the next hop, or the domain whose MX is used), prog (user:
    the user it runs as), *file* (likewise), error (host: the enhanced
    status code, user: the reply)."""
    if isinstance(target, Mailbox):
        return Mailer("local", "", target.user or target.address)
    if isinstance(target, Remote):
        domain = target.address.rpartition("@")[2]
        mailer = "relay" if _via_smart_host(resolution) else "esmtp"
        return Mailer(mailer, target.nexthop or domain, target.address)
    if isinstance(target, Program):
        return Mailer("prog", "", target.user)
    if isinstance(target, File):
        return Mailer("*file*", "", target.user)
    reply = target.reply
    return Mailer("error", reply.enhanced, f'"{reply.code} {_reply_text(target)}"')


def ruleset_zero(target: Target, resolution: Resolution) -> str:
    """The target as sendmail's ruleset 0 returns it: `$# mailer [$@ host] $: user`.

    For programs and files the user part is the command or path (as in
    sendmail) followed by the user it runs as."""
    mailer = mailer_of(target, resolution)
    if isinstance(target, Program | File):
        return f"$# {mailer.mailer} $: {target_name(target)} (as user {target.user})"
    return mailer.triple()


def target_name(target: Target) -> str:
    """What sendmail prints before "...": the address, |command or /file."""
    if isinstance(target, Program):
        return _command(target)
    if isinstance(target, File):
        return target.path
    return target.address


def describe_target(target: Target, resolution: Resolution) -> str:
    """One line of `postoffice explain`'s target list."""
    if isinstance(target, Mailbox):
        user = f" (user {target.user})" if target.user else ""
        return f"mailbox {target.address}: {target.spec}{user}"
    if isinstance(target, Program):
        return f"program {target.address}: {_command(target)} (as user {target.user})"
    if isinstance(target, File):
        return f"file {target.address}: {target.path} (as user {target.user})"
    if isinstance(target, Remote):
        domain = target.address.rpartition("@")[2]
        if _via_smart_host(resolution) and target.nexthop:
            via = f"smart host {target.nexthop}"
        else:
            via = target.nexthop or f"MX of {domain}"
        return f"remote {target.address}: via {via}"
    reply = target.reply
    enhanced = f" {reply.enhanced}" if reply.enhanced else ""
    return f"refused {target.address}: {reply.code}{enhanced} {_reply_text(target)}"


def deliverable(resolution: Resolution) -> bool:
    """Not refused: some target is not a refusal, or none at all (discarded)."""
    return resolution.refusal is None


# --- postoffice explain ------------------------------------------------------------


def _say(message: str) -> None:
    print(f"postoffice: explain: {message}", file=sys.stderr)


def explain_lines(address: str, resolution: Resolution) -> list[str]:
    """The route, targets and verdict of one resolution, as `explain` prints them."""
    lines = [f"route of {address}"]
    lines += [f"  {step}" for step in resolution.trace] or ["  (no maps matched)"]
    lines.append("targets")
    lines += [f"  {describe_target(t, resolution)}" for t in resolution.targets] or [
        "  (none: the message is discarded)"
    ]
    if resolution.envelope_sender is not None:
        lines.append(f"envelope sender for this expansion: <{resolution.envelope_sender}>")
    refusal = resolution.refusal
    if refusal is not None:
        r = refusal.reply
        enhanced = f" {r.enhanced}" if r.enhanced else ""
        lines.append(f"verdict: refused: {r.code}{enhanced} {_reply_text(refusal)}")
    elif resolution.targets:
        n = len(resolution.targets)
        lines.append(f"verdict: deliverable ({n} target{'s' if n != 1 else ''})")
    else:
        lines.append("verdict: deliverable (discarded)")
    return lines


def sender_lines(sender: str, rewriter: SenderRewriter) -> list[str]:
    """How `sender` leaves this host: the steps, then header and envelope results."""
    header, hsteps = rewriter.trace(sender)
    envelope, esteps = rewriter.trace(sender, envelope=True)
    lines = [f"sender {sender or '<>'} as it leaves this host"]
    lines += [f"  header: {step}" for step in hsteps]
    lines += [f"  envelope: {step}" for step in esteps]
    lines.append(f"  header sender (From:, Sender:, Reply-To:): {header or '<>'}")
    lines.append(f"  envelope sender (MAIL FROM): <{envelope}>")
    return lines


def run(args: argparse.Namespace) -> int:
    from postoffice.address import AddressError

    config = load_config_from_args(args)
    address = qualify(args.address, config.hostname)
    problem = check_address(address)
    if problem is not None:
        _say(f"{args.address!r}: {problem}")
        return 1
    sender: str | None = None
    if args.sender is not None:
        sender = "" if args.sender.strip() in ("", "<>") else qualify_sender(args.sender)
        problem = check_address(sender) if sender else None
        if problem is not None:
            _say(f"--sender {args.sender!r}: {problem}")
            return 1
    router = build_router(config)
    try:
        resolution = router.resolve(address)
    except AddressError as e:
        _say(f"{address}: {e}")
        return 1
    lines = explain_lines(address, resolution)
    if sender is not None:
        lines += sender_lines(sender, sender_rewriter(config))
    print("\n".join(lines))
    return 0 if deliverable(resolution) else 1


def qualify_sender(sender: str) -> str:
    """The --sender text without angle brackets; left unqualified for the rewriter."""
    sender = sender.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1]
    return sender
