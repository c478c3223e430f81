"""cli/user — `postoffice user add|del|passwd|list`: manage the users file.

Description:
    postoffice [-c FILE] user add ADDRESS [--password-stdin] [--scheme SCHEME]
        Add a user with a password. With --password-stdin, or when stdin
        is not a terminal, the password is the first line of stdin;
        otherwise it is asked for twice without echo. Empty passwords are
        refused. A domain that is not in local_domains only gives a warning
        (the admin may add the domain afterwards).
    postoffice [-c FILE] user del ADDRESS
        Remove a user. Their mailbox stays where it is.
    postoffice [-c FILE] user passwd ADDRESS [--password-stdin] [--scheme SCHEME]
        Set a new password, keeping every other field of the user's line.
    postoffice [-c FILE] user list
        Print every user, one per line, in file order.

    The file is users_file (default `{config_dir}/users`), a
    Dovecot-compatible passwd-file rewritten atomically with mode 0600; a
    missing folder is created with mode 0700. A running server sees the
    change without a restart. Addresses are stored lower-cased.

Security:
    Passwords never appear on the command line (where `ps` would show
    them): a terminal prompt or stdin only. The default scheme is
    ARGON2ID.

Config:
    users_file, local_domains.

See also:
    auth/passwd_file.py, auth/schemes.py.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from postoffice.auth import schemes
from postoffice.auth.passwd_file import UserDB, UserError, check_new_address
from postoffice.cli.main import load_config_from_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "user",
        help="add, delete, list users and set their passwords",
        description="Manage the users file (a Dovecot-compatible passwd-file).",
    )
    actions = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    def password_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of stdin instead of prompting",
        )
        parser.add_argument(
            "--scheme",
            default=schemes.DEFAULT_SCHEME,
            type=str.upper,
            choices=[s for s in schemes.HASH_SCHEMES if s != "PLAIN"],
            help=f"password scheme (default: {schemes.DEFAULT_SCHEME})",
        )

    add = actions.add_parser("add", help="add a user", description="Add a user with a password.")
    add.add_argument("address", metavar="ADDRESS", help="user@domain")
    password_options(add)
    add.set_defaults(func=run_add)

    delete = actions.add_parser(
        "del", help="delete a user", description="Delete a user (their mail stays)."
    )
    delete.add_argument("address", metavar="ADDRESS", help="user@domain")
    delete.set_defaults(func=run_del)

    passwd = actions.add_parser(
        "passwd", help="set a user's password", description="Set a user's password."
    )
    passwd.add_argument("address", metavar="ADDRESS", help="user@domain")
    password_options(passwd)
    passwd.set_defaults(func=run_passwd)

    listing = actions.add_parser("list", help="list users", description="List every user.")
    listing.set_defaults(func=run_list)


def read_password(
    *, from_stdin: bool, stdin: TextIO | None = None, prompt: str = "Password: "
) -> str:
    """The new password: one line of stdin, or asked twice on the terminal.

    Raises UserError for an empty password or two different answers.
    """
    stream = stdin if stdin is not None else sys.stdin
    if from_stdin or not stream.isatty():
        password = stream.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = getpass.getpass(prompt)
        if password and getpass.getpass("Retype password: ") != password:
            raise UserError("the passwords do not match")
    if not password:
        raise UserError("empty passwords are not allowed")
    return password


def run_add(args: argparse.Namespace) -> int:
    cfg = load_config_from_args(args)
    db = UserDB.load(cfg.users_file)
    name = check_new_address(args.address)  # complain before asking for a password
    if db.exists(name):
        raise UserError(f"user {name} already exists")
    password = read_password(from_stdin=args.password_stdin)
    domain = name.rpartition("@")[2]
    if domain not in cfg.local_domains:
        print(
            f"postoffice: warning: {domain} is not in local_domains; mail for {name} "
            "is not delivered here until it is",
            file=sys.stderr,
        )
    user = db.add_user(name, password, scheme=args.scheme)
    print(f"added {user.address} to {db.path}")
    return 0


def run_del(args: argparse.Namespace) -> int:
    cfg = load_config_from_args(args)
    user = UserDB.load(cfg.users_file).delete_user(args.address)
    print(f"deleted {user.address} from {cfg.users_file}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    cfg = load_config_from_args(args)
    db = UserDB.load(cfg.users_file)
    if not db.exists(args.address):
        raise UserError(f"no such user: {args.address}")
    password = read_password(from_stdin=args.password_stdin, prompt="New password: ")
    user = db.set_password(args.address, password, scheme=args.scheme)
    print(f"password of {user.address} changed")
    return 0


def run_list(args: argparse.Namespace) -> int:
    cfg = load_config_from_args(args)
    for user in UserDB.load(cfg.users_file).users():
        print(user.address)
    return 0
