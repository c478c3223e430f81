"""`postoffice serve`: run the mail server in the foreground.

Description:
    Loads the configuration (`-c FILE`, $POSTOFFICE_CONFIG, ./postoffice.toml,
    /etc/postoffice/postoffice.toml, else the embedded defaults), sets up
    the mail log (stderr and `[log] file`), and runs until SIGTERM or
    SIGINT. SIGHUP reloads. Runs in the foreground so that systemd or any
    supervisor (daemontools' role) restarts it; a clean stop exits 0.

    `--listen HOST:PORT` (repeatable) overrides `[smtp] listen`, e.g.
    `--listen 127.0.0.1:0` for an ephemeral port; the bound addresses are
    logged as "listening for SMTP on HOST:PORT".

See also:
    app.py, config/load.py, observe/log.py.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

from postoffice.cli.main import load_config_from_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the mail server in the foreground",
        description="Run the SMTP server, the queue manager and local delivery "
        "in the foreground until SIGTERM/SIGINT; SIGHUP reloads the configuration.",
    )
    p.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT",
        help="listen here instead of [smtp] listen (repeatable; port 0 = ephemeral)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from postoffice.app import App, install_event_loop_policy
    from postoffice.config.load import parse_listen_address
    from postoffice.observe.log import setup_logging

    config = load_config_from_args(args)
    if args.listen:
        for spec in args.listen:
            parse_listen_address(spec)  # ValueError → one clear line
        smtp = dataclasses.replace(config.smtp, listen=tuple(args.listen))
        config = dataclasses.replace(config, smtp=smtp)
    setup_logging(
        file=config.log.file or None,
        level=config.log.level,
        program="postoffice",
        hostname=config.hostname,
    )
    install_event_loop_policy()

    async def main() -> None:
        app = App(config, config_path=config.source or None)
        await app.serve()

    asyncio.run(main())
    return 0
