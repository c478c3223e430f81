"""`newaliases` and `praliases`: compile the aliases file, print the aliases in effect.

Description:
    newaliases [-C configfile] [-v]
        Compiles the aliases file the configuration names (`[maps]
        aliases`) into ALIASES.db (maps/compiled.py, written atomically),
        which a running server picks up without a restart. Lines that
        cannot be used are printed on stderr as `file:line: message` and
        left out; then sendmail's summary line on stdout:

            /etc/postoffice/aliases: 12 aliases, longest 34 bytes, 345 bytes total

        (`longest`: the longest right-hand side; `total`: names plus
        right-hand sides, in bytes). -v is accepted for compatibility.

    praliases [-C configfile] [-f file] [key ...]
        Prints the aliases in effect — from ALIASES.db when it is current,
        else from the text file, exactly as the server would read them — as
        `name:right-hand side` lines in file order. With keys, prints only
        those (`key: No such key` for one that is not there). -f reads
        another aliases file instead of the configured one. Problems of the
        map (unsafe file, stale .db, malformed lines) go to stderr.

    -C names postoffice's configuration file (sendmail's -C names
    sendmail.cf); without it the usual search applies (config/load.py).

Exit status (sysexits.h):
    0 done (newaliases: also when some lines were skipped, as sendmail);
    64 usage; 66 the aliases file is missing or unreadable; 73 the .db
    cannot be written; 77 the aliases file is unsafe ([maps] safe_files);
    78 configuration error or no aliases file configured.

Config:
    [maps] aliases, [maps] safe_files.

See also:
    sendmail newaliases(1), praliases(8), aliases(5); maps/aliases.py,
    maps/compiled.py, maps/registry.py, cli/makemap.py.
"""

from __future__ import annotations

import getopt
import sys
from collections.abc import Callable, Sequence

from postoffice.config.load import load_config
from postoffice.config.schema import Config
from postoffice.errors import ConfigError
from postoffice.maps.compiled import CompileError, compile_map
from postoffice.maps.registry import open_map

EX_OK, EX_USAGE, EX_NOINPUT, EX_CANTCREAT, EX_NOPERM, EX_CONFIG = 0, 64, 66, 73, 77, 78


class _Fail(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _config(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        raise _Fail(str(e), EX_CONFIG) from None


def _aliases_path(cfg: Config) -> str:
    if not cfg.maps.aliases:
        raise _Fail("no aliases file is configured ([maps] aliases is empty)", EX_CONFIG)
    return cfg.maps.aliases


def _getopt(prog: str, argv: Sequence[str], spec: str) -> tuple[dict[str, str], list[str]]:
    try:
        flags, rest = getopt.getopt(list(argv), spec)
    except getopt.GetoptError as e:
        raise _Fail(f"{e.msg}; see {prog} --help", EX_USAGE) from None
    return dict(flags), rest


def _run(prog: str, usage: str, body: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    if "--help" in argv or "-h" in argv:
        print(usage)
        return EX_OK
    try:
        return body(argv)
    except _Fail as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130


NEWALIASES_USAGE = "usage: newaliases [-C configfile] [-v]"
PRALIASES_USAGE = "usage: praliases [-C configfile] [-f file] [key ...]"


def newaliases(argv: Sequence[str]) -> int:
    """Compile the configured aliases file; raises _Fail."""
    flags, rest = _getopt("newaliases", argv, "C:v")
    if rest:
        raise _Fail(f"unexpected argument {rest[0]!r}; {NEWALIASES_USAGE}", EX_USAGE)
    cfg = _config(flags.get("-C"))
    path = _aliases_path(cfg)
    try:
        result = compile_map(path, aliases=True, safe_files=cfg.maps.safe_files)
    except CompileError as e:
        raise _Fail(str(e), EX_NOPERM if e.refused else EX_NOINPUT) from None
    except OSError as e:
        where = e.filename or f"{path}.db"
        raise _Fail(f"{where}: cannot write: {e.strerror or e}", EX_CANTCREAT) from None
    for problem in result.problems:
        print(problem, file=sys.stderr)
    print(
        f"{path}: {result.entries} aliases, longest {result.longest} bytes, "
        f"{result.total_bytes} bytes total"
    )
    return EX_OK


def praliases(argv: Sequence[str]) -> int:
    """Print the aliases in effect; raises _Fail."""
    flags, keys = _getopt("praliases", argv, "C:f:")
    cfg = _config(flags.get("-C"))
    path = flags.get("-f") or _aliases_path(cfg)
    aliases = open_map("aliases", path, aliases=True, safe_files=cfg.maps.safe_files, log=False)
    try:
        for problem in aliases.problems():
            print(problem, file=sys.stderr)
        if keys:
            for key in keys:
                entry = aliases.lookup(key)
                print(f"{entry.key}:{entry.value}" if entry else f"{key}: No such key")
        else:
            for entry in aliases.entries():
                print(f"{entry.key}:{entry.value}")
    finally:
        aliases.close()
    return EX_OK


def main(argv: Sequence[str] | None = None) -> int:
    """`newaliases`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    return _run("newaliases", NEWALIASES_USAGE, newaliases, argv)


def praliases_main(argv: Sequence[str] | None = None) -> int:
    """`praliases`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    return _run("praliases", PRALIASES_USAGE, praliases, argv)


if __name__ == "__main__":
    sys.exit(main())
