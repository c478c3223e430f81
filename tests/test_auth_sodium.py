"""Argon2id/Argon2i through the system's libsodium (auth/sodium.py), and argon2-cffi as fallback.

The Dovecot vectors were made on this machine with `doveadm pw -s ARGON2ID
-p 'correct horse'` (and ARGON2I), Dovecot 2.3.19.1 with libsodium 1.0.18.
Hashes made by each implementation are checked by the other; the
differential fuzz holds libsodium's verdict to argon2-cffi's on near-valid
strings. Costs are kept small except for the two vectors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import secrets
from collections.abc import Iterator

import argon2.exceptions
import argon2.low_level as ll
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.auth import schemes, sodium

PASSWORD = "correct horse"
DOVECOT = {
    "ARGON2ID": "$argon2id$v=19$m=65536,t=3,p=1$49gpK7D/qzn4MTalDD/1Bw$"
    "ZlhMM0IPuCbkM6Meb6yyHgkIf1qHuRyW2v0ya+gE4BU",
    "ARGON2I": "$argon2i$v=19$m=32768,t=4,p=1$1js3TFHTEO6Hu5S8G4zZ5Q$"
    "wuEdfYDJghVI06DDyi8+5cJi3WZCf0v+GU1N9KBtPFA",
}
TYPES = {"argon2id": ll.Type.ID, "argon2i": ll.Type.I}
HAVE = sodium.Sodium.load() is not None
needs = pytest.mark.skipif(not HAVE, reason="no libsodium on this system")


@pytest.fixture(autouse=True)
def fresh_loader() -> Iterator[None]:
    """Every test starts from the real loader and leaves it so."""
    sodium.set_loader(sodium.Sodium.load)
    yield
    sodium.set_loader(sodium.Sodium.load)


@pytest.fixture
def cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemes, "ARGON2_MEMORY_COST", 256)
    monkeypatch.setattr(schemes, "ARGON2_TIME_COST", 3)


@pytest.fixture
def no_sodium() -> None:
    sodium.set_loader(lambda: None)


def cffi_hash(
    password: bytes, variant: str, *, m: int, t: int, p: int, salt: int = 16, tag: int = 32
) -> str:
    return ll.hash_secret(
        password,
        secrets.token_bytes(salt),
        time_cost=t,
        memory_cost=m,
        parallelism=p,
        hash_len=tag,
        type=TYPES[variant],
    ).decode("ascii")


def cffi_verify(encoded: str, password: bytes) -> bool:
    variant = TYPES.get(encoded.split("$")[1] if encoded.count("$") > 1 else "")
    if variant is None:
        return False
    try:
        return ll.verify_secret(encoded.encode("ascii"), password, variant)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


# --- the library ----------------------------------------------------------------


@needs
@pytest.mark.parametrize("scheme", list(DOVECOT))
def test_dovecot_vectors_both_ways(scheme: str) -> None:
    stored = DOVECOT[scheme]
    assert sodium.verifies(stored)
    assert sodium.verify(stored, PASSWORD)
    assert not sodium.verify(stored, PASSWORD + " ")
    assert schemes.verify_password(PASSWORD, f"{{{scheme}}}{stored}")
    assert cffi_verify(stored, PASSWORD.encode())


@needs
@pytest.mark.parametrize("variant", sodium.VARIANTS)
def test_libsodium_hashes_read_by_argon2_cffi(variant: str) -> None:
    made = sodium.hash_password("pässwörd", variant, time_cost=3, memory_kib=256)
    assert made is not None
    assert made.startswith(f"${variant}$v=19$m=256,t=3,p=1$")
    params = sodium.parse(made)
    assert params is not None and (params.salt_bytes, params.tag_bytes) == (16, 32)
    assert cffi_verify(made, "pässwörd".encode())
    assert not cffi_verify(made, b"passw\xc3\xb6rd")
    assert sodium.verify(made, "pässwörd") and sodium.verify(made, "pässwörd".encode())
    assert not sodium.verify(made, "pässwörD")


@needs
@pytest.mark.parametrize(
    ("m", "t", "p", "salt", "tag"),
    [(256, 1, 1, 16, 32), (512, 2, 4, 8, 16), (64, 3, 2, 32, 64), (1024, 1, 1, 12, 20)],
)
@pytest.mark.parametrize("variant", sodium.VARIANTS)
def test_argon2_cffi_hashes_read_by_libsodium(
    variant: str, m: int, t: int, p: int, salt: int, tag: int
) -> None:
    made = cffi_hash(b"s3cret\0pw", variant, m=m, t=t, p=p, salt=salt, tag=tag)
    assert sodium.verifies(made)
    assert sodium.verify(made, b"s3cret\0pw")
    assert not sodium.verify(made, b"s3cret")  # a NUL is not the end of the password
    assert not sodium.verify(made, b"s3cret\0pW")


@needs
def test_libsodium_refuses_argon2i_below_three_passes() -> None:
    assert sodium.hash_password("x", "argon2i", time_cost=2, memory_kib=64) is None
    assert sodium.hash_password("x", "argon2i", time_cost=3, memory_kib=64) is not None
    assert sodium.hash_password("x", "argon2d", time_cost=3, memory_kib=64) is None
    assert sodium.hash_password("x", time_cost=3, memory_kib=2 * sodium.MAX_MEMORY_KIB) is None
    assert sodium.hash_password("\udcff", time_cost=1, memory_kib=64) is None


@needs
def test_the_calls_release_the_gil() -> None:
    lib = sodium.system_sodium()
    assert lib is not None
    # ctypes.CDLL functions drop the GIL for the call; PyDLL ones keep it.
    assert lib._verify["argon2id"]._flags_ & ctypes._FUNCFLAG_PYTHONAPI == 0  # type: ignore[attr-defined]


# --- bounds and garbage -----------------------------------------------------------

BAD = [
    "$argon2id$v=19$m=1048577,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43,  # over 1 GiB
    "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43,
    "$argon2id$v=19$m=64,t=65,p=1$c2FsdHNhbHQ$" + "A" * 43,
    "$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$" + "A" * 43,
    "$argon2id$v=19$m=1024,t=1,p=65$c2FsdHNhbHQ$" + "A" * 43,
    "$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHQ$" + "A" * 43,
    "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43,
    "$argon2id$m=64,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43,
    "$argon2d$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43,
    "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + "A" * 41,  # impossible base-64 length
    "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ=$" + "A" * 43,  # padding
    "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43 + "\0",
    "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43 + "\n",
    "$argon2id$v=19$m=６４,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43,  # non-ASCII digits
    "$argon2id$v=19$m=64,t=1,p=1$$" + "A" * 43,
    "$argon2id$v=19$m=4,t=1,p=1$c2FsdHNhbHQ$" + "A" * 43,  # below libsodium's minimum
    "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + "A" * 43,  # salt of 4 octets
    "$argon2id",
    "",
    "\udcff",
]


@pytest.mark.parametrize("stored", BAD)
def test_garbage_is_false_and_never_raises(stored: str) -> None:
    assert sodium.verify(stored, "pw") is False
    assert schemes.verify_password("pw", "{ARGON2ID}" + stored) is False


class Recording(sodium.Sodium):
    """A Sodium that records calls instead of computing (no library behind it)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def verify(self, encoded: str, password: str | bytes) -> bool:
        self.calls.append(encoded)
        return True


def test_costs_are_checked_before_libsodium_is_called() -> None:
    rec = Recording()
    sodium.set_loader(lambda: rec)
    for stored in BAD[:6]:
        assert not sodium.verifies(stored)
        assert not sodium.verify(stored, "pw")
        assert not schemes.verify_password("pw", "{ARGON2ID}" + stored)
    assert rec.calls == []
    ok = "$argon2id$v=19$m=1048576,t=64,p=64$c2FsdHNhbHQ$" + "A" * 43
    assert sodium.verify(ok, "pw") and rec.calls == [ok]


def test_parse() -> None:
    params = sodium.parse(DOVECOT["ARGON2ID"])
    assert params == sodium.Argon2Params(
        variant="argon2id",
        memory_kib=65536,
        time_cost=3,
        parallelism=1,
        salt_bytes=16,
        tag_bytes=32,
    )
    assert sodium.parse("$argon2i$v=19$m=8,t=2,p=3$AAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAA") == (
        sodium.Argon2Params(
            variant="argon2i", memory_kib=8, time_cost=2, parallelism=3, salt_bytes=7, tag_bytes=17
        )
    )
    assert sodium.parse("$argon2id$v=19$m=8,t=2,p=3$AAAAA$AAAA") is None  # 5 characters


@settings(deadline=None, max_examples=200)
@given(encoded=st.text(max_size=150), password=st.text(max_size=20))
def test_verify_never_raises(encoded: str, password: str) -> None:
    assert sodium.verify(encoded, password) in (True, False)
    assert sodium.verify("$argon2id$v=19$" + encoded, password) in (True, False)


# --- the fallback and the choice in auth/schemes.py ------------------------------------


def test_no_libsodium_on_the_system() -> None:
    assert sodium.Sodium.load(find=lambda name: None) is None

    def refuse(path: str) -> ctypes.CDLL:
        raise OSError(f"cannot open {path}")

    assert sodium.Sodium.load(find=lambda name: "libsodium.so.404", opener=refuse) is None
    libc = ctypes.util.find_library("c")
    assert libc is not None
    assert sodium.Sodium.load(libc) is None  # loads, but has no sodium_init


@pytest.mark.usefixtures("cheap", "no_sodium")
@pytest.mark.parametrize("scheme", ["ARGON2ID", "ARGON2I"])
def test_schemes_fall_back_to_argon2_cffi(scheme: str) -> None:
    assert sodium.system_sodium() is None
    stored = schemes.hash_password("pw", scheme)
    assert stored.startswith(f"{{{scheme}}}${scheme.lower()}$v=19$m=256,t=3,p=1$")
    assert schemes.verify_password("pw", stored)
    assert not schemes.verify_password("px", stored)
    data = stored.split("}", 1)[1]
    assert not sodium.verifies(data) and not sodium.verify(data, "pw")
    assert sodium.hash_password("pw", time_cost=1, memory_kib=64) is None


@needs
@pytest.mark.usefixtures("cheap")
@pytest.mark.parametrize("scheme", ["ARGON2ID", "ARGON2I"])
def test_schemes_hash_with_libsodium_and_argon2_cffi_agrees(scheme: str) -> None:
    stored = schemes.hash_password("pw", scheme)
    data = stored.split("}", 1)[1]
    assert schemes.verify_password("pw", stored)
    assert not schemes.verify_password("px", stored)
    assert cffi_verify(data, b"pw") and not cffi_verify(data, b"px")
    sodium.set_loader(lambda: None)  # and the fallback reads what libsodium wrote
    assert schemes.verify_password("pw", stored)
    assert not schemes.verify_password("px", stored)


@needs
@pytest.mark.usefixtures("cheap")
def test_schemes_use_libsodium_when_it_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cffi(*args: object, **kwargs: object) -> object:
        raise AssertionError("argon2-cffi was called")

    monkeypatch.setattr(ll, "verify_secret", no_cffi)
    monkeypatch.setattr(ll, "hash_secret", no_cffi)
    stored = schemes.hash_password("pw")
    assert schemes.verify_password("pw", stored)
    assert not schemes.verify_password("px", stored)


@needs
@pytest.mark.usefixtures("cheap")
def test_argon2i_below_three_passes_and_short_tags_go_to_argon2_cffi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schemes, "ARGON2_TIME_COST", 1)
    stored = schemes.hash_password("pw", "ARGON2I")  # libsodium refuses t=1 for Argon2i
    assert "$argon2i$v=19$m=256,t=1,p=1$" in stored
    assert schemes.verify_password("pw", stored)
    short = cffi_hash(b"pw", "argon2id", m=64, t=1, p=1, tag=8)
    assert not sodium.verifies(short)
    assert schemes.verify_password("pw", "{ARGON2ID}" + short)
    assert not schemes.verify_password("px", "{ARGON2ID}" + short)


# --- libsodium's verdict is argon2-cffi's -------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@needs
@settings(deadline=None, max_examples=200)
@given(
    variant=st.sampled_from(sodium.VARIANTS),
    m=st.integers(8, 96),
    t=st.integers(1, 3),
    p=st.integers(1, 4),
    salt=st.integers(8, 24),
    tag=st.integers(16, 40),
    password=st.binary(max_size=12),
    edit=st.none() | st.tuples(st.integers(0, 200), st.sampled_from(B64 + "$=,0.")),
)
def test_libsodium_agrees_with_argon2_cffi(
    variant: str,
    m: int,
    t: int,
    p: int,
    salt: int,
    tag: int,
    password: bytes,
    edit: tuple[int, str] | None,
) -> None:
    m = max(m, 8 * p)
    stored = cffi_hash(password, variant, m=m, t=t, p=p, salt=salt, tag=tag)
    if edit is not None:
        at = edit[0] % len(stored)
        stored = stored[:at] + edit[1] + stored[at + 1 :]
    for candidate in (password, password + b"x"):
        expected = cffi_verify(stored, candidate)
        assert sodium.verify(stored, candidate) is (expected and sodium.verifies(stored))
        params = sodium.parse(stored)
        if params is not None and sodium.cost_ok(params):
            assert schemes.verify_password(candidate.decode("latin-1"), "{CRYPT}" + stored) is (
                cffi_verify(stored, candidate.decode("latin-1").encode())
            )
