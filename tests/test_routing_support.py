"""Stand-ins for routing tests: maps/ helpers, fake passwd entries, a router factory.

maps/aliases.py and maps/safefile.py were written alongside routing; the
tests use them when they can be imported, else these small versions of
`parse_targets`, `read_include` and `check_file` (routing.aliases.MapTools),
so the tests are written to pass with either. Fake passwd entries point at
tmp_path homes, so no system account is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from postoffice.config.schema import Config, DeliveryConfig, MapsConfig, RoutingConfig
from postoffice.maps.interfaces import MapEntry, MemoryMap
from postoffice.routing.aliases import MapTools, default_tools
from postoffice.routing.resolve import Router
from postoffice.routing.targets import Mailbox, Refusal, Resolution

HOST = "linux102.example.com"


def split_targets(value: str) -> list[str]:
    """Commas outside double quotes separate targets (aliases(5))."""
    out, cur, quoted, escaped = [], [], False, False
    for c in value:
        if escaped:
            cur.append(c)
            escaped = False
        elif c == "\\":
            cur.append(c)
            escaped = True
        elif c == '"':
            cur.append(c)
            quoted = not quoted
        elif c == "," and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    out.append("".join(cur))
    return [t.strip() for t in out if t.strip()]


def read_include(
    path: str, *, safe_files: bool, allowed_uids: Iterable[int] = ()
) -> tuple[list[str], list[str]]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        return [], [f"{path}: cannot open: {e.strerror}"]
    targets: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            targets.extend(split_targets(line))
    return targets, []


def check_file(path: str, allowed_uids: Iterable[int] = ()) -> str | None:
    st = os.stat(path)
    if st.st_mode & 0o022:
        return f"{path}: writable by group or others"
    if st.st_uid not in {0, os.getuid(), *allowed_uids}:
        return f"{path}: owned by uid {st.st_uid}"
    return None


STAND_INS = MapTools(parse_targets=split_targets, read_include=read_include, check_file=check_file)
try:  # the real helpers (maps/aliases.py, maps/safefile.py) once they exist
    TOOLS = default_tools()
except ImportError:
    TOOLS = STAND_INS


@dataclass(frozen=True)
class Pw:
    pw_name: str
    pw_uid: int
    pw_dir: str


@dataclass
class Accounts:
    """A fake passwd database; `getpwnam` raises KeyError like pwd's."""

    entries: dict[str, Pw] = field(default_factory=dict)
    calls: int = 0

    def add(self, name: str, home: Path | str, uid: int | None = None) -> Pw:
        pw = Pw(name, os.getuid() if uid is None else uid, str(home))
        self.entries[name] = pw
        return pw

    def getpwnam(self, name: str) -> Pw:
        self.calls += 1
        return self.entries[name]


def config(
    *,
    local_domains: tuple[str, ...] = (HOST, "localhost"),
    system_users: bool = True,
    delimiter: str = "+",
    smart_host: str = "",
    default_user: str = "nobody",
    system_mailbox: str = "mbox:/var/spool/mail/{user}",
    forward_files: bool = True,
    dotqmail: bool = True,
    safe_files: bool = True,
) -> Config:
    return Config(
        hostname=HOST,
        state_dir="/srv/po",
        local_domains=local_domains,
        users_file="/etc/po/users",
        maps=MapsConfig(safe_files=safe_files),
        routing=RoutingConfig(
            recipient_delimiter=delimiter,
            smart_host=smart_host,
            forward_files=forward_files,
            dotqmail=dotqmail,
        ),
        delivery=DeliveryConfig(
            mailbox="maildir:/srv/po/mail/{domain}/{user}",
            system_users=system_users,
            system_mailbox=system_mailbox,
            default_user=default_user,
        ),
    )


def make_router(
    *,
    aliases: dict[str, str] | None = None,
    virtusertable: dict[str, str] | None = None,
    mailertable: dict[str, str] | None = None,
    users: Iterable[str] = (),
    accounts: Accounts | None = None,
    cfg: Config | None = None,
    user_exists: Callable[[str], bool] | None = None,
    **kw: int,
) -> Router:
    known = {u.lower() for u in users}
    if accounts is None:
        accounts = Accounts()
        accounts.add("nobody", "/nonexistent", uid=65534)
    maps = {
        "aliases": MemoryMap("aliases", aliases or {}, file="/etc/mail/aliases"),
        "virtusertable": MemoryMap(
            "virtusertable", virtusertable or {}, file="/etc/mail/virtusertable"
        ),
        "mailertable": MemoryMap("mailertable", mailertable or {}, file="/etc/mail/mailertable"),
    }
    return Router.from_config(
        cfg or config(),
        user_exists=user_exists or (lambda a: a.lower() in known),
        maps=maps,
        getpwnam=accounts.getpwnam,
        tools=TOOLS,
        **kw,
    )


def mailboxes(res: Resolution) -> list[str]:
    return [t.spec for t in res.targets if isinstance(t, Mailbox)]


def vmail(local: str, domain: str = HOST) -> str:
    return f"maildir:/srv/po/mail/{domain}/{local}"


def refusal_codes(res: Resolution) -> list[tuple[int, str]]:
    return [(t.reply.code, t.reply.enhanced) for t in res.targets if isinstance(t, Refusal)]


# --- the stand-ins behave like the helpers they replace -----------------------------


def test_split_targets_keeps_quoted_commas() -> None:
    assert split_targets('a, "|prog x, y" ,b@c') == ["a", '"|prog x, y"', "b@c"]
    assert split_targets(" , ") == []


def test_memory_map_entries_know_their_line() -> None:
    m = MemoryMap("aliases", {"a": "b", "c": "d"}, file="/etc/mail/aliases")
    assert m.lookup("c") == MapEntry(key="c", value="d", file="/etc/mail/aliases", line=2)
