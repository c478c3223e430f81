"""Router.resolve(): the documented order, loops, limits, and remote routes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from postoffice.config.schema import Config, MapsConfig
from postoffice.maps.interfaces import MemoryMap
from postoffice.routing.resolve import Router
from postoffice.routing.targets import File, Mailbox, Program, Refusal, Remote
from postoffice.smtp.replies import Reply
from test_routing_support import (
    HOST,
    TOOLS,
    Accounts,
    config,
    mailboxes,
    make_router,
    refusal_codes,
    vmail,
)

USERS = [f"{u}@{HOST}" for u in ("alice", "bob", "carol", "dl", "lee", "root")]


def rules(res: object) -> list[str]:
    return [s.rule for s in res.trace]  # type: ignore[attr-defined]


# --- 1. normalisation ----------------------------------------------------------------


def test_plain_virtual_user() -> None:
    res = make_router(users=USERS).resolve(f"alice@{HOST}")
    assert res.targets == (Mailbox(address=f"alice@{HOST}", spec=vmail("alice")),)
    assert res.recipient == f"alice@{HOST}"
    assert rules(res) == ["normalise", "mailbox"]
    assert res.refusal is None and res.envelope_sender is None


def test_domain_case_and_trailing_dot() -> None:
    res = make_router(users=USERS).resolve("Alice@LINUX102.Example.COM.")
    assert res.recipient == "Alice@linux102.example.com"
    assert mailboxes(res) == [vmail("alice")]


@pytest.mark.parametrize("local", ["bob%remote.org", "remote.org!bob", "bob%remote.org%x"])
def test_percent_hack_and_bang_paths_are_not_routed(local: str) -> None:
    res = make_router(users=USERS).resolve(f"{local}@{HOST}")
    assert not any(isinstance(t, Remote) for t in res.targets)
    assert refusal_codes(res) == [(550, "5.1.1")]


def test_source_route_is_dropped() -> None:
    res = make_router(users=USERS).resolve(f"@hop.example,@hop2.example:alice@{HOST}")
    assert mailboxes(res) == [vmail("alice")]


def test_quoted_local_part_kept_and_never_aliased() -> None:
    r = make_router(users=USERS, aliases={"alice": "bob"})
    res = r.resolve(f'"alice"@{HOST}')
    assert res.recipient == f'"alice"@{HOST}'
    assert mailboxes(res) == [vmail("alice")]  # the user, not the alias


def test_bad_address_is_refused_not_raised() -> None:
    res = make_router().resolve("not an address")
    assert refusal_codes(res) == [(501, "5.1.3")]


def test_bare_postmaster_is_this_hosts() -> None:
    res = make_router(users=USERS, aliases={"postmaster": "alice"}).resolve("postmaster")
    assert res.recipient == "postmaster"
    assert mailboxes(res) == [vmail("alice")]


# --- 2. virtusertable -----------------------------------------------------------------


def vrouter(**kw: object) -> Router:
    cfg = config(local_domains=(HOST, "tonk.com", "virt.example", "localhost"))
    return make_router(cfg=cfg, users=USERS, **kw)  # type: ignore[arg-type]


def test_virtusertable_to_local_user_remote_and_error() -> None:
    r = vrouter(
        virtusertable={
            "info@tonk.com": "alice",
            "jane@tonk.com": "jane@elsewhere.net",
            "joe@tonk.com": "error:5.1.1:550 Joe left",
        }
    )
    assert mailboxes(r.resolve("info@tonk.com")) == [vmail("alice")]
    assert r.resolve("jane@tonk.com").targets == (Remote(address="jane@elsewhere.net", nexthop=""),)
    res = r.resolve("joe@tonk.com")
    assert res.refusal == Refusal(
        address="joe@tonk.com", reply=Reply(code=550, enhanced="5.1.1", text="Joe left")
    )
    step = res.trace[1]
    assert (step.rule, step.file, step.line) == ("virtusertable", "/etc/mail/virtusertable", 3)


def test_catch_all_with_percent_1_2_3() -> None:
    r = vrouter(
        virtusertable={
            "@tonk.com": f"%1@{HOST}",
            "old+*@virt.example": f"alice+%2@{HOST}",
            "@virt.example": f"%1%3@{HOST}",
        }
    )
    assert r.resolve("bob@tonk.com").targets[0].address == f"bob@{HOST}"
    assert r.resolve("bob+tag@tonk.com").targets[0].address == f"bob@{HOST}"  # %1 drops +tag
    res = r.resolve("old+news@virt.example")
    assert res.targets == (Mailbox(address=f"alice+news@{HOST}", spec=vmail("alice")),)
    res = r.resolve("carol+x@virt.example")
    assert res.targets == (Mailbox(address=f"carol+x@{HOST}", spec=vmail("carol")),)


def test_virtusertable_only_for_local_domains() -> None:
    r = make_router(users=USERS, virtusertable={"@tonk.com": "alice"})
    assert r.resolve("x@tonk.com").targets == (Remote(address="x@tonk.com", nexthop=""),)


def test_virtusertable_lines_reference_each_other() -> None:
    r = vrouter(virtusertable={"info@tonk.com": "sales@virt.example", "@virt.example": "bob"})
    res = r.resolve("info@tonk.com")
    assert mailboxes(res) == [vmail("bob")]
    assert rules(res).count("virtusertable") == 2


def test_virtusertable_result_is_aliased_and_seed_precedence() -> None:
    # seed 002: an alias expansion that lands in a virtual domain goes to the
    # virtusertable, not to the alias of its local part.
    r = vrouter(
        virtusertable={"team@tonk.com": "team", "carol@tonk.com": "bob"},
        aliases={"team": "alice, carol@tonk.com", "carol": "lee"},
    )
    res = r.resolve("team@tonk.com")
    assert mailboxes(res) == [vmail("alice"), vmail("bob")]
    assert vmail("lee") not in mailboxes(res)


def test_virtusertable_without_a_match_falls_to_aliases() -> None:
    r = vrouter(virtusertable={"dl@tonk.com": "lee"}, aliases={"admin": "alice"})
    assert mailboxes(r.resolve("admin@tonk.com")) == [vmail("alice")]


def test_virtusertable_maps_address_to_itself() -> None:
    r = vrouter(virtusertable={"alice@tonk.com": "alice@tonk.com"})
    res = r.resolve("alice@tonk.com")
    assert mailboxes(res) == [vmail("alice")]
    assert "loop" not in rules(res)


def test_virtusertable_cannot_name_programs_files_or_includes() -> None:
    r = vrouter(
        virtusertable={
            "p@tonk.com": '"|/bin/sh -c evil"',
            "f@tonk.com": "/etc/passwd",
            "i@tonk.com": ":include:/etc/mail/users",
            "@virt.example": "%1",
        }
    )
    for addr in ("p@tonk.com", "f@tonk.com", "i@tonk.com"):
        assert refusal_codes(r.resolve(addr)) == [(550, "5.7.1")], addr
    # the client's %1 cannot become a program either
    res = r.resolve('"|/bin/sh -c evil"@virt.example')
    assert not any(isinstance(t, Program) for t in res.targets)
    assert res.refusal is not None


# --- 3. aliases -------------------------------------------------------------------------


def test_alias_list_remote_and_detail() -> None:
    r = make_router(users=USERS, aliases={"admin": "alice, bob, dl@qq.com", "sales": "carol"})
    res = r.resolve(f"admin@{HOST}")
    assert mailboxes(res) == [vmail("alice"), vmail("bob")]
    assert Remote(address="dl@qq.com", nexthop="") in res.targets
    assert mailboxes(r.resolve(f"sales+spring@{HOST}")) == [vmail("carol")]


def test_alias_plus_detail_and_plus_star_keys() -> None:
    r = make_router(users=USERS, aliases={"bob+spam": "/dev/null", "bob+*": "carol", "x": "alice"})
    assert r.resolve(f"bob+spam@{HOST}").targets[0] == File(
        address=f"bob+spam@{HOST}", path="/dev/null", user="nobody"
    )
    assert mailboxes(r.resolve(f"bob+other@{HOST}")) == [vmail("carol")]
    assert mailboxes(r.resolve(f"bob@{HOST}")) == [vmail("bob")]


def test_qmail_style_delimiter() -> None:
    r = make_router(cfg=config(delimiter="-"), users=USERS, aliases={"sales": "carol"})
    assert mailboxes(r.resolve(f"sales-eu@{HOST}")) == [vmail("carol")]
    assert mailboxes(r.resolve(f"alice-news@{HOST}")) == [vmail("alice")]


def test_program_and_file_run_as_default_user() -> None:
    r = make_router(
        users=USERS,
        aliases={"ticket": '"|/usr/bin/ticket --queue admin", /var/log/admin.mbox'},
    )
    res = r.resolve(f"ticket@{HOST}")
    assert res.targets == (
        Program(address=f"ticket@{HOST}", command="/usr/bin/ticket --queue admin", user="nobody"),
        File(address=f"ticket@{HOST}", path="/var/log/admin.mbox", user="nobody"),
    )


@pytest.mark.parametrize("default_user", ["root", "toor"])
def test_programs_never_run_as_root(default_user: str, caplog: pytest.LogCaptureFixture) -> None:
    accounts = Accounts()
    accounts.add("toor", "/root", uid=0)
    r = make_router(
        cfg=config(default_user=default_user),
        accounts=accounts,
        users=USERS,
        aliases={"prog": '"|/usr/bin/x", alice', "file": "/tmp/x"},
    )
    with caplog.at_level(logging.ERROR, logger="postoffice.routing"):
        res = r.resolve(f"prog@{HOST}")
    assert refusal_codes(res) == [(550, "5.7.1")]
    assert mailboxes(res) == [vmail("alice")]
    assert "root" in caplog.text
    assert r.resolve(f"file@{HOST}").refusal is not None


def test_include(tmp_path: Path) -> None:
    members = tmp_path / "users"
    members.write_text("# the list\ndongliang\nlee, dl\n")
    members.chmod(0o644)
    r = make_router(
        cfg=config(safe_files=False),
        users=[*USERS, f"dongliang@{HOST}"],
        aliases={"admin": f":include:{members}"},
    )
    res = r.resolve(f"admin@{HOST}")
    assert mailboxes(res) == [vmail("dongliang"), vmail("lee"), vmail("dl")]
    assert any(s.rule == "include" and s.file == str(members) for s in res.trace)


def test_missing_include_refuses_the_list(tmp_path: Path) -> None:
    r = make_router(users=USERS, aliases={"admin": f":include:{tmp_path}/nope"})
    res = r.resolve(f"admin@{HOST}")
    assert refusal_codes(res) == [(550, "5.2.4")]
    assert any(s.rule == "error" for s in res.trace)


def test_include_that_includes_itself(tmp_path: Path) -> None:
    f = tmp_path / "list"
    f.write_text(f"alice\n:include:{f}\n")
    f.chmod(0o644)
    r = make_router(cfg=config(safe_files=False), users=USERS, aliases={"l": f":include:{f}"})
    res = r.resolve(f"l@{HOST}")
    assert mailboxes(res) == [vmail("alice")]
    assert "loop" in rules(res)


def test_owner_becomes_envelope_sender_of_the_whole_list() -> None:
    r = make_router(
        users=USERS,
        aliases={
            "staff": "alice, bob",
            "owner-staff": "carol",
            "all": "staff, lee",
            "one": "staff",
        },
    )
    assert r.resolve(f"staff@{HOST}").envelope_sender == f"carol@{HOST}"
    assert r.resolve(f"one@{HOST}").envelope_sender == f"carol@{HOST}"
    assert r.resolve(f"all@{HOST}").envelope_sender is None  # lee is not in the list


def test_backslash_user_is_not_aliased_again() -> None:
    r = make_router(users=USERS, aliases={"alice": "\\alice, bob"})
    res = r.resolve(f"alice@{HOST}")
    assert mailboxes(res) == [vmail("alice"), vmail("bob")]
    assert "loop" not in rules(res)


def test_builtin_postmaster_and_mailer_daemon(caplog: pytest.LogCaptureFixture) -> None:
    r = make_router(users=USERS)
    with caplog.at_level(logging.WARNING, logger="postoffice.routing"):
        for _ in range(3):
            res = r.resolve(f"MAILER-DAEMON@{HOST}")
    assert mailboxes(res) == [vmail("root")]
    assert [s.file for s in res.trace if s.rule == "aliases"] == ["(built-in)", "(built-in)"]
    assert caplog.text.count("no mailer-daemon alias") == 1
    assert caplog.text.count("no postmaster alias") == 1


def test_builtin_postmaster_without_root_is_the_postmaster_mailbox() -> None:
    r = make_router(users=[f"alice@{HOST}"], cfg=config(system_users=False))
    assert mailboxes(r.resolve("postmaster")) == [vmail("postmaster")]


def test_postmaster_user_wins_over_the_builtin() -> None:
    r = make_router(users=[f"postmaster@{HOST}", f"root@{HOST}"])
    assert mailboxes(r.resolve(f"postmaster@{HOST}")) == [vmail("postmaster")]


def test_unknown_user() -> None:
    res = make_router(users=USERS).resolve(f"nobody-here@{HOST}")
    assert res.refusal == Refusal(
        address=f"nobody-here@{HOST}",
        reply=Reply(code=550, enhanced="5.1.1", text=f"<nobody-here@{HOST}>... User unknown"),
    )


def test_unknown_member_of_a_list_is_one_refused_target() -> None:
    res = make_router(users=USERS, aliases={"l": "alice, ghost"}).resolve(f"l@{HOST}")
    assert res.refusal is None
    assert mailboxes(res) == [vmail("alice")]
    assert refusal_codes(res) == [(550, "5.1.1")]


def test_duplicates_are_delivered_once() -> None:
    r = make_router(users=USERS, aliases={"a": "b, c, alice", "b": "alice, bob", "c": "bob, alice"})
    res = r.resolve(f"a@{HOST}")
    assert mailboxes(res) == [vmail("alice"), vmail("bob")]
    assert "duplicate" in rules(res)


# --- loops ------------------------------------------------------------------------------


def test_alias_to_alias_loop_without_users(caplog: pytest.LogCaptureFixture) -> None:
    r = make_router(users=USERS, aliases={"a": "b", "b": "c", "c": "a"})
    with caplog.at_level(logging.ERROR, logger="postoffice.routing"):
        res = r.resolve(f"a@{HOST}")
    assert refusal_codes(res) == [(554, "5.4.6")]
    assert "loop" in rules(res)
    assert "loop" in caplog.text


def test_alias_loop_through_a_user_delivers_to_the_user() -> None:
    # sendmail's self_reference(): the first real user up the path gets it.
    r = make_router(users=USERS, aliases={"alice": "x", "x": "alice"})
    res = r.resolve(f"alice@{HOST}")
    assert mailboxes(res) == [vmail("alice")]


def test_loop_in_one_branch_keeps_the_others() -> None:
    r = make_router(users=USERS, aliases={"l": "a, bob", "a": "b", "b": "a"})
    res = r.resolve(f"l@{HOST}")
    assert mailboxes(res) == [vmail("bob")]
    assert res.refusal is None


def test_virtusertable_alias_loop() -> None:
    cfg = config(local_domains=(HOST, "tonk.com"))
    r = make_router(
        cfg=cfg, users=USERS, virtusertable={"a@tonk.com": "b"}, aliases={"b": "a@tonk.com"}
    )
    res = r.resolve("a@tonk.com")
    assert refusal_codes(res) == [(554, "5.4.6")]
    r = make_router(
        cfg=cfg,
        users=USERS,
        virtusertable={"a@tonk.com": "bob"},
        aliases={"bob": "a@tonk.com"},
    )
    assert mailboxes(r.resolve("a@tonk.com")) == [vmail("bob")]


def test_virtusertable_loop() -> None:
    cfg = config(local_domains=(HOST, "tonk.com", "virt.example"))
    r = make_router(
        cfg=cfg,
        users=USERS,
        virtusertable={"@tonk.com": "%1@virt.example", "@virt.example": "%1@tonk.com"},
    )
    res = r.resolve("zed@tonk.com")
    assert refusal_codes(res) == [(554, "5.4.6")]


# --- limits ------------------------------------------------------------------------------


def test_depth_limit(caplog: pytest.LogCaptureFixture) -> None:
    chain = {f"a{i}": f"a{i + 1}" for i in range(50)}
    r = make_router(users=USERS, aliases=chain)
    with caplog.at_level(logging.ERROR, logger="postoffice.routing"):
        res = r.resolve(f"a0@{HOST}")
    assert refusal_codes(res) == [(554, "5.4.6")]
    assert "aliases deep; 20 max" in res.targets[0].reply.text  # type: ignore[union-attr]
    assert "aliases deep" in caplog.text
    assert len(res.trace) < 100


def test_target_limit_refuses_the_recipient(caplog: pytest.LogCaptureFixture) -> None:
    big = {"big": ", ".join(f"u{i}@remote.example" for i in range(200))}
    r = make_router(users=USERS, aliases=big, max_targets=100)
    with caplog.at_level(logging.ERROR, logger="postoffice.routing"):
        res = r.resolve(f"big@{HOST}")
    assert res.targets == (res.refusal,)
    assert refusal_codes(res) == [(554, "5.4.6")]
    assert "too large" in caplog.text
    assert r.statistics()["overflows"] == 1


def test_exponential_aliases_stay_bounded() -> None:
    # each level names the next twice: 2**40 paths, but every address is expanded once.
    levels = {f"l{i}": f"l{i + 1}, l{i + 1}a" for i in range(40)}
    levels |= {f"l{i}a": f"l{i + 1}" for i in range(40)}
    r = make_router(users=USERS, aliases=levels)
    res = r.resolve(f"l0@{HOST}")
    assert res.refusal is not None  # too deep, and no user at the bottom


def test_ten_thousand_member_list() -> None:
    members = ", ".join(f"user{i}" for i in range(10_000))
    users = [f"user{i}@{HOST}" for i in range(10_000)]
    r = make_router(users=users, aliases={"everyone": members})
    res = r.resolve(f"everyone@{HOST}")
    assert len(res.targets) == 10_000 and res.refusal is None
    assert max(len(s.detail) for s in res.trace) < 1_100


# --- 6. other domains ---------------------------------------------------------------------


def test_mailertable_smart_host_and_mx() -> None:
    mt = {
        ".corp.example": "smtp:[gw.corp.example]",
        "uu.example": "relay:hub.example",
        "gone.example": "error:5.1.2:550 Domain gone",
        "inbound.example": "local:alice",
        "keep.example": "local:",
        ".": "esmtp:fallback.example",
    }
    r = make_router(users=USERS, mailertable=mt)
    assert r.resolve("x@a.corp.example").targets == (
        Remote(address="x@a.corp.example", nexthop="[gw.corp.example]"),
    )
    assert r.resolve("x@uu.example").targets[0].nexthop == "hub.example"  # type: ignore[union-attr]
    assert refusal_codes(r.resolve("x@gone.example")) == [(550, "5.1.2")]
    assert mailboxes(r.resolve("x@inbound.example")) == [vmail("alice")]
    assert mailboxes(r.resolve("bob@keep.example")) == [vmail("bob")]
    res = r.resolve("x@other.example")
    assert res.targets[0] == Remote(address="x@other.example", nexthop="fallback.example")
    assert res.trace[-1].rule == "mailertable" and res.trace[-1].line == 6

    r = make_router(cfg=config(smart_host="[smarthost.example]:587"))
    res = r.resolve("x@other.example")
    assert res.targets == (Remote(address="x@other.example", nexthop="[smarthost.example]:587"),)
    assert rules(res)[-1] == "smart_host"
    res = make_router().resolve("x@other.example")
    assert res.targets == (Remote(address="x@other.example", nexthop=""),)
    assert rules(res)[-1] == "mx"


def test_mailertable_unknown_mailer_defers(caplog: pytest.LogCaptureFixture) -> None:
    r = make_router(mailertable={"uu.example": "uucp-new:uuhost1"})
    with caplog.at_level(logging.ERROR, logger="postoffice.routing"):
        assert refusal_codes(r.resolve("x@uu.example")) == [(451, "4.3.5")]
    assert "unknown mailer" in caplog.text


def test_mailertable_not_used_for_local_domains() -> None:
    r = make_router(users=USERS, mailertable={HOST: "smtp:[elsewhere]", ".": "smtp:[x]"})
    assert mailboxes(r.resolve(f"alice@{HOST}")) == [vmail("alice")]


# --- the API --------------------------------------------------------------------------------


def test_is_local_domain() -> None:
    r = make_router()
    assert r.is_local_domain(HOST.upper() + ".")
    assert r.is_local_domain("localhost")
    assert not r.is_local_domain("example.org")


def test_reload_if_changed_asks_every_map() -> None:
    class Changing(MemoryMap):
        def reload_if_changed(self) -> bool:
            return True

    r = Router.from_config(
        config(),
        user_exists=lambda a: False,
        maps={"aliases": MemoryMap("aliases", {}), "mailertable": Changing("mailertable", {})},
        tools=TOOLS,
    )
    assert r.reload_if_changed() is True
    assert make_router().reload_if_changed() is False


def test_from_config_opens_the_map_files(tmp_path: Path) -> None:
    pytest.importorskip("postoffice.maps.registry")
    (tmp_path / "aliases").write_text("admin: alice, bob\n")
    (tmp_path / "virtusertable").write_text("@tonk.com\talice\n")
    for name in ("aliases", "virtusertable"):
        (tmp_path / name).chmod(0o644)
    cfg = Config(
        hostname=HOST,
        local_domains=(HOST, "tonk.com"),
        state_dir=str(tmp_path),
        maps=MapsConfig(
            aliases=str(tmp_path / "aliases"),
            virtusertable=str(tmp_path / "virtusertable"),
            mailertable=str(tmp_path / "mailertable"),  # does not exist: empty
            safe_files=False,
        ),
    )
    users = {f"alice@{HOST}", f"bob@{HOST}"}
    r = Router.from_config(cfg, user_exists=users.__contains__)
    res = r.resolve(f"admin@{HOST}")
    assert [t.address for t in res.targets] == [f"alice@{HOST}", f"bob@{HOST}"]
    assert res.trace[1].file == str(tmp_path / "aliases") and res.trace[1].line == 1
    assert r.resolve("anyone@tonk.com").targets[0].address == f"alice@{HOST}"
    assert r.resolve("x@remote.example").targets == (
        Remote(address="x@remote.example", nexthop=""),
    )
