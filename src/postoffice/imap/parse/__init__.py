"""imap.parse — the IMAP client command grammar (RFC 9051 §9, RFC 3501 §9), sans I/O.

Description:
    parse_command(data, utf8=False, max_depth=32) -> Command | ParseError
    split_head(line) -> Head(tag, name)
    parse_append_head(data) -> Append | ParseError | None
    parse_append_next(data, tag) -> AppendMessage | ParseError

    Modules: reader.py (tokens: atom, astring, quoted, literal, numbers,
    nesting), values.py (sequence sets, flags, dates, mailbox names),
    search.py (the SEARCH program), fetch.py (FETCH items and sections),
    command.py (every command, the entry points above).

    Errors are values (ParseError), never exceptions: every entry point
    returns for any input.

See also:
    imap/commands.py (the values), imap/protocol.py (framing, literals).
"""

from postoffice.imap.parse.command import (
    COMMAND_NAMES,
    Head,
    ParseError,
    parse_append_head,
    parse_append_next,
    parse_command,
    split_head,
)

__all__ = [
    "COMMAND_NAMES",
    "Head",
    "ParseError",
    "parse_append_head",
    "parse_append_next",
    "parse_command",
    "split_head",
]
