"""cli/newaliases: newaliases and praliases, via main([...]) and the installed entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from postoffice.cli.main import main as postoffice_main
from postoffice.cli.newaliases import main, praliases_main
from postoffice.maps.registry import open_map

BIN = Path(sys.executable).parent
ALIASES = """\
# seed 002
mailer-daemon: postmaster
postmaster:    root
admin:         test1,
               test2
dl:            dl, dl@163.com
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config directory with postoffice.toml and an aliases file; returns the toml."""
    toml = tmp_path / "postoffice.toml"
    toml.write_text(f'config_dir = "{tmp_path}"\nstate_dir = "{tmp_path}/state"\n')
    (tmp_path / "aliases").write_text(ALIASES)
    return toml


def test_newaliases_compiles_and_prints_the_summary(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-C", str(site)]) == 0
    out, err = capsys.readouterr()
    aliases = site.parent / "aliases"
    # longest: "test1, test2" (12); total: names 13+10+5+2 + values 10+4+12+14
    assert out == f"{aliases}: 4 aliases, longest 14 bytes, 70 bytes total\n"
    assert err == ""
    m = open_map("aliases", str(aliases), aliases=True)
    try:
        assert getattr(m, "compiled", False)
        e = m.lookup("admin")
        assert e is not None and e.value == "test1, test2" and e.where == f"{aliases}:4"
    finally:
        m.close()


def test_newaliases_reports_problems_and_still_writes(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aliases = site.parent / "aliases"
    aliases.write_text(ALIASES + "broken line\n")
    assert main(["-C", str(site)]) == 0
    out, err = capsys.readouterr()
    assert err == f"{aliases}:7: missing ':' (write: name: target, target, ...)\n"
    assert out.startswith(f"{aliases}: 4 aliases")
    assert os.path.exists(f"{aliases}.db")


def test_newaliases_errors(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aliases = site.parent / "aliases"
    aliases.chmod(0o666)
    assert main(["-C", str(site)]) == 77
    assert capsys.readouterr().err == (
        f"newaliases: {aliases}: unsafe file refused: writable by others (mode 0666)\n"
    )
    aliases.unlink()
    assert main(["-C", str(site)]) == 66
    assert capsys.readouterr().err == (
        f"newaliases: {aliases}: cannot open: No such file or directory\n"
    )
    assert main(["-C", str(site.parent / "missing.toml")]) == 78
    assert capsys.readouterr().err.count("\n") == 1
    site.write_text(site.read_text() + '[maps]\naliases = ""\n')
    assert main(["-C", str(site)]) == 78
    assert "no aliases file is configured" in capsys.readouterr().err
    assert main(["-C", str(site), "extra"]) == 64
    assert main(["-Z"]) == 64
    capsys.readouterr()
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: newaliases")


def test_praliases_prints_the_aliases_in_effect(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert praliases_main(["-C", str(site)]) == 0
    assert capsys.readouterr().out == (
        "mailer-daemon:postmaster\npostmaster:root\nadmin:test1, test2\ndl:dl, dl@163.com\n"
    )
    assert praliases_main(["-C", str(site), "ADMIN", "nobody"]) == 0
    assert capsys.readouterr().out == "admin:test1, test2\nnobody: No such key\n"


def test_praliases_reads_the_db_and_warns_when_stale(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aliases = site.parent / "aliases"
    assert main(["-C", str(site)]) == 0
    aliases.write_text("postmaster: alice\n")
    os.utime(f"{aliases}.db", (1_000_000, 1_000_000))
    os.utime(aliases, (1_000_001, 1_000_001))
    capsys.readouterr()
    assert praliases_main(["-C", str(site)]) == 0
    out, err = capsys.readouterr()
    assert out == "postmaster:alice\n"
    assert err == f"{aliases}.db is older than {aliases}, using the text file; run newaliases\n"
    os.utime(f"{aliases}.db", (1_000_002, 1_000_002))
    assert praliases_main(["-C", str(site), "postmaster"]) == 0
    assert capsys.readouterr().out == "postmaster:root\n"


def test_praliases_f_reads_another_file(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other-aliases"
    other.write_text("x: y\n")
    assert praliases_main(["-C", str(site), "-f", str(other)]) == 0
    assert capsys.readouterr().out == "x:y\n"


def test_config_check_reports_map_problems(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (site.parent / "users").write_text("")
    (site.parent / "users").chmod(0o600)
    assert postoffice_main(["-c", str(site), "config", "check"]) == 0
    capsys.readouterr()
    (site.parent / "virtusertable").write_text("a@example.com alice\nbroken\n")
    assert postoffice_main(["-c", str(site), "config", "check"]) == 1
    assert capsys.readouterr().err == (
        f"{site.parent}/virtusertable:2: broken: no value (write: key, white space, value)\n"
    )


def test_installed_entry_points(site: Path) -> None:
    r = subprocess.run(
        [str(BIN / "newaliases"), "-C", str(site)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("4 aliases, longest 14 bytes, 70 bytes total\n")
    r = subprocess.run(
        [str(BIN / "praliases"), "-C", str(site), "dl"], capture_output=True, text=True, timeout=60
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "dl:dl, dl@163.com\n", "")
