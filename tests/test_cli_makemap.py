"""cli/makemap: sendmail's makemap flags, via main([...]) and the installed entry point."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from postoffice.cli.makemap import UsageError, main, parse_args
from postoffice.maps.compiled import CompiledMap

MAKEMAP = str(Path(sys.executable).parent / "makemap")
VT = "Info@Example.com alice\n@example.com %1@example.net  # catch-all\n"


def run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str | bytes = b"") -> int:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    return main(argv)


def lookup(db: Path, key: str) -> str | None:
    m = CompiledMap("m", str(db))
    try:
        e = m.lookup(key)
        return e.value if e else None
    finally:
        m.close()


def test_parse_args_getopt_style() -> None:
    o = parse_args(["-rv", "-t", ":", "-D%", "-N", "-c", "1024", "-C", "/etc/x.cf", "hash", "m"])
    assert o.replace and o.verbose and o.delimiter == ":" and o.comment == "%"
    assert o.map_type == "hash" and o.name == "m" and o.fold_case
    assert parse_args(["-f", "-e", "-o", "-s", "-u", "BTREE", "m"]).map_type == "btree"
    assert parse_args(["-l"]).list_types


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hash"], "usage: makemap"),
        (["-x", "hash", "m"], "option -x not recognized"),
        (["dbm", "m"], "unknown map type dbm (supported: hash, btree, implicit)"),
        (["-d", "btree", "m"], "-d (duplicate keys) is not supported"),
        (["-t", "ab", "hash", "m"], "-t takes one character"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_args(argv)


def test_build_and_dump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = tmp_path / "virtusertable"
    name.write_text(VT)
    assert run(monkeypatch, ["hash", str(name)], VT) == 0
    assert lookup(Path(f"{name}.db"), "info@example.com") == "alice"
    assert lookup(Path(f"{name}.db"), "@example.com") == "%1@example.net"
    capsys.readouterr()
    assert run(monkeypatch, ["-u", "hash", str(name)]) == 0
    assert capsys.readouterr().out == "info@example.com\talice\n@example.com\t%1@example.net\n"
    assert run(monkeypatch, ["-u", "-t", "=", "hash", f"{name}.db"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "info@example.com=alice"


def test_problems_are_reported_and_the_rest_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = tmp_path / "access"
    assert run(monkeypatch, ["hash", str(name)], "a OK\nbroken\nA dup\nb REJECT\n") == 65
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"makemap: {name}:2: broken: no value (write: key, white space, value)",
        f"makemap: {name}:3: a: duplicate key; the entry at line 1 is used",
    ]
    assert lookup(Path(f"{name}.db"), "a") == "OK"
    assert lookup(Path(f"{name}.db"), "b") == "REJECT"


def test_flags_e_f_r(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "m.db"
    assert run(monkeypatch, ["-e", "-f", "-r", "hash", str(tmp_path / "m")], "Key\nKey v\n") == 0
    assert lookup(db, "Key") == "v" and lookup(db, "key") is None


def test_append_keeps_old_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = str(tmp_path / "m")
    assert run(monkeypatch, ["hash", name], "a 1\nb 2\n") == 0
    assert run(monkeypatch, ["-o", "hash", name], "c 3\na 9\n") == 65
    assert "a: duplicate key (already in" in capsys.readouterr().err
    db = tmp_path / "m.db"
    assert (lookup(db, "a"), lookup(db, "b"), lookup(db, "c")) == ("1", "2", "3")
    assert run(monkeypatch, ["-o", "-r", "hash", name], "a 9\n") == 0
    assert lookup(db, "a") == "9" and lookup(db, "b") == "2"


def test_verbose_and_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, ["-v", "hash", str(tmp_path / "m")], "k v w\n") == 0
    assert capsys.readouterr().out == "key=`k', val=`v w'\n"
    assert run(monkeypatch, ["-l"]) == 0
    assert capsys.readouterr().out == "hash\nbtree\nimplicit\n"


def test_unsafe_directory_unless_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    assert run(monkeypatch, ["hash", str(d / "m")], "a 1\n") == 73
    err = capsys.readouterr().err
    assert err.startswith(f"makemap: {d}/m.db: unsafe: directory {d} writable by others")
    assert err.count("\n") == 1
    assert run(monkeypatch, ["-s", "hash", str(d / "m")], "a 1\n") == 0


def test_dump_missing_or_foreign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, ["-u", "hash", str(tmp_path / "none")]) == 66
    assert capsys.readouterr().err == (
        f"makemap: cannot open {tmp_path}/none.db: No such file or directory\n"
    )
    (tmp_path / "x.db").write_bytes(b"not sqlite")
    assert run(monkeypatch, ["-u", "hash", str(tmp_path / "x")]) == 66
    assert "not a postoffice compiled map" in capsys.readouterr().err


def test_mode_follows_the_text_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = tmp_path / "access"
    name.write_text("a OK\n")
    name.chmod(0o640)
    assert run(monkeypatch, ["hash", str(name)], "a OK\n") == 0
    assert os.stat(f"{name}.db").st_mode & 0o777 == 0o640


def test_installed_entry_point(tmp_path: Path) -> None:
    name = tmp_path / "virtusertable"
    name.write_text(VT)
    with name.open("rb") as f:
        r = subprocess.run([MAKEMAP, "hash", str(name)], stdin=f, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"" and r.stderr == b""
    r = subprocess.run([MAKEMAP, "-u", "hash", str(name)], capture_output=True, timeout=60)
    assert r.stdout.decode().splitlines()[0] == "info@example.com\talice"
    r = subprocess.run([MAKEMAP, "cdb", str(name)], capture_output=True, timeout=60)
    assert r.returncode == 64
    assert r.stderr.decode() == (
        "makemap: unknown map type cdb (supported: hash, btree, implicit)\n"
    )
