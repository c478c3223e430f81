"""`postoffice tls self-signed | show` through main([...])."""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import tomllib
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from postoffice.cli.main import main
from postoffice.net.tls import read_certificates, read_private_key, server_context


@pytest.fixture(autouse=True)
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTOFFICE_CONFIG", raising=False)
    (tmp_path / "etc").mkdir()
    config = tmp_path / "postoffice.toml"
    config.write_text(f"hostname = 'mx.example.org'\nconfig_dir = '{tmp_path / 'etc'}'\n")
    return config


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, name: str) -> str:
    """A TLS handshake through memory BIOs; returns the version negotiated."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=name)
    done: set[str] = set()
    for _ in range(10):
        for label, obj in (("client", client), ("server", server)):
            if label not in done:
                try:
                    obj.do_handshake()
                    done.add(label)
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if len(done) == 2:
            return client.version() or ""
    raise AssertionError("handshake did not finish")


def test_self_signed_writes_a_usable_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "certs"
    assert main(["tls", "self-signed", "--hostname", "mail.example.test",
                 "--out-dir", str(out_dir)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    cert, key = out_dir / "cert.pem", out_dir / "key.pem"
    # The printed lines are a valid [tls] table naming the files.
    assert tomllib.loads(printed) == {"tls": {"cert": str(cert), "key": str(key)}}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert "PRIVATE KEY" not in printed
    (leaf,) = read_certificates(str(cert))
    assert isinstance(read_private_key(str(key)), ec.EllipticCurvePrivateKey)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.test"]
    assert leaf.subject == leaf.issuer
    days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
    assert days == 365
    basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
    # It loads in server_context, and a client that trusts it verifies the name.
    client = ssl.create_default_context(cafile=str(cert))
    assert handshake(server_context(str(cert), str(key)), client, "mail.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(str(cert), str(key)), client, "other.example.test")


def test_self_signed_defaults_rsa_days_and_ip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Defaults: the configured hostname, config_dir.
    assert main(["tls", "self-signed", "--key-type", "rsa", "--days", "30"]) == 0
    etc = tmp_path / "etc"
    assert f'cert = "{etc / "cert.pem"}"' in capsys.readouterr().out
    (leaf,) = read_certificates(str(etc / "cert.pem"))
    assert leaf.subject.rfc4514_string() == "CN=mx.example.org"
    key = read_private_key(str(etc / "key.pem"))
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days == 30
    server_context(str(etc / "cert.pem"), str(etc / "key.pem"))
    # An IP address becomes an iPAddress entry.
    assert main(["tls", "self-signed", "--hostname", "127.0.0.1",
                 "--out-dir", str(tmp_path / "ip")]) == 0  # fmt: skip
    (leaf,) = read_certificates(str(tmp_path / "ip" / "cert.pem"))
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_self_signed_never_replaces_files_unasked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = str(tmp_path / "certs")
    assert main(["tls", "self-signed", "--out-dir", out_dir]) == 0
    key = Path(out_dir) / "key.pem"
    before = key.read_bytes()
    capsys.readouterr()
    assert main(["tls", "self-signed", "--out-dir", out_dir]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"postoffice: {Path(out_dir) / 'cert.pem'}: exists already (use --force to replace it)\n"
    )
    assert key.read_bytes() == before
    assert main(["tls", "self-signed", "--out-dir", out_dir, "--force"]) == 0
    assert key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not [p for p in os.listdir(out_dir) if p.endswith(".tmp")]


def test_self_signed_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tls", "self-signed", "--days", "0"]) == 2
    assert main(["tls", "self-signed", "--hostname", "a b"]) == 1
    assert "is not a host name" in capsys.readouterr().err


def _configure(config: Path, cert: Path, key: Path | None = None) -> None:
    text = config.read_text() + f'[tls]\ncert = "{cert}"\n'
    if key is not None:
        text += f'key = "{key}"\n'
    config.write_text(text)


def test_show(setup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tls", "self-signed", "--hostname", "mail.example.test",
                 "--out-dir", str(tmp_path / "c")]) == 0  # fmt: skip
    capsys.readouterr()
    _configure(setup, tmp_path / "c" / "cert.pem", tmp_path / "c" / "key.pem")
    assert main(["tls", "show"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"certificate: {tmp_path / 'c' / 'cert.pem'}"
    assert "subject: CN=mail.example.test" in lines
    assert "subjectAltName: DNS:mail.example.test" in lines
    assert "issuer: CN=mail.example.test" in lines
    assert any(line.startswith("not after: ") and "days left" in line for line in lines)
    assert "chain: 1 certificate" in lines
    assert f"key: {tmp_path / 'c' / 'key.pem'} (matches the certificate)" in lines
    assert lines[-1] == "usable: yes (TLS 1.2 or newer)"


def test_show_a_chain_and_a_mismatched_key(
    setup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = trustme.CA()
    leaf = ca.create_child_ca().issue_cert("mail.example.test", "127.0.0.1")
    cert = tmp_path / "chain.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    other = tmp_path / "other-key.pem"
    other.write_bytes(ca.issue_cert("x.example.test").private_key_pem.bytes())
    _configure(setup, cert, other)
    assert main(["tls", "show"]) == 1
    out = capsys.readouterr().out
    assert "subjectAltName: DNS:mail.example.test, IP:127.0.0.1" in out
    assert "chain: 2 certificates" in out
    assert f"key: {other} (DOES NOT MATCH)" in out


def test_show_without_tls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tls", "show"]) == 1
    assert capsys.readouterr().err == "postoffice: tls.cert: not set: no TLS is configured\n"


def test_show_broken_certificate(
    setup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("nothing here\n")
    _configure(setup, bad)
    assert main(["tls", "show"]) == 1
    assert capsys.readouterr().err == (
        f"postoffice: {bad}: tls.cert: no PEM certificate in the file\n"
    )
