"""From a REDIS_URL to a redis.asyncio client: one server, a Sentinel-watched primary, or a
Redis Cluster. Every process that talks to the line builds its client here, so all of them
get the same bounded pools, timeouts and failover behaviour.

    redis://[[user]:password@]host[:port][/db]
    rediss://[[user]:password@]host[:port][/db]                       TLS
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]
    redis+cluster://[[user]:password@]host:port[,host:port...]
    (rediss+sentinel and rediss+cluster: the same over TLS)

The password in the URL is the data nodes' (for Sentinel: the primary's and replicas'); a
Sentinel that needs its own takes `?sentinel_password=`. Other query options: the socket
timeouts and the TLS file options below. Anything else is refused when the gateway starts,
not discovered at the first request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster, SSLConnection
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

RedisClient = Redis | RedisCluster
Kind = Literal["single", "sentinel", "cluster"]

SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
DEFAULT_PORTS = {"single": 6379, "sentinel": 26379, "cluster": 6379}
FLOAT_OPTIONS = ("socket_timeout", "socket_connect_timeout")
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
# A dead socket is noticed within seconds, not never (redis-py waits for ever by default).
# A Redis that hangs (overloaded, paused, partitioned) must fail a call in seconds, not hold
# it for ever: waiting visitors are then answered from the last snapshot (tests/test_outage.py).
DEFAULT_TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}
# One quick retry rides out a dropped connection (a restarted server, a failover's new
# primary); more would multiply the socket timeout while a hung server holds a visitor.
# Longer outages surface as errors, which the gateway answers from its snapshot.
RETRIES = 1


class RedisUrlError(ValueError):
    """REDIS_URL cannot be used; the message says what is wrong (never the password)."""


@dataclass(frozen=True)
class RedisTarget:
    """What a REDIS_URL names. The password is kept out of repr() and describe()."""

    kind: Kind
    hosts: tuple[tuple[str, int], ...]
    tls: bool = False
    db: int = 0
    service: str = ""  # the Sentinel master name
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """The URL as it can be logged: no credentials."""
        scheme = next(s for s, v in SCHEMES.items() if v == (self.kind, self.tls))
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        auth = "***@" if self.password else ""
        path = {"single": f"/{self.db}", "sentinel": f"/{self.service}/{self.db}"}
        return f"{scheme}://{auth}{hosts}{path.get(self.kind, '')}"


def parse_redis_url(url: str) -> RedisTarget:
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise RedisUrlError(f"REDIS_URL is not a URL: {exc}") from exc
    if parts.scheme not in SCHEMES:
        raise RedisUrlError(
            f"REDIS_URL scheme {parts.scheme + '://' if parts.scheme else '(none)'} is not "
            f"supported; use one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    kind, tls = SCHEMES[parts.scheme]
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo)
    hosts = _hosts(hostlist, DEFAULT_PORTS[kind], several=kind != "single")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    service, db = "", 0
    if kind == "sentinel":
        if not segments:
            raise RedisUrlError(
                "a redis+sentinel:// URL names the master: redis+sentinel://host:port/mymaster"
            )
        service, segments = segments[0], segments[1:]
    if kind == "cluster" and segments not in ([], ["0"]):
        raise RedisUrlError("Redis Cluster has only database 0: leave the path out")
    if len(segments) > 1:
        raise RedisUrlError(f"REDIS_URL path {parts.path!r} has too many parts")
    if segments:
        if not segments[0].isdigit():
            raise RedisUrlError(f"REDIS_URL database {segments[0]!r} is not a number")
        db = int(segments[0])
    options, sentinel_password = _options(parts.query, kind, tls)
    return RedisTarget(
        kind, hosts, tls, db, service, username, password, sentinel_password, options
    )


def connect(
    url: str | RedisTarget, *, max_connections: int = 64, pool_timeout: float = 5.0
) -> RedisClient:
    """A client for `url` with at most `max_connections` connections (per node on a
    cluster). Past that, callers wait up to `pool_timeout` for a free one, then get a
    ConnectionError."""
    target = parse_redis_url(url) if isinstance(url, str) else url
    common: dict[str, Any] = {
        **DEFAULT_TIMEOUTS,
        "username": target.username,
        "password": target.password,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        **{k: v for k, v in target.options.items() if k in FLOAT_OPTIONS},
    }
    tls = {k: v for k, v in target.options.items() if k in TLS_OPTIONS}
    if target.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.hosts]
        return BlockingRedisCluster(
            startup_nodes=nodes,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            ssl=target.tls,
            **tls,
            **common,
        )
    if target.kind == "sentinel":
        sentinel_kwargs = {**DEFAULT_TIMEOUTS, "password": target.sentinel_password}
        sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        connection_class = SentinelManagedSSLConnection if target.tls else SentinelManagedConnection
        client: Redis = sentinel.master_for(
            target.service,
            connection_pool_class=BlockingSentinelConnectionPool,
            connection_class=connection_class,
            max_connections=max_connections,
            timeout=pool_timeout,
            db=target.db,
            **(tls if target.tls else {}),
            **common,
        )
        return client
    (host, port) = target.hosts[0]
    pool = BlockingConnectionPool(
        host=host,
        port=port,
        db=target.db,
        max_connections=max_connections,
        timeout=pool_timeout,
        **({"connection_class": SSLConnection, **tls} if target.tls else {}),
        **common,
    )
    return Redis(connection_pool=pool)


class BlockingRedisCluster(RedisCluster):
    """A cluster client whose commands wait (up to `pool_timeout`) for a free connection, as
    the single-server pool's do: redis-py's own refuses at once (MaxConnectionsError) when a
    node's `max_connections` are all in use, which would turn a burst of joins into 503s.
    At most `max_connections` commands are in flight per client, so per node as well."""

    def __init__(self, *, max_connections: int, pool_timeout: float, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._in_flight = asyncio.Semaphore(max_connections)
        self._pool_timeout = pool_timeout

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._in_flight.acquire()
        except TimeoutError as exc:
            raise RedisConnectionError("No connection available.") from exc
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._in_flight.release()


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (it asks the sentinels where the primary is, and reconnects after a
    failover), bounded like the single-server one: a burst waits for a free connection."""


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    if not colon:  # redis://secret@host is how many tools write a bare password
        return None, unquote(user)
    return (unquote(user) or None), unquote(password)


def _hosts(hostlist: str, default_port: int, *, several: bool) -> tuple[tuple[str, int], ...]:
    items = [h.strip() for h in hostlist.split(",")]
    if not hostlist or any(not h for h in items):
        raise RedisUrlError("REDIS_URL names no host")
    if len(items) > 1 and not several:
        raise RedisUrlError(
            "a redis:// URL names one server; for several use redis+sentinel:// or redis+cluster://"
        )
    hosts = []
    for item in items:
        if item.startswith("["):  # [::1]:6379
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise RedisUrlError(f"REDIS_URL host {item!r} has no name")
        if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
            raise RedisUrlError(f"REDIS_URL port in {item!r} is not a port number")
        hosts.append((host, int(port_text) if port_text else default_port))
    return tuple(hosts)


def _options(query: str, kind: Kind, tls: bool) -> tuple[dict[str, Any], str | None]:
    options: dict[str, Any] = {}
    sentinel_password = None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in FLOAT_OPTIONS:
            try:
                options[name] = float(value)
            except ValueError as exc:
                raise RedisUrlError(f"REDIS_URL option {name} must be seconds") from exc
        elif name in TLS_OPTIONS and tls:
            if name == "ssl_cert_reqs":
                if value not in CERT_REQS:
                    raise RedisUrlError(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}")
                options[name] = CERT_REQS[value]
            else:
                options[name] = value
        elif name == "sentinel_password" and kind == "sentinel":
            sentinel_password = value
        else:
            raise RedisUrlError(f"REDIS_URL option {name!r} is not supported here")
    return options, sentinel_password
