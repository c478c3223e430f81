"""`makemap`: compile a sendmail text map from standard input into NAME.db.

Description:
    makemap [-C file] [-N] [-c cachesize] [-D commentchar] [-e] [-f] [-l]
            [-o] [-r] [-s] [-t delim] [-u] [-v] TYPE NAME < input

    Reads `key value` lines (sendmail's makemap(8) format, see
    maps/text.py) from standard input and writes the compiled map NAME.db
    (maps/compiled.py: SQLite, written atomically) that postoffice uses
    instead of the text file NAME while NAME.db is not older. The usual
    call is `makemap hash /etc/postoffice/virtusertable < /etc/postoffice/virtusertable`.

    TYPE: `hash`, `btree` and `implicit` all write the one compiled form
    postoffice has; other sendmail types (dbm, cdb) are refused.

    Flags (sendmail's):
      -e        allow an empty value (a key alone on a line)
      -f        do not fold keys to lower case (lookups then match case)
      -o        append: keep the entries already in NAME.db, add the input's
      -r        replace: a repeated key takes the later value silently
                (without -r the first wins and the repeat is reported)
      -s        skip the safety check of the output directory
      -t delim  the key ends at `delim` instead of at white space
      -D char   `char` starts a comment instead of `#`
      -u        dump NAME.db to standard output, `key<TAB>value` (or -t delim)
      -v        print each entry as it is stored
      -l        list the supported types
      -N, -c cachesize, -C file   accepted for compatibility; no effect (the
                SQLite form needs no NUL terminator or cache size, and
                TrustedUser is not used)
      -d        (duplicate keys) is refused: a key has one value here.

    Problems in the input are printed one per line as
    `makemap: NAME:line: message` and skipped; the rest is written.

Exit status (sysexits.h):
    0 written; 64 usage (unknown flag or TYPE); 65 written, but some input
    lines were skipped; 66 -u and NAME.db cannot be read; 73 NAME.db cannot
    be written (or its directory is unsafe).

Security:
    The new file gets NAME's permission bits (less group/other write) and,
    when run as root, NAME's owner; without NAME, mode 0644. Without -s the
    directory must pass the safe-file checks (maps/safefile.py).

See also:
    sendmail makemap(8); maps/text.py, maps/compiled.py; cli/newaliases.py.
"""

from __future__ import annotations

import getopt
import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from postoffice.maps.compiled import CompiledMap, db_path_for, write_compiled
from postoffice.maps.interfaces import MapEntry
from postoffice.maps.safefile import check_dir
from postoffice.maps.text import parse_text_map

PROG = "makemap"
EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_CANTCREAT = 0, 64, 65, 66, 73
TYPES = ("hash", "btree", "implicit")
USAGE = (
    "usage: makemap [-C file] [-N] [-c cachesize] [-D commentchar] [-e] [-f] [-l] [-o] [-r] "
    "[-s] [-t delim] [-u] [-v] TYPE NAME < input"
)


class UsageError(Exception):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    map_type: str = ""
    name: str = ""
    allow_empty: bool = False
    fold_case: bool = True
    append: bool = False
    replace: bool = False
    skip_safety: bool = False
    delimiter: str | None = None
    comment: str = "#"
    dump: bool = False
    verbose: bool = False
    list_types: bool = False


def parse_args(argv: Sequence[str]) -> Options:
    """sendmail's flags, getopt style (`-rv`, `-t:`); raises UsageError."""
    try:
        flags, rest = getopt.getopt(list(argv), "C:Nc:dD:eflorst:uv")
    except getopt.GetoptError as e:
        raise UsageError(f"{e.msg}; {USAGE}") from None
    seen = {flag for flag, _ in flags}
    values = dict(flags)
    if "-l" in seen:
        return Options(list_types=True)
    if "-d" in seen:
        raise UsageError("-d (duplicate keys) is not supported: a key has one value")
    for flag in ("-t", "-D"):
        if flag in values and len(values[flag]) != 1:
            raise UsageError(f"{flag} takes one character, not {values[flag]!r}")
    if len(rest) != 2:
        raise UsageError(USAGE)
    map_type, name = rest
    if map_type.lower() not in TYPES:
        raise UsageError(f"unknown map type {map_type} (supported: {', '.join(TYPES)})")
    return Options(
        map_type=map_type.lower(),
        name=name,
        allow_empty="-e" in seen,
        fold_case="-f" not in seen,
        append="-o" in seen,
        replace="-r" in seen,
        skip_safety="-s" in seen,
        delimiter=values.get("-t"),
        comment=values.get("-D", "#"),
        dump="-u" in seen,
        verbose="-v" in seen,
    )


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def dump(db_path: str, delimiter: str | None) -> int:
    """-u: print every entry of the compiled map."""
    if not os.path.exists(db_path):
        _say(f"cannot open {db_path}: No such file or directory")
        return EX_NOINPUT
    compiled = CompiledMap(db_path, db_path, safe_files=False, log=False)
    try:
        if compiled.problems() and compiled.kind == "":
            _say(compiled.problems()[0])
            return EX_NOINPUT
        sep = delimiter or "\t"
        for entry in compiled.entries():
            sys.stdout.write(f"{entry.key}{sep}{entry.value}\n")
    finally:
        compiled.close()
    return EX_OK


def _existing(db_path: str) -> dict[str, MapEntry]:
    """-o: the entries already in NAME.db (none when it does not exist)."""
    if not os.path.exists(db_path):
        return {}
    compiled = CompiledMap(db_path, db_path, safe_files=False, log=False)
    try:
        if compiled.kind == "" and compiled.problems():
            raise OSError(f"{db_path}: {compiled.problems()[0]}")
        return {e.key: e for e in compiled.entries()}
    finally:
        compiled.close()


def build(opts: Options, data: bytes) -> int:
    """Compile `data` (the standard input) into NAME.db."""
    db_path = db_path_for(opts.name)
    source = os.path.abspath(opts.name.removesuffix(".db"))
    directory = os.path.dirname(os.path.abspath(db_path))
    if not opts.skip_safety:
        reason = check_dir(directory)
        if reason:
            _say(f"{db_path}: unsafe: {reason} (-s skips this check)")
            return EX_CANTCREAT
    parsed = parse_text_map(
        data,
        file=source,
        fold_case=opts.fold_case,
        allow_empty=opts.allow_empty,
        replace=opts.replace,
        comment=opts.comment,
        delimiter=opts.delimiter,
    )
    problems = list(parsed.problems)
    entries: dict[str, MapEntry] = _existing(db_path) if opts.append else {}
    for key, entry in parsed.entries.items():
        if key in entries and not opts.replace:
            problems.append(
                f"{source}:{entry.line}: {key}: duplicate key (already in {db_path}); "
                "not replaced (-r replaces)"
            )
            continue
        entries[key] = entry
        if opts.verbose:
            print(f"key=`{entry.key}', val=`{entry.value}'")
    mode, owner = 0o644, None
    try:
        st = os.stat(source)
        mode = stat.S_IMODE(st.st_mode) & 0o644
        owner = (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
    except OSError:
        pass
    try:
        write_compiled(
            db_path,
            entries.values(),
            source=source,
            kind="text",
            fold_case=opts.fold_case,
            problems=problems,
            mode=mode,
            owner=owner,
        )
    except OSError as e:
        _say(f"{db_path}: cannot write: {e.strerror or e}")
        return EX_CANTCREAT
    for problem in problems:
        _say(problem)
    return EX_DATAERR if problems else EX_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run makemap with `argv` (default: sys.argv[1:]); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
    except UsageError as e:
        _say(str(e))
        return EX_USAGE
    if opts.list_types:
        print("\n".join(TYPES))
        return EX_OK
    try:
        if opts.dump:
            return dump(db_path_for(opts.name), opts.delimiter)
        return build(opts, sys.stdin.buffer.read())
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        _say(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
        return EX_CANTCREAT


if __name__ == "__main__":
    sys.exit(main())
