"""Gateway settings: one frozen dataclass, built from the environment."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from starlette.datastructures import Secret

from queue_core.connect import RedisUrlError, parse_redis_url
from queue_core.rooms import RoomConfig, load_rooms

from .client_ip import Network, parse_networks
from .ops.auth import DEV_USERS, AuthConfigError, parse_users

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "waitroom-dev-mode-secret-do-not-use-in-production"
MIN_SECRET_LENGTH = 32
# Values that turn up in examples and tutorials; a gateway signed with one is open to anyone.
KNOWN_WEAK = {DEV_SECRET, "change-me", "changeme", "secret", "please-change-me", "dev"}


class SettingsError(ValueError):
    """The gateway must not start with these settings; the message says what to fix."""


@dataclass(frozen=True)
class Settings:
    secrets: tuple[Secret, ...]
    redis_url: str
    backend_url: str = "http://127.0.0.1:8001"
    # How long an admitted visitor's request may wait for the booking site before the
    # gateway answers "try again" itself (504).
    backend_timeout: float = 60.0
    rooms: Mapping[str, RoomConfig] = field(default_factory=dict)
    dev_mode: bool = False
    key_prefix: str = "wr"
    tick_seconds: float = 0.25
    # "auto": Secure cookies whenever the request came over HTTPS.
    cookie_secure: str = "auto"
    # Ops users (name -> scrypt hash); empty turns the ops pages off entirely.
    ops_users: Mapping[str, str] = field(default_factory=dict)
    # Where ops pages may be reached from (CIDRs); empty: anywhere, behind the login.
    ops_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    ops_session_seconds: int = 8 * 3600
    autopilot_seconds: float = 5.0
    # Proxies whose X-Forwarded-For names the client (for the per-address join limits);
    # empty: the connection's own address is the client's.
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        dev_mode = env.get("WAITROOM_DEV", "") in {"1", "true", "yes"}
        secrets = tuple(
            Secret(s.strip()) for s in env.get("WAITROOM_SECRET", "").split(",") if s.strip()
        )
        if not secrets and dev_mode:
            secrets = (Secret(DEV_SECRET),)
        check_secrets(secrets, dev_mode)
        redis_url = env.get("REDIS_URL", "")
        if not redis_url:
            raise SettingsError("REDIS_URL is not set (`waitroom up` starts a Redis and sets it)")
        try:
            parse_redis_url(redis_url)
        except RedisUrlError as exc:
            raise SettingsError(str(exc)) from exc
        config = env.get("WAITROOM_CONFIG", str(REPO_ROOT / "waitroom.toml"))
        cookie_secure = env.get("WAITROOM_COOKIE_SECURE", "auto")
        if cookie_secure not in {"auto", "always"}:
            raise SettingsError("WAITROOM_COOKIE_SECURE must be 'auto' or 'always'")
        try:
            tick_seconds = float(env.get("WAITROOM_TICK_SECONDS", "0.25"))
        except ValueError as exc:
            raise SettingsError("WAITROOM_TICK_SECONDS must be a number of seconds") from exc
        if not 0.01 <= tick_seconds <= 5:
            raise SettingsError("WAITROOM_TICK_SECONDS must be between 0.01 and 5")
        try:
            backend_timeout = float(env.get("WAITROOM_BACKEND_TIMEOUT", "60"))
        except ValueError as exc:
            raise SettingsError("WAITROOM_BACKEND_TIMEOUT must be a number of seconds") from exc
        if not 0.1 <= backend_timeout <= 3600:
            raise SettingsError("WAITROOM_BACKEND_TIMEOUT must be between 0.1 and 3600")
        try:
            ops_users = parse_users(
                env.get("WAITROOM_OPS_USERS", DEV_USERS if dev_mode else ""), dev_mode
            )
            ops_allow = tuple(
                ipaddress.ip_network(c.strip(), strict=False)
                for c in env.get("WAITROOM_OPS_ALLOW", "").split(",")
                if c.strip()
            )
            ops_session_seconds = int(env.get("WAITROOM_OPS_SESSION_SECONDS", "28800"))
            autopilot_seconds = float(env.get("WAITROOM_AUTOPILOT_SECONDS", "5"))
            trusted_proxies = parse_networks(env.get("WAITROOM_TRUSTED_PROXIES", ""))
        except (AuthConfigError, ValueError) as exc:
            raise SettingsError(str(exc)) from exc
        if ops_session_seconds < 1 or not 0.1 <= autopilot_seconds <= 600:
            raise SettingsError(
                "WAITROOM_OPS_SESSION_SECONDS or WAITROOM_AUTOPILOT_SECONDS out of range"
            )
        return cls(
            secrets=secrets,
            redis_url=redis_url,
            backend_url=env.get("WAITROOM_BACKEND_URL", "http://127.0.0.1:8001"),
            backend_timeout=backend_timeout,
            rooms=load_rooms(config, env),
            dev_mode=dev_mode,
            key_prefix=env.get("WAITROOM_KEY_PREFIX", "wr"),
            tick_seconds=tick_seconds,
            cookie_secure=cookie_secure,
            ops_users=ops_users,
            ops_allow=ops_allow,
            ops_session_seconds=ops_session_seconds,
            autopilot_seconds=autopilot_seconds,
            trusted_proxies=trusted_proxies,
        )


def check_secrets(secrets: tuple[Secret, ...], dev_mode: bool) -> None:
    if dev_mode:
        return
    if not secrets:
        raise SettingsError(
            "WAITROOM_SECRET is not set. Set it to a random string of at least "
            f"{MIN_SECRET_LENGTH} characters (comma-separated list to rotate, newest last), "
            "or set WAITROOM_DEV=1 for a local dev mode with a public, insecure secret."
        )
    for secret in secrets:
        value = str(secret)
        if value in KNOWN_WEAK:
            raise SettingsError("WAITROOM_SECRET is a well-known default; generate your own")
        if len(value) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"every WAITROOM_SECRET must be at least {MIN_SECRET_LENGTH} characters long"
            )
