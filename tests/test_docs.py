"""Generated documentation must match the code that generates it."""

from __future__ import annotations

from pathlib import Path

from postoffice.smtp import docs as smtp_docs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_smtp_state_table_is_current() -> None:
    expected = smtp_docs.render_markdown()
    assert (DOCS / "smtp.md").read_text() == expected, (
        "docs/smtp.md is stale: run `python -m postoffice.smtp.docs > docs/smtp.md`"
    )


def test_documents_named_in_the_readme_exist() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    for name in (
        "config.md",
        "rfc-index.md",
        "benchmarks.md",
        "status.md",
        "smtp.md",
        "pop3.md",
        "imap.md",
    ):
        assert f"docs/{name}" in readme
        assert (DOCS / name).is_file(), name
