"""smtp.commands — parse one SMTP command line into a typed command.

Description:
    `parse_command(line)` takes one command line as bytes, without its CRLF,
    and returns a frozen dataclass: `Hello`, `Mail`, `Rcpt`, `Data`, `Bdat`,
    `Rset`, `Vrfy`, `Expn`, `Help`, `Noop`, `Quit`, `StartTls`, `Auth`,
    `Etrn`, `Obsolete` (SEND, SOML, SAML, TURN) or `Unknown`. Verbs are
    case-insensitive (RFC 5321 §2.4). A malformed argument raises
    `CommandError`, a ProtocolError carrying the Reply to send:

      * 501 5.5.4  malformed argument or ESMTP parameter value, duplicate
                   parameter (RFC 5321 §4.1.1.11, §4.2.2);
      * 501 5.1.7 / 5.1.3  bad sender / recipient address syntax;
      * 553 5.6.7  non-ASCII address without SMTPUTF8 (RFC 6531 §3.5);
      * 555 5.5.4  unknown or disabled ESMTP parameter (RFC 5321 §4.1.1.11).

    Parsing is split in two so the engine can check the command sequence
    before the arguments (a RCPT before MAIL is 503 even when malformed):
    `split_verb(line)` returns the verb; `parse_command()` does the rest.

    ESMTP parameters (RFC 5321 §4.1.2 esmtp-param) become
    `events.MailParams` / `events.RcptParams`:
      MAIL: SIZE (RFC 1870 §3), BODY=7BIT|8BITMIME (RFC 6152 §2),
            BODY=BINARYMIME (RFC 3030 §3, only with CHUNKING and
            `Features.binarymime`), SMTPUTF8 (RFC 6531 §3.4), RET and
            ENVID (RFC 3461 §4.3, §4.4), AUTH= (RFC 4954 §5).
      RCPT: NOTIFY (RFC 3461 §4.1, NEVER exclusive), ORCPT (RFC 3461 §4.2).
    xtext values (RFC 3461 §4) are decoded.

    Which parameters are accepted follows `Features`, built by the engine
    from its EngineConfig: a parameter of a disabled extension is 555.

    The path is separated from the parameters by `address.take_path`;
    spaces after the colon (`MAIL FROM: <a@b>`) and a path without angle
    brackets (`MAIL FROM:a@b`) are accepted, as Postfix does.

    Pure: stdlib and layer-0 modules only.

Security:
    Input is attacker-controlled. Lines are decoded once, as UTF-8 with
    surrogateescape, so invalid UTF-8 can never pass address validation
    (lone surrogates are outside every accepted character class).

See also:
    RFC 5321 §4.1.1 (commands), §4.1.2 (syntax), RFC 1870, RFC 3030,
    RFC 3461, RFC 4954, RFC 6152, RFC 6531; address.py; smtp/protocol.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from postoffice import address
from postoffice.errors import ProtocolError
from postoffice.smtp import replies
from postoffice.smtp.events import EngineConfig, MailParams, RcptParams
from postoffice.smtp.replies import Reply

__all__ = [
    "ALL_FEATURES",
    "KNOWN_VERBS",
    "OBSOLETE_VERBS",
    "Auth",
    "Bdat",
    "Command",
    "CommandError",
    "Data",
    "Etrn",
    "Expn",
    "Features",
    "Hello",
    "Help",
    "Mail",
    "Noop",
    "Obsolete",
    "Quit",
    "Rcpt",
    "Rset",
    "StartTls",
    "Unknown",
    "Vrfy",
    "parse_command",
    "parse_mail_params",
    "parse_rcpt_params",
    "split_verb",
    "xtext_decode",
    "xtext_encode",
]


class CommandError(ProtocolError):
    """A command line that cannot be accepted; `reply` says why."""

    def __init__(self, reply: Reply, reason: str = "", *, verb: str = "") -> None:
        super().__init__(reply, reason)
        self.verb = verb


@dataclass(frozen=True, slots=True, kw_only=True)
class Features:
    """Which ESMTP extensions the parser accepts parameters for."""

    size: bool = True  # RFC 1870
    eightbitmime: bool = True  # RFC 6152
    smtputf8: bool = True  # RFC 6531
    dsn: bool = True  # RFC 3461
    chunking: bool = True  # RFC 3030
    binarymime: bool = False  # RFC 3030 §3 (needs chunking too)

    @classmethod
    def from_config(cls, config: EngineConfig) -> Features:
        """What the engine configured with `config` advertises."""
        return cls(
            size=config.advertise_size,
            eightbitmime=config.eightbitmime,
            smtputf8=config.smtputf8,
            dsn=config.dsn,
            chunking=config.chunking,
            binarymime=config.binarymime,
        )


ALL_FEATURES = Features(binarymime=True)


# --- commands -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Base class: `verb` is the upper-cased verb as sent."""

    verb: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Command):
    """HELO / EHLO / LHLO domain (RFC 5321 §4.1.1.1, RFC 2033 §4.1)."""

    domain: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail(Command):
    """MAIL FROM:<reverse-path> [params] (RFC 5321 §4.1.1.2)."""

    sender: str
    params: MailParams


@dataclass(frozen=True, slots=True, kw_only=True)
class Rcpt(Command):
    """RCPT TO:<forward-path> [params] (RFC 5321 §4.1.1.3)."""

    recipient: str
    params: RcptParams


@dataclass(frozen=True, slots=True, kw_only=True)
class Data(Command):
    """DATA (RFC 5321 §4.1.1.4)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bdat(Command):
    """BDAT chunk-size [LAST] (RFC 3030 §2)."""

    size: int
    last: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Rset(Command):
    """RSET (RFC 5321 §4.1.1.5)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Vrfy(Command):
    """VRFY string (RFC 5321 §4.1.1.6; RFC 6531 §3.7.4 allows SMTPUTF8)."""

    argument: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Expn(Command):
    """EXPN string (RFC 5321 §4.1.1.7)."""

    argument: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Help(Command):
    """HELP [string] (RFC 5321 §4.1.1.8)."""

    argument: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Noop(Command):
    """NOOP [string] (RFC 5321 §4.1.1.9)."""

    argument: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit(Command):
    """QUIT (RFC 5321 §4.1.1.10)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTls(Command):
    """STARTTLS (RFC 3207 §4)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth(Command):
    """AUTH mechanism [initial-response] (RFC 4954 §4)."""

    mechanism: str
    initial_response: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Etrn(Command):
    """ETRN node (RFC 1985)."""

    argument: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Obsolete(Command):
    """SEND, SOML, SAML, TURN: removed by RFC 5321 Appendix F.3-F.6."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown(Command):
    """Anything else, including an empty line (verb "")."""


OBSOLETE_VERBS = frozenset({"SEND", "SOML", "SAML", "TURN"})
KNOWN_VERBS = frozenset(
    {
        "HELO",
        "EHLO",
        "LHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "RSET",
        "VRFY",
        "EXPN",
        "HELP",
        "NOOP",
        "QUIT",
        "STARTTLS",
        "AUTH",
        "ETRN",
    }
    | OBSOLETE_VERBS
)

_SIZE_DIGITS = 20  # RFC 1870 §3 size-value ::= 1*20DIGIT


def split_verb(line: bytes) -> tuple[str, bytes]:
    """Return (VERB, rest): the verb upper-cased ("" if it is not a known
    ASCII verb word, which makes it Unknown) and the bytes after the space."""
    sp = line.find(b" ")
    word, rest = (line, b"") if sp < 0 else (line[:sp], line[sp + 1 :])
    if len(word) > 8 or not word.isalpha():
        return ("", rest) if word else ("", b"")
    return word.decode("ascii").upper(), rest


def parse_command(
    line: bytes, *, features: Features = ALL_FEATURES, smtputf8: bool = False
) -> Command:
    """Parse one command line (no CRLF) into a Command.

    `smtputf8` says whether the current transaction's MAIL carried SMTPUTF8
    (it decides whether RCPT may carry a UTF-8 address, RFC 6531 §3.4).
    Raises CommandError on a malformed argument. Unknown verbs are not an
    error here: they return `Unknown` and the engine answers 500.
    """
    verb, rest = split_verb(line)
    if verb not in KNOWN_VERBS:
        word = line.split(b" ", 1)[0][:16]
        return Unknown(verb=word.decode("ascii", "replace").upper())
    return parse_arguments(verb, rest, features=features, smtputf8=smtputf8)


def parse_arguments(
    verb: str, rest: bytes, *, features: Features = ALL_FEATURES, smtputf8: bool = False
) -> Command:
    """Parse the arguments of a known verb (see parse_command)."""
    text = rest.decode("utf-8", "surrogateescape").strip(" \t")
    if verb in ("HELO", "EHLO", "LHLO"):
        return _parse_hello(verb, text)
    if verb == "MAIL":
        return _parse_mail(text, features)
    if verb == "RCPT":
        return _parse_rcpt(text, features, smtputf8)
    if verb == "BDAT":
        return _parse_bdat(text)
    if verb in ("DATA", "RSET", "STARTTLS"):
        # RFC 5321 §4.1.1.4, §4.1.1.5; RFC 3207 §4: no arguments.
        if text:
            raise CommandError(replies.PARAM_SYNTAX, f"{verb} takes no argument", verb=verb)
        if verb == "DATA":
            return Data(verb=verb)
        return Rset(verb=verb) if verb == "RSET" else StartTls(verb=verb)
    if verb == "QUIT":
        return Quit(verb=verb)  # liberal: trailing text is ignored
    if verb in ("VRFY", "EXPN", "ETRN"):
        if not text:
            raise CommandError(replies.PARAM_SYNTAX, f"{verb} needs an argument", verb=verb)
        if verb == "VRFY":
            return Vrfy(verb=verb, argument=text)
        return Expn(verb=verb, argument=text) if verb == "EXPN" else Etrn(verb=verb, argument=text)
    if verb == "HELP":
        return Help(verb=verb, argument=text)
    if verb == "NOOP":
        return Noop(verb=verb, argument=text)
    if verb == "AUTH":
        words = text.split()
        if not words or len(words) > 2:
            raise CommandError(replies.PARAM_SYNTAX, "AUTH mechanism [response]", verb=verb)
        return Auth(
            verb=verb,
            mechanism=words[0].upper(),
            initial_response=words[1] if len(words) == 2 else None,
        )
    return Obsolete(verb=verb)


def _parse_hello(verb: str, text: str) -> Hello:
    # RFC 5321 §4.1.1.1: "EHLO" SP ( Domain / address-literal ). The domain
    # is checked by policy, not here; we only insist on one printable word.
    if not text:
        raise CommandError(replies.PARAM_SYNTAX, f"{verb} needs a domain", verb=verb)
    domain = text.split()[0]
    if not domain.isprintable():
        raise CommandError(replies.PARAM_SYNTAX, f"{verb} domain has control chars", verb=verb)
    domain = domain.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return Hello(verb=verb, domain=domain)


def _split_path(text: str, keyword: str, verb: str, bad: Reply) -> tuple[str, list[str]]:
    """`FROM:<path> params` → (path, [param, ...])."""
    if text[: len(keyword)].upper() != keyword:
        raise CommandError(replies.PARAM_SYNTAX, f"{verb} needs {keyword}", verb=verb)
    text = text[len(keyword) :].lstrip(" ")  # liberal: `MAIL FROM: <a@b>`
    if not text:
        raise CommandError(bad, "missing path", verb=verb)
    try:
        path, rest = address.take_path(text)
    except address.AddressError as exc:
        raise CommandError(bad, str(exc), verb=verb) from exc
    if rest and rest[0] != " ":
        raise CommandError(bad, "junk after path", verb=verb)
    return path, rest.split(" ")


def _parse_mail(text: str, features: Features) -> Mail:
    path, params = _split_path(text, "FROM:", "MAIL", replies.BAD_SENDER_SYNTAX)
    mp = parse_mail_params(params, features=features)
    try:
        sender = address.parse_reverse_path(path, smtputf8=mp.smtputf8)
    except address.Utf8RequiredError as exc:
        raise CommandError(replies.NON_ASCII_ADDRESS, str(exc), verb="MAIL") from exc
    except address.AddressError as exc:
        raise CommandError(replies.BAD_SENDER_SYNTAX, str(exc), verb="MAIL") from exc
    return Mail(verb="MAIL", sender=sender, params=mp)


def _parse_rcpt(text: str, features: Features, smtputf8: bool) -> Rcpt:
    path, params = _split_path(text, "TO:", "RCPT", replies.BAD_RCPT_SYNTAX)
    rp = parse_rcpt_params(params, features=features)
    try:
        recipient = address.parse_forward_path(path, smtputf8=smtputf8)
    except address.Utf8RequiredError as exc:
        raise CommandError(replies.NON_ASCII_ADDRESS, str(exc), verb="RCPT") from exc
    except address.AddressError as exc:
        raise CommandError(replies.BAD_RCPT_SYNTAX, str(exc), verb="RCPT") from exc
    return Rcpt(verb="RCPT", recipient=recipient, params=rp)


def _parse_bdat(text: str) -> Bdat:
    # RFC 3030 §2: bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF
    words = text.split(" ")
    size_text = words[0]
    if (
        not size_text.isascii()
        or not size_text.isdigit()
        or len(size_text) > _SIZE_DIGITS
        or len(words) > 2
        or (len(words) == 2 and words[1].upper() != "LAST")
    ):
        raise CommandError(replies.PARAM_SYNTAX, "BDAT chunk-size [LAST]", verb="BDAT")
    return Bdat(verb="BDAT", size=int(size_text), last=len(words) == 2)


# --- ESMTP parameters -----------------------------------------------------


def _keyword_value(param: str, verb: str, seen: set[str]) -> tuple[str, str | None]:
    """Split `KEY[=value]`, check RFC 5321 §4.1.2 syntax and duplicates."""
    key, eq, value = param.partition("=")
    # esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    if not key or not key.isascii() or not key[0].isalnum() or not key.replace("-", "").isalnum():
        raise CommandError(replies.PARAM_SYNTAX, "bad parameter keyword", verb=verb)
    key = key.upper()
    if key in seen:
        raise CommandError(replies.PARAM_SYNTAX, f"duplicate {key}", verb=verb)
    seen.add(key)
    if not eq:
        return key, None
    # esmtp-value = 1*(%d33-60 / %d62-126): no "=", no SP, no controls.
    if not value or not value.isascii() or not value.isprintable() or "=" in value:
        raise CommandError(replies.PARAM_SYNTAX, f"bad {key} value", verb=verb)
    return key, value


def _unsupported(key: str, verb: str) -> CommandError:
    return CommandError(replies.PARAM_UNRECOGNIZED, f"unsupported {key}", verb=verb)


def _bad(key: str, verb: str) -> CommandError:
    return CommandError(replies.PARAM_SYNTAX, f"bad {key} value", verb=verb)


def parse_mail_params(params: list[str], *, features: Features = ALL_FEATURES) -> MailParams:
    """MAIL FROM parameters → MailParams (empty strings are skipped)."""
    size: int | None = None
    body = "7BIT"
    smtputf8 = False
    ret: str | None = None
    envid: str | None = None
    auth: str | None = None
    seen: set[str] = set()
    for param in params:
        if not param:
            continue
        key, value = _keyword_value(param, "MAIL", seen)
        if key == "SIZE" and features.size:
            # RFC 1870 §3 size-value ::= 1*20DIGIT
            if value is None or not value.isdigit() or len(value) > _SIZE_DIGITS:
                raise _bad(key, "MAIL")
            size = int(value)
        elif key == "BODY":
            # RFC 6152 §2, RFC 3030 §3
            upper = (value or "").upper()
            allowed = {
                "7BIT": True,
                "8BITMIME": features.eightbitmime,
                "BINARYMIME": features.binarymime and features.chunking,
            }
            if allowed.get(upper):
                body = upper
            elif upper in allowed:
                raise _unsupported(f"BODY={upper}", "MAIL")
            else:
                raise _bad(key, "MAIL")
        elif key == "SMTPUTF8" and features.smtputf8:
            if value is not None:  # RFC 6531 §3.4: no value
                raise _bad(key, "MAIL")
            smtputf8 = True
        elif key == "RET" and features.dsn:
            # RFC 3461 §4.3 ret-value = "FULL" / "HDRS"
            upper = (value or "").upper()
            if upper not in ("FULL", "HDRS"):
                raise _bad(key, "MAIL")
            ret = upper
        elif key == "ENVID" and features.dsn:
            # RFC 3461 §4.4: xtext, at most 100 characters, printable ASCII
            envid = _xtext_param(value, key, "MAIL")
            if len(envid) > 100 or not envid.isprintable():
                raise _bad(key, "MAIL")
        elif key == "AUTH":
            # RFC 4954 §5: AUTH=<mailbox as xtext> or AUTH=<>; parsed and kept.
            auth = _xtext_param(value, key, "MAIL")
        else:
            raise _unsupported(key, "MAIL")
    return MailParams(size=size, body=body, smtputf8=smtputf8, ret=ret, envid=envid, auth=auth)


_NOTIFY_VALUES = frozenset({"NEVER", "SUCCESS", "FAILURE", "DELAY"})


def parse_rcpt_params(params: list[str], *, features: Features = ALL_FEATURES) -> RcptParams:
    """RCPT TO parameters → RcptParams (empty strings are skipped)."""
    notify: frozenset[str] | None = None
    orcpt: str | None = None
    seen: set[str] = set()
    for param in params:
        if not param:
            continue
        key, value = _keyword_value(param, "RCPT", seen)
        if key == "NOTIFY" and features.dsn:
            # RFC 3461 §4.1: "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )
            items = (value or "").upper().split(",")
            wanted = frozenset(items)
            if (
                not value
                or len(wanted) != len(items)
                or not wanted <= _NOTIFY_VALUES
                or ("NEVER" in wanted and len(wanted) > 1)
            ):
                raise _bad(key, "RCPT")
            notify = wanted
        elif key == "ORCPT" and features.dsn:
            # RFC 3461 §4.2: addr-type ";" xtext
            addr_type, semi, encoded = (value or "").partition(";")
            if not semi or not addr_type or not addr_type.replace("-", "").isalnum():
                raise _bad(key, "RCPT")
            decoded = _xtext_param(encoded, key, "RCPT")
            if not decoded.isprintable():
                raise _bad(key, "RCPT")
            orcpt = f"{addr_type};{decoded}"
        else:
            raise _unsupported(key, "RCPT")
    return RcptParams(notify=notify, orcpt=orcpt)


def _xtext_param(value: str | None, key: str, verb: str) -> str:
    if not value:
        raise _bad(key, verb)
    try:
        return xtext_decode(value)
    except ValueError as exc:
        raise _bad(key, verb) from exc


_HEX = frozenset("0123456789ABCDEF")


def xtext_decode(text: str) -> str:
    """Decode RFC 3461 §4 xtext: `+XX` (upper-case hex) stands for one octet;
    other characters must be "!" through "~" except "+" and "=".
    Raises ValueError on malformed input. The octets are decoded as UTF-8
    (invalid sequences raise)."""
    if "+" not in text:
        if not text.isascii() or not text.isprintable() or " " in text or "=" in text:
            raise ValueError("bad xtext character")
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "+":
            hexpair = text[i + 1 : i + 3]
            if len(hexpair) != 2 or not set(hexpair) <= _HEX:
                raise ValueError("bad xtext hexchar")
            out.append(int(hexpair, 16))
            i += 3
            continue
        if not ("!" <= c <= "~") or c == "=":
            raise ValueError("bad xtext character")
        out.append(ord(c))
        i += 1
    return out.decode("utf-8")


def xtext_encode(text: str) -> str:
    """Encode to RFC 3461 §4 xtext (the inverse of xtext_decode)."""
    out = []
    for octet in text.encode("utf-8"):
        if 33 <= octet <= 126 and octet not in (0x2B, 0x3D):
            out.append(chr(octet))
        else:
            out.append(f"+{octet:02X}")
    return "".join(out)
