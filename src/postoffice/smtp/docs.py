"""Renders docs/smtp.md: the SMTP server's state table, straight from the engine.

`python -m postoffice.smtp.docs > docs/smtp.md`; tests/test_docs.py fails
when the file is stale (CONVENTIONS.md §3: the docs render the table).
"""

from __future__ import annotations

from postoffice.smtp.events import EngineConfig
from postoffice.smtp.protocol import ehlo_keywords, render_table


def render_markdown() -> str:
    keywords = "\n".join(f"- `{k}`" for k in ehlo_keywords(EngineConfig(hostname="host")))
    return (
        "# The SMTP server's states\n\n"
        "Generated from `smtp/protocol.py` by `python -m postoffice.smtp.docs`.\n"
        "Each cell is the state a command leads to when the session accepts it;\n"
        "`503` means the command is out of sequence there (503 5.5.1), `-` that\n"
        "no command is read in that state (message data, an AUTH response line\n"
        "after a 334 challenge, or a closed session).\n\n"
        f"{render_table()}\n\n"
        "## EHLO keywords advertised by default\n\n"
        f"{keywords}\n\n"
        "STARTTLS joins the list when TLS is configured, `AUTH <mechanisms>`\n"
        "when SASL mechanisms are (EngineConfig.auth_mechanisms; with\n"
        "auth_requires_tls only after STARTTLS). AUTH is legal in greeted only,\n"
        "and refused with 503 once the client is authenticated (RFC 4954 §4).\n"
    )


if __name__ == "__main__":
    print(render_markdown(), end="")
