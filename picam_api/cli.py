"""The ``picam-api`` command: serve, check a config, manage users, test a Pi."""
from __future__ import annotations

import argparse
import getpass
import logging
import os
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import datadir
from .accounts import ROLES, Accounts
from .config import build_config, load_config
from .db import Database
from .errors import PicamError


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except PicamError as exc:
        print(f"picam-api: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="TOML config (default: $PICAM_CONFIG, then /etc/picam-api/config.toml)")
    parser = argparse.ArgumentParser(prog="picam-api", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the server in the foreground")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.set_defaults(run=_serve)

    config = commands.add_parser("config", help="work with the config file")
    config_commands = config.add_subparsers(required=True, metavar="ACTION")
    check = config_commands.add_parser("check", parents=[common],
                                       help="validate a config without starting anything")
    check.add_argument("file", nargs="?", help="the file (default: as for serve)")
    check.set_defaults(run=_config_check)

    user = commands.add_parser("user", help="manage users (works while the server runs)")
    user_commands = user.add_subparsers(required=True, metavar="ACTION")
    add = user_commands.add_parser("add", parents=[common], help="add a user")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="viewer")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input")
    add.set_defaults(run=_user_add)
    listing = user_commands.add_parser("list", parents=[common], help="list users")
    listing.set_defaults(run=_user_list)
    remove = user_commands.add_parser("remove", parents=[common], help="remove a user")
    remove.add_argument("name")
    remove.set_defaults(run=_user_remove)
    passwd = user_commands.add_parser("passwd", parents=[common],
                                      help="change a password (revokes the user's tokens)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input")
    passwd.set_defaults(run=_user_passwd)

    selftest = commands.add_parser("selftest", parents=[common],
                                   help="check the camera, memory, devices, GPIO, disk and "
                                        "service on this Pi (exit status 1 on any FAIL)")
    selftest.add_argument("--json", action="store_true", help="print the results as JSON")
    selftest.add_argument("--meminfo", metavar="FILE", default="/proc/meminfo",
                          help="read the memory figures from FILE (default /proc/meminfo)")
    selftest.set_defaults(run=_selftest)
    return parser


def _serve(args) -> int:
    from .server import serve, setup_logging
    config = load_config(args.config)
    flags = {key: value for key, value in (("host", args.host), ("port", args.port)) if value}
    if flags:
        config = build_config([("config", config), ("command line", {"server": flags})],
                              os.environ)
    setup_logging(config["log"]["level"])
    # Checked here, before the server starts, so a bad or busy data dir or a
    # damaged database is one line, not a traceback.
    data_dir = _data_dir(config)
    lock = datadir.lock(data_dir)  # held, by this process and its forks, until exit
    db = Database(data_dir / "picam.db")
    try:
        db.migrate()
    finally:
        db.close()
    try:
        return serve(config)
    finally:
        os.close(lock)


def _config_check(args) -> int:
    config = load_config(args.file or args.config)
    print(f"config ok: backend {config['camera']['backend']}, "
          f"listening on {config['server']['host']}:{config['server']['port']}, "
          f"data in {config['storage']['data_dir']}")
    return 0


def _data_dir(config: dict) -> Path:
    """The data dir, made if missing; a ConfigError if it cannot be used or is not ours."""
    return datadir.prepare(Path(config["storage"]["data_dir"]))


@contextmanager
def _accounts(args) -> Iterator[Accounts]:
    config = load_config(args.config)
    db = Database(_data_dir(config) / "picam.db")
    try:
        db.migrate()
        yield Accounts(db, config["auth"]["token_ttl_s"])
    except sqlite3.Error as exc:
        # Say which file, in one line: a read-only or damaged database.
        raise PicamError(f"{db.path}: {exc}") from None
    finally:
        db.close()


def _read_password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise PicamError("the passwords differ; nothing changed")
    return first


def _user_add(args) -> int:
    with _accounts(args) as accounts:
        accounts.add_user(args.name, _read_password(args), args.role)
    print(f"added {args.name} ({args.role})")
    return 0


def _user_list(args) -> int:
    with _accounts(args) as accounts:
        users = accounts.list_users()
    for user in users:
        print(f"{user['name']}\t{user['role']}\t{user['created_at']}")
    return 0


def _user_remove(args) -> int:
    with _accounts(args) as accounts:
        accounts.remove_user(args.name)
    print(f"removed {args.name}")
    return 0


def _user_passwd(args) -> int:
    with _accounts(args) as accounts:
        accounts.set_password(args.name, _read_password(args))
    print(f"password changed for {args.name}; their tokens are revoked")
    return 0


def _selftest(args) -> int:
    from . import selftest

    # One screen: every problem is a line of the report, not a log record too.
    logging.basicConfig(level=logging.CRITICAL)
    report = selftest.run(load_config(args.config), meminfo=args.meminfo)
    print(report.json() if args.json else report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
