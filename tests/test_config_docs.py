"""docs/config.md is generated from the schema and must not be stale."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

from postoffice.config import schema
from postoffice.config.docs import format_toml_value, render_markdown, sections

DOCS = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def test_docs_config_md_is_up_to_date() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_markdown(), (
        "docs/config.md is stale: run `python -m postoffice.config.docs > docs/config.md`"
    )


def test_every_key_is_documented() -> None:
    text = render_markdown()
    for cls in (schema.Config, *schema.SECTIONS.values()):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.metadata.get("internal") or dataclasses.is_dataclass(hints[field.name]):
                continue
            assert field.metadata.get("doc"), f"{cls.__name__}.{field.name} has no doc"
            assert f"| `{field.name}` |" in text
    assert [name for name, _ in sections()] == list(schema.SECTIONS)
    for name in schema.SECTIONS:
        assert f"## [{name}]" in text


def test_module_prints_the_same() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "postoffice.config.docs"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out == render_markdown()


def test_format_toml_value() -> None:
    assert format_toml_value(True) == "true"
    assert format_toml_value(3) == "3"
    assert format_toml_value(2.5) == "2.5"
    assert format_toml_value('a "b" \\ ü') == '"a \\"b\\" \\\\ ü"'
    assert format_toml_value(("a", "b")) == '["a", "b"]'
    assert format_toml_value(()) == "[]"
