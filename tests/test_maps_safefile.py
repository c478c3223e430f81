"""maps/safefile: sendmail's safe-file checks; refusals by the maps that use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postoffice.maps.aliases import AliasMap
from postoffice.maps.safefile import check_dir, check_file, file_signature, read_file
from postoffice.maps.text import TextMap

OTHER_UID = 12345
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


@pytest.fixture
def safe(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    d.mkdir(mode=0o755)
    f = d / "aliases"
    f.write_text("postmaster: root\n")
    f.chmod(0o644)
    return f


def test_a_normal_file_is_safe(safe: Path) -> None:
    assert check_file(str(safe)) is None
    assert check_dir(str(safe.parent)) is None


@pytest.mark.parametrize(
    ("mode", "reason"),
    [(0o664, "writable by group (mode 0664)"), (0o646, "writable by others (mode 0646)")],
)
def test_writable_by_group_or_others(safe: Path, mode: int, reason: str) -> None:
    safe.chmod(mode)
    assert check_file(str(safe)) == reason


def test_directory_writable_by_group_or_others(safe: Path) -> None:
    safe.parent.chmod(0o775)
    assert check_file(str(safe)) == f"directory {safe.parent} writable by group (mode 0775)"
    safe.parent.chmod(0o757)
    assert check_file(str(safe)) == f"directory {safe.parent} writable by others (mode 0757)"
    safe.parent.chmod(0o1777)  # sticky, like /tmp: others cannot replace the file
    assert check_file(str(safe)) is None


def test_not_a_regular_file_and_missing(tmp_path: Path) -> None:
    assert check_file(str(tmp_path)) == "not a regular file"
    assert check_file(str(tmp_path / "none")) == "cannot stat: No such file or directory"


@root_only
def test_owned_by_another_user(safe: Path) -> None:
    os.chown(safe, OTHER_UID, -1)
    assert check_file(str(safe)) == f"file owned by uid {OTHER_UID}, not root or the server's user"
    # ~/.forward or :include: in that user's home: the user may own it
    assert check_file(str(safe), allowed_uids={OTHER_UID}) is None


@root_only
def test_directory_owned_by_another_user(safe: Path) -> None:
    os.chown(safe.parent, OTHER_UID, -1)
    assert check_file(str(safe)) == (
        f"directory {safe.parent} owned by uid {OTHER_UID}, not root or the server's user"
    )
    assert check_file(str(safe), allowed_uids=[OTHER_UID]) is None


def test_symlinks_are_followed_to_the_real_file(safe: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(safe)
    assert check_file(str(link)) is None
    safe.chmod(0o666)
    assert check_file(str(link)) == "writable by others (mode 0666)"


def test_read_file(safe: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = read_file(str(safe), safe_files=True)
    assert c.data == b"postmaster: root\n" and c.problem == "" and not c.missing
    assert c.signature == file_signature(str(safe))
    assert read_file(str(safe.parent / "none"), safe_files=True).missing
    safe.chmod(0o664)
    with caplog.at_level("WARNING", logger="postoffice.maps"):
        refused = read_file(str(safe), safe_files=True, what="aliases")
    assert refused.data == b"" and refused.refused == "writable by group (mode 0664)"
    assert refused.problem == f"{safe}: unsafe file refused: writable by group (mode 0664)"
    assert caplog.records[0].name == "postoffice.maps"
    assert caplog.records[0].getMessage() == (
        f"{safe}: refusing unsafe aliases file: writable by group (mode 0664) ([maps] safe_files)"
    )
    assert read_file(str(safe), safe_files=False).data == b"postmaster: root\n"
    caplog.clear()
    read_file(str(safe), safe_files=True, log=False)
    assert caplog.records == []


def test_read_file_errors(tmp_path: Path) -> None:
    assert read_file(str(tmp_path), safe_files=False).error == "not a regular file"
    assert read_file(str(tmp_path / "file" / "below"), safe_files=True).missing


def test_unsafe_maps_are_refused_and_say_why(safe: Path, caplog: pytest.LogCaptureFixture) -> None:
    safe.chmod(0o666)
    with caplog.at_level("WARNING", logger="postoffice.maps"):
        aliases = AliasMap(str(safe))
        text = TextMap("virtusertable", str(safe))
    assert aliases.lookup("postmaster") is None and len(aliases) == 0
    assert aliases.problems() == [f"{safe}: unsafe file refused: writable by others (mode 0666)"]
    assert text.problems() == aliases.problems()
    assert f"{safe}: refusing unsafe aliases file" in caplog.text
    assert f"{safe}: refusing unsafe map file" in caplog.text
    # safe_files off: used as it is
    assert AliasMap(str(safe), safe_files=False).lookup("postmaster") is not None
    # fixed: the next reload uses it
    safe.chmod(0o644)
    assert aliases.reload_if_changed() is True
    assert aliases.lookup("postmaster") is not None and aliases.problems() == []


@root_only
def test_foreign_owned_map_is_refused(safe: Path) -> None:
    os.chown(safe, OTHER_UID, -1)
    m = AliasMap(str(safe))
    assert len(m) == 0
    assert m.problems() == [
        f"{safe}: unsafe file refused: file owned by uid {OTHER_UID}, not root or the server's user"
    ]
