"""virtual — sendmail's virtusertable: domain-specific aliasing for local and virtual domains.

Description:
    For an address whose domain is local (local_domains, which includes
    config_dir/local-host-names: "all the host names on the left hand side
    must be in class {w}", cf/README virtusertable, and seed 002), the
    virtusertable is consulted before anything else. The keys are tried
    in sendmail's order (cf/m4/proto.m4, Parse1 "handle virtual users"),
    "+" standing for the configured recipient delimiter:

        user+detail@domain      the whole address
        user++@domain           any non-empty detail of user
        user+*@domain           any detail of user, even an empty one
        user@domain             the user, detail dropped
        ++@domain               any user with a non-empty detail
        +*@domain               any user with a detail
        @domain                 the catch-all

    Without a detail only `user@domain` and `@domain` are tried. Keys are
    folded to lower case, as makemap folds them; a quoted local part is
    never divided. The local part divides at its first delimiter
    (sendmail's `$+ + $*`).

    The value is one target (or, as a postoffice extension, a list in the
    aliases grammar) in which

        %1   the user (the local part without +detail)
        %2   the detail
        %3   the delimiter and the detail ("+detail"), so `@d %1%3@x`
             keeps the detail
        %%   a literal %

    are replaced, or an error:

        error:D.S.N:CODE text    error:5.7.0:550 Address invalid
        error:NAME CODE text     error:nouser 550 No such user here
        error:CODE text          error:550 Go away
        error:text               error:No such user (seed 002)

    NAME is one of sendmail's error mailer statuses (usage, nouser,
    nohost, unavailable, software, tempfail, protocol, config; parseaddr.c
    ErrorCodes). The last form is kept whole as the text with 550 5.1.1,
    where sendmail would take its first word as an (unknown) status name
    and drop it — a trap the seed's own example falls into.

Security:
    Values are the administrator's; %1 and %2 are the client's and are
    only ever substituted into a value that routing then treats as an
    address: a virtusertable target can never become a program, a file or
    an :include: (routing/resolve.py refuses those with 550 5.7.1, as
    sendmail refuses mail "directly to" them).

Config:
    [maps] virtusertable, [routing] recipient_delimiter.

See also:
    sendmail cf/README (virtusertable), cf/m4/proto.m4, parseaddr.c
    (buildaddr, the error mailer), RFC 3463 (enhanced codes), seed 002.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postoffice.maps.interfaces import Map, MapEntry
from postoffice.routing.users import is_quoted
from postoffice.smtp.replies import Reply

# sendmail parseaddr.c ErrorCodes → (SMTP code, enhanced status) as deliver.c reports them.
ERROR_NAMES: dict[str, tuple[int, str]] = {
    "usage": (550, "5.5.4"),
    "nouser": (550, "5.1.1"),
    "nohost": (550, "5.1.2"),
    "unavailable": (550, "5.0.0"),
    "software": (554, "5.3.0"),
    "tempfail": (451, "4.0.0"),
    "protocol": (554, "5.5.0"),
    "config": (554, "5.3.5"),
}
_DSN = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})\Z")
_CODE = re.compile(r"([45])\d\d\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_TEXT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualMatch:
    """The virtusertable entry that matched, and what it says."""

    key: str
    entry: MapEntry
    value: str = ""  # the right-hand side with %1 %2 %3 substituted
    refusal: Reply | None = None  # for error: values


def keys(local: str, domain: str, delimiter: str) -> list[tuple[str, str, str]]:
    """(key, user, detail) in lookup order for local@domain (see the manual)."""
    local_key = local.lower()
    if not delimiter or is_quoted(local):
        return [(f"{local_key}@{domain}", local, ""), (f"@{domain}", local, "")]
    i = local_key.find(delimiter)
    if i <= 0:
        return [(f"{local_key}@{domain}", local, ""), (f"@{domain}", local, "")]
    user, detail = local[:i], local[i + len(delimiter) :]
    ukey, d = local_key[:i], delimiter
    out = [(f"{local_key}@{domain}", user, detail)]
    if detail:
        out.append((f"{ukey}{d}{d}@{domain}", user, detail))
    out.append((f"{ukey}{d}*@{domain}", user, detail))
    out.append((f"{ukey}@{domain}", user, detail))
    if detail:
        out.append((f"{d}{d}@{domain}", user, detail))
    out.append((f"{d}*@{domain}", user, detail))
    out.append((f"@{domain}", user, detail))
    return out


def substitute(value: str, user: str, detail: str, delimiter: str) -> str:
    """`value` with %1 (user), %2 (detail), %3 (delimiter+detail) and %% replaced."""
    if "%" not in value:
        return value
    plus = f"{delimiter}{detail}" if detail else ""
    subs = {"1": user, "2": detail, "3": plus, "%": "%"}
    return re.sub(r"%([123%])", lambda m: subs[m.group(1)], value)


def _clean_text(text: str, fallback: str) -> str:
    text = _CONTROL.sub(" ", text).strip().strip('"').strip()
    return (text or fallback)[:MAX_TEXT]


def parse_error(value: str, *, default: Reply) -> Reply:
    """The reply an `error:...` value asks for (see the manual); `default` fills gaps."""
    rest = value.strip()
    if rest[:6].lower() == "error:":
        rest = rest[6:].strip()
    code, enhanced = default.code, default.enhanced
    head, sep, tail = rest.partition(":")
    if sep and _DSN.match(head.strip()):  # error:D.S.N:CODE text
        enhanced, rest = head.strip(), tail.strip()
        code = 451 if enhanced[0] == "4" else 550
    else:
        word, _, tail = rest.partition(" ")
        if word.lower() in ERROR_NAMES:
            code, enhanced = ERROR_NAMES[word.lower()]
            rest = tail.strip()
    # an SMTP code (and an enhanced code) may open the text
    word, _, tail = rest.partition(" ")
    if _CODE.match(word):
        code, rest = int(word), tail.strip()
        word, _, tail = rest.partition(" ")
        if _DSN.match(word):
            enhanced, rest = word, tail.strip()
    # the classes must agree (RFC 3463 §2: the class mirrors the reply code)
    if str(code)[0] != enhanced[:1]:
        enhanced = f"{str(code)[0]}{enhanced[1:]}" if _DSN.match(enhanced) else f"{code // 100}.0.0"
    return Reply(code=code, enhanced=enhanced, text=_clean_text(rest, default.text))


def is_error(value: str) -> bool:
    return value.lstrip()[:6].lower() == "error:"


def lookup(
    virtusertable: Map, local: str, domain: str, delimiter: str, *, default_error: Reply
) -> VirtualMatch | None:
    """The first virtusertable entry for local@domain, with its value prepared."""
    for key, user, detail in keys(local, domain, delimiter):
        entry = virtusertable.lookup(key)
        if entry is None:
            continue
        if is_error(entry.value):
            return VirtualMatch(
                key=key, entry=entry, refusal=parse_error(entry.value, default=default_error)
            )
        return VirtualMatch(
            key=key, entry=entry, value=substitute(entry.value, user, detail, delimiter)
        )
    return None
