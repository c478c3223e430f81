"""sasl.saslprep — SASLprep (RFC 4013): the stringprep profile for user names and passwords.

Description:
    saslprep(text) -> str
        RFC 4013 §2, built on the stdlib `stringprep` tables (RFC 3454):
        1. map non-ASCII spaces (C.1.2) to SPACE and delete the characters
           commonly mapped to nothing (B.1);
        2. normalize with Unicode NFKC;
        3. refuse prohibited output (C.1.2, C.2.1, C.2.2, C.3, C.4, C.5,
           C.6, C.7, C.8, C.9);
        4. check bidirectional text (RFC 3454 §6).
        Unassigned code points are allowed (a "query", RFC 3454 §7): the
        strings are compared, never stored as identifiers here.
        Raises SaslPrepError when the string is refused.

    SCRAM (RFC 5802 §2.2, "Normalize") derives its keys from the SASLprep'd
    password; sasl/scram.py falls back to the password as given when
    SASLprep refuses it, so such a password still works with a client that
    does the same (as PostgreSQL's libpq does) or with PLAIN.

See also:
    RFC 4013, RFC 3454, RFC 5802 §2.2, sasl/scram.py.
"""

from __future__ import annotations

import stringprep
import unicodedata

__all__ = ["SaslPrepError", "saslprep"]


class SaslPrepError(ValueError):
    """The string holds characters SASLprep prohibits."""


_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep of `text` (see the module docstring)."""
    if text.isascii() and text.isprintable():
        return text  # the common case: nothing maps, nothing is prohibited
    # RFC 4013 §2.1: mapping.
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    # RFC 4013 §2.2: normalization.
    out = unicodedata.normalize("NFKC", mapped)
    if not out:
        return out
    # RFC 4013 §2.3: prohibited output.
    for c in out:
        if any(check(c) for check in _PROHIBITED):
            raise SaslPrepError(f"prohibited character U+{ord(c):04X}")
    # RFC 4013 §2.4, RFC 3454 §6: bidirectional characters.
    if any(stringprep.in_table_d1(c) for c in out):
        if any(stringprep.in_table_d2(c) for c in out):
            raise SaslPrepError("mixes right-to-left and left-to-right characters")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise SaslPrepError("right-to-left text must begin and end right-to-left")
    return out
