"""net.tls — the server's TLS context from [tls] cert/key, reloaded when the files change.

Description:
    `server_context(cert, key, min_version="TLSv1.2")` builds the
    `ssl.SSLContext` every listener uses: STARTTLS on [smtp] and
    [submission] listen (RFC 3207), implicit TLS on [submission] tls_listen
    (RFC 8314 §3.3). It checks the files first, so that a mistake is one
    line naming the file and the key (`tls.cert`, `tls.key`,
    `tls.min_version`) rather than OpenSSL's "PEM lib":

        /etc/postoffice/cert.pem: tls.cert: no PEM certificate in the file
        /etc/postoffice/key.pem: tls.key: does not match the certificate in ...

    The certificate file holds the server certificate first, then any
    intermediate certificates (the chain is sent as it stands). The key may
    sit in the certificate file; `tls.key` may then be left empty.
    `read_certificates`, `read_private_key` and `key_matches` are the checks,
    shared with `postoffice tls show` (cli/tls.py).

    `TlsReloader` owns the context listeners are given (`.context`) for the
    life of the process and makes it serve the newest good certificate:

      * `current()` stats the two files (device, inode, mtime, size) at most
        once per `check_interval` seconds and loads them again when they
        changed, so a renewed certificate (certbot, acme.sh) is served
        without a restart or a signal;
      * `reload()` loads them unconditionally (SIGHUP);
      * `configure(cert, key, min_version)` switches to other files or
        another minimum version (a reloaded configuration).

    A new pair that does not load (half written, mismatched, unreadable)
    is logged as an error naming the file, and the previous context stays
    in force; it is retried only when the files change again. The switch
    happens inside the handshake: `.context` has an SNI callback (called
    for every ClientHello, with or without a server name) that points the
    connection at the newest context, so listening sockets and running
    sessions never need to be rebuilt.

Security:
    TLS 1.2 or newer by default (RFC 8996 deprecates 1.0 and 1.1), TLS 1.3
    only with `min_version = "TLSv1.3"`; OpenSSL's default cipher list (no
    NULL, anonymous, export, RC4 or 3DES suites), the server's cipher
    preference, no TLS compression (CRIME), no renegotiation. Client
    certificates are not requested. The private key is read by the process
    that serves (run as root, it may then drop privileges); a key file that
    any user may read is logged as a warning. Passphrase-protected keys are
    refused: there is nobody to type the passphrase at a restart.

Config:
    [tls] cert, key, min_version.

See also:
    RFC 3207 (STARTTLS), RFC 8314 (implicit TLS for submission), RFC 8996,
    RFC 9325 (BCP 195: TLS recommendations), smtp/server.py (the handshake),
    cli/tls.py (`postoffice tls self-signed | show`).
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from postoffice.config.schema import TlsConfig
from postoffice.errors import ConfigError

__all__ = [
    "TLS_VERSIONS",
    "TlsReloader",
    "describe_connection",
    "key_matches",
    "read_certificates",
    "read_private_key",
    "server_context",
]

log = logging.getLogger("postoffice.tls")

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
)

# A PEM file bigger than this is not a certificate chain or a key.
_MAX_PEM = 1024 * 1024


def _read(path: str, key: str) -> bytes:
    if not path:
        raise ConfigError("not set", key=key)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_PEM + 1)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=path, key=key) from None
    if len(data) > _MAX_PEM:
        raise ConfigError("larger than 1 MiB: not a PEM file", file=path, key=key)
    return data


def read_certificates(path: str, *, key: str = "tls.cert") -> list[x509.Certificate]:
    """The PEM certificates in `path`, server certificate first; ConfigError otherwise."""
    data = _read(path, key)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError("no PEM certificate in the file", file=path, key=key) from None
    return certs


def read_private_key(path: str, *, key: str = "tls.key") -> PrivateKeyTypes:
    """The (first) PEM private key in `path`; ConfigError when there is none or
    it is protected by a passphrase."""
    data = _read(path, key)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise ConfigError(
            "the private key is encrypted (passphrases are not supported)", file=path, key=key
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError("no usable PEM private key in the file", file=path, key=key) from None


def key_matches(certificate: x509.Certificate, private_key: PrivateKeyTypes) -> bool:
    """True when `private_key` is the key of `certificate`."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    try:
        return bool(
            certificate.public_key().public_bytes(der, fmt)
            == private_key.public_key().public_bytes(der, fmt)
        )
    except (ValueError, TypeError):  # a key type without a SubjectPublicKeyInfo form
        return False


def _min_version(name: str) -> ssl.TLSVersion:
    version = TLS_VERSIONS.get(name)
    if version is None:
        raise ConfigError(f"{name!r}: must be TLSv1.2 or TLSv1.3", key="tls.min_version")
    return version


def server_context(cert: str, key: str = "", *, min_version: str = "TLSv1.2") -> ssl.SSLContext:
    """A server-side context for the certificate chain in `cert` and the key
    in `key` (empty: the key is in `cert`). Raises ConfigError naming the
    file and the key (tls.cert, tls.key, tls.min_version)."""
    version = _min_version(min_version)
    key = key or cert
    chain = read_certificates(cert)
    key_name = "tls.key" if key != cert else "tls.cert"
    private_key = read_private_key(key, key=key_name)
    if not key_matches(chain[0], private_key):
        raise ConfigError(f"does not match the certificate in {cert}", file=key, key=key_name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = version
    ctx.options |= (
        ssl.OP_NO_COMPRESSION  # CRIME
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_NO_RENEGOTIATION  # client-initiated renegotiation costs us, not them
        | ssl.OP_SINGLE_DH_USE
        | ssl.OP_SINGLE_ECDH_USE
    )
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:  # OpenSSL refuses what cryptography accepted
        reason = e.reason or e.strerror or str(e)
        raise ConfigError(f"OpenSSL cannot use it: {reason}", file=cert, key="tls.cert") from None
    except OSError as e:  # replaced or removed since the checks above
        raise ConfigError(f"cannot read: {e.strerror or e}", file=cert, key="tls.cert") from None
    return ctx


def describe_connection(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """What was negotiated, as Postfix writes it into Received: and the log:
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"."""
    if ssl_object is None:
        return ""
    cipher = ssl_object.cipher()
    version = ssl_object.version() or (cipher[1] if cipher else "TLS")
    if cipher is None:
        return version
    name, _, bits = cipher
    return f"{version} with cipher {name} ({bits}/{bits} bits)"


_Stamp = tuple[tuple[int, int, int, int] | None, ...]


class TlsReloader:
    """The listeners' TLS context, kept up to date with the files (see the manual)."""

    def __init__(
        self,
        cert: str,
        key: str = "",
        *,
        min_version: str = "TLSv1.2",
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cert = cert
        self._key = key or cert
        self._min_version = min_version
        self._interval = check_interval
        self._clock = clock
        stamp = self._stamp()
        self._current = server_context(cert, key, min_version=min_version)  # ConfigError
        self._front = self._current
        self._front.sni_callback = self._select
        self._seen = stamp
        self._checked = clock()
        self._reloads = 0
        self._failures = 0
        self._warn_about(self._key)

    @classmethod
    def from_config(cls, tls: TlsConfig) -> TlsReloader | None:
        """The reloader for [tls]; None when no certificate is configured."""
        if not tls.cert:
            if tls.key:
                raise ConfigError("must be set when tls.key is", key="tls.cert")
            return None
        return cls(tls.cert, tls.key, min_version=tls.min_version)

    @property
    def context(self) -> ssl.SSLContext:
        """The context to give listeners and STARTTLS: stable for the life of
        the reloader; each handshake is served by `current()`."""
        return self._front

    @property
    def files(self) -> tuple[str, str]:
        """The certificate and key files in use."""
        return self._cert, self._key

    def current(self) -> ssl.SSLContext:
        """The newest good context, after a cheap check of the files (a stat
        of each, at most once per check_interval)."""
        now = self._clock()
        if now - self._checked >= self._interval:
            self._checked = now
            self.reload_if_changed()
        return self._current

    def reload_if_changed(self) -> bool:
        """Load the files when they changed since the last attempt; True when
        a new context is in force."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        return self._load(stamp)

    def reload(self) -> bool:
        """Load the files now (SIGHUP); on failure keep the old context."""
        return self._load(self._stamp())

    def configure(self, cert: str, key: str = "", *, min_version: str = "TLSv1.2") -> bool:
        """Switch to other files or another minimum version (a reloaded
        configuration); on failure log it and keep everything as it was."""
        key = key or cert
        if (cert, key, min_version) == (self._cert, self._key, self._min_version):
            return self.reload()
        stamp = self._stamp(cert, key)
        try:
            version = _min_version(min_version)
            ctx = server_context(cert, key, min_version=min_version)
        except ConfigError as e:
            self._failures += 1
            log.error("TLS configuration not changed, keeping the previous certificate: %s", e)
            return False
        self._cert, self._key, self._min_version = cert, key, min_version
        self._front.minimum_version = version  # new handshakes; SNI swaps keep it
        self._install(ctx, stamp)
        return True

    def statistics(self) -> dict[str, int]:
        return {"reloads": self._reloads, "failures": self._failures}

    # -- internals -------------------------------------------------------------

    def _load(self, stamp: _Stamp) -> bool:
        self._seen = stamp
        try:
            ctx = server_context(self._cert, self._key, min_version=self._min_version)
        except ConfigError as e:
            self._failures += 1
            log.error("TLS reload failed, keeping the previous certificate: %s", e)
            return False
        self._install(ctx, stamp)
        return True

    def _install(self, ctx: ssl.SSLContext, stamp: _Stamp) -> None:
        self._seen = stamp
        self._current = ctx
        self._reloads += 1
        log.info("TLS certificate loaded from %s (key %s)", self._cert, self._key)
        self._warn_about(self._key)

    def _stamp(self, cert: str | None = None, key: str | None = None) -> _Stamp:
        out: list[tuple[int, int, int, int] | None] = []
        for path in (cert or self._cert, key or self._key):
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
                continue
            out.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _warn_about(self, key: str) -> None:
        try:
            mode = os.stat(key).st_mode
        except OSError:
            return
        if mode & stat.S_IROTH:
            log.warning("%s: tls.key: the private key is readable by every user", key)
        cert = self._current_leaf_expiry()
        if cert is not None and cert < datetime.now(UTC):
            log.warning("%s: tls.cert: the certificate expired on %s", self._cert, cert)

    def _current_leaf_expiry(self) -> datetime | None:
        try:
            return read_certificates(self._cert)[0].not_valid_after_utc
        except ConfigError:
            return None

    def _select(
        self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        # The SNI callback: runs for every ClientHello on `.context`.
        current = self.current()
        if current is not context:
            ssl_object.context = current
