"""The picam-api command: serve, check a config, manage users."""
from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import __version__, datadir
from .accounts import INITIAL_PASSWORD_FILE, ROLES, Accounts, drop_initial_password
from .config import ENV_KEYS, SYSTEM_CONFIG, build_config, load_config
from .db import Database
from .errors import NotFound, PicamError

DB_NAME = "picam.db"


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
                        help=f"TOML config (default: $PICAM_CONFIG, then {SYSTEM_CONFIG})")
    parser = argparse.ArgumentParser(prog="picam-api", description=__doc__)
    parser.add_argument("--version", action="version", version=f"picam-api {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the server in the foreground",
                                description="Run the server in the foreground.",
                                epilog=_serve_epilog(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    with _database(data_dir):
        pass
    try:
        return serve(config)
    finally:
        os.close(lock)


def _serve_epilog() -> str:
    env = "\n".join(f"  {name:<22}{key}" for name, key in ENV_KEYS.items())
    return f"""\
config: --config FILE, else $PICAM_CONFIG, else {SYSTEM_CONFIG} if it exists,
  else the built-in defaults; environment variables override the file:
{env}
  PICAM_ADMIN_PASSWORD  the password of 'admin' on the first start (no users yet)
  GPIOZERO_PIN_FACTORY  gpiozero's pin factory (gpio.pin_factory)

data dir (photos, users, the database): $PICAM_DATA_DIR, else storage.data_dir,
  else systemd's $STATE_DIRECTORY, else $XDG_DATA_HOME/picam-api
  (~/.local/share/picam-api). The user commands act on the same one, so run
  them with the same config and environment as the server (scripts/picam-api
  does so for scripts/serve).
  In this environment: {_data_dir_here()}"""


def _data_dir_here() -> str:
    try:
        return load_config()["storage"]["data_dir"]
    except PicamError as exc:
        return f"unknown, the config does not load ({exc.detail})"


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
def _accounts(args, create: bool = True) -> Iterator[Accounts | None]:
    """The accounts of the server's data dir (``args.data_dir`` once this returns).

    Without ``create``, a data dir with no database yet yields None and is left
    as it is (nothing is made).
    """
    config = load_config(args.config)
    path = args.data_dir = Path(config["storage"]["data_dir"])
    datadir.check_path(path)
    if not create and not (path / DB_NAME).exists():
        yield None
        return
    with _database(_data_dir(config)) as db:
        yield Accounts(db, config["auth"]["token_ttl_s"])


@contextmanager
def _database(data_dir: Path) -> Iterator[Database]:
    """The data dir's database, migrated; any SQLite error is one line naming the file."""
    db = Database(data_dir / DB_NAME)
    try:
        db.migrate()
        yield db
    except sqlite3.Error as exc:  # a read-only file system, say
        raise PicamError(f"{db.path}: {exc}") from None
    finally:
        db.close()


def _read_password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise PicamError("no terminal to ask for the password; pipe it in with "
                         "--password-stdin (nothing changed)")
    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Again: ")
    except EOFError:
        raise PicamError("no password given; nothing changed") from None
    if again != first:
        raise PicamError("the passwords differ; nothing changed")
    return first


def _user_add(args) -> int:
    password = _read_password(args)  # before anything is made
    with _accounts(args) as accounts:
        accounts.add_user(args.name, password, args.role)
    print(f"added {args.name} ({args.role}) in data dir {args.data_dir}")
    return 0


def _user_list(args) -> int:
    with _accounts(args, create=False) as accounts:
        users = accounts.list_users() if accounts else []
    # On stderr: stdout is one line per user, for scripts (install.sh).
    print(f"data dir {args.data_dir}: " + (f"{len(users)} user(s)" if users else "no users yet")
          + ("" if accounts else " (no database there; nothing was made)"), file=sys.stderr)
    for user in users:
        print(f"{user['name']}\t{user['role']}\t{user['created_at']}")
    return 0


def _user_remove(args) -> int:
    with _accounts(args, create=False) as accounts:
        _existing(accounts, args).remove_user(args.name)
    print(f"removed {args.name} from data dir {args.data_dir}")
    _drop_initial_password(args.data_dir, args.name)
    return 0


def _user_passwd(args) -> int:
    password = _read_password(args)
    with _accounts(args, create=False) as accounts:
        _existing(accounts, args).set_password(args.name, password)
    print(f"password changed for {args.name} in data dir {args.data_dir}; their tokens "
          "are revoked")
    _drop_initial_password(args.data_dir, args.name)
    return 0


def _drop_initial_password(data_dir: Path, name: str) -> None:
    if drop_initial_password(data_dir, name):
        print(f"removed {data_dir / INITIAL_PASSWORD_FILE}: it no longer holds the admin "
              "password", file=sys.stderr)


def _existing(accounts: Accounts | None, args) -> Accounts:
    if accounts is None:
        raise NotFound(f"no user named {args.name!r}: data dir {args.data_dir} has no "
                       "database yet")
    return accounts


if __name__ == "__main__":
    sys.exit(main())
