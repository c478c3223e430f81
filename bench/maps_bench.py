"""Lookup time in 100,000-entry compiled maps (aliases and virtusertable).

Usage: python bench/maps_bench.py [--entries N] [--lookups N] [--dir DIR]

Builds an aliases file and a virtusertable of N entries each in a
temporary directory, compiles them as newaliases / makemap do (timed),
opens them through maps.registry.open_map as the server does, and prints
the median, 99th percentile and worst time of single lookups (hits and
misses, keys in random order), of the probes one recipient costs
(virtusertable `user@domain`, `@domain`, then aliases), of
reload_if_changed() (the per-second check), and for comparison of the text
map. A script, not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from postoffice.maps.compiled import compile_map
from postoffice.maps.registry import ReloadingMap, open_map


def write_files(directory: Path, n: int) -> tuple[Path, Path]:
    aliases = directory / "aliases"
    with aliases.open("w") as f:
        f.write("# generated\npostmaster: root\n")
        for i in range(n):
            f.write(f"user{i}: person{i}@example.net, archive{i % 97}\n")
    vt = directory / "virtusertable"
    with vt.open("w") as f:
        for i in range(n):
            f.write(f"user{i}@domain{i % 500}.example  user{i}\n")
        for d in range(500):
            f.write(f"@catchall{d}.example  %1@example.net\n")
    return aliases, vt


def measure(fn: Callable[[], object], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1000.0)
    return times


def report(label: str, times: list[float]) -> None:
    times = sorted(times)
    p99 = times[int(len(times) * 0.99) - 1]
    print(
        f"{label:<44} median {statistics.median(times):7.2f} µs   "
        f"p99 {p99:7.2f} µs   max {times[-1]:8.2f} µs   (n={len(times)})"
    )


def bench(directory: Path, n: int, rounds: int) -> None:
    aliases_path, vt_path = write_files(directory, n)
    for path, is_aliases in ((aliases_path, True), (vt_path, False)):
        t0 = time.perf_counter()
        r = compile_map(str(path), aliases=is_aliases)
        print(f"compile {path.name:<14} {r.entries} entries in {time.perf_counter() - t0:.2f} s")
    aliases = open_map("aliases", str(aliases_path), aliases=True)
    vt = open_map("virtusertable", str(vt_path))
    assert isinstance(aliases, ReloadingMap) and aliases.compiled
    assert isinstance(vt, ReloadingMap) and vt.compiled
    rng = random.Random(25)
    keys = [f"User{rng.randrange(n)}" for _ in range(rounds)]
    misses = [f"nobody{i}" for i in range(rounds)]
    vt_keys = [f"user{(i := rng.randrange(n))}@domain{i % 500}.example" for _ in range(rounds)]

    it = iter(keys)
    report("aliases.db lookup (hit)", measure(lambda: aliases.lookup(next(it)), rounds))
    it = iter(misses)
    report("aliases.db lookup (miss)", measure(lambda: aliases.lookup(next(it)), rounds))
    it = iter(vt_keys)
    report("virtusertable.db lookup (hit)", measure(lambda: vt.lookup(next(it)), rounds))

    def one_recipient(address: str) -> object:
        local, _, domain = address.partition("@")
        entry = vt.lookup(address) or vt.lookup("@" + domain)
        target = entry.value if entry else local
        return aliases.lookup(target.partition("@")[0])

    it = iter(vt_keys)
    report(
        "one recipient (vt user@dom, @dom, aliases)",
        measure(lambda: one_recipient(next(it)), rounds),
    )
    report("reload_if_changed() (unchanged)", measure(aliases.reload_if_changed, rounds))
    aliases.close()
    vt.close()

    t0 = time.perf_counter()
    (directory / "aliases.db").unlink()
    text_map = open_map("aliases", str(aliases_path), aliases=True)
    print(f"read the text aliases file                   {time.perf_counter() - t0:.2f} s")
    it = iter(keys)
    report("aliases text map lookup (hit)", measure(lambda: text_map.lookup(next(it)), rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--dir", help="build the maps here (default: a temporary directory)")
    args = parser.parse_args()
    if args.dir:
        bench(Path(args.dir), args.entries, args.lookups)
    else:
        with tempfile.TemporaryDirectory() as d:
            bench(Path(d), args.entries, args.lookups)


if __name__ == "__main__":
    main()
