"""Users and bearer tokens, stored in SQLite with only hashes of secrets.

Used by the server and by ``picam-api user ...``: both open the same database,
so users can be managed while the server runs.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .db import Database
from .errors import ConfigError, Conflict, InvalidInput, NotFound, PicamError
from .limits import Quota, RateLimit
from .passwords import Hasher

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8
INITIAL_PASSWORD_FILE = "initial-admin-password"


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str

    @property
    def roles(self) -> list[str]:
        # An operator can do everything a viewer can.
        return ["viewer", "operator"] if self.role == "operator" else ["viewer"]


class Accounts:
    """Creates, checks and removes users and their tokens.

    A user keeps at most ``max_tokens`` live tokens (a new one revokes the
    oldest) and gets at most ``tokens_per_minute`` new ones a minute.
    """

    def __init__(self, db: Database, token_ttl_s: int, hasher: Hasher | None = None,
                 max_tokens: int = 100, tokens_per_minute: int = 60):
        self.db = db
        self.token_ttl_s = token_ttl_s
        self.hasher = hasher or Hasher()
        self.max_tokens = max_tokens
        self._token_rate = RateLimit(tokens_per_minute, 60.0, "new tokens per user")

    # -- users ---------------------------------------------------------------------

    def add_user(self, name: str, password: str, role: str = "viewer") -> User:
        _check_name(name)
        _check_role(role)
        _check_password(password)
        user = User(name, role, self.hasher.hash(password))
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"user {name!r} already exists")
            conn.execute("INSERT INTO users (name, role, password_hash, created_at) "
                         "VALUES (?, ?, ?, ?)", (name, role, user.password_hash, _now_iso()))
        log.info("user %s added with role %s", name, role)
        return user

    def get_user(self, name: str) -> User | None:
        row = self.db.conn.execute("SELECT name, role, password_hash FROM users WHERE name = ?",
                                   (name,)).fetchone()
        return User(*row) if row else None

    def list_users(self) -> list[dict]:
        rows = self.db.conn.execute("SELECT name, role, created_at FROM users ORDER BY name")
        return [dict(row) for row in rows]

    def set_password(self, name: str, password: str) -> None:
        """Change a password and revoke that user's tokens."""
        _check_password(password)
        with self.db.transaction() as conn:
            changed = conn.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                                   (self.hasher.hash(password), name)).rowcount
            if not changed:
                raise NotFound(f"no user named {name!r}")
            conn.execute("DELETE FROM tokens WHERE user = ?", (name,))
        log.info("password changed for user %s; their tokens were revoked", name)

    def remove_user(self, name: str) -> None:
        with self.db.transaction() as conn:
            if not conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount:
                raise NotFound(f"no user named {name!r}")
        log.info("user %s removed", name)

    def check_password(self, name: str, password: str) -> User | None:
        """The user if the password is right, else None. Deliberately slow.

        A hash made with other parameters than ``passwords.METHOD`` (an older
        release's) is replaced by a new one once the password is known right.
        """
        user = self.get_user(name)
        if user is None:
            # A wrong name costs as much as a wrong password.
            self.hasher.verify_nobody(password)
            return None
        if not self.hasher.verify(user.password_hash, password):
            return None
        if self.hasher.needs_rehash(user.password_hash):
            user = self._rehash(user, password)
        return user

    def _rehash(self, user: User, password: str) -> User:
        new = User(user.name, user.role, self.hasher.hash(password))
        try:
            with self.db.transaction() as conn:
                # Only if unchanged meanwhile (``user passwd`` wins).
                conn.execute("UPDATE users SET password_hash = ? WHERE name = ? AND "
                             "password_hash = ?", (new.password_hash, user.name, user.password_hash))
        except (sqlite3.Error, PicamError) as exc:
            # A full disk, say: the login still succeeds, the rehash waits for the next one.
            log.warning("password hash of user %s not renewed: %s", user.name, exc)
            return user
        log.info("password hash of user %s renewed with the current parameters", user.name)
        return new

    def ensure_admin(self, data_dir: Path, env_password: str | None) -> str | None:
        """On first start with no users, create ``admin``; return a generated password.

        The password is ``env_password`` if given; otherwise a random one, which
        is also written to ``<data dir>/initial-admin-password`` (mode 0600).
        """
        if self.db.conn.execute("SELECT 1 FROM users LIMIT 1").fetchone():
            if env_password:
                log.warning("PICAM_ADMIN_PASSWORD is set but ignored: it chooses the admin "
                            "password on the first start only, when there are no users; "
                            "change it with 'picam-api user passwd admin'")
            self._forget_stale_initial_password(data_dir)
            return None
        password = env_password or secrets.token_urlsafe(12)
        try:
            self.add_user("admin", password, "operator")
        except InvalidInput as exc:
            # Only a password from the environment can fail the checks: name the variable.
            reason = exc.extra["errors"]["password"][0]
            raise ConfigError(f"PICAM_ADMIN_PASSWORD: {reason}") from None
        if env_password:
            return None
        path = data_dir / INITIAL_PASSWORD_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # open() keeps the mode of a file that already exists, say one left by an
        # earlier install; the password must not be readable by anyone else.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return password

    def _forget_stale_initial_password(self, data_dir: Path) -> None:
        """Remove the initial password file once it no longer opens ``admin``.

        ``user passwd admin`` removes it at once; this catches a change made
        some other way (an older release, a restored database).
        """
        path = data_dir / INITIAL_PASSWORD_FILE
        try:
            password = path.read_text().strip()
        except OSError:
            return
        admin = self.get_user("admin")
        if admin is None or not self.hasher.verify(admin.password_hash, password):
            drop_initial_password(data_dir, "admin")
            log.warning("removed %s: the admin password has been changed", path)

    # -- tokens --------------------------------------------------------------------

    def issue_token(self, user: User) -> tuple[str, dt.datetime, Quota]:
        """A new token for ``user``, and what is left of the user's new-token quota;
        past ``max_tokens`` the oldest tokens are revoked."""
        quota = self._token_rate.take(user.name)
        token = secrets.token_urlsafe(32)
        now = time.time()
        expires = now + self.token_ttl_s
        # On a full disk too, so that the web page can sign in to delete photos.
        with self.db.transaction(frees_space=True) as conn:
            # Expired tokens are swept here rather than by another thread.
            conn.execute("DELETE FROM tokens WHERE expires_at < ?", (now,))
            conn.execute("INSERT INTO tokens (hash, user, created_at, expires_at) "
                         "VALUES (?, ?, ?, ?)", (_token_hash(token), user.name, now, expires))
            revoked = conn.execute(
                "DELETE FROM tokens WHERE user = ? AND hash NOT IN (SELECT hash FROM tokens "
                "WHERE user = ? ORDER BY created_at DESC, rowid DESC LIMIT ?)",
                (user.name, user.name, self.max_tokens)).rowcount
        if revoked:
            log.info("user %s has %d tokens, the most allowed (auth.max_tokens_per_user); "
                     "revoked the oldest", user.name, self.max_tokens)
        return token, dt.datetime.fromtimestamp(expires, dt.timezone.utc), quota

    def check_token(self, token: str) -> User | None:
        row = self.db.conn.execute(
            "SELECT u.name, u.role, u.password_hash FROM tokens t JOIN users u ON u.name = t.user "
            "WHERE t.hash = ? AND t.expires_at > ?", (_token_hash(token), time.time())).fetchone()
        return User(*row) if row else None

    def revoke_token(self, token: str) -> None:
        with self.db.transaction(frees_space=True) as conn:
            conn.execute("DELETE FROM tokens WHERE hash = ?", (_token_hash(token),))


def drop_initial_password(data_dir: Path, name: str) -> bool:
    """Remove ``<data dir>/initial-admin-password`` after ``name``'s password changed
    or ``name`` was removed, if ``name`` is admin; True if there was one."""
    path = data_dir / INITIAL_PASSWORD_FILE
    if name != "admin" or not path.exists():
        return False
    path.unlink()
    return True


def _token_hash(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough to make a stolen
    # database useless for logging in.
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidInput({"name": ["must be 1-64 letters, digits, '.', '_' or '-'"]})


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput({"role": [f"must be one of {', '.join(ROLES)}"]})


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise InvalidInput({"password": [f"must be at least {MIN_PASSWORD} characters"]})


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
