"""cli/tls — `postoffice tls self-signed | show`: a test certificate, and what is configured.

Description:
    postoffice [-c FILE] tls self-signed [--hostname H] [--days N]
                                         [--out-dir DIR] [--key-type rsa|ecdsa] [--force]
        Write DIR/cert.pem and DIR/key.pem: a new private key (ECDSA P-256
        by default, or RSA 2048) and a self-signed certificate for H
        (default: the configured hostname) valid for N days (default 365),
        with H as its subject CN and subjectAltName (RFC 6125; an IP address
        becomes an iPAddress entry), for TLS servers only. DIR defaults to
        config_dir. Then print the [tls] lines to put into the
        configuration. Existing files are not replaced without --force.
    postoffice [-c FILE] tls show
        Print the configured certificate: subject, subjectAltName, issuer,
        validity, chain length, and whether the key belongs to it; exit 1
        when it does not, when the certificate has expired or when the
        server could not use the pair.

    A self-signed certificate is for testing, or for a host whose peers do
    not verify (most MTAs, RFC 7435 opportunistic security); for
    submission clients use one from a CA (e.g. ACME).

Security:
    The key is written with mode 0600 through a temporary file and a
    rename; it never appears on stdout. Neither command needs privileges
    beyond reading (show) or writing (self-signed) the files.

Config:
    hostname, config_dir, [tls] cert, key, min_version.

See also:
    net/tls.py, RFC 3207, RFC 8314, RFC 6125, RFC 5280.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postoffice.cli.main import load_config_from_args
from postoffice.errors import ConfigError
from postoffice.net.tls import key_matches, read_certificates, read_private_key, server_context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tls",
        help="make a self-signed certificate, show the configured one",
        description="TLS helpers: a self-signed certificate for testing, and a look at "
        "the certificate in [tls].",
    )
    actions = p.add_subparsers(dest="tls_command", metavar="ACTION", required=True)
    make = actions.add_parser(
        "self-signed",
        help="write cert.pem and key.pem for testing",
        description="Write a new private key and a self-signed certificate, and print "
        "the [tls] lines for the configuration.",
    )
    make.add_argument("--hostname", help="name in the certificate (default: hostname)")
    make.add_argument("--days", type=_positive, default=365, help="validity in days (default: 365)")
    make.add_argument("--out-dir", metavar="DIR", help="where to write (default: config_dir)")
    make.add_argument(
        "--key-type",
        choices=("ecdsa", "rsa"),
        default="ecdsa",
        help="ECDSA P-256 (default) or RSA 2048",
    )
    make.add_argument("--force", action="store_true", help="replace existing files")
    make.set_defaults(func=run_self_signed)
    show = actions.add_parser(
        "show",
        help="describe the configured certificate",
        description="Print the subject, subjectAltName, validity of [tls] cert and "
        "whether [tls] key matches it.",
    )
    show.set_defaults(func=run_show)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# -- self-signed ---------------------------------------------------------------------


def self_signed(hostname: str, *, days: int = 365, key_type: str = "ecdsa") -> tuple[bytes, bytes]:
    """A new key and a self-signed server certificate for `hostname`: (cert PEM, key PEM)."""
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "rsa":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private_key = ec.generate_private_key(ec.SECP256R1())
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
        cn = hostname
    except ValueError:
        cn = hostname.encode("idna").decode("ascii") if not hostname.isascii() else hostname
        san = x509.DNSName(cn.lower())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        key_encipherment=key_type == "rsa",  # RSA key exchange (TLS 1.2)
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1)
        .not_valid_before(now - dt.timedelta(minutes=5))  # a little clock skew
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()), critical=False
        )
        .sign(private_key, hashes.SHA256())
    )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` with `mode` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run_self_signed(args: argparse.Namespace) -> int:
    config = load_config_from_args(args)
    hostname = (args.hostname or config.hostname).strip().rstrip(".")
    if not hostname or any(c.isspace() or c in "/\\" for c in hostname):
        raise ConfigError(f"{hostname!r} is not a host name", key="--hostname")
    out = Path(args.out_dir or config.config_dir).expanduser().absolute()
    cert_path, key_path = out / "cert.pem", out / "key.pem"
    if not args.force:
        for path in (cert_path, key_path):
            if path.exists():
                raise ConfigError("exists already (use --force to replace it)", file=str(path))
    cert_pem, key_pem = self_signed(hostname, days=args.days, key_type=args.key_type)
    out.mkdir(parents=True, exist_ok=True)
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o644)
    # json.dumps gives a valid TOML basic string for any path.
    print("[tls]")
    print(f"cert = {json.dumps(str(cert_path), ensure_ascii=False)}")
    print(f"key = {json.dumps(str(key_path), ensure_ascii=False)}")
    return 0


# -- show -------------------------------------------------------------------------------


def _names(cert: x509.Certificate) -> str:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return "(none)"
    names = [f"DNS:{n}" for n in ext.value.get_values_for_type(x509.DNSName)]
    names += [f"IP:{a}" for a in ext.value.get_values_for_type(x509.IPAddress)]
    return ", ".join(names) or "(none)"


def run_show(args: argparse.Namespace) -> int:
    config = load_config_from_args(args)
    tls = config.tls
    if not tls.cert:
        raise ConfigError("not set: no TLS is configured", key="tls.cert")
    chain = read_certificates(tls.cert)
    leaf = chain[0]
    now = dt.datetime.now(dt.UTC)
    after = leaf.not_valid_after_utc
    left = "EXPIRED" if after < now else f"{(after - now).days} days left"
    ok = after >= now and leaf.not_valid_before_utc <= now
    print(f"certificate: {tls.cert}")
    print(f"subject: {leaf.subject.rfc4514_string()}")
    print(f"subjectAltName: {_names(leaf)}")
    print(f"issuer: {leaf.issuer.rfc4514_string()}")
    print(f"not before: {leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")
    print(f"not after: {after:%Y-%m-%d %H:%M:%S} UTC ({left})")
    print(f"chain: {len(chain)} certificate{'s' if len(chain) != 1 else ''}")
    key_file = tls.key or tls.cert
    try:
        matches = key_matches(leaf, read_private_key(key_file))
    except ConfigError as e:
        print(f"key: {key_file}: {e.message}")
        return 1
    print(f"key: {key_file} ({'matches the certificate' if matches else 'DOES NOT MATCH'})")
    ok = ok and matches
    if matches:
        try:
            server_context(tls.cert, tls.key, min_version=tls.min_version)
        except ConfigError as e:
            print(f"usable: no: {e}")
            return 1
        print(f"usable: yes (TLS {tls.min_version.removeprefix('TLSv')} or newer)")
    return 0 if ok else 1
