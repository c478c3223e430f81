"""The passwd-file user database: parsing, lookups, atomic rewrites, permissions, reload."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.auth import schemes
from postoffice.auth.passwd_file import User, UserDB, UserError, check_users_file, parse_line
from postoffice.config.load import parse_config
from postoffice.errors import ConfigError

SHA = "{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"  # "Hello world!"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemes, "ARGON2_MEMORY_COST", 1024)
    monkeypatch.setattr(schemes, "ARGON2_TIME_COST", 1)


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


SAMPLE = f"""\
# users of example.org
alice@example.org:{SHA}:1000:1000:Alice A.:/home/alice:/bin/false:userdb_mail=maildir:~/M quota=1G

Bob@Example.ORG:{{PLAIN}}builder
  # indented comment
carol@example.org:{{PLAIN}}x:::::::
"""


def test_parse_full_and_minimal_lines(tmp_path: Path) -> None:
    db = UserDB.load(str(write(tmp_path / "users", SAMPLE)))
    alice = db.lookup("alice@example.org")
    assert alice == User(
        address="alice@example.org",
        password=SHA,
        uid="1000",
        gid="1000",
        gecos="Alice A.",
        home="/home/alice",
        shell="/bin/false",
        extra_fields=("userdb_mail=maildir:~/M", "quota=1G"),
        line=2,
    )
    bob = db.lookup("bob@example.org")
    assert bob is not None and bob.password == "{PLAIN}builder" and bob.uid == "" and bob.line == 4
    assert bob.local_part == "Bob" and bob.domain == "Example.ORG"
    assert [u.address for u in db.users()] == [
        "alice@example.org",
        "Bob@Example.ORG",
        "carol@example.org",
    ]


def test_lookup_is_case_insensitive_in_both_parts(tmp_path: Path) -> None:
    db = UserDB.load(str(write(tmp_path / "users", SAMPLE)))
    for name in ("BOB@example.org", "bob@EXAMPLE.org", "bob@example.org."):
        assert db.exists(name)
    assert not db.exists("bob@example.com")
    assert db.lookup("nobody@example.org") is None


def test_verify(tmp_path: Path) -> None:
    db = UserDB.load(str(write(tmp_path / "users", SAMPLE)))
    assert db.verify("ALICE@example.org", "Hello world!")
    assert not db.verify("alice@example.org", "hello world!")
    assert not db.verify("nobody@example.org", "Hello world!")
    assert db.verify("bob@example.org", "builder")
    assert db.statistics() == {"users": 3, "loads": 1, "verified": 2, "failed": 2}


def test_missing_file_is_an_empty_database(tmp_path: Path) -> None:
    db = UserDB.load(str(tmp_path / "nope" / "users"))
    assert db.users() == []
    assert not db.verify("a@b", "x")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("ok@x:{PLAIN}a\nno-colon-here\n", 2, "expected user:password"),
        ("# c\n\n:{PLAIN}a\n", 3, "empty user name"),
        ("bad name@x:{PLAIN}a\n", 1, "white space"),
        ("a@x:{PLAIN}a:1 000\n", 1, "uid"),
        ("a@x:{PLAIN}a\nb@x:y\nA@X:{PLAIN}b\n", 3, "duplicate user 'A@X' (first at line 1)"),
    ],
)
def test_broken_lines_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path / "users", text)
    with pytest.raises(ConfigError) as info:
        UserDB.load(str(path))
    assert info.value.file == str(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert message in str(info.value)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"a@x:{PLAIN}a\nb@x:{PLAIN}\xff\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r":2: not valid UTF-8"):
        UserDB.load(str(path))


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_refuses_file_writable_by_group_or_others(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "users", SAMPLE, mode)
    with pytest.raises(ConfigError, match="writable by group or others"):
        UserDB.load(str(path))


def test_readable_by_others_is_accepted(tmp_path: Path) -> None:
    assert UserDB.load(str(write(tmp_path / "users", SAMPLE, 0o644))).exists("alice@example.org")


def test_add_user_creates_dir_and_file_with_private_modes(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "users"
    db = UserDB.load(str(path))
    user = db.add_user("New@Example.ORG", "pw")
    assert user.address == "new@example.org"  # stored lower-cased
    assert user.password.startswith("{ARGON2ID}$argon2id$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert db.verify("new@example.org", "pw")
    assert path.read_text() == f"new@example.org:{user.password}\n"
    assert [p.name for p in path.parent.iterdir()] == ["users"]  # no temp file left


def test_add_user_keeps_everything_else_verbatim(tmp_path: Path) -> None:
    path = write(tmp_path / "users", SAMPLE.rstrip("\n"))  # no final newline
    db = UserDB.load(str(path))
    db.add_user("dave@example.org", "pw", scheme="SHA512-CRYPT")
    lines = path.read_text().split("\n")
    assert "\n".join(lines[:6]) == SAMPLE.rstrip("\n")
    assert lines[6].startswith("dave@example.org:{SHA512-CRYPT}$6$")
    assert lines[7] == ""


def test_add_user_with_fields(tmp_path: Path) -> None:
    db = UserDB.load(str(tmp_path / "users"))
    user = db.add_user(
        "e@x.org",
        "pw",
        scheme="PLAIN",
        fields=("5000", "5000", "", "/var/mail/e", ""),
        extra_fields=("quota=1G",),
    )
    assert (
        tmp_path / "users"
    ).read_text() == "e@x.org:{PLAIN}pw:5000:5000::/var/mail/e::quota=1G\n"
    assert user.home == "/var/mail/e" and user.extra_fields == ("quota=1G",)


@pytest.mark.parametrize("address", ["nodomain", "@x.org", "a@", "a b@x.org", "a:b@x.org", "a@x\n"])
def test_add_user_refuses_bad_addresses(tmp_path: Path, address: str) -> None:
    with pytest.raises(UserError):
        UserDB.load(str(tmp_path / "users")).add_user(address, "pw")


def test_add_user_refuses_existing_user_and_empty_password(tmp_path: Path) -> None:
    db = UserDB.load(str(write(tmp_path / "users", SAMPLE)))
    with pytest.raises(UserError, match="already exists"):
        db.add_user("BOB@example.org", "pw")
    with pytest.raises(UserError, match="empty"):
        db.add_user("zed@example.org", "")
    with pytest.raises(UserError, match="colon"):
        db.add_user("zed@example.org", "a:b", scheme="PLAIN")
    with pytest.raises(UserError, match="unknown password scheme"):
        db.add_user("zed@example.org", "x", scheme="ROT13")
    assert (tmp_path / "users").read_text() == SAMPLE


def test_delete_user_keeps_comments_and_others(tmp_path: Path) -> None:
    path = write(tmp_path / "users", SAMPLE)
    db = UserDB.load(str(path))
    removed = db.delete_user("bob@EXAMPLE.org")
    assert removed.address == "Bob@Example.ORG"
    assert path.read_text() == SAMPLE.replace("Bob@Example.ORG:{PLAIN}builder\n", "")
    assert not db.exists("bob@example.org")
    with pytest.raises(UserError, match="no such user"):
        db.delete_user("bob@example.org")


def test_set_password_keeps_other_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "users", SAMPLE)
    db = UserDB.load(str(path))
    db.set_password("alice@example.org", "new", scheme="PLAIN")
    assert path.read_text() == SAMPLE.replace(SHA, "{PLAIN}new")
    assert db.verify("alice@example.org", "new")
    with pytest.raises(UserError, match="no such user"):
        db.set_password("nobody@example.org", "x")


def test_rewrite_reads_the_current_file_not_a_stale_copy(tmp_path: Path) -> None:
    path = str(tmp_path / "users")
    first, second = UserDB.load(path), UserDB.load(path)
    first.add_user("a@x.org", "pw", scheme="PLAIN")
    second.add_user("b@x.org", "pw", scheme="PLAIN")  # must not drop a@x.org
    assert [u.address for u in UserDB.load(path).users()] == ["a@x.org", "b@x.org"]


def test_rewrite_is_atomic_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "users", SAMPLE)
    db = UserDB.load(str(path))

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        db.add_user("new@example.org", "pw", scheme="PLAIN")
    assert path.read_text() == SAMPLE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]
    assert not db.exists("new@example.org")


def test_rewrite_refuses_when_another_line_is_broken(tmp_path: Path) -> None:
    path = write(tmp_path / "users", "a@x:{PLAIN}a\nbroken\n")
    db = UserDB(str(path), {}, None)  # loaded before the line broke
    with pytest.raises(ConfigError, match=":2: "):
        db.add_user("b@x.org", "pw", scheme="PLAIN")
    assert path.read_text() == "a@x:{PLAIN}a\nbroken\n"


def test_rewrite_fixes_loose_read_permissions(tmp_path: Path) -> None:
    path = write(tmp_path / "users", SAMPLE, 0o644)
    UserDB.load(str(path)).add_user("f@x.org", "pw", scheme="PLAIN")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reload_if_changed(tmp_path: Path) -> None:
    path = str(tmp_path / "users")
    server = UserDB.load(path)
    assert server.reload_if_changed() is False  # still missing
    UserDB.load(path).add_user("a@x.org", "pw", scheme="PLAIN")  # `postoffice user add`
    assert server.reload_if_changed() is True
    assert server.verify("a@x.org", "pw")
    assert server.reload_if_changed() is False
    UserDB.load(path).delete_user("a@x.org")
    assert server.reload_if_changed() is True
    assert not server.exists("a@x.org")
    os.unlink(path)
    assert server.reload_if_changed() is True
    assert server.users() == []
    assert server.statistics()["loads"] == 4


def test_reload_of_a_broken_file_raises_and_keeps_the_old_users(tmp_path: Path) -> None:
    path = write(tmp_path / "users", "a@x.org:{PLAIN}pw\n")
    server = UserDB.load(str(path))
    write(path, "a@x.org:{PLAIN}pw\nbroken\n")
    with pytest.raises(ConfigError, match=":2: "):
        server.reload_if_changed()
    assert server.verify("a@x.org", "pw")


def test_from_text_is_read_only() -> None:
    db = UserDB.from_text("a@x.org:{PLAIN}pw\n")
    assert db.verify("a@x.org", "pw")
    assert db.reload_if_changed() is False
    with pytest.raises(UserError):
        db.add_user("b@x.org", "pw")


def test_check_users_file(tmp_path: Path) -> None:
    users = write(tmp_path / "users", f"a@x.org:{SHA}\nb@x.org:{{ROT13}}nop\nc@x.org:\n")
    cfg = parse_config(f'users_file = "{users}"', file=str(tmp_path / "postoffice.toml"))
    assert check_users_file(cfg) == [f"{users}:2: b@x.org: unknown password scheme ROT13"]
    write(users, "broken\n")
    assert check_users_file(cfg) == [
        f"{users}:1: expected user:password[:uid:gid:gecos:home:shell:extra_fields]"
    ]


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=80))
def test_parse_line_only_raises_config_errors(line: str) -> None:
    try:
        user = parse_line(line, file="users", number=1)
    except ConfigError as e:
        assert str(e).startswith("users:1: ")
    else:
        assert user is None or user.address
