"""`sendmail -bv` and `sendmail -bt` (cli/addrtest.py, dispatched from cli/sendmail.py).

The route comes from a fake Router behind cli/explain.build_router unless a
test is marked `needs_router` (the real routing/resolve.py; skipped while it
has not landed). Map lookups, macros and the sender rewriting use the real
maps (maps/registry.py) and a site from conftest.make_site.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DOMAIN, HOSTNAME, Site, make_site
from postoffice.cli import addrtest, explain
from postoffice.cli.sendmail import main as sendmail_main
from postoffice.cli.sendmail import parse_args
from postoffice.config.load import load_config
from test_cli_explain import FakeRouter, canned

needs_router = pytest.mark.skipif(
    importlib.util.find_spec("postoffice.routing.resolve") is None,
    reason="routing/resolve.py has not landed yet",
)

HOST = "linux102.example.com"


def seed_site(root: Path) -> Site:
    """Seed 002's host: local-host-names, virtusertable, genericstable, masquerading."""
    site = make_site(
        root,
        domains=("localhost", HOST, "tonk.com", DOMAIN),
        extra_toml=(
            '[routing]\nmasquerade_as = "163.com"\nmasquerade_envelope = true\n'
            'exposed_users = ["root"]\n'
        ),
    )
    site.config.write_text(site.config.read_text().replace(HOSTNAME, HOST))
    files = {
        "genericstable": "lee@linux102.example.com dl@qq.com\n"
        "test@linux102.example.com yangmei@tonk.com\n",
        "virtusertable": "dl@tonk.com dongliang\nlee@tonk.com error:you are wrong\n",
        "relay-domains": "example.net\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
        (root / name).chmod(0o644)
    return site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return seed_site(tmp_path / "site")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRouter:
    router = FakeRouter(canned())
    monkeypatch.setattr(explain, "build_router", lambda config: router)
    return router


def transcript(site: Site, text: str) -> str:
    out = io.StringIO()
    config = load_config(str(site.config))
    assert addrtest.address_test_mode(config, io.StringIO(text), out, interactive=False) == 0
    return out.getvalue()


# --- flags --------------------------------------------------------------------------


def test_flags() -> None:
    assert parse_args(["-bv", "a@b.example", "c"]).mode == "bv"
    assert parse_args(["-bv", "a@b.example", "c"]).recipients == ["a@b.example", "c"]
    assert parse_args(["-bt", "-C", "/x.toml"]).mode == "bt"


# --- -bv ----------------------------------------------------------------------------


def test_bv_verdicts(site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]) -> None:
    code = sendmail_main(["-bv", "-C", str(site.config), "alice@example.test", "x@y.example"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "alice@example.test... deliverable: mailer local, user alice@example.test",
        "x@y.example... deliverable: mailer esmtp, host [mx.example], user x@y.example",
    ]


def test_bv_alias_expansion_prints_each_target(
    site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sendmail_main(["-bv", "-C", str(site.config), "admin@example.test"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "bob@example.test... deliverable: mailer local, user bob",
        "|/usr/bin/vacation bob... deliverable: mailer prog, user bob",
        "/var/log/admin.mbox... deliverable: mailer *file*, user nobody",
        "carol@remote.example... deliverable: mailer esmtp, host remote.example, "
        "user carol@remote.example",
    ]


def test_bv_user_unknown_exits_67(
    site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    code = sendmail_main(["-bv", "-C", str(site.config), "nobody", "lee@tonk.com"])
    assert code == 67
    assert capsys.readouterr().out.splitlines() == [
        f"nobody@{HOST}... User unknown",
        "lee@tonk.com... you are wrong",
    ]


def test_bv_bad_address_and_no_address(
    site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sendmail_main(["-bv", "-C", str(site.config), "a\x01b@example.test"]) == 65
    assert "... white space or control characters" in capsys.readouterr().out
    assert sendmail_main(["-bv", "-C", str(site.config)]) == 64
    assert capsys.readouterr().err == "sendmail: Recipient names must be specified\n"


def test_bv_header_style_addresses(
    site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    code = sendmail_main(["-bv", "-C", str(site.config), "Alice <alice@example.test>, x@y.example"])
    assert code == 0
    assert fake.asked == ["alice@example.test", "x@y.example"]


def test_bv_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("hostname = [\n")
    assert sendmail_main(["-bv", "-C", str(bad), "a@b.example"]) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


# --- -bt ----------------------------------------------------------------------------


def test_bt_route_in_sendmail_layout(site: Site, fake: FakeRouter) -> None:
    out = transcript(site, "3,0 x@y.example\n0 lee@tonk.com\n")
    assert out.splitlines() == [
        "> 3,0 x@y.example",
        "(no rewriting rulesets in postoffice: this is the route of the address)",
        "parse              input: x@y.example",
        "mailertable      returns: y.example -> smtp:[mx.example] (/etc/mail/mailertable:3)",
        "parse            returns: $# esmtp $@ [mx.example] $: x@y.example",
        "> 0 lee@tonk.com",
        "(no rewriting rulesets in postoffice: this is the route of the address)",
        "parse              input: lee@tonk.com",
        "virtusertable    returns: lee@tonk.com -> error:you are wrong (/etc/mail/virtusertable:2)",
        'parse            returns: $# error $@ 5.1.1 $: "550 you are wrong"',
    ]


def test_bt_route_of_programs_and_files(site: Site, fake: FakeRouter) -> None:
    lines = transcript(site, "parse admin@example.test\n").splitlines()
    assert lines[-4:] == [
        "parse            returns: $# local $: bob",
        "parse            returns: $# prog $: |/usr/bin/vacation bob (as user bob)",
        "parse            returns: $# *file* $: /var/log/admin.mbox (as user nobody)",
        "parse            returns: $# esmtp $@ remote.example $: carol@remote.example",
    ]


def test_bt_sender_rulesets(site: Site) -> None:
    table = site.root / "genericstable"
    out = transcript(site, "93 lee@linux102.example.com\nMasqEnv lee@linux102.example.com\n"
                     "3,1,93 root\n")  # fmt: skip
    assert out.splitlines() == [
        "> 93 lee@linux102.example.com",
        "MasqHdr            input: lee@linux102.example.com",
        "genericstable    returns: lee@linux102.example.com -> dl@qq.com "
        f"(key lee@linux102.example.com) ({table}:1)",
        "MasqHdr          returns: dl@qq.com",
        "> MasqEnv lee@linux102.example.com",
        "MasqEnv            input: lee@linux102.example.com",
        "masquerade       returns: lee@linux102.example.com -> lee@163.com",
        "MasqEnv          returns: lee@163.com",
        "> 3,1,93 root",
        "MasqHdr            input: root",
        f"qualify          returns: root -> root@{HOST} (exposed user)",
        f"MasqHdr          returns: root@{HOST}",
    ]


def test_bt_parse(site: Site, fake: FakeRouter) -> None:
    out = transcript(site, '/parse "Alice A." <alice@example.test>\n/parse admin@example.test\n'
                     "/parse\n/parse Dong Liang\n")  # fmt: skip
    assert out.splitlines() == [
        '> /parse "Alice A." <alice@example.test>',
        'Cracked address = "Alice A." <$g>',
        "Parsing envelope recipient address",
        "mailer local, user alice@example.test",
        "> /parse admin@example.test",
        "Cracked address = $g",
        "Parsing envelope recipient address",
        "mailer local, user bob",
        "mailer prog, user bob",
        "mailer *file*, user nobody",
        "mailer esmtp, host remote.example, user carol@remote.example",
        "> /parse",
        "Usage: /parse address",
        "> /parse Dong Liang",
        "Cracked address = Dong Liang",
        "Cannot parse",
    ]


def test_bt_map(site: Site) -> None:
    root = site.root
    out = transcript(
        site,
        "/map virtuser DL@tonk.com\n/map virtusertable nobody@tonk.com\n"
        "/map genericstable test@linux102.example.com\n/map nosuch x\n/map aliases\n/map\n",
    )
    assert out.splitlines() == [
        "> /map virtuser DL@tonk.com",
        "map_lookup: virtuser (DL@tonk.com) returns dongliang (0)",
        f"  from {root / 'virtusertable'}:1",
        "> /map virtusertable nobody@tonk.com",
        "map_lookup: virtusertable (nobody@tonk.com) no match (0)",
        "> /map genericstable test@linux102.example.com",
        "map_lookup: genericstable (test@linux102.example.com) returns yangmei@tonk.com (0)",
        f"  from {root / 'genericstable'}:2",
        "> /map nosuch x",
        'Map named "nosuch" not found',
        "> /map aliases",
        "No key specified",
        "> /map",
        "Usage: /map mapname key",
    ]


def test_bt_map_reports_an_unsafe_file(site: Site) -> None:
    (site.root / "mailertable").write_text("y.example smtp:[mx.example]\n")
    (site.root / "mailertable").chmod(0o666)
    out = transcript(site, "/map mailertable y.example\n")
    lines = out.splitlines()
    assert lines[1] == "map_lookup: mailertable (y.example) no match (0)"
    assert lines[2].startswith("  map problem: ") and "mailertable" in lines[2]


def test_bt_try(site: Site) -> None:
    out = transcript(
        site,
        "/try esmtp dl@linux102.example.com\n/tryflags HS\n/try esmtp lee@linux102.example.com\n"
        "/tryflags E\n/try smtp dl\n/try nosuch a@b\n/try esmtp\n/tryflags\n",
    )
    assert out.splitlines() == [
        "> /try esmtp dl@linux102.example.com",
        "Trying envelope recipient address dl@linux102.example.com for mailer esmtp",
        "Rcode = 0, addr = dl@linux102.example.com",
        "> /tryflags HS",
        "> /try esmtp lee@linux102.example.com",
        "Trying header sender address lee@linux102.example.com for mailer esmtp",
        "Rcode = 0, addr = dl@qq.com",
        "> /tryflags E",
        "> /try smtp dl",
        "Trying envelope sender address dl for mailer smtp",
        "Rcode = 0, addr = dl@163.com",
        "> /try nosuch a@b",
        "Unknown mailer nosuch",
        "> /try esmtp",
        "Usage: /try mailer address",
        "> /tryflags",
        "Usage: /tryflags [Hh|Ee][Ss|Rr]",
    ]


def test_bt_macros_and_classes(site: Site) -> None:
    out = transcript(site, "$j\n$w\n$m\n$M\n$q\n$=w\n$=E\n$=R\n$=X\n")
    assert out.splitlines() == [
        "> $j", HOST,
        "> $w", "linux102",
        "> $m", "example.com",
        "> $M", "163.com",
        "> $q", "Undefined",
        "> $=w", "localhost", HOST, "tonk.com", DOMAIN,
        "> $=E", "root",
        "> $=R", "example.net",
        "> $=X", "postoffice has no class $=X (it has $=w $=M $=G $=E $=R)",
    ]  # fmt: skip


def test_bt_unsupported_commands_say_why(site: Site) -> None:
    commands = [".Dxvalue", ".Cwfoo", ".", ".Q", "=S0", "=", "=Q", "-d21.12", "-", "-x",
                "/mx example.com", "/canon host", "/expand $j", "/sender a",
                "/header From: a", "/gethostbyname h", "/dnslookup h", "/", "/frob x", "3,0",
                "3,0,a+b x@y"]  # fmt: skip
    out = transcript(site, "".join(c + "\n" for c in commands))
    lines = out.splitlines()
    assert len(lines) == 2 * len(commands), out
    answers = dict(zip(lines[0::2], lines[1::2], strict=True))
    assert answers["> /frob x"] == 'Unknown "/" command /frob x'
    assert answers["> =Q"] == 'Unknown "=" command =Q'
    assert answers["> 3,0"] == "No address!"
    assert answers["> 3,0,a+b x@y"] == "Undefined ruleset a+b"
    assert "DNS" in answers["> /mx example.com"]
    assert "rulesets" in answers["> =S0"]
    assert all(a and "Traceback" not in a for a in answers.values())


def test_bt_help_quit_comments_and_eof(site: Site) -> None:
    out = transcript(site, "# a comment\n\n?\n/quit\n$j\n")
    assert out.startswith("> # a comment\n> \n> ?\nHelp for test mode (postoffice):\n")
    assert out.endswith("End of help\n> /quit\n")
    assert transcript(site, "$j") == f"> $j\n{HOST}\n"  # no final newline, then end of input


def test_bt_interactive_prompt(site: Site) -> None:
    out = io.StringIO()
    config = load_config(str(site.config))
    addrtest.address_test_mode(config, io.StringIO("$j\n"), out, interactive=True)
    assert out.getvalue() == addrtest.BANNER + f"> {HOST}\n> \n"


def test_bt_through_sendmail_main(
    site: Site,
    fake: FakeRouter,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"0 alice@example.test\n$j\n\xff\xfe bad bytes\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert sendmail_main(["-bt", "-C", str(site.config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [
        "> 0 alice@example.test",
        "(no rewriting rulesets in postoffice: this is the route of the address)",
        "parse              input: alice@example.test",
        "mailbox          returns: alice@example.test: virtual user",
    ]
    assert out[5:7] == ["> $j", HOST]
    assert out[7].startswith("> \ufffd\ufffd bad bytes")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=40), max_size=6))
def test_bt_fuzz_never_raises(site: Site, fake: FakeRouter, lines: list[str]) -> None:
    text = "".join(line.replace("\n", " ").replace("\r", " ") + "\n" for line in lines)
    out = transcript(site, text)
    assert "Traceback" not in out


# --- the installed entry point --------------------------------------------------------


def _sendmail() -> str:
    exe = Path(sys.executable).parent / "sendmail"
    command = str(exe) if exe.exists() else shutil.which("sendmail")
    assert command, "the sendmail entry point is not installed"
    return command


def test_entry_point_bt_on_a_pipe(site: Site) -> None:
    result = subprocess.run(
        [_sendmail(), "-bt", "-C", str(site.config)],
        input="$j\n/map virtuser dl@tonk.com\n93 test@linux102.example.com\n/frob\n/quit\n",
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:3] == ["> $j", HOST, "> /map virtuser dl@tonk.com"]
    assert lines[3] == "map_lookup: virtuser (dl@tonk.com) returns dongliang (0)"
    assert "MasqHdr          returns: yangmei@tonk.com" in lines
    assert lines[-2:] == ['Unknown "/" command /frob', "> /quit"]


@needs_router
def test_entry_point_bv(site: Site) -> None:
    result = subprocess.run(
        [_sendmail(), "-bv", "-C", str(site.config), "alice@example.test", "nobody@example.test"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 67, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("alice@example.test... deliverable: mailer local, user ")
    assert lines[1].startswith("nobody@example.test... ")


@needs_router
def test_real_router_bt_route(site: Site) -> None:
    out = transcript(site, "3,0 dl@tonk.com\n3,0 lee@tonk.com\n")
    assert "virtusertable" in out
    assert 'returns: $# error $@ 5.1.1 $: "550' in out or "returns: $# error" in out
