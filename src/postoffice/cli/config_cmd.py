"""cli/config_cmd — `postoffice config check|show`: validate and print the configuration.

Description:
    postoffice [-c FILE] config check
        Loads the configuration and checks every map file it names
        (local-host-names, the users file and the [maps] files: malformed
        lines, unsafe files, stale .db files). Prints `config ok: SOURCE`
        and exits 0, or prints one `file:line: message` line per problem
        on stderr and exits 1.

    postoffice [-c FILE] config show
        Prints the effective configuration, every key with its resolved
        value (absolute paths, the hostname, local_domains with the
        local-host-names file merged in), as TOML that config load reads.

Config:
    Every key (see docs/config.md).

See also:
    config/load.py (check_config), auth/passwd_file.py (check_users_file).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from postoffice.auth.passwd_file import check_users_file
from postoffice.cli.main import load_config_from_args
from postoffice.config.docs import format_toml_value
from postoffice.config.load import MapCheck, check_config
from postoffice.config.schema import Config
from postoffice.maps.registry import check_maps

MAP_CHECKERS: Mapping[str, MapCheck] = {"users": check_users_file, "maps": check_maps}
"""The maps `config check` validates beyond those config/load.py knows itself."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "config",
        help="check or show the configuration",
        description="Check or show the configuration.",
    )
    actions = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate the configuration and every map it names",
        description="Validate the configuration file and every map file it names.",
    )
    check.set_defaults(func=run_check)
    show = actions.add_parser(
        "show",
        help="print the effective configuration",
        description="Print every key with its resolved value, as TOML.",
    )
    show.set_defaults(func=run_show)


def run_check(args: argparse.Namespace) -> int:
    cfg = load_config_from_args(args)
    problems = check_config(cfg, MAP_CHECKERS)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"config ok: {cfg.source or '(built-in defaults)'}")
    return 0


def render_config(cfg: Config) -> str:
    """The effective configuration as TOML: top-level keys, then one table per section."""
    top: list[str] = []
    tables: list[str] = []
    for field in dataclasses.fields(cfg):
        if field.metadata.get("internal"):
            continue
        value: Any = getattr(cfg, field.name)
        if dataclasses.is_dataclass(value):
            tables += _render_table(field.name, value)
        else:
            top.append(f"{field.name} = {format_toml_value(value)}")
    header = f"# source: {cfg.source or '(built-in defaults)'}"
    return "\n".join([header, *top, *tables]) + "\n"


def _render_table(name: str, section: Any) -> list[str]:
    """One [table] and the tables inside it ([smtp.policy]); unset keys as comments."""
    lines, inner = ["", f"[{name}]"], []
    for sub in dataclasses.fields(section):
        value = getattr(section, sub.name)
        if dataclasses.is_dataclass(value):
            inner += _render_table(f"{name}.{sub.name}", value)
        elif value is None:  # an optional key left out (TOML has no null)
            lines.append(f"# {sub.name} = (unset)")
        else:
            lines.append(f"{sub.name} = {format_toml_value(value)}")
    return lines + inner


def run_show(args: argparse.Namespace) -> int:
    sys.stdout.write(render_config(load_config_from_args(args)))
    return 0
