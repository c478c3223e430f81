"""cli/main — the `postoffice` command: global options, subcommands, one-line errors.

Description:
    postoffice [-c FILE] COMMAND [ARGS...]

    Subcommands come from the modules commands() lists, an explicit
    registry (no registration by import side effect). Each module exposes
    `register(sub)`, which adds its parser and sets `func=run`, where
    `run(args) -> int` is the exit status. `load_config_from_args(args)`
    gives a subcommand the configuration named by the global `-c`.

Exit status:
    0 success; 1 an error (a PostofficeError such as ConfigError, or an
    OSError), printed as ONE line `postoffice: <message>` on stderr; 2 a
    usage error (argparse); 70 (EX_SOFTWARE) an unexpected exception, also
    as one line (set POSTOFFICE_DEBUG=1 to see the traceback); 130 after
    Ctrl-C, quietly. No traceback reaches the user otherwise.

Config:
    `-c/--config FILE` or $POSTOFFICE_CONFIG; see config/load.py.

See also:
    cli/config_cmd.py, cli/user.py, cli/serve.py, cli/queue.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from postoffice import __version__
from postoffice.config.load import load_config
from postoffice.config.schema import Config
from postoffice.errors import PostofficeError

PROG = "postoffice"
EX_SOFTWARE = 70


def commands() -> tuple[ModuleType, ...]:
    """The subcommand modules, in the order `--help` lists them.

    Imported here rather than at the top so that a subcommand module may
    import this one (for load_config_from_args) without an import cycle.
    """
    from postoffice.cli import config_cmd, explain, queue, serve, tls, user

    return (serve, queue, config_cmd, user, explain, tls)


Runner = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="postoffice — a complete Internet mail system.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="configuration file (default: $POSTOFFICE_CONFIG, ./postoffice.toml, "
        "/etc/postoffice/postoffice.toml, else built-in defaults)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in commands():
        module.register(sub)
    return parser


def load_config_from_args(args: argparse.Namespace) -> Config:
    """The configuration named by `-c` (or discovered); raises ConfigError."""
    return load_config(getattr(args, "config", None))


def error_line(exc: BaseException) -> str:
    """The one line an error is shown as (without the `postoffice: ` prefix)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where else exc.strerror
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _exit_code(exc: SystemExit) -> int:
    """SystemExit from a subcommand: an int is the status, a string a message (status 1)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    text = str(code)
    _say(text.removeprefix(f"{PROG}: "))
    return 1


def _quiet_broken_pipe() -> None:
    """`postoffice user list | head`: stop writing, leave no error at interpreter exit."""
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Run `postoffice` with `argv` (default: sys.argv[1:]); returns the exit status."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version, usage errors (2)
            return _exit_code(e)
        func: Runner = args.func
        return func(args)
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:
        return _exit_code(e)
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 1
    except (PostofficeError, OSError) as e:
        _say(error_line(e))
        return 1
    except Exception as e:
        if os.environ.get("POSTOFFICE_DEBUG"):
            raise
        _say(f"internal error: {type(e).__name__}: {error_line(e)} (POSTOFFICE_DEBUG=1 shows more)")
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
