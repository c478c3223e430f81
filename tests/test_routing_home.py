"""System users: ~/Maildir or the system mailbox, ~/.forward, and qmail's ~/.qmail files.

Fake passwd entries (test_routing_support.Accounts) point at tmp_path homes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from postoffice.routing.resolve import Router
from postoffice.routing.targets import File, Mailbox, Program, Remote
from test_routing_support import HOST, Accounts, config, mailboxes, make_router, refusal_codes

VIRTUAL = [f"vera@{HOST}"]


def home(tmp_path: Path, name: str) -> Path:
    h = tmp_path / name
    h.mkdir(mode=0o755)
    return h


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def site(tmp_path: Path) -> tuple[Accounts, dict[str, Path]]:
    accounts = Accounts()
    accounts.add("nobody", "/nonexistent", uid=65534)
    homes = {}
    for i, name in enumerate(("dl", "lee", "djb", "root")):
        homes[name] = home(tmp_path, name)
        accounts.add(name, homes[name], uid=0 if name == "root" else 1000 + i)
    return accounts, homes


def router(site: tuple[Accounts, dict[str, Path]], **kw: object) -> Router:
    return make_router(accounts=site[0], users=VIRTUAL, **kw)  # type: ignore[arg-type]


def spool(user: str) -> str:
    return f"mbox:/var/spool/mail/{user}"


# --- 5. the mailbox --------------------------------------------------------------------


def test_system_user_gets_the_system_mailbox(site: tuple[Accounts, dict[str, Path]]) -> None:
    res = router(site).resolve(f"DL@{HOST}")
    assert res.targets == (Mailbox(address=f"DL@{HOST}", spec=spool("dl"), user="dl"),)


def test_system_user_with_maildir(site: tuple[Accounts, dict[str, Path]]) -> None:
    (site[1]["lee"] / "Maildir").mkdir()
    res = router(site).resolve(f"lee@{HOST}")
    assert mailboxes(res) == [f"maildir:{site[1]['lee']}/Maildir"]


def test_system_users_off(site: tuple[Accounts, dict[str, Path]]) -> None:
    r = router(site, cfg=config(system_users=False))
    assert refusal_codes(r.resolve(f"dl@{HOST}")) == [(550, "5.1.1")]
    assert site[0].calls == 0


def test_virtual_user_before_system_user(site: tuple[Accounts, dict[str, Path]]) -> None:
    r = make_router(accounts=site[0], users=[f"dl@{HOST}"])
    assert mailboxes(r.resolve(f"dl@{HOST}")) == [f"maildir:/srv/po/mail/{HOST}/dl"]


def test_system_user_plus_detail(site: tuple[Accounts, dict[str, Path]]) -> None:
    res = router(site).resolve(f"dl+lists@{HOST}")
    assert res.targets == (Mailbox(address=f"dl+lists@{HOST}", spec=spool("dl"), user="dl"),)


# --- 4. ~/.forward ---------------------------------------------------------------------


def test_forward(site: tuple[Accounts, dict[str, Path]]) -> None:
    homes = site[1]
    write(homes["dl"] / ".forward", '# mine\n\\dl, dl@qq.com\n"|/usr/bin/vacation dl"\n')
    res = router(site).resolve(f"dl@{HOST}")
    assert res.targets == (
        Mailbox(address=f"dl@{HOST}", spec=spool("dl"), user="dl"),
        Remote(address="dl@qq.com", nexthop=""),
        Program(
            address=f"dl@{HOST}", command="/usr/bin/vacation dl", user="dl", home=str(homes["dl"])
        ),
    )
    steps = [(s.rule, s.line) for s in res.trace if s.rule == "forward"]
    assert steps == [("forward", 2), ("forward", 2), ("forward", 3)]
    assert all(s.file == str(homes["dl"] / ".forward") for s in res.trace if s.rule == "forward")


def test_forward_to_itself_delivers_to_the_mailbox(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["dl"] / ".forward", "dl, lee\n")
    res = router(site).resolve(f"dl@{HOST}")
    assert mailboxes(res) == [spool("dl"), spool("lee")]
    assert any(s.rule == "loop" for s in res.trace)


def test_forward_loop_between_two_users(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["dl"] / ".forward", "lee\n")
    write(site[1]["lee"] / ".forward", "dl\n")
    res = router(site).resolve(f"dl@{HOST}")
    assert mailboxes(res) == [spool("dl")]  # sendmail: the first real user up the path


def test_forward_plus_detail_file(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["dl"] / ".forward+lists", "lee\n")
    write(site[1]["dl"] / ".forward", "dl@qq.com\n")
    r = router(site)
    assert mailboxes(r.resolve(f"dl+lists@{HOST}")) == [spool("lee")]
    assert r.resolve(f"dl+other@{HOST}").targets == (Remote(address="dl@qq.com", nexthop=""),)


def test_unsafe_forward_is_ignored(
    site: tuple[Accounts, dict[str, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    write(site[1]["dl"] / ".forward", "evil@attacker.example\n", mode=0o666)
    with caplog.at_level(logging.WARNING, logger="postoffice.routing"):
        res = router(site).resolve(f"dl@{HOST}")
    assert mailboxes(res) == [spool("dl")]
    assert any(s.rule == "error" and "writable" in s.detail for s in res.trace)
    assert ".forward" in caplog.text


def test_empty_forward_delivers_to_the_mailbox(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["dl"] / ".forward", "# nothing\n\n")
    assert mailboxes(router(site).resolve(f"dl@{HOST}")) == [spool("dl")]


def test_forward_file_and_include_run_as_the_user(site: tuple[Accounts, dict[str, Path]]) -> None:
    homes = site[1]
    lst = write(homes["dl"] / "friends", "lee\n")
    write(homes["dl"] / ".forward", f"{homes['dl']}/saved.mbox, :include:{lst}\n")
    res = router(site).resolve(f"dl@{HOST}")
    assert File(address=f"dl@{HOST}", path=f"{homes['dl']}/saved.mbox", user="dl") in res.targets
    assert mailboxes(res) == [spool("lee")]


def test_forward_off(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["dl"] / ".forward", "lee\n")
    r = router(site, cfg=config(forward_files=False, dotqmail=False))
    assert mailboxes(r.resolve(f"dl@{HOST}")) == [spool("dl")]


def test_roots_forward_cannot_run_programs(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["root"] / ".forward", '"|/usr/bin/logger got mail", dl\n')
    res = router(site).resolve(f"root@{HOST}")
    assert refusal_codes(res) == [(550, "5.7.1")]
    assert mailboxes(res) == [spool("dl")]


def test_alias_to_system_user_with_forward(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["lee"] / ".forward", "lee@elsewhere.example\n")
    r = router(site, aliases={"admin": "dl, lee"})
    res = r.resolve(f"admin@{HOST}")
    assert mailboxes(res) == [spool("dl")]
    assert Remote(address="lee@elsewhere.example", nexthop="") in res.targets


# --- 4. ~/.qmail -------------------------------------------------------------------------


def test_dotqmail_instructions(site: tuple[Accounts, dict[str, Path]]) -> None:
    h = site[1]["djb"]
    (h / "Maildir").mkdir()
    write(
        h / ".qmail",
        "# djb's mail\n|preline /usr/ucb/vacation djb\n&me@new.job.com\nlee\n"
        "./Mailbox\n./Maildir/\n",
    )
    res = router(site).resolve(f"djb@{HOST}")
    assert res.targets == (
        Program(
            address=f"djb@{HOST}", command="preline /usr/ucb/vacation djb", user="djb", home=str(h)
        ),
        File(address=f"djb@{HOST}", path=f"{h}/Mailbox", user="djb"),
        Mailbox(address=f"djb@{HOST}", spec=f"maildir:{h}/Maildir", user="djb"),
        Remote(address="me@new.job.com", nexthop=""),
        Mailbox(address=f"lee@{HOST}", spec=spool("lee"), user="lee"),
    )
    assert [s.line for s in res.trace if s.rule == "dotqmail"] == [2, 3, 4, 5, 6]


def test_dotqmail_extensions(site: tuple[Accounts, dict[str, Path]]) -> None:
    h = site[1]["djb"]
    write(h / ".qmail-list", "lee\n")
    write(h / ".qmail-foo-default", "dl\n")
    write(h / ".qmail-default", "&catch@elsewhere.example\n")
    r = router(site, cfg=config(delimiter="-"))
    assert mailboxes(r.resolve(f"djb-LIST@{HOST}")) == [spool("lee")]
    assert mailboxes(r.resolve(f"djb-foo-bar@{HOST}")) == [spool("dl")]
    assert r.resolve(f"djb-zzz@{HOST}").targets == (
        Remote(address="catch@elsewhere.example", nexthop=""),
    )
    assert mailboxes(r.resolve(f"djb@{HOST}")) == [spool("djb")]  # no ~/.qmail


def test_dotqmail_extension_falls_back_to_dotqmail(
    site: tuple[Accounts, dict[str, Path]],
) -> None:
    write(site[1]["djb"] / ".qmail", "lee\n")
    r = router(site)
    assert mailboxes(r.resolve(f"djb+nothing@{HOST}")) == [spool("lee")]
    assert mailboxes(r.resolve(f"djb+../../etc@{HOST}")) == [spool("lee")]


def test_dotqmail_before_forward(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["djb"] / ".qmail", "lee\n")
    write(site[1]["djb"] / ".forward", "dl\n")
    assert mailboxes(router(site).resolve(f"djb@{HOST}")) == [spool("lee")]
    r = router(site, cfg=config(dotqmail=False))
    assert mailboxes(r.resolve(f"djb@{HOST}")) == [spool("dl")]


def test_empty_and_comment_only_dotqmail(site: tuple[Accounts, dict[str, Path]]) -> None:
    h = site[1]["djb"]
    write(h / ".qmail", "")
    r = router(site)
    assert mailboxes(r.resolve(f"djb@{HOST}")) == [spool("djb")]  # 0 bytes: default delivery
    write(h / ".qmail", "# discard everything\n")
    assert r.resolve(f"djb@{HOST}").targets == (
        File(address=f"djb@{HOST}", path="/dev/null", user="djb"),
    )


def test_unsafe_dotqmail_defers(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["djb"] / ".qmail", "lee\n", mode=0o666)
    assert refusal_codes(router(site).resolve(f"djb@{HOST}")) == [(451, "4.3.0")]


def test_executable_dotqmail_may_only_forward(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["djb"] / ".qmail", "|/bin/true\n", mode=0o755)
    assert refusal_codes(router(site).resolve(f"djb@{HOST}")) == [(451, "4.3.0")]
    write(site[1]["djb"] / ".qmail", "lee\n", mode=0o755)
    assert mailboxes(router(site).resolve(f"djb@{HOST}")) == [spool("lee")]


def test_dotqmail_maildir_outside_home_refused(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["djb"] / ".qmail", "/var/mail/other/\n./../dl/Maildir/\n")
    assert refusal_codes(router(site).resolve(f"djb@{HOST}")) == [(550, "5.7.1")]


def test_dotqmail_owner_is_the_envelope_sender(site: tuple[Accounts, dict[str, Path]]) -> None:
    h = site[1]["djb"]
    write(h / ".qmail-list", "lee\ndl\n")
    write(h / ".qmail-list-owner", "djb\n")
    res = router(site, cfg=config(delimiter="-")).resolve(f"djb-list@{HOST}")
    assert res.envelope_sender == f"djb-list-owner@{HOST}"


def test_dotqmail_loop_to_itself(site: tuple[Accounts, dict[str, Path]]) -> None:
    write(site[1]["djb"] / ".qmail", f"&djb@{HOST}\n")
    res = router(site).resolve(f"djb@{HOST}")
    assert mailboxes(res) == [spool("djb")]
    assert any(s.rule == "loop" for s in res.trace)
