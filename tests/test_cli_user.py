"""`postoffice user add|del|passwd|list` through main([...])."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.auth import schemes
from postoffice.auth.passwd_file import UserDB
from postoffice.cli.main import main


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTOFFICE_CONFIG", raising=False)
    monkeypatch.setattr(schemes, "ARGON2_MEMORY_COST", 1024)
    monkeypatch.setattr(schemes, "ARGON2_TIME_COST", 1)
    (tmp_path / "postoffice.toml").write_text(
        "hostname = 'mx.example.org'\n"
        "local_domains = ['example.org']\n"
        "users_file = 'private/users'\n"
    )
    return tmp_path / "private" / "users"


def stdin(monkeypatch: pytest.MonkeyPatch, text: str, tty: bool = False) -> None:
    monkeypatch.setattr("sys.stdin", FakeTTY(text) if tty else io.StringIO(text))


def prompts(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    asked: list[str] = []
    it: Iterator[str] = iter(answers)

    def getpass(prompt: str = "Password: ") -> str:
        asked.append(prompt)
        return next(it)

    monkeypatch.setattr("getpass.getpass", getpass)
    return asked


def test_add_from_stdin(
    setup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, "s3cret\n")
    assert main(["user", "add", "Alice@Example.org", "--password-stdin"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"added alice@example.org to {setup}\n"
    assert captured.err == ""
    assert stat.S_IMODE(setup.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(setup.stat().st_mode) == 0o600
    db = UserDB.load(str(setup))
    assert db.verify("alice@example.org", "s3cret")
    assert db.lookup("alice@example.org").password.startswith("{ARGON2ID}")  # type: ignore[union-attr]


def test_add_reads_stdin_when_it_is_not_a_terminal(
    setup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin(monkeypatch, "piped\r\n")
    assert main(["user", "add", "bob@example.org", "--scheme", "sha512-crypt"]) == 0
    db = UserDB.load(str(setup))
    assert db.verify("bob@example.org", "piped")
    assert db.lookup("bob@example.org").password.startswith("{SHA512-CRYPT}$6$")  # type: ignore[union-attr]


def test_add_prompts_twice_on_a_terminal(setup: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stdin(monkeypatch, "", tty=True)
    asked = prompts(monkeypatch, "typed", "typed")
    assert main(["user", "add", "carol@example.org"]) == 0
    assert asked == ["Password: ", "Retype password: "]
    assert UserDB.load(str(setup)).verify("carol@example.org", "typed")


def test_add_refuses_mismatched_prompts(
    setup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, "", tty=True)
    prompts(monkeypatch, "one", "two")
    assert main(["user", "add", "carol@example.org"]) == 1
    assert capsys.readouterr().err == "postoffice: the passwords do not match\n"
    assert not setup.exists()


@pytest.mark.parametrize("text", ["", "\n"])
def test_add_refuses_empty_password(
    setup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    stdin(monkeypatch, text)
    assert main(["user", "add", "dave@example.org", "--password-stdin"]) == 1
    assert capsys.readouterr().err == "postoffice: empty passwords are not allowed\n"
    assert not setup.exists()


def test_add_warns_about_a_foreign_domain_but_adds(
    setup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, "pw\n")
    assert main(["user", "add", "eve@elsewhere.test", "--password-stdin"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("postoffice: warning: elsewhere.test is not in local_domains")
    assert len(err.splitlines()) == 1
    assert UserDB.load(str(setup)).exists("eve@elsewhere.test")


def test_add_existing_and_bad_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, "pw\n")
    assert main(["user", "add", "f@example.org", "--password-stdin"]) == 0
    capsys.readouterr()
    stdin(monkeypatch, "pw\n")
    assert main(["user", "add", "F@EXAMPLE.ORG", "--password-stdin"]) == 1
    assert capsys.readouterr().err == "postoffice: user f@example.org already exists\n"
    stdin(monkeypatch, "pw\n")
    assert main(["user", "add", "no-domain", "--password-stdin"]) == 1
    err = capsys.readouterr().err
    assert err == "postoffice: 'no-domain' is not an address of the form user@domain\n"


def test_passwd_del_list(
    setup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("g@example.org", "h@example.org"):
        stdin(monkeypatch, "old\n")
        assert main(["user", "add", name, "--password-stdin"]) == 0
    with setup.open("a") as f:
        f.write("# a comment the admin wrote\n")
    capsys.readouterr()

    assert main(["user", "list"]) == 0
    assert capsys.readouterr().out == "g@example.org\nh@example.org\n"

    stdin(monkeypatch, "new\n")
    assert main(["user", "passwd", "G@example.org", "--password-stdin"]) == 0
    assert capsys.readouterr().out == "password of g@example.org changed\n"
    db = UserDB.load(str(setup))
    assert db.verify("g@example.org", "new") and not db.verify("g@example.org", "old")

    assert main(["user", "del", "h@example.org"]) == 0
    assert capsys.readouterr().out == f"deleted h@example.org from {setup}\n"
    assert main(["user", "list"]) == 0
    assert capsys.readouterr().out == "g@example.org\n"
    assert setup.read_text().endswith("# a comment the admin wrote\n")


def test_unknown_users(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "del", "nobody@example.org"]) == 1
    assert capsys.readouterr().err == "postoffice: no such user: nobody@example.org\n"
    stdin(monkeypatch, "pw\n")
    assert main(["user", "passwd", "nobody@example.org", "--password-stdin"]) == 1
    assert capsys.readouterr().err == "postoffice: no such user: nobody@example.org\n"
    assert main(["user", "list"]) == 0
    assert capsys.readouterr().out == ""


def test_group_writable_users_file_is_refused(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.parent.mkdir()
    setup.write_text("a@example.org:{PLAIN}x\n")
    setup.chmod(0o664)
    assert main(["user", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"postoffice: {setup}: writable by group or others")
    assert len(err.splitlines()) == 1


def test_global_config_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "po.toml").write_text("")
    stdin(monkeypatch, "pw\n")
    assert main(["-c", str(other / "po.toml"), "user", "add", "i@x.org", "--password-stdin"]) == 0
    assert UserDB.load(str(other / "users")).exists("i@x.org")
