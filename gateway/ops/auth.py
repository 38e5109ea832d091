"""Who may use the ops pages: scrypt password hashes, signed sessions, CSRF tokens.

Users come from configuration (`WAITROOM_OPS_USERS="alice:scrypt$...,bob:scrypt$..."`, made
with `waitroom hash-password`). There is no default user, except `ops`/`ops` in dev mode.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

SESSION_COOKIE = "wr_ops"
SESSION_SALT = "waitroom.ops-session.v1"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
DEV_USERS = "ops:ops"


class AuthConfigError(ValueError):
    pass


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
        salt = base64.urlsafe_b64decode(salt_b64)
        expected = base64.urlsafe_b64decode(digest_b64)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return hmac.compare_digest(digest, expected)


# Checked against when the user does not exist, so the answer takes as long either way.
_DUMMY = hash_password("not-a-user", salt=b"0" * 16)


def parse_users(raw: str, dev_mode: bool) -> dict[str, str]:
    """`name:hash` pairs; in dev mode plain `name:password` is allowed and hashed here."""
    users: dict[str, str] = {}
    for item in (s.strip() for s in raw.split(",")):
        if not item:
            continue
        name, sep, secret = item.partition(":")
        if not sep or not name or not secret:
            raise AuthConfigError("WAITROOM_OPS_USERS entries look like name:scrypt$salt$hash")
        if not secret.startswith("scrypt$"):
            if not dev_mode:
                raise AuthConfigError(
                    f"ops user {name}: use a hash from `waitroom hash-password`, not a password"
                )
            secret = hash_password(secret)
        users[name] = secret
    return users


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    csrf: str


def _signer_on(clock: Callable[[], float]) -> type[TimestampSigner]:
    class ClockedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return ClockedSigner


class OpsAuth:
    """`clock` stamps and ages sessions (tests make an old session without waiting 8 hours)."""

    def __init__(
        self,
        users: Mapping[str, str],
        secret_keys: Sequence[str],
        max_age: int = 8 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = dict(users)
        self.max_age = max_age
        kwargs: dict[str, Any] = {"digest_method": hashlib.sha256}
        self._sessions = URLSafeTimedSerializer(
            list(secret_keys), salt=SESSION_SALT, signer=_signer_on(clock), signer_kwargs=kwargs
        )

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def verify(self, user: str, password: str) -> bool:
        stored = self.users.get(user)
        ok = check_password(password, stored or _DUMMY)
        return ok and stored is not None

    def issue(self, user: str) -> str:
        return str(self._sessions.dumps({"u": user, "c": secrets.token_urlsafe(24)}))

    def session(self, value: str | None) -> Session | None:
        if not value or len(value) > 1000:
            return None
        try:
            data = self._sessions.loads(value, max_age=self.max_age)
        except (BadData, UnicodeError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        user, csrf = data.get("u"), data.get("c")
        if not isinstance(user, str) or not isinstance(csrf, str) or user not in self.users:
            return None
        return Session(user, csrf)

    def expired(self, value: str | None) -> bool:
        """A genuine session that has run out (not a missing or forged cookie): the login
        page can then say why it is asking again."""
        if not value or len(value) > 1000:
            return False
        try:
            self._sessions.loads(value, max_age=self.max_age)
        except SignatureExpired:
            return True
        except (BadData, UnicodeError, ValueError):
            return False
        return False


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf, presented or "")
