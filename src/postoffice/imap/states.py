"""imap.states — the IMAP connection states and which command runs where, as data (pure).

Description:
    State: the four states of RFC 9051 §3 (and RFC 3501 §3).
    RULES: command name → Rule(states where it is allowed, the state a
        tagged OK leads to, the state a tagged NO leads to). A command in a
        state not listed is answered BAD by the engine (RFC 9051 §6:
        "a command that is not valid in the current state").
    render_table(): RULES as a Markdown table (docs/imap.md).

    CONVENTIONS §3: imap/protocol.py consults this table for every
    command before reading any literal; tests walk it; docs/imap.md
    renders it (imap/docs.py).

States (RFC 9051 §3):
    not authenticated  after a greeting OK; LOGIN / AUTHENTICATE move on
    authenticated      after a successful login or a PREAUTH greeting
    selected           after a successful SELECT or EXAMINE; CLOSE and
                       UNSELECT return to authenticated, and so does a
                       failed SELECT/EXAMINE (RFC 9051 §6.3.2)
    logout             after LOGOUT, or a BYE from the server

See also:
    RFC 9051 §3, §6; RFC 3501 §3, §6; imap/protocol.py; imap/commands.py.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["RULES", "Rule", "State", "render_table"]


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Where a command is allowed and where its outcome leads (None: stay)."""

    states: frozenset[State]
    on_ok: State | None = None
    on_no: State | None = None


_ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
_NONAUTH = frozenset({State.NOT_AUTHENTICATED})
_AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})

_A, _S, _L = State.AUTHENTICATED, State.SELECTED, State.LOGOUT

# RFC 9051 §6.1 (any state), §6.2 (not authenticated), §6.3 (authenticated:
# also valid in selected), §6.4 (selected).
RULES: Mapping[str, Rule] = MappingProxyType(
    {
        "CAPABILITY": Rule(states=_ANY),
        "NOOP": Rule(states=_ANY),
        "LOGOUT": Rule(states=_ANY, on_ok=_L),
        "ID": Rule(states=_ANY),  # RFC 2971 §3.1: any state
        "STARTTLS": Rule(states=_NONAUTH),
        "AUTHENTICATE": Rule(states=_NONAUTH, on_ok=_A),
        "LOGIN": Rule(states=_NONAUTH, on_ok=_A),
        "ENABLE": Rule(states=_AUTH),  # RFC 5161 §3.1
        "SELECT": Rule(states=_AUTH, on_ok=_S, on_no=_A),
        "EXAMINE": Rule(states=_AUTH, on_ok=_S, on_no=_A),
        "CREATE": Rule(states=_AUTH),
        "DELETE": Rule(states=_AUTH),
        "RENAME": Rule(states=_AUTH),
        "SUBSCRIBE": Rule(states=_AUTH),
        "UNSUBSCRIBE": Rule(states=_AUTH),
        "LIST": Rule(states=_AUTH),
        "LSUB": Rule(states=_AUTH),
        "NAMESPACE": Rule(states=_AUTH),
        "STATUS": Rule(states=_AUTH),
        "APPEND": Rule(states=_AUTH),
        "IDLE": Rule(states=_AUTH),  # RFC 2177: authenticated or selected
        "CHECK": Rule(states=_SELECTED),
        "CLOSE": Rule(states=_SELECTED, on_ok=_A),
        "UNSELECT": Rule(states=_SELECTED, on_ok=_A),
        "EXPUNGE": Rule(states=_SELECTED),
        "SEARCH": Rule(states=_SELECTED),
        "FETCH": Rule(states=_SELECTED),
        "STORE": Rule(states=_SELECTED),
        "COPY": Rule(states=_SELECTED),
        "MOVE": Rule(states=_SELECTED),  # RFC 6851 §3
        "UID SEARCH": Rule(states=_SELECTED),
        "UID FETCH": Rule(states=_SELECTED),
        "UID STORE": Rule(states=_SELECTED),
        "UID COPY": Rule(states=_SELECTED),
        "UID MOVE": Rule(states=_SELECTED),
        "UID EXPUNGE": Rule(states=_SELECTED),  # RFC 4315 §2.1
    }
)


def render_table() -> str:
    """RULES as Markdown: command × state → the state after a tagged OK
    ("stays" when unchanged, "BAD" when not allowed), then the NO column."""
    states = [s for s in State if s is not State.LOGOUT]
    head = "| command | " + " | ".join(s.value for s in states) + " | after NO |"
    lines = [head, "|---" * (len(states) + 2) + "|"]
    for name, rule in RULES.items():
        cells = []
        for state in states:
            if state not in rule.states:
                cells.append("BAD")
            elif rule.on_ok is None or rule.on_ok is state:
                cells.append("stays")
            else:
                cells.append(rule.on_ok.value)
        after_no = rule.on_no.value if rule.on_no is not None else "stays"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {after_no} |")
    return "\n".join(lines) + "\n"
