"""`postoffice explain`: the route, the targets, the verdict, and the sender rewriting.

Most tests put a small fake Router behind cli/explain.build_router so that
the printing is tested on its own; the tests marked `needs_router` use the
real routing/resolve.py (skipped while it is not there).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HOSTNAME, Site, make_site
from postoffice.cli import explain
from postoffice.cli.main import main
from postoffice.config.schema import Config
from postoffice.routing.targets import (
    File,
    Mailbox,
    Program,
    Refusal,
    Remote,
    Resolution,
    TraceStep,
)
from postoffice.smtp.replies import USER_UNKNOWN, Reply

needs_router = pytest.mark.skipif(
    importlib.util.find_spec("postoffice.routing.resolve") is None,
    reason="routing/resolve.py has not landed yet",
)


class FakeRouter:
    """Canned resolutions; anything else is an unknown user."""

    def __init__(self, table: dict[str, Resolution]) -> None:
        self.table = table
        self.asked: list[str] = []

    def resolve(self, address: str) -> Resolution:
        self.asked.append(address)
        if address in self.table:
            return self.table[address]
        return Resolution(
            recipient=address,
            targets=(Refusal(address=address, reply=USER_UNKNOWN),),
            trace=(TraceStep(rule="user", detail=f"{address}: no such user"),),
        )


ALIASES = "/etc/mail/aliases"


def canned() -> dict[str, Resolution]:
    admin = "admin@example.test"
    return {
        "alice@example.test": Resolution(
            recipient="alice@example.test",
            targets=(Mailbox(address="alice@example.test", spec="maildir:/m/alice/"),),
            trace=(TraceStep(rule="mailbox", detail="alice@example.test: virtual user"),),
        ),
        admin: Resolution(
            recipient=admin,
            targets=(
                Mailbox(address="bob@example.test", spec="mbox:/var/mail/bob", user="bob"),
                Program(address=admin, command="/usr/bin/vacation bob", user="bob"),
                File(address=admin, path="/var/log/admin.mbox", user="nobody"),
                Remote(address="carol@remote.example", nexthop=""),
            ),
            trace=(
                TraceStep(
                    rule="aliases",
                    detail="admin -> bob, |..., /..., carol@remote.example",
                    file=ALIASES,
                    line=12,
                ),
            ),
            envelope_sender="owner-admin@example.test",
        ),
        "x@y.example": Resolution(
            recipient="x@y.example",
            targets=(Remote(address="x@y.example", nexthop="[mx.example]"),),
            trace=(
                TraceStep(
                    rule="mailertable",
                    detail="y.example -> smtp:[mx.example]",
                    file="/etc/mail/mailertable",
                    line=3,
                ),
            ),
        ),
        "lee@tonk.com": Resolution(
            recipient="lee@tonk.com",
            targets=(
                Refusal(address="lee@tonk.com", reply=Reply.of(550, "5.1.1", "you are wrong")),
            ),
            trace=(
                TraceStep(
                    rule="virtusertable",
                    detail="lee@tonk.com -> error:you are wrong",
                    file="/etc/mail/virtusertable",
                    line=2,
                ),
            ),
        ),
    }


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path / "site")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRouter:
    router = FakeRouter(canned())
    monkeypatch.setattr(explain, "build_router", lambda config: router)
    return router


def run(site: Site, *args: str) -> int:
    return main(["-c", str(site.config), "explain", *args])


def test_explain_is_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "explain" in capsys.readouterr().out
    assert main(["explain", "--help"]) == 0
    assert "--sender" in capsys.readouterr().out


def test_mailbox(site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(site, "alice@example.test") == 0
    assert capsys.readouterr().out == (
        "route of alice@example.test\n"
        "  mailbox: alice@example.test: virtual user\n"
        "targets\n"
        "  mailbox alice@example.test: maildir:/m/alice/\n"
        "verdict: deliverable (1 target)\n"
    )


def test_every_kind_of_target(
    site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(site, "admin@example.test") == 0
    assert capsys.readouterr().out.splitlines() == [
        "route of admin@example.test",
        f"  aliases: admin -> bob, |..., /..., carol@remote.example ({ALIASES}:12)",
        "targets",
        "  mailbox bob@example.test: mbox:/var/mail/bob (user bob)",
        "  program admin@example.test: |/usr/bin/vacation bob (as user bob)",
        "  file admin@example.test: /var/log/admin.mbox (as user nobody)",
        "  remote carol@remote.example: via MX of remote.example",
        "envelope sender for this expansion: <owner-admin@example.test>",
        "verdict: deliverable (4 targets)",
    ]


def test_remote_next_hop(site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(site, "x@y.example") == 0
    out = capsys.readouterr().out
    assert "  mailertable: y.example -> smtp:[mx.example] (/etc/mail/mailertable:3)\n" in out
    assert "  remote x@y.example: via [mx.example]\n" in out


def test_refused_exits_1(site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(site, "lee@tonk.com") == 1
    out = capsys.readouterr().out
    assert "  refused lee@tonk.com: 550 5.1.1 you are wrong\n" in out
    assert out.endswith("verdict: refused: 550 5.1.1 you are wrong\n")
    assert run(site, "nobody@example.test") == 1
    assert capsys.readouterr().out.endswith("verdict: refused: 550 5.1.1 User unknown\n")


def test_unqualified_address_gets_the_hostname(
    site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    run(site, "root")
    assert fake.asked == [f"root@{HOSTNAME}"]


def test_bad_address_is_one_line(
    site: Site, fake: FakeRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(site, "a b@example.test") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("postoffice: explain: ")
    assert fake.asked == []


def test_config_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("hostname = [\n")
    assert main(["-c", str(bad), "explain", "a@b.example"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("postoffice: ") and "Traceback" not in err


# --- --sender -------------------------------------------------------------------


def masquerading_site(tmp_path: Path) -> Site:
    """Seed 002 §5 and §7: MASQUERADE_AS(163.com), root exposed, the genericstable."""
    host = "linux102.example.com"
    site = make_site(
        tmp_path / "site",
        domains=("localhost", host, "tonk.com", "qq.com"),
        extra_toml=(
            '[routing]\nmasquerade_as = "163.com"\nmasquerade_envelope = true\n'
            'exposed_users = ["root"]\n'
        ),
    )
    site.config.write_text(site.config.read_text().replace(HOSTNAME, host))
    table = site.root / "genericstable"
    table.write_text(
        "# seed 002\nlee@linux102.example.com dl@qq.com\n"
        "test@linux102.example.com yangmei@tonk.com\n"
    )
    table.chmod(0o644)
    return site


def test_sender_rewriting(
    tmp_path: Path, fake: FakeRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    site = masquerading_site(tmp_path)
    assert run(site, "alice@example.test", "--sender", "test@linux102.example.com") == 0
    out = capsys.readouterr().out
    table = site.root / "genericstable"
    assert out.split("verdict: deliverable (1 target)\n")[1].splitlines() == [
        "sender test@linux102.example.com as it leaves this host",
        "  header: genericstable: test@linux102.example.com -> yangmei@tonk.com "
        f"(key test@linux102.example.com) ({table}:3)",
        "  envelope: masquerade: test@linux102.example.com -> test@163.com",
        "  header sender (From:, Sender:, Reply-To:): yangmei@tonk.com",
        "  envelope sender (MAIL FROM): <test@163.com>",
    ]


def test_sender_masquerading_and_exposed_root(
    tmp_path: Path, fake: FakeRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    site = masquerading_site(tmp_path)
    run(site, "alice@example.test", "--sender", "dl")
    out = capsys.readouterr().out
    assert "  header sender (From:, Sender:, Reply-To:): dl@163.com\n" in out
    assert "  envelope sender (MAIL FROM): <dl@163.com>\n" in out
    run(site, "alice@example.test", "--sender", "<root@linux102.example.com>")
    out = capsys.readouterr().out
    assert "  header sender (From:, Sender:, Reply-To:): root@linux102.example.com\n" in out
    run(site, "alice@example.test", "--sender", "<>")
    assert "  envelope sender (MAIL FROM): <>\n" in capsys.readouterr().out


def test_sender_rewriter_without_maps(site: Site) -> None:
    # no genericstable file, no masquerading: only qualification
    from postoffice.config.load import load_config

    config: Config = load_config(str(site.config))
    r = explain.sender_rewriter(config)
    assert r.header_address("alice") == f"alice@{HOSTNAME}"
    assert r.header_address("alice@elsewhere.example") == "alice@elsewhere.example"


# --- with the real router ------------------------------------------------------------


@needs_router
def test_real_router_alias_and_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = make_site(tmp_path / "site")
    aliases = site.root / "aliases"
    aliases.write_text("# aliases\nadmin: alice@example.test, bob@example.test\n")
    aliases.chmod(0o644)
    assert run(site, "admin@example.test") == 0
    out = capsys.readouterr().out
    assert f"({aliases}:2)" in out
    assert "  mailbox alice@example.test: " in out and "  mailbox bob@example.test: " in out
    assert run(site, "nobody@example.test") == 1
    assert "verdict: refused: 550" in capsys.readouterr().out


@needs_router
def test_installed_entry_point(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    exe = Path(sys.executable).parent / "postoffice"
    command = str(exe) if exe.exists() else shutil.which("postoffice")
    assert command
    ok = subprocess.run(
        [command, "-c", str(site.config), "explain", "alice@example.test"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("route of alice@example.test\n")
    assert "verdict: deliverable" in ok.stdout
    bad = subprocess.run(
        [command, "-c", str(site.config), "explain", "nobody@example.test"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1 and "verdict: refused" in bad.stdout
