"""pop3 — the POP3 server (RFC 1939, RFC 2449, RFC 2595, RFC 5034).

Description:
    The same split as smtp/: `replies.py`, `events.py` and `states.py` are
    pure values; `protocol.py` is the sans-I/O engine (bytes in, events
    out, replies rendered); `session.py` makes the decisions (authentication,
    the maildrop snapshot, deletion marks, the UPDATE state) against the
    store interfaces; `server.py` is the asyncio adapter (STLS, implicit
    TLS, the autologout timer, the connection limit); `docs.py` renders the
    state table into docs/pop3.md.

See also:
    RFC 1939 (POP3), RFC 2449 (CAPA, response codes), RFC 2595 (STLS),
    RFC 3206 (SYS and AUTH response codes), RFC 5034 (AUTH), RFC 8314
    (implicit TLS), store/interfaces.py.
"""
