"""pop3.states — the POP3 session states and the transition table, as data (pure).

Description:
    State: the states of one POP3 session.
    TRANSITIONS: state → {verb: state after a +OK}; a verb missing from a
        state's row is refused there with -ERR (RFC 1939 §3: "a POP3
        server MUST respond to ... a command in an incorrect state ...
        with a negative status indicator").
    ON_FAILURE: state → the state after a -ERR answer (USER's "user given"
        falls back to authorization; the others stay).
    render_table(): TRANSITIONS as a Markdown table (docs/pop3.md).

    CONVENTIONS §3: the engine (pop3/protocol.py) consults this table for
    every command; tests walk it; the docs render it.

States:
    authorization  greeted, not logged in (RFC 1939 §4)
    user           USER accepted: PASS may follow (RFC 1939 §7 "PASS ...
                   may only be given in the AUTHORIZATION state immediately
                   after a successful USER command"); any other command
                   forgets the name
    sasl           inside an AUTH exchange: after a `+ ` continuation the
                   next line is the client's response, never a command
                   (RFC 5034 §4)
    transaction    logged in, the maildrop locked (RFC 1939 §5)
    update         QUIT received in transaction: the session commits the
                   deletions and answers; nothing more is read (RFC 1939 §6)
    closed         QUIT answered, the connection dropped, or autologout

    STLS keeps authorization (RFC 2595 §4: only there, and the client must
    log in afresh over TLS). A successful PASS, APOP or AUTH enters
    transaction; QUIT in authorization closes without an update state
    (RFC 1939 §6: "If the client issues the QUIT command from the
    AUTHORIZATION state, the POP3 session terminates but does NOT enter
    the UPDATE state"). CAPA is legal in every command state (RFC 2449 §5).

See also:
    pop3/protocol.py, RFC 1939 §3-§7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["ON_FAILURE", "TRANSITIONS", "VERBS", "State", "render_table"]


class State(enum.Enum):
    """States of one POP3 session (see the module docstring)."""

    AUTHORIZATION = "authorization"
    USER = "user"
    SASL = "sasl"
    TRANSACTION = "transaction"
    UPDATE = "update"
    CLOSED = "closed"


_AUTHORIZATION = {
    "USER": State.USER,  # RFC 1939 §7
    "APOP": State.TRANSACTION,  # RFC 1939 §7
    "AUTH": State.TRANSACTION,  # RFC 5034 §4 (through sasl while challenged)
    "STLS": State.AUTHORIZATION,  # RFC 2595 §4
    "CAPA": State.AUTHORIZATION,  # RFC 2449 §5
    "QUIT": State.CLOSED,  # RFC 1939 §6: no update state
}

# The state machine as data (CONVENTIONS §3): state → {verb: state after +OK}.
TRANSITIONS: Mapping[State, Mapping[str, State]] = MappingProxyType(
    {
        State.AUTHORIZATION: MappingProxyType(dict(_AUTHORIZATION)),
        State.USER: MappingProxyType(_AUTHORIZATION | {"PASS": State.TRANSACTION}),
        State.SASL: MappingProxyType({}),  # RFC 5034 §4: response lines, no commands
        State.TRANSACTION: MappingProxyType(
            {
                # RFC 1939 §5
                "STAT": State.TRANSACTION,
                "LIST": State.TRANSACTION,
                "RETR": State.TRANSACTION,
                "DELE": State.TRANSACTION,
                "NOOP": State.TRANSACTION,
                "RSET": State.TRANSACTION,
                # RFC 1939 §7 (optional commands)
                "TOP": State.TRANSACTION,
                "UIDL": State.TRANSACTION,
                "CAPA": State.TRANSACTION,  # RFC 2449 §5
                "QUIT": State.UPDATE,  # RFC 1939 §6
            }
        ),
        State.UPDATE: MappingProxyType({}),
        State.CLOSED: MappingProxyType({}),
    }
)

# After a -ERR answer: a refused USER leaves no name behind.
ON_FAILURE: Mapping[State, State] = MappingProxyType(
    {
        State.AUTHORIZATION: State.AUTHORIZATION,
        State.USER: State.AUTHORIZATION,
        State.SASL: State.AUTHORIZATION,
        State.TRANSACTION: State.TRANSACTION,
        State.UPDATE: State.CLOSED,
        State.CLOSED: State.CLOSED,
    }
)

VERBS = frozenset(verb for row in TRANSITIONS.values() for verb in row)


def render_table() -> str:
    """TRANSITIONS as a Markdown table: state × verb → the state after +OK,
    "-ERR" when refused there, "-" where no commands are read."""
    verbs = sorted(VERBS)
    lines = ["| state | " + " | ".join(verbs) + " |", "|---" * (len(verbs) + 1) + "|"]
    for state, row in TRANSITIONS.items():
        cells = [row[v].value if v in row else "-ERR" if row else "-" for v in verbs]
        lines.append(f"| {state.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
