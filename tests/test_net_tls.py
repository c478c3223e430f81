"""net/tls.py: server contexts, one-line errors, reloading (handshakes in memory, no sockets)."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from postoffice.config.schema import TlsConfig
from postoffice.errors import ConfigError
from postoffice.net.tls import (
    TlsReloader,
    describe_connection,
    key_matches,
    read_certificates,
    read_private_key,
    server_context,
)

HOSTNAME = "mail.example.test"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert(HOSTNAME, "localhost")


def write_pair(directory: Path, cert: trustme.LeafCert, name: str = "") -> tuple[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}cert.pem", directory / f"{name}key.pem"
    cert_path.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    key_path.write_bytes(cert.private_key_pem.bytes())
    key_path.chmod(0o600)
    return str(cert_path), str(key_path)


def replace_file(path: str, data: bytes) -> None:
    """Write a new file and rename it over the old one (a new inode), as certbot does."""
    tmp = path + ".new"
    Path(tmp).write_bytes(data)
    os.replace(tmp, path)


def client_context(ca: trustme.CA, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    for attr, value in versions.items():
        setattr(ctx, attr, value)
    return ctx


def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A complete TLS handshake through memory BIOs; returns (client, server)."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=HOSTNAME)
    done: set[str] = set()
    for _ in range(10):
        for name, obj in (("client", client), ("server", server)):
            if name in done:
                continue
            try:
                obj.do_handshake()
                done.add(name)
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if len(done) == 2:
            return client, server
    raise AssertionError("handshake did not finish")


def served_der(server_ctx: ssl.SSLContext, ca: trustme.CA) -> bytes:
    client, _ = handshake(server_ctx, client_context(ca))
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


# -- server_context -----------------------------------------------------------------


def test_context_is_tls12_or_newer_without_compression(tmp_path: Path, leaf, ca) -> None:  # type: ignore[no-untyped-def]
    cert, key = write_pair(tmp_path, leaf)
    ctx = server_context(cert, key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert ctx.verify_mode == ssl.CERT_NONE  # no client certificates asked for
    tls12 = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
    client, server = handshake(ctx, tls12)
    assert client.version() == "TLSv1.2"
    text = describe_connection(server)
    assert text.startswith("TLSv1.2 with cipher ") and text.endswith(" bits)")
    client, _ = handshake(ctx, client_context(ca))
    assert client.version() == "TLSv1.3"


def test_min_version_tls13_refuses_tls12(tmp_path: Path, leaf, ca) -> None:  # type: ignore[no-untyped-def]
    cert, key = write_pair(tmp_path, leaf)
    ctx = server_context(cert, key, min_version="TLSv1.3")
    with pytest.raises(ssl.SSLError):
        handshake(ctx, client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2))
    _, server = handshake(ctx, client_context(ca))
    assert describe_connection(server).startswith("TLSv1.3 with cipher TLS_")


def test_chain_is_sent(tmp_path: Path, ca: trustme.CA) -> None:
    intermediate = ca.create_child_ca()
    chained = intermediate.issue_cert(HOSTNAME)
    assert len(chained.cert_chain_pems) == 2
    cert, key = write_pair(tmp_path, chained)
    assert len(read_certificates(cert)) == 2
    # The client trusts only the root: the handshake needs the intermediate from us.
    assert served_der(server_context(cert, key), ca) == der_of(chained)


def test_key_in_the_certificate_file(tmp_path: Path, leaf, ca) -> None:  # type: ignore[no-untyped-def]
    combined = tmp_path / "combined.pem"
    combined.write_bytes(leaf.private_key_and_cert_chain_pem.bytes())
    assert served_der(server_context(str(combined)), ca) == der_of(leaf)


def _errors(tmp_path: Path, leaf: trustme.LeafCert, ca: trustme.CA) -> dict[str, tuple[str, str]]:
    cert, key = write_pair(tmp_path, leaf)
    _, other_key = write_pair(tmp_path / "other", ca.issue_cert(HOSTNAME))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.pem"
    private = read_private_key(key)
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    missing = str(tmp_path / "missing.pem")
    return {
        "missing cert": (missing, key),
        "garbage cert": (str(garbage), key),
        "key as cert": (key, key),
        "missing key": (cert, missing),
        "garbage key": (cert, str(garbage)),
        "mismatched key": (cert, other_key),
        "encrypted key": (cert, str(encrypted)),
    }


@pytest.mark.parametrize(
    ("case", "file_is", "key", "text"),
    [
        ("missing cert", "cert", "tls.cert", "cannot read: No such file or directory"),
        ("garbage cert", "cert", "tls.cert", "no PEM certificate in the file"),
        ("key as cert", "cert", "tls.cert", "no PEM certificate in the file"),
        ("missing key", "key", "tls.key", "cannot read: No such file or directory"),
        ("garbage key", "key", "tls.key", "no usable PEM private key in the file"),
        ("mismatched key", "key", "tls.key", "does not match the certificate in "),
        ("encrypted key", "key", "tls.key", "the private key is encrypted"),
    ],
)
def test_broken_files_are_one_line_config_errors(  # type: ignore[no-untyped-def]
    tmp_path: Path, leaf, ca, case: str, file_is: str, key: str, text: str
) -> None:
    cert_file, key_file = _errors(tmp_path, leaf, ca)[case]
    with pytest.raises(ConfigError) as info:
        server_context(cert_file, key_file)
    err = info.value
    named = cert_file if file_is == "cert" else key_file
    assert err.file == named and err.key == key
    message = str(err)
    assert message.startswith(f"{named}: {key}: {text}")
    assert "\n" not in message and "PEM lib" not in message


def test_bad_min_version(tmp_path: Path, leaf) -> None:  # type: ignore[no-untyped-def]
    cert, key = write_pair(tmp_path, leaf)
    with pytest.raises(ConfigError, match=r"^tls.min_version: 'TLSv1.1': must be"):
        server_context(cert, key, min_version="TLSv1.1")


def test_key_matches(leaf, ca) -> None:  # type: ignore[no-untyped-def]
    other = ca.issue_cert(HOSTNAME)
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    other_key = serialization.load_pem_private_key(other.private_key_pem.bytes(), None)
    assert key_matches(cert, key)
    assert not key_matches(cert, other_key)


# -- TlsReloader --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_from_config() -> None:
    assert TlsReloader.from_config(TlsConfig()) is None
    with pytest.raises(ConfigError, match=r"^tls.cert: must be set when tls.key is"):
        TlsReloader.from_config(TlsConfig(key="/x/key.pem"))


def test_start_with_broken_files_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.pem: tls.cert: cannot read"):
        TlsReloader.from_config(TlsConfig(cert=str(tmp_path / "missing.pem")))


def test_changed_files_are_picked_up_after_the_check_interval(tmp_path: Path, leaf, ca) -> None:  # type: ignore[no-untyped-def]
    cert, key = write_pair(tmp_path, leaf)
    clock = Clock()
    reloader = TlsReloader(cert, key, check_interval=1.0, clock=clock)
    front = reloader.context
    first = reloader.current()
    assert served_der(front, ca) == der_of(leaf)

    renewed = ca.issue_cert(HOSTNAME, "localhost")
    new_cert, new_key = write_pair(tmp_path / "new", renewed)
    replace_file(key, Path(new_key).read_bytes())
    replace_file(cert, Path(new_cert).read_bytes())
    clock.now += 0.5  # within the interval: not even a stat
    assert reloader.current() is first
    clock.now += 0.6
    assert reloader.current() is not first
    assert reloader.context is front  # listeners keep their context ...
    assert served_der(front, ca) == der_of(renewed)  # ... and serve the new certificate
    assert reloader.statistics() == {"reloads": 1, "failures": 0}
    # Unchanged files: nothing is loaded again.
    clock.now += 5
    second = reloader.current()
    assert reloader.reload_if_changed() is False
    assert reloader.current() is second


def test_broken_new_file_keeps_the_old_context(  # type: ignore[no-untyped-def]
    tmp_path: Path, leaf, ca, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = write_pair(tmp_path, leaf)
    clock = Clock()
    reloader = TlsReloader(cert, key, clock=clock)
    old = reloader.current()
    replace_file(cert, b"-----BEGIN CERTIFICATE-----\nhalf writ")
    clock.now += 2
    with caplog.at_level(logging.ERROR, logger="postoffice.tls"):
        assert reloader.current() is old
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{cert}: tls.cert: no PEM certificate in the file" in errors[0]
    assert "keeping the previous certificate" in errors[0]
    assert served_der(reloader.context, ca) == der_of(leaf)
    # Not retried (and not logged again) until the files change again.
    clock.now += 2
    assert reloader.current() is old
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    # SIGHUP: an explicit reload also keeps the old one.
    assert reloader.reload() is False
    assert reloader.current() is old
    # A good file again: in force at the next check.
    replace_file(cert, b"".join(p.bytes() for p in leaf.cert_chain_pems))
    clock.now += 2
    assert reloader.current() is not old
    assert reloader.statistics() == {"reloads": 1, "failures": 2}


def test_mismatched_new_key_keeps_the_old_context(  # type: ignore[no-untyped-def]
    tmp_path: Path, leaf, ca, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = write_pair(tmp_path, leaf)
    reloader = TlsReloader(cert, key, check_interval=0)
    old = reloader.current()
    _, other_key = write_pair(tmp_path / "other", ca.issue_cert(HOSTNAME))
    replace_file(key, Path(other_key).read_bytes())  # the key renewed, not the certificate
    with caplog.at_level(logging.ERROR, logger="postoffice.tls"):
        assert reloader.reload() is False
    assert reloader.current() is old
    assert f"{key}: tls.key: does not match the certificate in {cert}" in caplog.text


def test_configure_switches_files_and_min_version(tmp_path: Path, leaf, ca) -> None:  # type: ignore[no-untyped-def]
    cert, key = write_pair(tmp_path, leaf)
    reloader = TlsReloader(cert, key)
    other = ca.issue_cert(HOSTNAME)
    cert2, key2 = write_pair(tmp_path / "two", other)
    assert reloader.configure(cert2, key2, min_version="TLSv1.3") is True
    assert reloader.files == (cert2, key2)
    assert served_der(reloader.context, ca) == der_of(other)
    with pytest.raises(ssl.SSLError):
        handshake(reloader.context, client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2))
    # A broken new configuration changes nothing.
    assert reloader.configure(cert, key, min_version="TLSv1.0") is False
    assert reloader.configure(str(tmp_path / "missing.pem"), key) is False
    assert reloader.files == (cert2, key2)
    assert served_der(reloader.context, ca) == der_of(other)


def test_world_readable_key_is_a_warning(  # type: ignore[no-untyped-def]
    tmp_path: Path, leaf, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = write_pair(tmp_path, leaf)
    os.chmod(key, 0o644)
    with caplog.at_level(logging.WARNING, logger="postoffice.tls"):
        TlsReloader(cert, key)
    assert "tls.key: the private key is readable by every user" in caplog.text
