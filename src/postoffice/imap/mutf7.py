"""imap.mutf7 — modified UTF-7 for IMAP4rev1 mailbox names (RFC 3501 §5.1.3), strict.

Description:
    encode(name) -> str    Unicode name → modified UTF-7 (ASCII only).
    decode(text) -> str    modified UTF-7 → Unicode; ValueError when the
                           text is not in the one canonical form.
    is_valid(text) -> bool

    RFC 3501 §5.1.3: printable US-ASCII (0x20-0x7E) stands for itself,
    except "&", written "&-". Everything else is UTF-16 (big endian) in
    modified base64 (RFC 2045 base64 with "," for "/", no "=" padding)
    between "&" and "-".

    Strict: the RFC says printable ASCII MUST NOT be base64-encoded and
    that encoded runs end with "-", so a decoder that accepted every
    spelling would let two different wire names mean one mailbox. decode()
    refuses anything encode() would not produce: 8-bit or control octets
    outside "&...-", a "&" without its "-", characters outside the
    modified base64 alphabet, a base64 run of a bad length or with
    non-zero padding bits, an odd octet count, unpaired UTF-16 surrogates,
    printable ASCII or a lone "&" inside base64, and two adjacent encoded
    runs ("&AOk-&AOk-" is "&AOkA6Q-").

    Pure: stdlib only. Fast path: a name without "&" and with only
    printable ASCII is returned as is.

See also:
    RFC 3501 §5.1.3, RFC 2152 (UTF-7), RFC 9051 §5.1 (IMAP4rev2 uses
    UTF-8 instead), imap/parse/ (mailbox names), imap/response.py.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["decode", "encode", "is_valid"]

_PRINTABLE_RUNS = re.compile(r"[\x20-\x7e]+|[^\x20-\x7e]+")
_PLAIN = re.compile(r"[\x20-\x25\x27-\x7e]*")  # printable ASCII but "&"
_B64 = re.compile(r"[A-Za-z0-9+,]*")


def encode(name: str) -> str:
    """`name` in modified UTF-7. ValueError for a lone surrogate."""
    if _PLAIN.fullmatch(name):
        return name
    out: list[str] = []
    for run in _PRINTABLE_RUNS.findall(name):
        if run[0] >= " " and run[0] <= "~":
            out.append(run.replace("&", "&-"))
            continue
        try:
            utf16 = run.encode("utf-16-be")
        except UnicodeEncodeError as exc:
            raise ValueError("a lone surrogate cannot be encoded") from exc
        out.append("&" + base64.b64encode(utf16).rstrip(b"=").replace(b"/", b",").decode() + "-")
    return "".join(out)


def _decode_run(run: str) -> str:
    if not _B64.fullmatch(run) or len(run) % 4 == 1:
        raise ValueError("not modified base64")
    padded = run.replace(",", "/") + "=" * (-len(run) % 4)
    try:
        octets = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:  # pragma: no cover - the pattern above rules it out
        raise ValueError("not modified base64") from exc
    if len(octets) % 2:
        raise ValueError("an odd number of UTF-16 octets")
    try:
        return octets.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise ValueError("unpaired UTF-16 surrogate") from exc


def decode(text: str) -> str:
    """The Unicode name of modified UTF-7 `text`; ValueError unless `text`
    is exactly what encode() makes of its result."""
    if _PLAIN.fullmatch(text):
        return text
    out: list[str] = []
    pos = 0
    size = len(text)
    while pos < size:
        amp = text.find("&", pos)
        stop = size if amp < 0 else amp
        if stop > pos:
            plain = text[pos:stop]
            if not _PLAIN.fullmatch(plain):
                raise ValueError("a character outside printable US-ASCII")
            out.append(plain)
        if amp < 0:
            break
        dash = text.find("-", amp + 1)
        if dash < 0:
            raise ValueError('"&" without its closing "-"')
        run = text[amp + 1 : dash]
        out.append("&" if not run else _decode_run(run))
        pos = dash + 1
    result = "".join(out)
    # Canonical form only: printable ASCII never base64, no adjacent runs,
    # zero padding bits (RFC 3501 §5.1.3 "MUST NOT").
    if encode(result) != text:
        raise ValueError("not the canonical modified UTF-7 form")
    return result


def is_valid(text: str) -> bool:
    """True when decode(text) would succeed."""
    try:
        decode(text)
    except ValueError:
        return False
    return True
