"""`postoffice queue`: run the mail queuer in the foreground (placeholder until app.py lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("queue", help="run the mail queuer in the foreground")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("postoffice: queue is not wired yet")
