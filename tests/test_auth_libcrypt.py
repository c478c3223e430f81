"""yescrypt, gost-yescrypt and scrypt through the system's libcrypt (auth/libcrypt.py).

The vectors were made on this machine with `printf 'correct horse' |
mkpasswd -m METHOD -s` (Debian 12, whois 5.5.17, libxcrypt 4.4.33); when
mkpasswd is installed a fresh hash of its own is checked too.
"""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import need_programs
from postoffice.auth import libcrypt, schemes
from postoffice.auth.passwd_file import UserDB

PASSWORD = "correct horse"
VECTORS = {
    "YESCRYPT": "$y$j9T$JDAvEgoRa2Ldns5ug/5KC/$CDNLueo.3uy8Zk2BaoCEoZRvs9GoLdSSQVJuxjLOVq8",
    "GOST-YESCRYPT": "$gy$j9T$ZpwQESgFcXnjBHY0CWs54/$p6V97DjeRkwSU4Yw7NrVecyn2VImI9o15sFJtA2F7dC",
    "SCRYPT": "$7$CU..../....vZ1jl6EgkdJi94VTy5gY60$fGF4Uruh1hVwAJfiGS9lKKOV4phePm6Mnfwcu9M65I7",
}
SC = libcrypt.system_crypt()
needs = pytest.mark.skipif(
    SC is None or not SC.supports("$y$"), reason="the system's libcrypt has no yescrypt"
)


@needs
@pytest.mark.parametrize("scheme", list(VECTORS))
def test_vectors(scheme: str) -> None:
    stored = VECTORS[scheme]
    assert schemes.verify_password(PASSWORD, stored)
    assert schemes.verify_password(PASSWORD, "{CRYPT}" + stored)
    assert schemes.verify_password(PASSWORD, f"{{{scheme}}}{stored}")
    assert not schemes.verify_password(PASSWORD + " ", stored)
    assert not schemes.verify_password(PASSWORD[:-1], stored)
    assert schemes.identify_scheme(stored) == scheme
    assert schemes.identify_scheme("{CRYPT}" + stored) == scheme
    other = "SCRYPT" if scheme != "SCRYPT" else "YESCRYPT"
    assert not schemes.verify_password(PASSWORD, f"{{{other}}}{stored}")
    assert scheme in schemes.VERIFY_SCHEMES


@needs
def test_fresh_settings_from_crypt_gensalt() -> None:
    assert SC is not None
    setting = SC.gensalt("$y$")
    assert setting is not None and setting.startswith("$y$j9T$")
    hashed = SC.crypt("pässwörd", setting)
    assert hashed is not None and hashed.startswith(setting + "$")
    assert libcrypt.verify("pässwörd", hashed)
    assert not libcrypt.verify("passwörd", hashed)
    assert SC.gensalt("$nonsense$") is None
    assert not SC.supports("$nonsense$")


@needs
def test_a_hash_from_mkpasswd() -> None:
    need_programs("mkpasswd", package="whois")
    out = subprocess.run(
        ["mkpasswd", "-m", "yescrypt", "-s"], input=b"s3cret pw", capture_output=True, check=True
    )
    stored = out.stdout.decode().strip()
    assert stored.startswith("$y$")
    assert schemes.verify_password("s3cret pw", stored)
    assert not schemes.verify_password("s3cret PW", stored)


@needs
def test_a_nul_in_the_password_never_matches_a_prefix() -> None:
    assert SC is not None
    setting = SC.gensalt("$y$", 1)
    assert setting is not None
    hashed = SC.crypt("abc", setting)
    assert hashed is not None
    assert not libcrypt.verify("abc\0def", hashed)


@pytest.mark.parametrize(
    "stored",
    [
        "$y$jFT$salt$hash",  # cost 11: 1 GiB, allowed
        "$y$j75$salt$hash",  # cost 1
        "$gy$j9T$salt$hash",
        "$7$CU..../....salt$hash",
        "$7$GU..../....salt$hash",
    ],
)
def test_costs_within_bounds(stored: str) -> None:
    assert libcrypt.cost_ok(stored)


@pytest.mark.parametrize(
    "stored",
    [
        "$y$jGT$salt$hash",  # 2 GiB
        "$y$jzT$salt$hash",  # N = 2^64
        "$y$j9T.$salt$hash",  # p, t, g or NROM parameters: not libxcrypt's short form
        "$y$k9T$salt$hash",  # another flavour
        "$y$j9$salt$hash",
        "$y$j9T",
        "$7$zU..../....salt$hash",  # N = 2^63
        "$7$C/////....salt$hash",  # r enormous
        "$7$CU....zzzzzsalt$hash",  # p enormous
        "$7$CU..",
        "$6$salt$hash",
    ],
)
def test_costs_out_of_bounds_are_refused_without_hashing(
    stored: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not libcrypt.cost_ok(stored)

    def never() -> None:
        raise AssertionError("hashed a refused setting")

    monkeypatch.setattr(libcrypt, "system_crypt", never)
    assert not libcrypt.verify(PASSWORD, stored)
    assert not schemes.verify_password(PASSWORD, stored)


def test_without_a_libcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libcrypt, "system_crypt", lambda: None)
    stored = VECTORS["YESCRYPT"]
    assert not schemes.verify_password(PASSWORD, stored)
    assert schemes.identify_scheme(stored) is None  # UserDB reports it as unusable
    assert schemes.system_scheme_available(stored) is False
    assert schemes.system_scheme_available("$6$x$y") is None
    assert libcrypt.SystemCrypt.load("/nonexistent/libcrypt.so.9") is None


@needs
def test_passwd_file_users_with_yescrypt() -> None:
    db = UserDB.from_text(f"alice@example.test:{{CRYPT}}{VECTORS['YESCRYPT']}::::::\n")
    assert db.verify("alice@example.test", PASSWORD)
    assert not db.verify("alice@example.test", "wrong")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="$" + libcrypt.ITOA64, max_size=40))
def test_cost_ok_never_raises_and_bounds_memory(stored: str) -> None:
    if libcrypt.cost_ok(stored):
        assert stored.startswith(("$y$", "$gy$", "$7$"))


@needs
@settings(max_examples=20, deadline=None)
@given(st.text(max_size=30))
def test_verify_never_raises(password: str) -> None:
    assert libcrypt.verify(password, VECTORS["YESCRYPT"]) == (password == PASSWORD)
