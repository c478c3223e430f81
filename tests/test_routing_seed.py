"""Seed 002's examples (sendmail on linux102.example.com), resolved.

The host receives for linux102.example.com, linux103.example.com and the
virtual domains tonk.com and pp.com (local-host-names); its users are
dongliang, lee, dl, test and root. tests/test_e2e_routing.py sends the same
examples over SMTP.
"""

from __future__ import annotations

from pathlib import Path

from postoffice.routing.resolve import Router
from postoffice.routing.targets import Mailbox, Refusal, Remote
from postoffice.smtp.replies import Reply
from test_routing_support import config, mailboxes, make_router, refusal_codes, vmail

HOST = "linux102.example.com"
DOMAINS = (HOST, "linux103.example.com", "tonk.com", "pp.com", "localhost")
USERS = [f"{u}@{HOST}" for u in ("dongliang", "lee", "dl", "test", "root")]
SYSTEM_ALIASES = {
    "mailer-daemon": "postmaster",
    "postmaster": "root",
    "bin": "root",
    "daemon": "root",
    "decode": "root",
}


def seed_router(
    aliases: dict[str, str] | None = None, virtusertable: dict[str, str] | None = None
) -> Router:
    return make_router(
        cfg=config(local_domains=DOMAINS, system_users=False, safe_files=False),
        users=USERS,
        aliases={**SYSTEM_ALIASES, **(aliases or {})},
        virtusertable=virtusertable,
    )


def test_local_host_names() -> None:
    r = seed_router()
    assert mailboxes(r.resolve("lee@linux103.example.com")) == [vmail("lee")]
    # not in local-host-names: not ours, so it is relayed (when relaying is allowed)
    assert r.resolve("lee@linux104.example.com").targets == (
        Remote(address="lee@linux104.example.com", nexthop=""),
    )


def test_admin_group_alias() -> None:
    res = seed_router({"admin": "dongliang,lee,dl"}).resolve(f"admin@{HOST}")
    assert mailboxes(res) == [vmail("dongliang"), vmail("lee"), vmail("dl")]


def test_admin_alias_with_include(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("dongliang\n\nlee\n\ndl\n")
    users.chmod(0o644)
    res = seed_router({"admin": f":include:{users}"}).resolve(f"admin@{HOST}")
    assert mailboxes(res) == [vmail("dongliang"), vmail("lee"), vmail("dl")]


def test_dl_backup_alias() -> None:
    res = seed_router({"dl": "dl,lee"}).resolve(f"dl@{HOST}")
    assert mailboxes(res) == [vmail("dl"), vmail("lee")]
    res = seed_router({"dl": "dl,dl@qq.com"}).resolve(f"dl@{HOST}")
    assert res.targets == (
        Mailbox(address=f"dl@{HOST}", spec=vmail("dl")),
        Remote(address="dl@qq.com", nexthop=""),
    )


def test_system_aliases_reach_root() -> None:
    r = seed_router()
    for name in ("MAILER-DAEMON", "postmaster", "bin", "decode"):
        assert mailboxes(r.resolve(f"{name}@{HOST}")) == [vmail("root")], name


def test_virtusertable_examples() -> None:
    r = seed_router(
        virtusertable={
            "someone@tonk.com": "dl",
            "dl@tonk.com": "error:No such user",
            "lee@tonk.com": "error:you are wrong",
            "@tonk.com": f"%1@{HOST}",
            "@pp.com": f"dl@{HOST}",
        }
    )
    assert mailboxes(r.resolve("someone@tonk.com")) == [vmail("dl")]
    assert r.resolve("dl@tonk.com").refusal == Refusal(
        address="dl@tonk.com", reply=Reply(code=550, enhanced="5.1.1", text="No such user")
    )
    assert r.resolve("lee@tonk.com").refusal == Refusal(
        address="lee@tonk.com", reply=Reply(code=550, enhanced="5.1.1", text="you are wrong")
    )
    assert mailboxes(r.resolve("test@tonk.com")) == [vmail("test")]  # %1
    assert refusal_codes(r.resolve("ghost@tonk.com")) == [(550, "5.1.1")]
    assert mailboxes(r.resolve("anyone@pp.com")) == [vmail("dl")]


def test_catch_all_to_one_user() -> None:
    r = seed_router(virtusertable={"@tonk.com": f"dl@{HOST}"})
    assert mailboxes(r.resolve("whoever@tonk.com")) == [vmail("dl")]


def test_virtusertable_before_aliases() -> None:
    # seed 002: a domain in local-host-names and virtusertable: virtusertable first
    r = seed_router(aliases={"dl": "lee"}, virtusertable={"dl@tonk.com": "dongliang"})
    assert mailboxes(r.resolve("dl@tonk.com")) == [vmail("dongliang")]
    assert mailboxes(r.resolve(f"dl@{HOST}")) == [vmail("lee")]


def test_alias_expansion_stops_at_a_virtual_domain() -> None:
    # seed 002: once an expanded address's domain has virtusertable lines, no
    # more aliasing of that address: the virtusertable rule runs at once.
    r = seed_router(
        aliases={"admin": "dl@tonk.com, lee", "dl": "test"},
        virtusertable={"dl@tonk.com": "dongliang"},
    )
    res = r.resolve(f"admin@{HOST}")
    assert mailboxes(res) == [vmail("dongliang"), vmail("lee")]
    assert vmail("test") not in mailboxes(res)


def test_virtual_domain_not_in_local_host_names_is_not_virtual() -> None:
    # seed 002: the left-hand domains must be in local-host-names, or sendmail
    # looks the domain up on the Internet and delivers there.
    r = make_router(
        cfg=config(local_domains=(HOST,), system_users=False),
        users=USERS,
        virtusertable={"dl@tonk.com": "dongliang"},
    )
    assert r.resolve("dl@tonk.com").targets == (Remote(address="dl@tonk.com", nexthop=""),)
