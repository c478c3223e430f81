"""cli/addrtest — `sendmail -bv` (verify addresses) and `sendmail -bt` (address test mode).

Description:
    sendmail -bv [-C FILE] ADDRESS...
        Resolves each address as the server would and prints sendmail's
        one-line verdicts, one per final target (sendmail/deliver.c,
        SM_VERIFY: "deliverable: mailer %s, host %s, user %s"):

            alice@example.com... deliverable: mailer local, user alice@example.com
            x@y.example... deliverable: mailer esmtp, host [mx.example], user x@y.example
            |/usr/bin/vacation... deliverable: mailer prog, user bob
            nobody@example.com... User unknown

        The mailer/host/user triple is cli/explain.py mailer_of(): local
        (user: the system user, or the virtual user's address: postoffice's
        users are whole addresses), esmtp (host: the mailertable next hop,
        or the domain whose MX is used), relay (via [routing] smart_host),
        prog and *file* (user: the user it runs as), and a refusal prints
        its reply text as sendmail prints "User unknown". An unqualified
        name is qualified with hostname. Exit status: 0 when every address
        is deliverable, 67 (EX_NOUSER) when one is refused, 65 (EX_DATAERR)
        when one cannot be read as an address.

    sendmail -bt [-C FILE]
        Address test mode, reading commands from stdin. On a terminal it
        prints sendmail's banner and the prompt "> "; on a pipe it echoes
        each command after "> ", as sendmail does, so a transcript reads
        the same. postoffice has no sendmail.cf rewriting rulesets, so the
        commands are mapped onto what it has:

        RULES ADDRESS   (e.g. `3,0 alice@example.com`): the route of the
                        address in sendmail's trace layout ("parse
                        input:", one "returns:" line per TraceStep, then
                        ruleset 0's `$# mailer $@ host $: user`); 93 /
                        MasqHdr and 94 / MasqEnv show the header and the
                        envelope sender rewriting (genericstable,
                        masquerading) — their names in cf/m4/proto.m4.
        /parse ADDRESS  "Cracked address = " (the text with the address
                        replaced by $g) and the mailer of each target.
        /try MAILER ADDRESS, /tryflags [HE][SR]
                        rewrite ADDRESS as it would be presented to MAILER:
                        sender addresses through the genericstable and
                        masquerading (header or envelope); recipients are
                        not rewritten by postoffice (only qualified).
        /map NAME KEY   `map_lookup: NAME (KEY) returns VALUE (0)` or
                        `no match (0)`, plus the file and line; NAME is
                        aliases, virtusertable (virtuser), genericstable
                        (generics), mailertable, access or relay-domains.
        $j $w $m $M     this host's name, its first label, the rest, the
                        masquerade name; $=w $=M $=G $=E $=R the local
                        domains, masquerade domains, generics domains,
                        exposed users and relay domains.
        =M              the mailers (delivery agents) and what they do.
        ?               help.   /quit (or end of input) leaves.
        Everything else sendmail knows (.D, .C, =S, -d, /mx, /canon,
        /expand, /sender, /header, /gethostbyname, /dnslookup) gets one
        line saying why postoffice does not do it; an unknown command gets
        sendmail's "Unknown ... command" line. No input produces a
        traceback: a failing command prints `error: ...` and the session
        goes on.

Config:
    What routing reads; [maps] for /map; [routing] masquerade_* and
    generics_* for the sender rewriting.

See also:
    sendmail(8) -bv and -bt; sendmail/main.c testmodeline(); cli/explain.py;
    routing/generics.py; routing/masquerade.py.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from email.utils import getaddresses
from typing import TYPE_CHECKING, TextIO

from postoffice.cli import explain
from postoffice.config.schema import Config
from postoffice.routing.masquerade import address_spans
from postoffice.routing.targets import Refusal, Resolution

if TYPE_CHECKING:
    from postoffice.maps.registry import FileMap
    from postoffice.routing.generics import SenderRewriter

EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_SOFTWARE, EX_OSERR = 0, 64, 65, 67, 70, 71

# --- sendmail -bv --------------------------------------------------------------------


def verdict_lines(resolution: Resolution) -> list[str]:
    """sendmail -bv's lines for one resolved address."""
    if not resolution.targets:
        return [f"{resolution.recipient}... deliverable: discarded (no targets)"]
    lines = []
    for target in resolution.targets:
        if isinstance(target, Refusal):
            text = " ".join(target.reply.text.split())
            # routing's replies read "<addr>... User unknown" (as to RCPT); -bv names
            # the address as given, without brackets, like sendmail -bv
            text = text.split("... ", 1)[1] if "... " in text else text
            lines.append(f"{target.address}... {text}")
        else:
            mailer = explain.mailer_of(target, resolution)
            lines.append(f"{explain.target_name(target)}... deliverable: {mailer.parse_line()}")
    return lines


def _split(args: list[str]) -> list[str]:
    out: list[str] = []
    for arg in args:
        found = [a for _, a in getaddresses([arg]) if a.strip()]
        out.extend(found or [arg])
    return out


def verify(config: Config, addresses: list[str], out: TextIO) -> int:
    """sendmail -bv: print the verdicts, return the exit status."""
    from postoffice.address import AddressError

    wanted = _split(addresses)
    if not wanted:
        print("sendmail: Recipient names must be specified", file=sys.stderr)
        return EX_USAGE
    router = explain.build_router(config)
    status = EX_OK
    for raw in wanted:
        address = explain.qualify(raw, config.hostname)
        problem = explain.check_address(address)
        if problem is None:
            try:
                resolution = router.resolve(address)
            except AddressError as e:
                problem = str(e)
        if problem is not None:
            print(f"{raw}... {problem}", file=out)
            status = status if status == EX_NOUSER else EX_DATAERR
            continue
        for line in verdict_lines(resolution):
            print(line, file=out)
        if resolution.refusal is not None:
            status = EX_NOUSER
    return status


# --- sendmail -bt --------------------------------------------------------------------

BANNER = (
    "ADDRESS TEST MODE (ruleset 3 NOT automatically invoked)\n"
    "Enter <ruleset> <address>\n"
    "(postoffice has no rewriting rulesets: RULES ADDRESS shows the route; ? for help)\n"
)

HELP = """\
Help for test mode (postoffice):
?                :this help message.
rules addr       :show the route of addr; postoffice has no rewriting
                  rulesets, so any rules (3,0 or parse) give the route.
                  93 (MasqHdr) and 94 (MasqEnv) show how a header or an
                  envelope sender is rewritten (genericstable, masquerading).
/parse address   :the address found in the text ($g) and its mailers.
/try mailer addr :rewrite address into the form it will have when
                  presented to the indicated mailer (senders only:
                  recipients are not rewritten).
/tryflags flags  :set flags used by parsing.  The flags can be `H' for
                  Header or `E' for Envelope, and `S' for Sender or `R'
                  for Recipient (default: ER).
/map mapname key :look up `key' in aliases, virtusertable, genericstable,
                  mailertable, access or relay-domains.
$m               :print the value of macro $m (j, w, m, M).
$=c              :print the contents of class $=c (w, M, G, E, R).
=M               :display the known mailers.
/quit            :quit address test mode.
Not in postoffice: .D .C =S -d /mx /canon /expand /sender /header
/gethostbyname /dnslookup (each says why).
End of help"""

MAILERS: dict[str, str] = {
    "local": "delivery into a local mailbox (Maildir or mbox)",
    "esmtp": "SMTP to the MX of the domain, or to a mailertable host",
    "relay": "SMTP to [routing] smart_host",
    "prog": "|program from aliases, .forward or .qmail, run as the user it belongs to",
    "*file*": "appending to a file, as the user it belongs to",
    "error": "a refusal (error: in virtusertable, mailertable or aliases; unknown users)",
}
_MAILER_ALIASES = {"smtp": "esmtp", "smtp8": "esmtp", "dsmtp": "esmtp", "*include*": "local"}

_NO_DNS = "postoffice's address test mode makes no DNS lookups (try: dig MX HOST)"
_UNSUPPORTED: dict[str, str] = {
    "/mx": _NO_DNS,
    "/canon": _NO_DNS,
    "/gethostbyname": _NO_DNS,
    "/dnslookup": _NO_DNS,
    "/expand": "postoffice has no sendmail.cf macros to expand",
    "/sender": "use 93 ADDRESS (header) or 94 ADDRESS (envelope) to see a sender rewritten",
    "/header": "postoffice has no header flags to show; see routing/masquerade.py",
}
_RULE = re.compile(r"[A-Za-z0-9_]+\Z")
_HEADER_RULES = frozenset({"93", "masqhdr"})
_ENVELOPE_RULES = frozenset({"94", "masqenv"})
_MAP_PROBLEMS_SHOWN = 3


def _col(name: str, word: str) -> str:
    """sendmail's trace layout: "%-16.16s   input:" / "%-16.16s returns:"."""
    return f"{name[:16]:<16} {word:>8}"


class AddressTest:
    """One -bt session: `handle(line)` prints its answer; False means /quit."""

    def __init__(self, config: Config, out: TextIO) -> None:
        self.config = config
        self.out = out
        self.header = False  # /tryflags H / E
        self.sender = False  # /tryflags S / R
        self._router: explain.RouterLike | None = None
        self._rewriter: SenderRewriter | None = None
        self._maps: dict[str, FileMap] = {}

    # -- plumbing ------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.out)

    @property
    def router(self) -> explain.RouterLike:
        if self._router is None:
            self._router = explain.build_router(self.config)
        return self._router

    @property
    def rewriter(self) -> SenderRewriter:
        if self._rewriter is None:
            self._rewriter = explain.sender_rewriter(self.config)
        return self._rewriter

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()

    def _map(self, name: str) -> FileMap | None:
        key = explain.MAP_NAMES.get(name.lower())
        if key is None:
            return None
        if key not in self._maps:
            opened = explain.open_named_map(self.config, key)
            if opened is None:
                return None
            self._maps[key] = opened
        return self._maps[key]

    # -- dispatch ------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Answer one line; False after /quit."""
        from postoffice.address import AddressError
        from postoffice.cli.main import error_line
        from postoffice.errors import PostofficeError

        line = line.strip()
        if not line or line.startswith("#"):
            return True
        try:
            return self._dispatch(line)
        except (PostofficeError, OSError, AddressError) as e:
            self.say(f"error: {error_line(e)}")
            return True

    def _dispatch(self, line: str) -> bool:
        first = line[0]
        handlers: dict[str, Callable[[str], None]] = {
            "?": lambda _line: self.say(HELP),
            ".": self._dot,
            "=": self._equals,
            "-": self._dash,
            "$": self._dollar,
        }
        if first == "/":
            return self._slash(line)
        handlers.get(first, self._rules)(line)
        return True

    def _dot(self, line: str) -> None:
        if line[1:2] in ("D", "C"):
            self.say("postoffice has no macros or classes to set: change postoffice.toml")
        elif line == ".":
            self.say("Usage: .[DC]macro value(s)")
        else:
            self.say(f'Unknown "." command {line}')

    def _equals(self, line: str) -> None:
        if line.startswith("=S"):
            self.say("postoffice has no rewriting rulesets; RULES ADDRESS shows the route")
        elif line == "=M":
            for name, what in MAILERS.items():
                self.say(f"mailer {name}: {what}")
        elif line == "=":
            self.say("Usage: =Sruleset or =M")
        else:
            self.say(f'Unknown "=" command {line}')

    def _dash(self, line: str) -> None:
        if line.startswith("-d"):
            self.say("postoffice has no debug flags; the route shows every step already")
        elif line == "-":
            self.say("Usage: -d{debug arguments}")
        else:
            self.say(f'Unknown "-" command {line}')

    def _dollar(self, line: str) -> None:
        config = self.config
        if line.startswith("$="):
            name = line[2:].strip()
            classes: dict[str, tuple[str, ...]] = {
                "w": config.local_domains,
                "M": config.routing.masquerade_domains,
                "G": config.routing.generics_domains or config.local_domains,
                "E": config.routing.exposed_users,
            }
            if name == "R":
                relay = self._map("relay-domains")
                values = tuple(e.key for e in relay.entries()) if relay is not None else ()
            elif name in classes:
                values = classes[name]
            else:
                self.say(f"postoffice has no class $={name} (it has $=w $=M $=G $=E $=R)")
                return
            for value in values:
                self.say(value)
            return
        host = config.hostname
        macros = {
            "j": host,
            "w": host.partition(".")[0],
            "m": host.partition(".")[2],
            "M": config.routing.masquerade_as,
        }
        macro = macros.get(line[1:].strip(), "")
        self.say(macro or "Undefined")

    def _slash(self, line: str) -> bool:
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        name = command.lower()
        if name == "/quit":
            return False
        if name == "/parse":
            self._parse(rest)
        elif name == "/map":
            self._lookup(rest)
        elif name == "/try":
            self._try(rest)
        elif name == "/tryflags":
            self._tryflags(rest)
        elif name in _UNSUPPORTED:
            self.say(_UNSUPPORTED[name])
        elif name == "/":
            self.say("Usage: /[canon|map|mx|parse|try|tryflags]")
        else:
            self.say(f'Unknown "/" command {line}')
        return True

    # -- the commands ------------------------------------------------------------------

    def _flags(self) -> str:
        where = "header" if self.header else "envelope"
        return f"{where} {'sender' if self.sender else 'recipient'}"

    def _resolve(self, address: str) -> Resolution | None:
        address = explain.qualify(address, self.config.hostname)
        problem = explain.check_address(address)
        if problem is not None:
            self.say(f"{address}... {problem}")
            return None
        return self.router.resolve(address)

    def _rules(self, line: str) -> None:
        rules, _, address = line.partition(" ")
        address = address.strip()
        if not address:
            self.say("No address!")
            return
        names = rules.split(",")
        for name in names:
            if not _RULE.match(name):
                self.say(f"Undefined ruleset {name}")
                return
        lowered = {n.lower() for n in names}
        if lowered & _HEADER_RULES or lowered & _ENVELOPE_RULES:
            envelope = not lowered & _HEADER_RULES
            self._sender_rules(address, envelope=envelope)
            return
        self.say("(no rewriting rulesets in postoffice: this is the route of the address)")
        self.say(f"{_col('parse', 'input:')} {address}")
        resolution = self._resolve(address)
        if resolution is None:
            return
        for step in resolution.trace:
            where = f" ({step.file}:{step.line})" if step.file else ""
            self.say(f"{_col(step.rule, 'returns:')} {step.detail}{where}")
        if not resolution.targets:
            self.say(f"{_col('parse', 'returns:')} $# discard $: {resolution.recipient}")
        for target in resolution.targets:
            self.say(f"{_col('parse', 'returns:')} {explain.ruleset_zero(target, resolution)}")

    def _sender_rules(self, address: str, *, envelope: bool) -> None:
        name = "MasqEnv" if envelope else "MasqHdr"
        self.say(f"{_col(name, 'input:')} {address}")
        sender = address.strip()
        if sender.startswith("<") and sender.endswith(">"):
            sender = sender[1:-1]
        new, steps = self.rewriter.trace(sender, envelope=envelope)
        for step in steps:
            where = f" ({step.file}:{step.line})" if step.file else ""
            self.say(f"{_col(step.rule, 'returns:')} {step.detail}{where}")
        self.say(f"{_col(name, 'returns:')} {new or '<>'}")

    def _parse(self, text: str) -> None:
        if not text:
            self.say("Usage: /parse address")
            return
        raw = text.encode("utf-8", "surrogateescape")
        spans = address_spans(raw)
        if not spans:
            self.say(f"Cracked address = {text}")
            self.say("Cannot parse")
            return
        start, end = spans[0]
        cracked = (raw[:start] + b"$g" + raw[end:]).decode("utf-8", "replace")
        address = raw[start:end].decode("utf-8", "replace")
        self.say(f"Cracked address = {cracked}")
        self.say(f"Parsing {self._flags()} address")
        resolution = self._resolve(address)
        if resolution is None:
            return
        if not resolution.targets:
            self.say(f"mailer discard, user {resolution.recipient}")
        for target in resolution.targets:
            self.say(explain.mailer_of(target, resolution).parse_line())

    def _lookup(self, rest: str) -> None:
        if not rest:
            self.say("Usage: /map mapname key")
            return
        name, _, key = rest.partition(" ")
        key = key.strip()
        if not key:
            self.say("No key specified")
            return
        m = self._map(name)
        if m is None:
            self.say(f'Map named "{name}" not found')
            return
        entry = m.lookup(key)
        if entry is None:
            self.say(f"map_lookup: {name} ({key}) no match (0)")
        else:
            self.say(f"map_lookup: {name} ({key}) returns {entry.value} (0)")
            self.say(f"  from {entry.where}")
        problems = m.problems()
        for problem in problems[:_MAP_PROBLEMS_SHOWN]:
            self.say(f"  map problem: {problem}")
        if len(problems) > _MAP_PROBLEMS_SHOWN:
            self.say(f"  ... and {len(problems) - _MAP_PROBLEMS_SHOWN} more problems")

    def _try(self, rest: str) -> None:
        mailer, _, address = rest.partition(" ")
        address = address.strip()
        if not mailer or not address:
            self.say("Usage: /try mailer address")
            return
        known = _MAILER_ALIASES.get(mailer.lower(), mailer.lower())
        if known not in MAILERS:
            self.say(f"Unknown mailer {mailer}")
            return
        self.say(f"Trying {self._flags()} address {address} for mailer {mailer}")
        if address.startswith("<") and address.endswith(">"):
            address = address[1:-1]
        if self.sender:
            new, _ = self.rewriter.trace(address, envelope=not self.header)
        else:
            new = explain.qualify(address, self.config.hostname)
        self.say(f"Rcode = 0, addr = {new or '<>'}")

    def _tryflags(self, flags: str) -> None:
        if not flags:
            self.say("Usage: /tryflags [Hh|Ee][Ss|Rr]")
            return
        for c in flags.upper():
            if c == "H":
                self.header = True
            elif c == "E":
                self.header = False
            elif c == "S":
                self.sender = True
            elif c == "R":
                self.sender = False


def address_test_mode(config: Config, inp: TextIO, out: TextIO, *, interactive: bool) -> int:
    """sendmail -bt: read commands until /quit or the end of input."""
    session = AddressTest(config, out)
    if interactive:
        out.write(BANNER)
    try:
        while True:
            if interactive:
                out.write("> ")
                out.flush()
            line = inp.readline()
            if not line:
                if interactive:
                    out.write("\n")
                break
            line = line.rstrip("\r\n")
            if not interactive:
                out.write(f"> {line}\n")
            if not session.handle(line):
                break
            out.flush()
    finally:
        session.close()
        out.flush()
    return EX_OK


def run(mode: str, config_path: str | None, addresses: list[str]) -> int:
    """The sendmail -bv / -bt entry (cli/sendmail.py main dispatches here)."""
    from postoffice.cli.main import error_line
    from postoffice.config.load import load_config
    from postoffice.errors import ConfigError, PostofficeError

    config = load_config(config_path)  # ConfigError: sendmail's main exits 78
    try:
        if mode == "bv":
            return verify(config, addresses, sys.stdout)
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        try:
            return address_test_mode(config, stdin, sys.stdout, interactive=stdin.isatty())
        finally:
            stdin.detach()  # leave sys.stdin's buffer open
    except ConfigError:
        raise
    except (PostofficeError, OSError) as e:
        print(f"sendmail: {error_line(e)}", file=sys.stderr)
        return EX_OSERR if isinstance(e, OSError) else EX_SOFTWARE
