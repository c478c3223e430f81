"""Cost of Router.resolve() with 100,000-entry aliases and virtusertable maps.

Usage: python bench/routing_bench.py [--entries N] [--rounds N]
                                    [--maps compiled|text|memory]

Prints microseconds per resolve() for a plain virtual user, a virtusertable
hit, a user+detail address, an alias list and a remote domain. `--maps
compiled` (the default) writes the maps as sendmail text files into a
temporary directory, compiles them as `makemap`/`newaliases` do
(maps/compiled.py) and opens them through maps.registry.open_map, which picks
the compiled file; `text` skips the compiling; `memory` uses MemoryMap (the
only choice before maps/ existed). Issue 3 asks for well under a millisecond;
the result belongs in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time
from typing import Any

from postoffice.config.schema import Config, DeliveryConfig, MapsConfig
from postoffice.maps.interfaces import Map, MemoryMap
from postoffice.routing.aliases import MapTools
from postoffice.routing.resolve import Router

DOMAIN = "example.com"


def build(entries: int) -> tuple[dict[str, str], dict[str, str], set[str]]:
    n = entries
    aliases = {f"list{i}": f"u{i}, u{(i + 1) % n}, u{(i + 2) % n}" for i in range(n)}
    virtusertable = {f"v{i}@virt{i % 1000}.example": f"u{i}@{DOMAIN}" for i in range(entries)}
    users = {f"u{i}@{DOMAIN}" for i in range(entries)}
    return aliases, virtusertable, users


def split(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def file_maps(
    aliases: dict[str, str], virtusertable: dict[str, str], tmp: str, *, compiled: bool
) -> dict[str, Map]:
    registry: Any = importlib.import_module("postoffice.maps.registry")
    out: dict[str, Map] = {}
    for name, entries, sep in (("aliases", aliases, ": "), ("virtusertable", virtusertable, "\t")):
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.writelines(f"{k}{sep}{v}\n" for k, v in entries.items())
        os.chmod(path, 0o644)
        if compiled:
            maps_compiled: Any = importlib.import_module("postoffice.maps.compiled")
            maps_compiled.compile_map(path, aliases=name == "aliases")
        out[name] = registry.open_map(name, path, aliases=name == "aliases", safe_files=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=20_000)
    ap.add_argument("--maps", choices=("compiled", "text", "memory"), default="compiled")
    args = ap.parse_args()
    kind = args.maps
    aliases, virtusertable, users = build(args.entries)
    local = (*(f"virt{i}.example" for i in range(1000)), DOMAIN)
    cfg = Config(
        hostname=f"mail.{DOMAIN}",
        local_domains=local,
        maps=MapsConfig(safe_files=False),
        delivery=DeliveryConfig(mailbox="maildir:/srv/mail/{domain}/{user}"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        if kind != "memory":
            maps = file_maps(aliases, virtusertable, tmp, compiled=kind == "compiled")
        else:
            maps = {
                "aliases": MemoryMap("aliases", aliases),
                "virtusertable": MemoryMap("virtusertable", virtusertable),
            }
        tools = None
        try:
            importlib.import_module("postoffice.maps.aliases")
        except ImportError:
            tools = MapTools(parse_targets=split, read_include=lambda *a, **k: ([], []),
                             check_file=lambda *a, **k: None)  # fmt: skip
        router = Router.from_config(
            cfg, user_exists=users.__contains__, maps=maps, getpwnam=_no_accounts, tools=tools
        )
        shown = {n: getattr(m, "in_use", type(m).__name__) for n, m in maps.items()}
        print(f"maps: {kind} {shown}, {args.entries} entries each, {args.rounds} rounds")
        cases = {
            "virtual user": f"u54321@{DOMAIN}",
            "virtusertable hit": "v54321@virt321.example",
            "user+detail": f"u54321+news@{DOMAIN}",
            "alias list (3)": f"list54321@{DOMAIN}",
            "remote domain": "someone@elsewhere.example.net",
        }
        for label, address in cases.items():
            res = router.resolve(address)
            assert res.refusal is None, (address, res)
            best = min(_time(router, address, args.rounds) for _ in range(5))
            print(f"  {label:<20} {best * 1e6:7.1f} µs   ({len(res.targets)} targets)")


def _time(router: Router, address: str, rounds: int) -> float:
    resolve = router.resolve
    t0 = time.perf_counter()
    for _ in range(rounds):
        resolve(address)
    return (time.perf_counter() - t0) / rounds


def _no_accounts(name: str) -> Any:
    raise KeyError(name)


if __name__ == "__main__":
    main()
