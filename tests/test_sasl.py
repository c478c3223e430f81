"""Tests for postoffice.sasl: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, SASLprep, and
auth/credentials.py (the user database as a CredentialSource)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice import sasl
from postoffice.auth import schemes
from postoffice.auth.credentials import UserDBCredentials
from postoffice.auth.passwd_file import UserDB
from postoffice.sasl import (
    Challenge,
    Failure,
    SaslError,
    ScramSecrets,
    Success,
    UnknownMechanismError,
    VerifyPassword,
)
from postoffice.sasl.cram_md5 import cram_md5_digest
from postoffice.sasl.saslprep import SaslPrepError, saslprep
from postoffice.sasl.scram import (
    client_proof,
    decode_saslname,
    encode_saslname,
    secrets_from_password,
)

# RFC 7677 §3 test vector.
RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC7677_SNONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"


class Creds:
    """A CredentialSource from {user: clear-text password}."""

    def __init__(self, passwords: dict[str, str], *, salt: bytes = RFC7677_SALT) -> None:
        self.passwords = passwords
        self.salt = salt
        self.asked: list[str] = []

    def plaintext(self, user: str) -> str | None:
        self.asked.append(user)
        return self.passwords.get(user)

    def scram_secrets(self, user: str) -> ScramSecrets | None:
        self.asked.append(user)
        pw = self.passwords.get(user)
        return None if pw is None else secrets_from_password(pw, self.salt, 4096)


CREDS = Creds({"user": "pencil", "tim": "tanstaaftanstaaf", "bob": "secret"})


def start(mech: str, initial: bytes | None = None, **kw: object) -> sasl.Exchange:
    return sasl.start(mech, initial, credentials=kw.pop("credentials", CREDS), **kw)  # type: ignore[arg-type]


# --- PLAIN (RFC 4616) ------------------------------------------------------------------


def test_plain_initial_response() -> None:
    ex = start("PLAIN", b"\0bob\0secret")
    assert ex.mechanism == "PLAIN"
    assert ex.step == VerifyPassword(authcid="bob", authzid="bob", password="secret")
    assert not ex.done
    assert ex.verified(True) == Success(authcid="bob", authzid="bob")
    assert ex.done


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    ex = start("plain")
    assert ex.step == Challenge(data=b"")
    step = ex.respond(b"\0bob\0secret")
    assert isinstance(step, VerifyPassword) and step.password == "secret"


def test_plain_authzid_equal_is_allowed() -> None:
    ex = start("PLAIN", b"Bob\0bob\0secret")
    assert isinstance(ex.step, VerifyPassword)
    assert ex.verified(True) == Success(authcid="bob", authzid="Bob")


def test_plain_authzid_different_is_refused_before_verification() -> None:
    ex = start("PLAIN", b"alice\0bob\0secret")
    step = ex.step
    assert isinstance(step, Failure) and step.kind == "authorization"
    assert step.authcid == "bob"


def test_plain_custom_authorize_rule() -> None:
    ex = start("PLAIN", b"alice\0admin\0pw", authorize=lambda c, z: c == "admin")
    assert isinstance(ex.step, VerifyPassword) and ex.step.authzid == "alice"


def test_plain_wrong_password_and_temporary_failure() -> None:
    ex = start("PLAIN", b"\0bob\0wrong")
    step = ex.verified(False)
    assert isinstance(step, Failure) and step.kind == "credentials"
    ex = start("PLAIN", b"\0bob\0secret")
    step = ex.verified(None)
    assert isinstance(step, Failure) and step.kind == "temporary"


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"bob",
        b"\0bob",
        b"\0bob\0secret\0",
        b"\0\0secret",
        b"\0bob\0",
        b"\0b\xffob\0secret",
        b"\0bob\0" + b"x" * 1025,
    ],
)
def test_plain_malformed(message: bytes) -> None:
    step = start("PLAIN", message).step
    assert isinstance(step, Failure) and step.kind == "malformed"


def test_plain_password_hidden_from_repr() -> None:
    step = start("PLAIN", b"\0bob\0hunter2").step
    assert "hunter2" not in repr(step) and "hunter2" not in str(step)


# --- LOGIN (draft-murchison-sasl-login) ------------------------------------------------


def test_login_two_steps() -> None:
    ex = start("LOGIN")
    assert ex.step == Challenge(data=b"Username:")
    assert ex.respond(b"bob") == Challenge(data=b"Password:")
    assert ex.respond(b"secret") == VerifyPassword(authcid="bob", authzid="bob", password="secret")
    assert ex.verified(True) == Success(authcid="bob", authzid="bob")


def test_login_initial_response_is_the_user_name() -> None:
    ex = start("LOGIN", b"bob")
    assert ex.step == Challenge(data=b"Password:")
    assert isinstance(ex.respond(b"secret"), VerifyPassword)


@pytest.mark.parametrize("first", [b"", b"b\0b", b"\xff"])
def test_login_bad_user_name(first: bytes) -> None:
    ex = start("LOGIN")
    step = ex.respond(first)
    assert isinstance(step, Failure) and step.kind == "malformed"


def test_login_empty_password() -> None:
    ex = start("LOGIN", b"bob")
    step = ex.respond(b"")
    assert isinstance(step, Failure) and step.kind == "malformed" and step.authcid == "bob"


# --- CRAM-MD5 (RFC 2195) ---------------------------------------------------------------


def rfc2195() -> sasl.Exchange:
    return start("CRAM-MD5", hostname="postoffice.reston.mci.net", token=lambda: "1896.697170952")


def test_cram_md5_rfc2195_example() -> None:
    ex = rfc2195()
    assert ex.step == Challenge(data=b"<1896.697170952@postoffice.reston.mci.net>")
    assert ex.respond(b"tim b913a602c7eda7a495b4e6e7334d3890") == Success(
        authcid="tim", authzid="tim"
    )


def test_cram_md5_digest_function() -> None:
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    assert cram_md5_digest("tanstaaftanstaaf", challenge) == b"b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_upper_case_hex_is_accepted() -> None:
    assert isinstance(rfc2195().respond(b"tim B913A602C7EDA7A495B4E6E7334D3890"), Success)


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (b"tim 0913a602c7eda7a495b4e6e7334d3890", "credentials"),
        (b"nobody b913a602c7eda7a495b4e6e7334d3890", "credentials"),
        (b"tim", "malformed"),
        (b" b913a602c7eda7a495b4e6e7334d3890", "malformed"),
        (b"tim b913a602c7eda7a495b4e6e7334d389", "malformed"),
        (b"tim z913a602c7eda7a495b4e6e7334d3890", "malformed"),
        (b"t\xffm b913a602c7eda7a495b4e6e7334d3890", "malformed"),
    ],
)
def test_cram_md5_failures(response: bytes, kind: str) -> None:
    step = rfc2195().respond(response)
    assert isinstance(step, Failure) and step.kind == kind


def test_cram_md5_user_with_spaces() -> None:
    creds = Creds({"tim smith": "pw"})
    ex = start("CRAM-MD5", credentials=creds, token=lambda: "1.2")
    assert isinstance(ex.step, Challenge)
    digest = cram_md5_digest("pw", ex.step.data)
    assert ex.respond(b"tim smith " + digest) == Success(authcid="tim smith", authzid="tim smith")


def test_cram_md5_refuses_initial_response() -> None:
    step = start("CRAM-MD5", b"tim").step
    assert isinstance(step, Failure) and step.kind == "malformed"


def test_cram_md5_challenges_are_unique_and_hostname_is_sanitised() -> None:
    a, b = start("CRAM-MD5"), start("CRAM-MD5", hostname="bad host\r\n")
    assert isinstance(a.step, Challenge) and isinstance(b.step, Challenge)
    assert a.step.data != b.step.data
    assert a.step.data.startswith(b"<") and a.step.data.endswith(b"@localhost>")
    assert b.step.data.endswith(b"@localhost>")


# --- SCRAM-SHA-256 (RFC 5802, RFC 7677) ------------------------------------------------

FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def scram(initial: bytes | None = FIRST, **kw: object) -> sasl.Exchange:
    return start("SCRAM-SHA-256", initial, token=lambda: RFC7677_SNONCE, **kw)


def test_scram_rfc7677_vector() -> None:
    ex = scram()
    assert ex.step == Challenge(data=SERVER_FIRST)
    assert ex.respond(FINAL) == Challenge(data=SERVER_FINAL, final=True)
    assert ex.respond(b"") == Success(authcid="user", authzid="user")


def test_scram_without_initial_response() -> None:
    ex = scram(None)
    assert ex.step == Challenge(data=b"")
    assert ex.respond(FIRST) == Challenge(data=SERVER_FIRST)


def test_scram_stored_keys_match_the_vector() -> None:
    keys = secrets_from_password("pencil", RFC7677_SALT, 4096)
    assert keys.iterations == 4096 and keys.salt == RFC7677_SALT
    auth = b"n=user,r=rOprNGfwEbeRWgbNEkqO," + SERVER_FIRST + b"," + FINAL[: FINAL.rfind(b",p=")]
    proof = client_proof("pencil", RFC7677_SALT, 4096, auth)
    assert base64.b64encode(proof) == b"dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    signature = hmac.new(keys.server_key, auth, hashlib.sha256).digest()
    assert b"v=" + base64.b64encode(signature) == SERVER_FINAL


def scram_client(
    ex: sasl.Exchange, user: str, password: str, *, gs2: str = "n,,", extra: str = ""
) -> tuple[bytes, bytes]:
    """Run the client side against `ex`; (client-final, server's answer)."""
    bare = f"n={encode_saslname(user)},r=clientnonce"
    step = ex.respond((gs2 + bare).encode()) if ex.step == Challenge(data=b"") else ex.step
    assert isinstance(step, Challenge), step
    server_first = step.data.decode()
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
    without_proof = f"c={base64.b64encode(gs2.encode()).decode()},r={attrs['r']}{extra}"
    auth = f"{bare},{server_first},{without_proof}".encode()
    proof = client_proof(password, salt, iterations, auth)
    final = f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
    answer = ex.respond(final)
    return final, answer.data if isinstance(answer, Challenge) else b""


def test_scram_wrong_password() -> None:
    ex = start("SCRAM-SHA-256")
    scram_client(ex, "bob", "wrong")
    assert isinstance(ex.step, Failure) and ex.step.kind == "credentials"


def test_scram_unknown_user_looks_like_a_real_one() -> None:
    a, b = start("SCRAM-SHA-256"), start("SCRAM-SHA-256")
    for ex in (a, b):
        ex.respond(b"n,,n=nobody,r=abc")
    assert isinstance(a.step, Challenge) and isinstance(b.step, Challenge)
    salt_a = a.step.data.split(b",s=")[1].split(b",")[0]
    salt_b = b.step.data.split(b",s=")[1].split(b",")[0]
    assert salt_a == salt_b and len(base64.b64decode(salt_a)) == 16
    assert a.step.data.endswith(b",i=4096")
    ex = start("SCRAM-SHA-256")
    scram_client(ex, "nobody", "anything")
    assert isinstance(ex.step, Failure) and ex.step.kind == "credentials"


def test_scram_authzid() -> None:
    ex = start("SCRAM-SHA-256")
    scram_client(ex, "bob", "secret", gs2="n,a=bob,")
    assert isinstance(ex.step, Challenge) and ex.step.final
    assert ex.respond(b"") == Success(authcid="bob", authzid="bob")
    ex = start("SCRAM-SHA-256")
    scram_client(ex, "bob", "secret", gs2="n,a=alice,")
    assert isinstance(ex.step, Failure) and ex.step.kind == "authorization"


def test_scram_y_flag_is_accepted() -> None:
    ex = start("SCRAM-SHA-256")
    scram_client(ex, "bob", "secret", gs2="y,,")
    assert isinstance(ex.step, Challenge) and ex.step.final


def test_scram_user_name_with_comma_and_equals() -> None:
    creds = Creds({"a,b=c": "pw"})
    ex = start("SCRAM-SHA-256", credentials=creds)
    scram_client(ex, "a,b=c", "pw")
    assert isinstance(ex.step, Challenge) and ex.step.final
    assert creds.asked == ["a,b=c"]


@pytest.mark.parametrize(
    "first",
    [
        b"p=tls-unique,,n=user,r=abc",
        b"x,,n=user,r=abc",
        b"n,,m=ext,n=user,r=abc",
        b"n,b=x,n=user,r=abc",
        b"n,a=bad=name,n=user,r=abc",
        b"n,,n=user",
        b"n,,r=abc,n=user",
        b"n,,n=,r=abc",
        b"n,,n=user,r=",
        b"n,,n=user,r=a b",
        b"n,,n=us=2Xer,r=abc",
        b"n,n=user,r=abc",
        b"n",
        b"\xff",
        b"",
    ],
)
def test_scram_malformed_client_first(first: bytes) -> None:
    step = scram(first).step
    assert isinstance(step, Failure) and step.kind == "malformed", first


@pytest.mark.parametrize(
    "final",
    [
        FINAL.replace(b"c=biws", b"c=eSws"),  # "y,," does not match "n,,"
        FINAL.replace(b"r=rOpr", b"r=XOpr"),
        FINAL.replace(b",p=", b",q="),
        FINAL[: FINAL.rfind(b",p=")],
        FINAL + b"=",
        FINAL.replace(b"p=dHzb", b"p=!Hzb"),
        b"c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        b"\xff",
    ],
)
def test_scram_malformed_client_final(final: bytes) -> None:
    ex = scram()
    step = ex.respond(final)
    assert isinstance(step, Failure) and step.kind == "malformed", final


def test_scram_extensions_in_final_are_ignored() -> None:
    ex = start("SCRAM-SHA-256")
    final, _ = scram_client(ex, "bob", "secret", extra=",x=unknown,z=1")
    assert b",x=unknown,z=1,p=" in final
    assert isinstance(ex.step, Challenge) and ex.step.final


def test_scram_non_empty_answer_to_server_final() -> None:
    ex = scram()
    ex.respond(FINAL)
    step = ex.respond(b"junk")
    assert isinstance(step, Failure) and step.kind == "malformed"


def test_saslname_round_trip() -> None:
    assert encode_saslname("a,b=c") == "a=2Cb=3Dc"
    assert decode_saslname("a=2Cb=3Dc") == "a,b=c"
    assert decode_saslname("") is None
    assert decode_saslname("a=") is None
    assert decode_saslname("a=2c") is None


# --- SASLprep (RFC 4013 §3 examples) -----------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("I\u00adX", "IX"),  # SOFT HYPHEN mapped to nothing
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # NFKC
        ("a\u00a0b", "a b"),  # non-ASCII space to SPACE
        ("\u0627\u0628", "\u0627\u0628"),  # right-to-left only
        ("", ""),
    ],
)
def test_saslprep(given: str, expected: str) -> None:
    assert saslprep(given) == expected


@pytest.mark.parametrize("bad", ["\u0007", "\u0627\u0031", "a\u0627b", "\ue000"])
def test_saslprep_prohibited(bad: str) -> None:
    with pytest.raises(SaslPrepError):
        saslprep(bad)


def test_scram_password_is_saslprepped() -> None:
    assert secrets_from_password("I\u00adX", b"salt", 4096) == secrets_from_password(
        "IX", b"salt", 4096
    )
    # A password SASLprep refuses is used as given.
    assert secrets_from_password("a\u0007", b"salt", 4096).stored_key


# --- cancellation and misuse ---------------------------------------------------------------


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"])
def test_cancel_at_first_challenge(mech: str) -> None:
    ex = start(mech)
    assert isinstance(ex.step, Challenge)
    step = ex.respond(None)
    assert isinstance(step, Failure) and step.kind == "cancelled" and ex.done


def test_cancel_in_the_middle() -> None:
    ex = start("LOGIN", b"bob")
    step = ex.respond(None)
    assert isinstance(step, Failure) and step.kind == "cancelled" and step.authcid == "bob"
    ex = scram()
    assert isinstance(ex.respond(None), Failure)


def test_misuse_raises_sasl_error() -> None:
    ex = start("PLAIN", b"\0bob\0secret")
    with pytest.raises(SaslError):
        ex.respond(b"x")  # awaiting verification, not a response
    ex.verified(True)
    with pytest.raises(SaslError):
        ex.respond(b"x")
    with pytest.raises(SaslError):
        ex.verified(True)
    with pytest.raises(SaslError):
        start("LOGIN").verified(True)
    with pytest.raises(UnknownMechanismError):
        start("GSSAPI")


def test_registry() -> None:
    assert set(sasl.MECHANISMS) == {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"}
    assert sasl.MECHANISMS["PLAIN"].plaintext and not sasl.MECHANISMS["SCRAM-SHA-256"].plaintext
    assert sasl.MECHANISMS["CRAM-MD5"].secret == "plaintext"


# --- fuzzing: client input never raises ------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"]),
    st.one_of(st.none(), st.binary(max_size=80)),
    st.lists(st.one_of(st.none(), st.binary(max_size=80)), max_size=5),
    st.lists(st.one_of(st.none(), st.booleans()), max_size=3),
)
def test_fuzz_mechanisms(
    mech: str, initial: bytes | None, responses: list[bytes | None], checks: list[bool | None]
) -> None:
    ex = start(mech, initial, token=lambda: "fixed")
    replies, outcomes = iter(responses), iter(checks)
    for _ in range(10):
        step = ex.step
        if isinstance(step, Challenge):
            data = next(replies, b"")
            ex.respond(data)
        elif isinstance(step, VerifyPassword):
            ex.verified(next(outcomes, False))
        else:
            assert isinstance(step, Success | Failure)
            assert ex.done
            break


_scram_tokens = st.sampled_from(
    [b"n", b"y", b"p=x", b",", b"a=", b"n=", b"r=", b"m=", b"c=", b"p=", b"biws", b"=2C", b"="]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_scram_tokens, max_size=12), st.lists(_scram_tokens, max_size=12))
def test_fuzz_scram_structure(first: list[bytes], final: list[bytes]) -> None:
    ex = scram(b"".join(first))
    if isinstance(ex.step, Challenge):
        step = ex.respond(b"".join(final))
        assert isinstance(step, Failure)  # no proof can match by accident


# --- auth/credentials.py: the user database as a CredentialSource -----------------------------


def userdb() -> UserDB:
    scram_stored = schemes.scram_sha256_hash("scrampw")
    argon = "{SHA512-CRYPT}" + schemes.sha_crypt("hashed", "$6$salt")
    return UserDB.from_text(
        "plain@example.org:{PLAIN}plainpw\n"
        f"scram@example.org:{scram_stored}\n"
        f"hashed@example.org:{argon}\n"
        "nopw@example.org:\n"
    )


def test_credentials_plaintext_only_for_plain_users() -> None:
    creds = UserDBCredentials(userdb())
    assert creds.plaintext("Plain@Example.org") == "plainpw"
    assert creds.plaintext("scram@example.org") is None
    assert creds.plaintext("hashed@example.org") is None
    assert creds.plaintext("nopw@example.org") is None
    assert creds.plaintext("nobody@example.org") is None


def test_credentials_scram_secrets() -> None:
    creds = UserDBCredentials(userdb())
    derived = creds.scram_secrets("plain@example.org")
    assert derived is not None and derived.iterations == 4096
    assert creds.scram_secrets("PLAIN@example.org") == derived  # cached, same salt
    assert derived == secrets_from_password("plainpw", derived.salt, 4096)
    stored = creds.scram_secrets("scram@example.org")
    assert stored == secrets_from_password("scrampw", stored.salt, stored.iterations)
    assert creds.scram_secrets("hashed@example.org") is None
    assert creds.scram_secrets("nobody@example.org") is None


def test_credentials_cache_is_bounded() -> None:
    db = UserDB.from_text("".join(f"u{i}@x.org:{{PLAIN}}p{i}\n" for i in range(5)))
    creds = UserDBCredentials(db, cache_size=2)
    for i in range(5):
        assert creds.scram_secrets(f"u{i}@x.org") is not None
    assert len(creds._cache) == 2


@pytest.mark.parametrize(
    ("user", "password"), [("plain@example.org", "plainpw"), ("scram@example.org", "scrampw")]
)
def test_scram_end_to_end_with_the_user_database(user: str, password: str) -> None:
    creds = UserDBCredentials(userdb())
    ex = sasl.start("SCRAM-SHA-256", None, credentials=creds)
    scram_client(ex, user, password)
    assert isinstance(ex.step, Challenge) and ex.step.final
    assert ex.respond(b"") == Success(authcid=user, authzid=user)


def test_cram_md5_with_the_user_database() -> None:
    creds = UserDBCredentials(userdb())
    for user, ok in (("plain@example.org", True), ("hashed@example.org", False)):
        ex = sasl.start("CRAM-MD5", None, credentials=creds)
        assert isinstance(ex.step, Challenge)
        secret = "plainpw" if ok else "hashed"
        step = ex.respond(user.encode() + b" " + cram_md5_digest(secret, ex.step.data))
        assert isinstance(step, Success) is ok


# --- auth/schemes.py: {SCRAM-SHA-256} ----------------------------------------------------------


def test_scram_scheme_verifies_and_is_identified() -> None:
    stored = schemes.scram_sha256_hash("pw", iterations=4096)
    assert stored.startswith("{SCRAM-SHA-256}4096,")
    assert schemes.verify_password("pw", stored)
    assert not schemes.verify_password("wrong", stored)
    assert schemes.identify_scheme(stored) == "SCRAM-SHA-256"
    assert "SCRAM-SHA-256" in schemes.VERIFY_SCHEMES


@pytest.mark.parametrize(
    "data",
    [
        "",
        "4096,a,b",
        "x,AAAA,AAAA,AAAA",
        "0,AAAA," + "A" * 44 + "," + "A" * 44,
        "2000000,AAAA," + "A" * 44 + "," + "A" * 44,
        "4096,!!!!," + "A" * 44 + "," + "A" * 44,
        "4096,AAAA,AAAA," + "A" * 44,
        "4096,," + "A" * 44 + "," + "A" * 44,
    ],
)
def test_scram_scheme_refuses_malformed(data: str) -> None:
    assert schemes.parse_scram_sha256(data) is None
    assert not schemes.verify_password("pw", "{SCRAM-SHA-256}" + data)


def test_scram_scheme_matches_dovecot_layout() -> None:
    keys = secrets_from_password("pencil", RFC7677_SALT, 4096)
    stored = ",".join(
        [
            "4096",
            *(
                base64.b64encode(k).decode()
                for k in (RFC7677_SALT, keys.stored_key, keys.server_key)
            ),
        ]
    )
    assert schemes.parse_scram_sha256(stored) == (
        RFC7677_SALT,
        4096,
        keys.stored_key,
        keys.server_key,
    )
    assert schemes.verify_password("pencil", "{SCRAM-SHA-256}" + stored)
