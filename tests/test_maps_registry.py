"""maps/registry: text or compiled, staleness, reload, the config's maps and `config check`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.config.load import parse_config
from postoffice.maps.compiled import compile_map
from postoffice.maps.registry import (
    CONFIG_MAPS,
    MAP_KINDS,
    EmptyMap,
    ReloadingMap,
    check_maps,
    open_config_maps,
    open_map,
)
from postoffice.maps.text import TextMap


def set_mtime(path: Path, seconds: int) -> None:
    os.utime(path, (seconds, seconds))


@pytest.fixture
def aliases(tmp_path: Path) -> Iterator[Path]:
    f = tmp_path / "aliases"
    f.write_text("postmaster: root\nadmin: alice\n")
    yield f


def opened(path: Path, **kw: bool) -> ReloadingMap:
    m = open_map(path.name, str(path), **kw)
    assert isinstance(m, ReloadingMap)
    return m


def test_registry_kinds_are_explicit() -> None:
    assert set(MAP_KINDS) == {"text", "list", "aliases", "hash", "btree", "sqlite"}
    assert set(CONFIG_MAPS) == {
        "aliases", "virtusertable", "genericstable", "mailertable", "access", "relay_domains"
    }  # fmt: skip


def test_empty_path_is_an_empty_map() -> None:
    m = open_map("access", "")
    assert isinstance(m, EmptyMap)
    assert len(m) == 0 and m.lookup("x") is None and m.problems() == []
    assert m.reload_if_changed() is False and list(m.entries()) == []


def test_missing_files_are_empty_until_they_appear(tmp_path: Path) -> None:
    f = tmp_path / "virtusertable"
    m = opened(f)
    assert len(m) == 0 and m.problems() == [] and m.reload_if_changed() is False
    f.write_text("a@example.com alice\n")
    assert m.reload_if_changed() is True
    e = m.lookup("A@example.com")
    assert e is not None and e.value == "alice"


def test_text_only(aliases: Path) -> None:
    m = opened(aliases, aliases=True)
    assert not m.compiled and m.in_use == str(aliases) and m.db_path == f"{aliases}.db"
    e = m.lookup("admin")
    assert e is not None and e.value == "alice" and e.where == f"{aliases}:2"


def test_fresh_db_is_used(aliases: Path) -> None:
    compile_map(str(aliases), aliases=True)
    set_mtime(aliases, 1_000_000)
    set_mtime(Path(f"{aliases}.db"), 1_000_000)  # equally new counts as current
    m = opened(aliases, aliases=True)
    try:
        assert m.compiled and m.in_use == f"{aliases}.db" and m.problems() == []
        e = m.lookup("ADMIN")
        assert e is not None and e.value == "alice" and e.where == f"{aliases}:2"
        assert [x.key for x in m.entries()] == ["postmaster", "admin"]
    finally:
        m.close()


def test_stale_db_warns_and_the_text_is_used(
    aliases: Path, caplog: pytest.LogCaptureFixture
) -> None:
    compile_map(str(aliases), aliases=True)
    aliases.write_text("postmaster: root\nadmin: bob\n")
    set_mtime(Path(f"{aliases}.db"), 1_000_000)
    set_mtime(aliases, 1_000_001)
    with caplog.at_level("WARNING", logger="postoffice.maps"):
        m = opened(aliases, aliases=True)
    note = f"{aliases}.db is older than {aliases}, using the text file; run newaliases"
    assert caplog.messages == [note]
    assert not m.compiled and m.problems() == [note]
    e = m.lookup("admin")
    assert e is not None and e.value == "bob"


def test_stale_hint_for_makemap_maps(tmp_path: Path) -> None:
    f = tmp_path / "access"
    f.write_text("127.0.0.1 RELAY\n")
    compile_map(str(f), aliases=False)
    set_mtime(Path(f"{f}.db"), 1_000_000)
    set_mtime(f, 1_000_001)
    m = opened(f, log=False)
    assert m.problems() == [
        f"{f}.db is older than {f}, using the text file; run makemap hash {f} < {f}"
    ]


def test_sendmail_db_is_passed_over(aliases: Path) -> None:
    Path(f"{aliases}.db").write_bytes(b"\x00\x06\x15\x61" + b"\x00" * 100)
    m = opened(aliases, aliases=True, log=False)
    assert not m.compiled and m.lookup("admin") is not None
    assert "is not a postoffice compiled map" in m.problems()[0]


def test_db_without_text_is_used(aliases: Path) -> None:
    compile_map(str(aliases), aliases=True)
    aliases.unlink()
    m = opened(aliases, aliases=True)
    try:
        assert m.compiled and m.lookup("postmaster") is not None
    finally:
        m.close()


def test_reload_picks_text_or_compiled_again(aliases: Path) -> None:
    m = opened(aliases, aliases=True)
    try:
        assert not m.compiled and m.reload_if_changed() is False
        # newaliases ran: the compiled map takes over without a restart
        compile_map(str(aliases), aliases=True)
        set_mtime(aliases, 1_000_000)
        assert m.reload_if_changed() is True and m.compiled
        assert m.reload_if_changed() is False
        # the text is edited afterwards: stale .db, the text is used
        aliases.write_text("postmaster: root\nadmin: carol\n")
        set_mtime(aliases, 2_000_000)
        set_mtime(Path(f"{aliases}.db"), 1_500_000)
        assert m.reload_if_changed() is True and not m.compiled
        e = m.lookup("admin")
        assert e is not None and e.value == "carol"
        # newaliases again
        compile_map(str(aliases), aliases=True)
        assert m.reload_if_changed() is True and m.compiled
        e = m.lookup("admin")
        assert e is not None and e.value == "carol"
        # the .db removed: back to the text
        os.unlink(f"{aliases}.db")
        assert m.reload_if_changed() is True and not m.compiled
        assert m.lookup("admin") is not None
    finally:
        m.close()


def test_malformed_line_at_reload_is_reported_and_the_rest_works(tmp_path: Path) -> None:
    f = tmp_path / "mailertable"
    f.write_text("example.com smtp:[mx.example.com]\n")
    m = opened(f)
    f.write_text("example.com smtp:[mx.example.com]\nbroken\n")
    set_mtime(f, 1_000_000)
    assert m.reload_if_changed() is True
    assert m.problems() == [f"{f}:2: broken: no value (write: key, white space, value)"]
    assert m.lookup("example.com") is not None


def test_relay_domains_are_a_list(tmp_path: Path) -> None:
    f = tmp_path / "relay-domains"
    f.write_text("example.com\nexample.net\n")
    m = opened(f, allow_empty=True)
    assert m.problems() == [] and m.lookup("EXAMPLE.NET") is not None


def test_kind_must_be_a_text_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a text map kind"):
        ReloadingMap("m", str(tmp_path / "m"), kind="hash")


def test_opener_signature() -> None:
    m = MAP_KINDS["text"]("m", "/nonexistent/m", safe_files=True, log=False)
    assert isinstance(m, TextMap) and len(m) == 0


# --- The config's maps --------------------------------------------------------------


def config_for(tmp_path: Path, extra: str = "") -> str:
    return f'config_dir = "{tmp_path}"\nstate_dir = "{tmp_path}/state"\n{extra}'


def test_open_config_maps(tmp_path: Path) -> None:
    (tmp_path / "virtusertable").write_text("@example.com %1@example.net\n")
    cfg = parse_config(config_for(tmp_path, '[maps]\naccess = ""\n'), file=str(tmp_path / "p.toml"))
    maps = open_config_maps(cfg.maps)
    assert set(maps) == set(CONFIG_MAPS)
    assert isinstance(maps["access"], EmptyMap)
    assert maps["virtusertable"].lookup("@EXAMPLE.com") is not None
    assert maps["aliases"].name == "aliases"


def test_check_maps_reports_every_problem(tmp_path: Path) -> None:
    cfg = parse_config(config_for(tmp_path), file=str(tmp_path / "p.toml"))
    assert check_maps(cfg) == []
    (tmp_path / "aliases").write_text("postmaster root\n")
    (tmp_path / "virtusertable").write_text("a@example.com alice\nbroken\n")
    (tmp_path / "access").write_text("127.0.0.1 RELAY\n")
    (tmp_path / "access").chmod(0o666)
    (tmp_path / "relay-domains").write_text("example.com\n")
    assert check_maps(cfg) == [
        f"{tmp_path}/aliases:1: missing ':' (write: name: target, target, ...)",
        f"{tmp_path}/virtusertable:2: broken: no value (write: key, white space, value)",
        f"{tmp_path}/access: unsafe file refused: writable by others (mode 0666)",
    ]
