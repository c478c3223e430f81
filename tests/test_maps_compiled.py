"""maps/compiled: the SQLite form makemap and newaliases write, and CompiledMap."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from postoffice.maps.compiled import (
    FORMAT_VERSION,
    CompiledMap,
    CompileError,
    compile_map,
    db_path_for,
    is_compiled_map,
    write_compiled,
)
from postoffice.maps.interfaces import MapEntry


def test_db_path_for() -> None:
    assert db_path_for("/etc/mail/access") == "/etc/mail/access.db"
    assert db_path_for("/etc/mail/access.db") == "/etc/mail/access.db"


def test_compile_aliases_and_look_up(tmp_path: Path) -> None:
    text = tmp_path / "aliases"
    text.write_text("postmaster: root\nAdmin: alice,\n  bob\nbroken\n")
    r = compile_map(str(text), aliases=True)
    assert r.db_path == f"{text}.db" and r.source == str(text)
    assert r.entries == 2
    assert r.longest == len("alice, bob")
    assert r.total_bytes == len("postmaster") + len("root") + len("admin") + len("alice, bob")
    assert r.problems == (f"{text}:4: missing ':' (write: name: target, target, ...)",)
    m = CompiledMap("aliases", r.db_path)
    try:
        e = m.lookup("ADMIN")
        assert e == MapEntry(key="admin", value="alice, bob", file=str(text), line=2)
        assert m.lookup("nobody") is None
        assert len(m) == 2 and m.kind == "aliases" and m.source == str(text)
        assert m.problems() == list(r.problems)  # the source's problems survive compiling
        assert [x.key for x in m.entries()] == ["postmaster", "admin"]
    finally:
        m.close()
    assert m.lookup("admin") is None and len(m) == 0  # closed: empty


def test_file_layout_is_the_documented_one(tmp_path: Path) -> None:
    text = tmp_path / "virtusertable"
    text.write_text("a@example.com alice\n")
    compile_map(str(text), aliases=False)
    conn = sqlite3.connect(f"{text}.db")
    try:
        assert conn.execute("SELECT key, value, line FROM map").fetchall() == [
            ("a@example.com", "alice", 1)
        ]
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    finally:
        conn.close()
    assert meta["version"] == FORMAT_VERSION and meta["source"] == str(text)
    assert meta["kind"] == "text" and meta["fold_case"] == "1" and meta["entries"] == "1"


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    write_compiled(str(db), [MapEntry(key="a", value="1")], source="m", kind="text")
    old = CompiledMap("m", str(db))
    write_compiled(str(db), [MapEntry(key="a", value="2")], source="m", kind="text")
    try:
        # the open map still answers from the file it opened (a rename, not a rewrite)
        e = old.lookup("a")
        assert e is not None and e.value == "1"
        assert old.reload_if_changed() is True
        e = old.lookup("a")
        assert e is not None and e.value == "2"
    finally:
        old.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.db"]


def test_mode_and_owner_follow_the_text_file(tmp_path: Path) -> None:
    text = tmp_path / "access"
    text.write_text("127.0.0.1 RELAY\n")
    text.chmod(0o600)
    compile_map(str(text), aliases=False)
    assert stat.S_IMODE(os.stat(f"{text}.db").st_mode) == 0o600
    text.chmod(0o664)  # group write is never copied
    compile_map(str(text), aliases=False)
    assert stat.S_IMODE(os.stat(f"{text}.db").st_mode) == 0o644


def test_case_kept_with_fold_case_off(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    write_compiled(
        str(db), [MapEntry(key="Key", value="v")], source="m", kind="text", fold_case=False
    )
    m = CompiledMap("m", str(db))
    try:
        assert m.lookup("Key") is not None and m.lookup("key") is None
    finally:
        m.close()


def test_compile_errors(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="No such file") as missing:
        compile_map(str(tmp_path / "none"), aliases=True)
    assert not missing.value.refused
    text = tmp_path / "aliases"
    text.write_text("a: b\n")
    text.chmod(0o660)
    with pytest.raises(CompileError, match="writable by group") as unsafe:
        compile_map(str(text), aliases=True, safe_files=True)
    assert unsafe.value.refused


def test_not_a_compiled_map(tmp_path: Path) -> None:
    db = tmp_path / "aliases.db"
    db.write_bytes(b"\x00\x06\x15\x61" + b"\x00" * 4092)  # a Berkeley DB hash file, say
    assert not is_compiled_map(str(db))
    m = CompiledMap("aliases", str(db))
    assert len(m) == 0 and m.lookup("x") is None
    assert m.problems() == [
        f"{db}: not a postoffice compiled map (rebuild it with makemap or newaliases)"
    ]


def test_wrong_version_and_broken_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('version', '99')")
    conn.commit()
    conn.close()
    m = CompiledMap("m", str(db))
    assert len(m) == 0 and "version '99' is not 1" in m.problems()[0]
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    m2 = CompiledMap("m", str(other))
    assert len(m2) == 0 and "cannot read the compiled map" in m2.problems()[0]


def test_missing_compiled_file_is_empty(tmp_path: Path) -> None:
    m = CompiledMap("m", str(tmp_path / "none.db"))
    assert len(m) == 0 and m.problems() == [] and m.reload_if_changed() is False


def test_unsafe_compiled_file_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "m.db"
    write_compiled(str(db), [MapEntry(key="a", value="1")], source="m", kind="text", mode=0o666)
    with caplog.at_level("WARNING", logger="postoffice.maps"):
        m = CompiledMap("m", str(db))
    assert m.lookup("a") is None
    assert m.problems() == [f"{db}: unsafe file refused: writable by others (mode 0666)"]
    assert f"{db}: refusing unsafe map file: writable by others" in caplog.text
    db.chmod(0o644)  # fixing the mode changes ctime: the reload notices
    assert m.reload_if_changed() is True
    e = m.lookup("a")
    assert e is not None and e.value == "1"
    m.close()
