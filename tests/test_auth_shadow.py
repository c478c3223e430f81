"""Tests for postoffice.auth.shadow (system accounts) and MD5-CRYPT in auth.schemes."""

from __future__ import annotations

import logging
from pathlib import Path

import bcrypt
import pytest

from postoffice.auth import libcrypt, schemes
from postoffice.auth.shadow import ShadowDB, parse_shadow
from postoffice.testing.clock import FakeClock

# Generated with `openssl passwd -1 -salt SALT PASSWORD` (OpenSSL 3).
MD5_VECTORS = [
    ("password", "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"),
    ("", "$1$saltsalt$5Jhcit4zN9UlGiA0txPkO0"),
    ("a", "$1$saltsalt$MzDjbImyzEz2m0NTiPzNW/"),
    (
        "this is a rather long password of more than sixteen characters",
        "$1$saltsalt$Jmww8AMFoHS1DlV3xGnRr/",
    ),
    ("pässwörd", "$1$saltsalt$VReRfkQ8Hs1aayf/oxMkG/"),
    ("x", "$1$ab$e2KlfqG5YBMTjSz7XF.Eu1"),
    ("x", "$1$$LP5.V3ajGqHDdXW6XwZQy."),
]

TODAY = int(FakeClock()() // 86400)  # 20833


@pytest.mark.parametrize(("password", "expected"), MD5_VECTORS)
def test_md5_crypt_vectors(password: str, expected: str) -> None:
    assert schemes.md5_crypt(password, expected) == expected
    assert schemes.verify_password(password, expected)
    assert schemes.verify_password(password, "{MD5-CRYPT}" + expected)
    assert schemes.verify_password(password, "{CRYPT}" + expected)
    assert not schemes.verify_password(password + "x", expected)


def test_md5_crypt_details() -> None:
    # The salt stops at "$" and at 8 characters.
    assert schemes.md5_crypt("x", "$1$saltsaltEXTRA$").startswith("$1$saltsalt$")
    with pytest.raises(ValueError):
        schemes.md5_crypt("x", "$5$salt$")
    assert schemes.identify_scheme("$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/") == "MD5-CRYPT"
    assert schemes.identify_scheme("{MD5-CRYPT}$1$a$b") == "MD5-CRYPT"
    assert schemes.identify_scheme("$6$x$y") == "SHA512-CRYPT"  # the rest unchanged
    assert not schemes.verify_password("password", "{MD5-CRYPT}$1$saltsalt$short")
    assert not schemes.verify_password("password", "{MD5-CRYPT}$6$saltsalt$x")
    assert "MD5-CRYPT" in schemes.VERIFY_SCHEMES


SHA512 = schemes.sha_crypt("pw512", "$6$saltsalt")
SHA256 = schemes.sha_crypt("pw256", "$5$rounds=1000$saltsalt")
BCRYPT = bcrypt.hashpw(b"pwbf", bcrypt.gensalt(rounds=4)).decode()
# `printf 'correct horse' | mkpasswd -m yescrypt -s` on Debian 12 (libxcrypt 4.4.33).
YESCRYPT = "$y$j9T$JDAvEgoRa2Ldns5ug/5KC/$CDNLueo.3uy8Zk2BaoCEoZRvs9GoLdSSQVJuxjLOVq8"
HAVE_YESCRYPT = (sc := libcrypt.system_crypt()) is not None and sc.supports("$y$")


def shadow_text() -> str:
    lines = [
        "root:*:19000:0:99999:7:::",
        f"sha512:{SHA512}:19000:0:99999:7:::",
        f"sha256:{SHA256}:19000:0:99999:7:::",
        "md5:$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/:19000:0:99999:7:::",
        f"blowfish:{BCRYPT}:19000:0:99999:7:::",
        f"yes:{YESCRYPT}:19000:0:99999:7:::",
        f"yes2:{YESCRYPT}:19000:0:99999:7:::",
        "des:abJnggxhB/yWI:19000:0:99999:7:::",
        f"locked:!{SHA512}:19000:0:99999:7:::",
        "empty::19000:0:99999:7:::",
        f"expired:{SHA512}:19000:0:99999:7::{TODAY - 1}:",
        f"expires_later:{SHA512}:19000:0:99999:7::{TODAY + 1}:",
        f"inactive:{SHA512}:{TODAY - 100}:0:90:7:5::",
        f"grace:{SHA512}:{TODAY - 100}:0:90:7:30::",
        f"mustchange:{SHA512}:0:0:90:7:5::",
        "+nisuser::::::::",
        "broken:x",
        "",
    ]
    return "\n".join(lines)


@pytest.fixture
def db(tmp_path: Path) -> ShadowDB:
    path = tmp_path / "shadow"
    path.write_text(shadow_text())
    return ShadowDB.load(str(path), clock=FakeClock())


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("sha512", "pw512"),
        ("sha256", "pw256"),
        ("md5", "password"),
        ("blowfish", "pwbf"),
        ("expires_later", "pw512"),
        ("grace", "pw512"),
        ("mustchange", "pw512"),
    ],
)
def test_verify_supported_hashes(db: ShadowDB, name: str, password: str) -> None:
    assert db.verify(name, password)
    assert not db.verify(name, password + "!")
    assert not db.verify(name.upper(), password)  # names are case-sensitive


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("root", "*"),
        ("locked", "pw512"),
        ("empty", ""),
        ("expired", "pw512"),
        ("inactive", "pw512"),
        ("nobody", "pw512"),
        ("+nisuser", ""),
        ("broken", "x"),
    ],
)
def test_unusable_accounts(db: ShadowDB, name: str, password: str) -> None:
    assert not db.verify(name, password)


@pytest.mark.skipif(not HAVE_YESCRYPT, reason="the system's libcrypt has no yescrypt")
def test_yescrypt_through_the_system_libcrypt(
    db: ShadowDB, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="postoffice.auth.shadow"):
        assert db.verify("yes", "correct horse")
        assert db.verify("yes2", "correct horse")
        assert not db.verify("yes", "correct horsE")
    assert "yescrypt" not in caplog.text
    stats = db.statistics()
    assert (stats["verified"], stats["failed"], stats["unsupported"]) == (2, 1, 0)


def test_yescrypt_without_libcrypt_and_des_are_refused_and_logged_once(
    db: ShadowDB, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(libcrypt, "system_crypt", lambda: None)
    with caplog.at_level(logging.WARNING, logger="postoffice.auth.shadow"):
        assert not db.verify("yes", "correct horse")
        assert not db.verify("yes2", "correct horse")
        assert not db.verify("yes", "anything")
        assert not db.verify("des", "anything")
    messages = [r.getMessage() for r in caplog.records]
    assert (
        sum(
            ": yescrypt password hashes are not supported by this system's libcrypt" in m
            for m in messages
        )
        == 1
    )
    assert sum(": DES crypt password hashes are not supported;" in m for m in messages) == 1
    assert db.statistics()["unsupported"] == 4


def test_lookup_and_statistics(db: ShadowDB) -> None:
    entry = db.lookup("expired")
    assert entry is not None and entry.expire == TODAY - 1 and entry.last_change == 19000
    assert db.lookup("broken") is None and db.lookup("+nisuser") is None
    db.verify("sha512", "pw512")
    db.verify("sha512", "bad")
    stats = db.statistics()
    assert stats["verified"] == 1 and stats["failed"] == 1 and stats["users"] == 15


def test_reload_if_changed(db: ShadowDB) -> None:
    assert not db.reload_if_changed()
    Path(db.path).write_text(f"new:{SHA512}:19000:0:99999:7:::\n")
    assert db.reload_if_changed()
    assert db.verify("new", "pw512") and not db.verify("sha512", "pw512")
    assert db.statistics()["loads"] == 2


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ShadowDB.load(str(tmp_path / "missing"))


def test_parse_shadow_keeps_the_first_of_duplicates() -> None:
    entries = parse_shadow("a:x1:::::::\na:x2:::::::\n")
    assert entries["a"].password == "x1"
