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
        "no command is read in that state (message data, or a closed session).\n\n"
        f"{render_table()}\n\n"
        "## EHLO keywords advertised by default\n\n"
        f"{keywords}\n\n"
        "STARTTLS and AUTH join the list when TLS and authentication are\n"
        "configured (a later issue).\n"
    )


if __name__ == "__main__":
    print(render_markdown(), end="")
