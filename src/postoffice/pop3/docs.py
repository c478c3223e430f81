"""Renders docs/pop3.md: the POP3 server's state table and capabilities, straight from the engine.

`python -m postoffice.pop3.docs > docs/pop3.md`; tests/test_pop3_docs.py
fails when the file is stale (CONVENTIONS.md §3: the docs render the table).
"""

from __future__ import annotations

from postoffice.pop3.events import EngineConfig
from postoffice.pop3.protocol import Pop3Protocol, render_table


def render_markdown() -> str:
    engine = Pop3Protocol(
        EngineConfig(stls=True, sasl_mechanisms=("PLAIN", "LOGIN", "SCRAM-SHA-256", "CRAM-MD5"))
    )
    capabilities = "\n".join(f"- `{c}`" for c in engine.capabilities())
    return (
        "# The POP3 server's states\n\n"
        "Generated from `pop3/states.py` by `python -m postoffice.pop3.docs`.\n"
        "Each cell is the state a command leads to when the session answers it\n"
        "`+OK`; `-ERR` means the command is refused in that state, `-` that no\n"
        "command is read there (an AUTH response line after a `+ ` continuation,\n"
        "the update after QUIT, a closed session). A `-ERR` answer to USER, PASS,\n"
        "APOP or AUTH leaves the client in `authorization`; any command other\n"
        "than PASS after USER forgets the name (RFC 1939 §7).\n\n"
        f"{render_table()}\n"
        "## Capabilities (RFC 2449 CAPA) with a certificate, on loopback\n\n"
        f"{capabilities}\n\n"
        "Off loopback, with `[pop3] require_tls` (the default), `USER` and the\n"
        "plaintext mechanisms `PLAIN` and `LOGIN` appear only after STLS (or on\n"
        "`[pop3s]`), and USER/PASS before it get `-ERR [AUTH] Plaintext\n"
        "authentication disallowed on non-secure (SSL/TLS) connections.`\n"
        "(RFC 2595 §2.1). `STLS` is listed only before TLS, in authorization.\n\n"
        "## The UPDATE state\n\n"
        "Only QUIT in transaction enters it (RFC 1939 §6): messages retrieved with\n"
        "RETR get `\\Seen`, messages marked with DELE (and, with\n"
        "`[pop3] delete_on_retr`, every message retrieved) are expunged, the\n"
        "maildrop lock is released. A dropped connection or the autologout timer\n"
        "changes nothing.\n"
    )


if __name__ == "__main__":
    print(render_markdown(), end="")
