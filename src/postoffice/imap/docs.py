"""imap.docs — renders docs/imap.md: the IMAP server's state table, straight from the engine.

Description:
    `python -m postoffice.imap.docs > docs/imap.md`; tests/test_imap_protocol.py
    fails when the file is stale (CONVENTIONS.md §3: the docs render the
    table). The limits section shows events.Limits' defaults.

See also:
    imap/states.py (RULES), imap/events.py (Limits), smtp/docs.py.
"""

from __future__ import annotations

from dataclasses import fields

from postoffice.imap.events import Limits
from postoffice.imap.protocol import render_table


def render_markdown() -> str:
    defaults = Limits()
    limits = "\n".join(f"- `{f.name}` = {getattr(defaults, f.name)!r}" for f in fields(Limits))
    return (
        "# The IMAP server's states\n\n"
        "Generated from `imap/states.py` by `python -m postoffice.imap.docs`.\n"
        "Each row is a command; each cell is the state a tagged OK leads to\n"
        "from that state (`stays`: unchanged), or `BAD` where the command is\n"
        "not allowed (RFC 9051 §3, §6). The last column is the state after a\n"
        "tagged NO: a failed SELECT or EXAMINE leaves no mailbox selected\n"
        "(RFC 9051 §6.3.2). LOGOUT leads to the logout state, where the\n"
        "connection closes.\n\n"
        f"{render_table()}\n"
        "## Modes inside a command\n\n"
        "- after `{n}` the engine sends `+ OK` and reads n octets of the same\n"
        "  command; `{n+}` (LITERAL+, RFC 7888) gets no continuation;\n"
        "- APPEND messages are streamed (AppendBegin, AppendData, AppendEnd),\n"
        "  several in one command with MULTIAPPEND (RFC 3502);\n"
        "- after an AUTHENTICATE challenge one line is the client's response;\n"
        "- in IDLE only `DONE` is read (RFC 2177).\n\n"
        "## Limits (events.Limits defaults)\n\n"
        f"{limits}\n"
    )


if __name__ == "__main__":
    print(render_markdown(), end="")
