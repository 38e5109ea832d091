"""A throw-away Sentinel setup on loopback: one primary, its replicas, and sentinels watching
them, all from the same binary as RedisServer (run with --sentinel for the sentinels).
Tests kill the primary under it and watch a replica promoted; the gateway finds the new one
through the sentinels.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from .redis_server import RedisServer, RedisServerError, free_port, wait_until

SERVICE = "waitroom"


class LocalSentinel:
    def __init__(
        self,
        replicas: int = 2,
        sentinels: int = 3,
        service: str = SERVICE,
        down_after_ms: int = 1000,
        host: str = "127.0.0.1",
    ) -> None:
        """`down_after_ms`: how long the primary may be silent before the sentinels fail it
        over. Short here (tests wait for it); Sentinel's own default is 30 s."""
        self.host = host
        self.service = service
        self.down_after_ms = down_after_ms
        self.quorum = sentinels // 2 + 1
        # A replica's first sync starts at once, not after the default 5 s wait for others.
        fast_sync = ["--repl-diskless-sync-delay", "0"]
        self.primary = RedisServer(port=free_port(host), host=host, extra_args=fast_sync)
        follow = ["--replicaof", host, str(self.primary.port)]
        self.replicas = [
            RedisServer(host=host, extra_args=[*fast_sync, *follow]) for _ in range(replicas)
        ]
        self._dir = Path(tempfile.mkdtemp(prefix="waitroom-sentinel-"))
        self.sentinels = [
            RedisServer(host=host, config_file=self._dir / f"s{i}.conf", extra_args=["--sentinel"])
            for i in range(sentinels)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    @property
    def data_nodes(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    def start(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            self.primary.start()
            for replica in self.replicas:
                replica.start()
            for i, sentinel in enumerate(self.sentinels):
                # Sentinel rewrites its file as it learns: one writable file each.
                (self._dir / f"s{i}.conf").write_text(
                    f"sentinel monitor {self.service} {self.host} {self.primary.port} "
                    f"{self.quorum}\n"
                    f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.service} {self.down_after_ms * 10}\n"
                )
                sentinel.start()
            wait_until(deadline, "the sentinels to see every node", self._all_seen)
        except BaseException:
            self.stop()
            raise

    def current_primary(self) -> RedisServer:
        """The data node the sentinels name as primary now."""
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            with contextlib.suppress(redis.RedisError):
                with self._client(sentinel) as client:
                    address: Any = client.sentinel_get_master_addr_by_name(self.service)
                _host, port = address
                for node in self.data_nodes:
                    if node.port == int(port):
                        return node
        raise RedisServerError("no sentinel names a primary")

    def wait_failover(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Until the sentinels name a live primary other than `old`, and it takes writes."""
        found: list[RedisServer] = []

        def promoted() -> bool:
            node = self.current_primary()
            if node is old or not node.running:
                return False
            with self._client(node) as client:
                role = client.execute_command("ROLE")  # type: ignore[no-untyped-call]
            found[:] = [node]
            return bool(role[0] == b"master")

        wait_until(time.monotonic() + timeout, "a failover", promoted)
        return found[0]

    def stop(self) -> None:
        for server in [*self.sentinels, *self.replicas, self.primary]:
            server.stop()
        for path in self._dir.glob("*"):
            path.unlink()
        with contextlib.suppress(OSError):
            self._dir.rmdir()

    def _all_seen(self) -> bool:
        for sentinel in self.sentinels:
            with self._client(sentinel) as client:
                master: Any = client.sentinel_master(self.service)
            if master["num-slaves"] < len(self.replicas):
                return False
            if master["num-other-sentinels"] < len(self.sentinels) - 1:
                return False
        for replica in self.replicas:
            with self._client(replica) as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
        return True

    @staticmethod
    @contextlib.contextmanager
    def _client(server: RedisServer) -> Iterator[redis.Redis]:
        client = redis.Redis(host=server.host, port=server.port, socket_timeout=2.0)
        try:
            yield client
        finally:
            client.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
