"""Who may use a server that listens beyond this machine: an auth file of users with scrypt password hashes
(``volseg serve-passwd`` writes it, as ``htpasswd`` does), and the bearer tokens MONAI Label's clients ask for at
``POST /auth/token`` and send on every call. Tokens live in memory: a restart asks users to log in again."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from volseg.errors import VolsegError
from volseg.files.atomic import atomic_path

TOKEN_HOURS = 12
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, **_SCRYPT)
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + f"{_b64(salt)}${_b64(key)}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, key = stored.split("$")
        expected = base64.b64decode(key)
        found = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return kind == "scrypt" and hmac.compare_digest(found, expected)


def read_auth_file(path: Path) -> dict[str, str]:
    """User -> password hash, from ``user:hash`` lines (``#`` comments); one line naming the file when unusable."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise VolsegError(f"{path}: cannot read the auth file ({e.strerror or e})") from None
    users = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, _, stored = line.strip().partition(":")
        if not user or not stored.startswith("scrypt$"):
            raise VolsegError(f"{path}:{number}: expected user:hash as `volseg serve-passwd` writes it")
        users[user] = stored
    if not users:
        raise VolsegError(f"{path}: no users; add one with `volseg serve-passwd {path} USER`")
    return users


def set_password(path: Path, user: str, password: str) -> None:
    """Add ``user`` to the auth file or change their password (the file is readable by its owner only)."""
    if not user or ":" in user or user != user.strip():
        raise VolsegError(f"user name {user!r}: no colon, no surrounding spaces")
    if not password:
        raise VolsegError("empty password")
    users = read_auth_file(path) if Path(path).is_file() else {}
    users[user] = hash_password(password)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{u}:{h}\n" for u, h in users.items()), encoding="utf-8")
        tmp.chmod(0o600)


class Tokens:
    """The tokens handed out since start-up, each valid for :data:`TOKEN_HOURS`."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.issued: dict[str, float] = {}  # token -> expiry (monotonic seconds)

    def login(self, user: str, password: str) -> str | None:
        stored = self.users.get(user)
        if stored is None or not password_matches(password, stored):
            return None
        now = time.monotonic()
        self.issued = {t: expiry for t, expiry in self.issued.items() if expiry > now}
        token = secrets.token_urlsafe(32)
        self.issued[token] = now + TOKEN_HOURS * 3600
        return token

    def valid(self, authorization: str | None) -> bool:
        """Whether an ``Authorization: Bearer <token>`` header holds a live token."""
        scheme, _, token = (authorization or "").partition(" ")
        expiry = self.issued.get(token.strip()) if scheme.lower() == "bearer" else None
        return expiry is not None and expiry > time.monotonic()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
