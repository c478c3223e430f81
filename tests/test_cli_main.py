"""The `postoffice` command frame: --version, --help everywhere, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from postoffice import __version__
from postoffice.cli import config_cmd
from postoffice.cli import main as cli_main
from postoffice.cli.main import error_line, load_config_from_args, main
from postoffice.errors import ConfigError


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ambient configuration: an empty cwd and no $POSTOFFICE_CONFIG."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTOFFICE_CONFIG", raising=False)
    monkeypatch.delenv("POSTOFFICE_DEBUG", raising=False)
    monkeypatch.setattr("postoffice.config.load.SEARCH_PATHS", ("./postoffice.toml",))
    return tmp_path


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("postoffice: ")
    assert "Traceback" not in text
    return lines[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"postoffice {__version__}\n"


def test_installed_entry_point_prints_the_version() -> None:
    exe = Path(sys.executable).parent / "postoffice"
    command = str(exe) if exe.exists() else shutil.which("postoffice")
    assert command, "the postoffice entry point is not installed"
    result = subprocess.run([command, "--version"], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"postoffice {__version__}\n",
        "",
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["serve"],
        ["queue"],
        ["config"],
        ["config", "check"],
        ["config", "show"],
        ["user"],
        ["user", "add"],
        ["user", "del"],
        ["user", "passwd"],
        ["user", "list"],
    ],
)
def test_help_of_every_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: postoffice")


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    out = capsys.readouterr().out
    for command in ("serve", "queue", "config", "user", "-c FILE, --config FILE"):
        assert command in out


@pytest.mark.parametrize(
    "argv", [[], ["nope"], ["--bogus"], ["config"], ["user", "add"], ["user", "frob"]]
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_config_error_is_one_line_and_exit_1(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / "postoffice.toml").write_text("[smtp]\nlisten = ['localhost']\n")
    assert main(["config", "show"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    line = one_line(captured.err)
    assert line.startswith(f"postoffice: {isolated}/postoffice.toml:2: smtp.listen: ")


def test_missing_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", "nope.toml", "config", "check"]) == 1
    assert one_line(capsys.readouterr().err) == "postoffice: nope.toml: no such file"


def test_env_variable_names_the_config(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = isolated / "custom.toml"
    path.write_text("hostname = 'env.example'\n")
    monkeypatch.setenv("POSTOFFICE_CONFIG", str(path))
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out == f"config ok: {path}\n"


def test_config_check_ok_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out == "config ok: (built-in defaults)\n"


def test_config_check_reports_each_problem(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = isolated / "users"
    users.write_text("a@x.org:{ROT13}x\nb@x.org:{ROT26}y\n")
    users.chmod(0o600)
    (isolated / "postoffice.toml").write_text("")
    assert main(["config", "check"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{users}:1: a@x.org: unknown password scheme ROT13",
        f"{users}:2: b@x.org: unknown password scheme ROT26",
    ]


def test_config_check_broken_users_file(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users = isolated / "users"
    users.write_text("ok@x.org:{PLAIN}a\nbroken\n")
    users.chmod(0o600)
    (isolated / "postoffice.toml").write_text("")
    assert main(["-c", "postoffice.toml", "config", "check"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{users}:2: expected user:password")


def test_config_show_is_toml_with_resolved_values(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / "local-host-names").write_text("example.org\n")
    (isolated / "postoffice.toml").write_text(
        "hostname = 'mx.example.org'\n[smtp]\nlisten = ['[::1]:2525']\n"
    )
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# source: {isolated}/postoffice.toml\n")
    data = tomllib.loads(out)
    assert data["hostname"] == "mx.example.org"
    assert data["local_domains"] == ["localhost", "mx.example.org", "example.org"]
    assert data["users_file"] == f"{isolated}/users"
    assert data["smtp"]["listen"] == ["[::1]:2525"]
    assert (
        data["delivery"]["mailbox"]
        == f"maildir:{isolated}/postoffice-data/mail/{{domain}}/{{user}}"
    )


def test_load_config_from_args(isolated: Path) -> None:
    (isolated / "a.toml").write_text("hostname = 'a.example'\n")
    args = argparse.Namespace(config=str(isolated / "a.toml"))
    assert load_config_from_args(args).hostname == "a.example"
    assert load_config_from_args(argparse.Namespace()).source == ""


def test_os_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(args: argparse.Namespace) -> int:
        raise PermissionError(13, "Permission denied", "/etc/postoffice/users")

    monkeypatch.setattr(config_cmd, "run_check", boom)
    assert main(["config", "check"]) == 1
    err = one_line(capsys.readouterr().err)
    assert err == "postoffice: /etc/postoffice/users: Permission denied"


def test_keyboard_interrupt_is_quiet(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(config_cmd, "run_check", interrupted)
    assert main(["config", "check"]) == 130
    assert capsys.readouterr() == ("", "")


def test_unexpected_exception_is_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def bug(args: argparse.Namespace) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(config_cmd, "run_check", bug)
    assert main(["config", "check"]) == cli_main.EX_SOFTWARE
    err = one_line(capsys.readouterr().err)
    assert "internal error: ZeroDivisionError: division by zero" in err
    monkeypatch.setenv("POSTOFFICE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["config", "check"])


def test_system_exit_rules(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def say(args: argparse.Namespace) -> int:
        raise SystemExit("postoffice: not wired yet")

    monkeypatch.setattr(config_cmd, "run_check", say)
    assert main(["config", "check"]) == 1
    assert one_line(capsys.readouterr().err) == "postoffice: not wired yet"

    def status(args: argparse.Namespace) -> int:
        raise SystemExit(3)

    monkeypatch.setattr(config_cmd, "run_check", status)
    assert main(["config", "check"]) == 3


def test_error_line() -> None:
    assert error_line(ConfigError("bad", file="f", line=3, key="k")) == "f:3: k: bad"
    assert error_line(FileNotFoundError(2, "No such file or directory")) == (
        "No such file or directory"
    )
    assert error_line(ValueError("two\nlines")) == "two lines"
