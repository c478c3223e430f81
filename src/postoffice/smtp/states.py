"""smtp.states — the SMTP server's command states and its transition table, as data (pure).

Description:
    State: the command states of one SMTP session.
    TRANSITIONS: state → {verb: state on success}; a verb missing from a
        state's row is out of sequence there (503 5.5.1, RFC 5321 §4.1.4).
    render_table(): TRANSITIONS as a Markdown table (docs/smtp.md).

    CONVENTIONS §3: the engine (smtp/protocol.py) consults this table for
    every command; tests walk it; the docs render it. Split out of
    smtp/protocol.py, which re-exports all three.

States:
    fresh    connected, no accepted HELO/EHLO
    greeted  HELO/EHLO accepted, no transaction
    mail     MAIL accepted, no RCPT yet
    rcpt     at least one RCPT issued (accepted or not)
    bdat     a BDAT transaction is open (first chunk answered)
    data     reading DATA content (no commands)
    auth     inside an AUTH exchange: after a 334 challenge the next line is
             the client's response, never a command (RFC 4954 §4)
    closed   QUIT, 421, or end of input

    End of data (CRLF.CRLF or BDAT LAST) returns data/bdat to greeted; the
    end of an AUTH exchange returns auth to greeted. STARTTLS (220) returns
    to fresh (RFC 3207 §4.2). RSET, NOOP, HELP, VRFY, EXPN and QUIT are
    legal in every command state (RFC 5321 §4.1.4). AUTH is legal in
    greeted only: not before EHLO, not during a transaction (RFC 4954 §4);
    the engine also refuses it once authenticated (503 5.5.1, §4).

See also:
    smtp/protocol.py, RFC 5321 §4.1.4, RFC 3030 §2, RFC 3207 §4.2,
    RFC 4954 §4, RFC 1985 §5.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["TRANSITIONS", "State", "render_table"]


class State(enum.Enum):
    """Command states of one SMTP session (see the module docstring)."""

    FRESH = "fresh"
    GREETED = "greeted"
    MAIL = "mail"
    RCPT = "rcpt"
    BDAT = "bdat"
    DATA = "data"
    AUTH = "auth"
    CLOSED = "closed"


def _row(stay: State, **moves: State) -> Mapping[str, State]:
    # RFC 5321 §4.1.4: these may be used at any time; a new HELO/EHLO ends
    # any transaction (RFC 5321 §4.1.1.1).
    row = {
        "HELO": State.GREETED,
        "EHLO": State.GREETED,
        "LHLO": State.GREETED,
        "RSET": State.FRESH if stay is State.FRESH else State.GREETED,
        "NOOP": stay,
        "HELP": stay,
        "VRFY": stay,
        "EXPN": stay,
        "QUIT": State.CLOSED,
    }
    row.update(moves)
    return MappingProxyType(row)


# The state machine as data (CONVENTIONS §3): state → {verb: state on success}.
TRANSITIONS: Mapping[State, Mapping[str, State]] = MappingProxyType(
    {
        State.FRESH: _row(State.FRESH),
        State.GREETED: _row(
            State.GREETED,
            MAIL=State.MAIL,  # RFC 5321 §4.1.1.2
            STARTTLS=State.FRESH,  # RFC 3207 §4.2
            AUTH=State.GREETED,  # RFC 4954 §4: not during a transaction
            ETRN=State.GREETED,  # RFC 1985 §5
        ),
        State.MAIL: _row(State.MAIL, RCPT=State.RCPT),  # RFC 5321 §4.1.1.3
        State.RCPT: _row(
            State.RCPT,
            RCPT=State.RCPT,
            DATA=State.DATA,  # RFC 5321 §4.1.1.4
            BDAT=State.BDAT,  # RFC 3030 §2
        ),
        State.BDAT: _row(State.BDAT, BDAT=State.BDAT),  # RFC 3030 §2: no DATA
        State.DATA: MappingProxyType({}),
        State.AUTH: MappingProxyType({}),  # RFC 4954 §4: response lines, no commands
        State.CLOSED: MappingProxyType({}),
    }
)


def render_table() -> str:
    """TRANSITIONS as a Markdown table: state × verb → the next state, "503"
    when refused, "-" where no commands are read (data, auth, closed)."""
    verbs = sorted({verb for row in TRANSITIONS.values() for verb in row})
    lines = ["| state | " + " | ".join(verbs) + " |", "|---" * (len(verbs) + 1) + "|"]
    for state, row in TRANSITIONS.items():
        cells = [row[v].value if v in row else "503" if row else "-" for v in verbs]
        lines.append(f"| {state.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
