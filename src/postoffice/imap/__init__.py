"""imap — the IMAP server: grammar, sans-I/O engine, rendering, session and server.

Description:
    commands.py   typed commands (pure values): what a client asked for.
    parse/        the client command grammar (RFC 9051 §9, RFC 3501 §9).
    mutf7.py      modified UTF-7 mailbox names (RFC 3501 §5.1.3).
    protocol.py   the engine: bytes in, events out; literals, IDLE, limits.
    events.py     the engine's events and its Limits.
    states.py     the connection states and each command's allowed states.
    response.py   responses to bytes: strings, lists, flags, dates, codes.
    docs.py       renders the state table into docs/imap.md.

See also:
    RFC 9051, RFC 3501; smtp/ for the same split on the SMTP side.
"""
