"""Password schemes: SHA-crypt test vectors, round-trips, garbage never raises."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.auth import schemes
from postoffice.auth.schemes import (
    hash_password,
    identify_scheme,
    sha_crypt,
    split_scheme,
    verify_password,
)


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemes, "ARGON2_MEMORY_COST", 1024)
    monkeypatch.setattr(schemes, "ARGON2_TIME_COST", 1)
    monkeypatch.setattr(schemes, "BCRYPT_COST", 4)


# The test vectors of Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"
# (https://www.akkadia.org/drepper/SHA-crypt.txt), as (setting, key, result).
LONG_KEY = "a very much longer text to encrypt.  This one even stretches over morethan one line."
SHA256_VECTORS = [
    (
        "$5$saltstring",
        "Hello world!",
        "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
    ),
    (
        "$5$rounds=10000$saltstringsaltstring",
        "Hello world!",
        "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
    ),
    (
        "$5$rounds=5000$toolongsaltstring",
        "This is just a test",
        "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5",
    ),
    (
        "$5$rounds=1400$anotherlongsaltstring",
        LONG_KEY,
        "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1",
    ),
    (
        "$5$rounds=77777$short",
        "we have a short salt string but not a short password",
        "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/",
    ),
    (
        "$5$rounds=123456$asaltof16chars..",
        "a short string",
        "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD",
    ),
    (
        "$5$rounds=10$roundstoolow",
        "the minimum number is still observed",
        "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
    ),
]
SHA512_VECTORS = [
    (
        "$6$saltstring",
        "Hello world!",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
        "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        "$6$rounds=10000$saltstringsaltstring",
        "Hello world!",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/"
        "UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        "$6$rounds=5000$toolongsaltstring",
        "This is just a test",
        "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1"
        "yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
    ),
    (
        "$6$rounds=1400$anotherlongsaltstring",
        LONG_KEY,
        "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0"
        "oSwbtEW7o7UmJEiDwGqd8p4ur1",
    ),
    (
        "$6$rounds=77777$short",
        "we have a short salt string but not a short password",
        "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFm"
        "tlcGZelFl5CxtgfiAc0",
    ),
    (
        "$6$rounds=123456$asaltof16chars..",
        "a short string",
        "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULev"
        "oBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
    ),
    (
        "$6$rounds=10$roundstoolow",
        "the minimum number is still observed",
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4Z"
        "EQpyUNGc0dqbpBYYBaHHrsX.",
    ),
]
VECTORS = SHA256_VECTORS + SHA512_VECTORS


@pytest.mark.parametrize(("setting", "key", "expected"), VECTORS)
def test_sha_crypt_specification_vectors(setting: str, key: str, expected: str) -> None:
    assert sha_crypt(key, setting) == expected


@pytest.mark.parametrize(("setting", "key", "expected"), SHA256_VECTORS[:4] + SHA512_VECTORS[:4])
def test_vectors_verify_with_and_without_scheme_prefix(
    setting: str, key: str, expected: str
) -> None:
    scheme = "SHA256-CRYPT" if expected.startswith("$5$") else "SHA512-CRYPT"
    assert verify_password(key, expected)
    assert verify_password(key, f"{{{scheme}}}{expected}")
    assert verify_password(key, f"{{crypt}}{expected}")
    assert not verify_password(key + "x", expected)
    assert not verify_password(key, expected[:-1] + ("A" if expected[-1] != "A" else "B"))


def test_sha_crypt_scheme_must_match_its_prefix() -> None:
    _, key, stored = SHA256_VECTORS[0]
    assert not verify_password(key, "{SHA512-CRYPT}" + stored)


@pytest.mark.parametrize("scheme", [*schemes.HASH_SCHEMES, "cleartext", "blf-crypt"])
def test_round_trip(scheme: str) -> None:
    stored = hash_password("pässwörd €", scheme)
    assert stored.startswith("{" + scheme.upper() + "}")
    assert verify_password("pässwörd €", stored)
    assert not verify_password("pässwörd", stored)
    assert not verify_password("", stored)
    assert identify_scheme(stored) == scheme.upper()


def test_default_scheme_is_argon2id_in_dovecot_form() -> None:
    stored = hash_password("secret")
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$m=")
    assert ",p=1$" in stored  # libsodium (Dovecot) verifies parallelism 1 only
    assert verify_password("secret", stored)
    # A bare PHC string (no {SCHEME}) is recognised too.
    assert verify_password("secret", stored.removeprefix("{ARGON2ID}"))
    # ARGON2I does not accept an argon2id hash.
    assert not verify_password("secret", "{ARGON2I}" + stored.removeprefix("{ARGON2ID}"))


def test_new_hashes_are_salted() -> None:
    assert hash_password("x", "SHA512-CRYPT") != hash_password("x", "SHA512-CRYPT")
    assert hash_password("x") != hash_password("x")


def test_sha_crypt_rounds_option() -> None:
    stored = hash_password("pw", "SHA256-CRYPT", rounds=2000)
    assert stored.startswith("{SHA256-CRYPT}$5$rounds=2000$")
    assert verify_password("pw", stored)


def test_bcrypt_is_written_as_2y_and_reads_2a_2b() -> None:
    stored = hash_password("pw", "BLF-CRYPT")
    assert stored.startswith("{BLF-CRYPT}$2y$04$")
    data = stored.removeprefix("{BLF-CRYPT}")
    for prefix in ("$2a$", "$2b$"):
        assert verify_password("pw", prefix + data[4:])
        assert verify_password("pw", "{BLF-CRYPT}" + prefix + data[4:])


def test_bcrypt_refuses_long_passwords_when_hashing() -> None:
    with pytest.raises(ValueError):
        hash_password("x" * 73, "BLF-CRYPT")


def test_unknown_scheme() -> None:
    with pytest.raises(schemes.UnknownSchemeError):
        hash_password("x", "MD5-CRYPT")
    assert not verify_password("x", "{NOPE}x")
    assert identify_scheme("{NOPE}x") is None


def test_plain_and_disabled() -> None:
    assert verify_password("abc", "{PLAIN}abc")
    assert verify_password("abc", "{plain}abc")
    assert not verify_password("abd", "{PLAIN}abc")
    assert not verify_password("", "")  # an empty stored password never matches
    assert not verify_password("abc", "abc")  # no scheme, not a crypt hash


def test_dovecot_digest_schemes_verify() -> None:
    digest = hashlib.sha512(b"pw" + b"salt").digest() + b"salt"
    assert verify_password("pw", "{SSHA512}" + base64.b64encode(digest).decode())
    assert verify_password(
        "pw", "{SHA256}" + base64.b64encode(hashlib.sha256(b"pw").digest()).decode()
    )
    assert verify_password("pw", "{SHA256}" + hashlib.sha256(b"pw").hexdigest())
    assert not verify_password("px", "{SHA256}" + hashlib.sha256(b"pw").hexdigest())


def test_split_scheme() -> None:
    assert split_scheme("{sha512-crypt}$6$x") == ("SHA512-CRYPT", "$6$x")
    assert split_scheme("$6$x") == ("CRYPT", "$6$x")
    assert split_scheme("{broken") == ("", "{broken")


@pytest.mark.parametrize(
    "stored",
    [
        "{SHA512-CRYPT}$6$rounds=99999999$salt$" + "a" * 86,  # too many rounds: refused
        "{SHA512-CRYPT}$6$salt$short",
        "{SHA512-CRYPT}$6$",
        "{BLF-CRYPT}$2y$31$" + "a" * 53,  # cost out of bounds
        "{BLF-CRYPT}$2y$04$!!!",
        "{ARGON2ID}$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaA",  # memory bound
        "{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",  # invalid for argon2
        "{ARGON2ID}$argon2id$v=19$m=1024,t=0,p=1$c2FsdHNhbHQ$aGFzaA",
        "{ARGON2ID}garbage",
        "{SSHA512}not base64!",
        "{SHA256}",
        "{",
        "}",
        "$5$",
        "\x00\udcff",
    ],
)
def test_garbage_does_not_match_and_does_not_raise(stored: str) -> None:
    assert verify_password("password", stored) is False


@settings(deadline=None, max_examples=300)
@given(password=st.text(max_size=40), stored=st.text(max_size=120))
def test_verify_never_raises(password: str, stored: str) -> None:
    assert verify_password(password, stored) in (True, False)


@settings(deadline=None, max_examples=100)
@given(
    scheme=st.sampled_from(["", "{SHA512-CRYPT}", "{SHA256-CRYPT}", "{ARGON2ID}", "{BLF-CRYPT}"]),
    body=st.from_regex(r"\$(5|6|2y|argon2id)\$[ -~]{0,100}", fullmatch=True),
)
def test_verify_never_raises_on_near_hashes(scheme: str, body: str) -> None:
    assert verify_password("pw", scheme + body) in (True, False)
