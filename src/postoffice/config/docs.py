"""config/docs — render docs/config.md, the configuration reference, from the schema.

Description:
    render_markdown() walks the dataclasses of config/schema.py and writes
    one Markdown table per TOML table: every key with its type, default
    and documentation. `python -m postoffice.config.docs` prints it;
    `make docs` writes docs/config.md, and tests/test_config_docs.py fails
    when the committed file differs from what the schema renders.

    format_toml_value() writes a value in TOML syntax; `postoffice config
    show` uses it too.

See also:
    config/schema.py, config/load.py, docs/config.md.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from typing import Any

from postoffice.config.schema import Config

_INTRO = """\
# Configuration reference

<!-- Generated from src/postoffice/config/schema.py by
     `python -m postoffice.config.docs > docs/config.md`; do not edit. -->

postoffice reads one TOML file. Every key has a default, so no file at all
is a valid configuration: it runs unprivileged on localhost ports with its
state under `./postoffice-data/`.

## Where the file is found

The first of these wins:

1. `postoffice -c FILE …`
2. the environment variable `POSTOFFICE_CONFIG`
3. `./postoffice.toml`
4. `/etc/postoffice/postoffice.toml`
5. no file: the defaults below.

A file named by 1 or 2 must exist. `postoffice config check` validates the
file and every map it names; `postoffice config show` prints the resolved
values.

## Paths and placeholders

- A relative path written in the file is relative to the folder of that
  file. The built-in default `state_dir = "./postoffice-data"` is relative
  to the current directory of the process. `~/` is the home directory of
  the user running postoffice.
- `config_dir` may use `{state_dir}`; `users_file` and `log.file` may use
  `{state_dir}` and `{config_dir}`.
- `[delivery] mailbox` may use `{state_dir}` and `{config_dir}`, and must
  use `{user}` or `{address}`; `{user}`, `{domain}` and `{address}` are
  filled in per recipient at delivery.
- Map files keep their traditional names in `config_dir`: `users` (a
  Dovecot passwd-file), `local-host-names` (one or more domains per line,
  `#` comments; added to `local_domains`).

Unknown keys and tables, and values of the wrong type, are errors that
name the file, the line and the key.
"""

_TYPE_NAMES = {str: "string", int: "integer", float: "float", bool: "boolean"}


def type_name(tp: Any) -> str:
    """The documentation name of a schema field type."""
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if isinstance(tp, types.UnionType):  # `T | None`: a key that may be left out
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return f"{type_name(args[0])} (optional)"
    if typing.get_origin(tp) is tuple:
        return "list of strings"
    if typing.get_origin(tp) is dict:
        return "table of strings"
    return getattr(tp, "__name__", str(tp))


def format_toml_value(value: Any) -> str:
    """`value` (str, int, float, bool or a sequence of them) in TOML syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string: the same escapes, minus `\\/`.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(format_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(k)} = {format_toml_value(v)}" for k, v in value.items())
            + "}"
        )
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    factory: Any = field.default_factory
    return factory()


def _table(cls: type, *, skip_sections: bool) -> list[str]:
    hints = typing.get_type_hints(cls)
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        if field.metadata.get("internal") or (skip_sections and dataclasses.is_dataclass(tp)):
            continue
        value = _default(field)
        default = "(unset)" if value is None else format_toml_value(value)
        rows.append(
            f"| `{field.name}` | {type_name(tp)} | `{_cell(default)}` "
            f"| {_cell(field.metadata.get('doc', ''))} |"
        )
    return rows


def sections() -> list[tuple[str, type]]:
    """The TOML tables of the schema in declaration order: (name, dataclass)."""
    hints = typing.get_type_hints(Config)
    return [
        (f.name, hints[f.name])
        for f in dataclasses.fields(Config)
        if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])
    ]


def render_markdown() -> str:
    """The whole of docs/config.md."""
    out = [_INTRO, "## Top level", "", *_table(Config, skip_sections=True), ""]
    done: set[type] = set()
    for name, cls in sections():
        title = (cls.__doc__ or f"[{name}]").strip().splitlines()[0].rstrip(".")
        out += [f"## {title}", "", *_table(cls, skip_sections=True), ""]
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):  # tables inside a section: [smtp.policy]
            sub = hints[field.name]
            if not (isinstance(sub, type) and dataclasses.is_dataclass(sub)) or sub in done:
                continue
            done.add(sub)
            doc = (sub.__doc__ or "").strip().split("\n\n")
            title = doc[0].rstrip(".")
            more = [" ".join(p.split()) for p in doc[1:]]
            out += [
                f"### {title}",
                "",
                *(m + "\n" for m in more),
                *_table(sub, skip_sections=True),
                "",
            ]
    return "\n".join(out)


def main() -> int:
    sys.stdout.write(render_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
