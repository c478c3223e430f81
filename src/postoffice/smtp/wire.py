"""smtp.wire — the SMTP server's wire forms: reply lines and the EHLO keyword list (pure).

Description:
    format_reply(reply, enhanced) -> bytes
        A Reply as reply lines (RFC 5321 §4.2.1): `code-text` for every line
        but the last, `code text` for the last, each ending in CRLF. With
        `enhanced` the RFC 3463 status code leads each line, but only when
        its class digit matches the reply's (RFC 3463 §2). Control
        characters in the text become "?", so a reply can never break the
        framing. Cached: the server sends the same few replies all day.

    ehlo_keywords(config, *, tls=False) -> tuple[str, ...]
        The extension lines the EHLO reply advertises for an EngineConfig,
        in a fixed order; STARTTLS disappears once TLS is on (RFC 3207 §4.2).

    Split out of smtp/protocol.py, which uses both; no I/O, no state.

See also:
    smtp/protocol.py, smtp/events.py (EngineConfig), RFC 5321 §4.1.1.1,
    RFC 1870, RFC 1985, RFC 2034, RFC 2920, RFC 3030, RFC 3207, RFC 3461,
    RFC 6152, RFC 6531.
"""

from __future__ import annotations

from functools import lru_cache

from postoffice.smtp.events import EngineConfig
from postoffice.smtp.replies import Reply

__all__ = ["CONTROLS", "ehlo_keywords", "format_reply"]

# Control characters (and DEL) as "?": str.translate table.
CONTROLS = str.maketrans({i: "?" for i in (*range(32), 127)})


@lru_cache(maxsize=1024)
def format_reply(reply: Reply, enhanced: bool) -> bytes:
    """Wire form of a reply (RFC 5321 §4.2.1); see the module docstring."""
    code = reply.code
    if not 200 <= code <= 599:
        raise ValueError(f"not an SMTP reply code: {code}")
    status = reply.enhanced.translate(CONTROLS).replace(" ", "")
    # RFC 3463 §2: the class digit of the enhanced code matches the reply.
    use = enhanced and status != "" and status[0] == str(code)[0]
    prefix = f"{status} " if use else ""
    texts = reply.text.split("\n") if reply.text else [""]
    last = len(texts) - 1
    out = []
    for i, text in enumerate(texts):
        line = f"{code}{'-' if i < last else ' '}{prefix}{text.translate(CONTROLS)}"
        out.append(line.rstrip(" ") + "\r\n")
    return "".join(out).encode("utf-8", "replace")


def ehlo_keywords(config: EngineConfig, *, tls: bool = False) -> tuple[str, ...]:
    """The EHLO extension lines this configuration advertises."""
    words = []
    if config.pipelining:
        words.append("PIPELINING")  # RFC 2920
    if config.advertise_size:
        # RFC 1870 §4: "SIZE" alone means no fixed limit.
        words.append(f"SIZE {config.max_message_size}" if config.max_message_size else "SIZE")
    if config.eightbitmime:
        words.append("8BITMIME")  # RFC 6152
    if config.enhancedstatuscodes:
        words.append("ENHANCEDSTATUSCODES")  # RFC 2034
    if config.smtputf8:
        words.append("SMTPUTF8")  # RFC 6531
    if config.dsn:
        words.append("DSN")  # RFC 3461
    if config.chunking:
        words.append("CHUNKING")  # RFC 3030
        if config.binarymime:
            words.append("BINARYMIME")
    if config.etrn:
        words.append("ETRN")  # RFC 1985
    if config.starttls and not tls:
        words.append("STARTTLS")  # RFC 3207 §4.2: not once TLS is on
    words.extend(config.extra_extensions)
    return tuple(words)
