"""A throw-away Redis Cluster on loopback: primaries with a replica each, from the same
binary as RedisServer. Tests kill a primary under it and watch its replica take over; a
demo can run the gateway against it the way a production deployment would.

The cluster is formed by hand (ADDSLOTSRANGE, MEET, REPLICATE) rather than by
`valkey-cli --cluster create`, so nothing is needed beyond the server binary.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any, Self

import redis
from redis.crc import key_slot

from .redis_server import RedisServer, RedisServerError, free_port, wait_until

SLOTS = 16384


class LocalCluster:
    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        host: str = "127.0.0.1",
    ) -> None:
        """`node_timeout_ms`: how long a node may be silent before it is failed over. Short
        here (tests wait for it); production keeps Valkey's 15 s unless it knows better."""
        self.host = host
        self.primary_count = primaries
        self.replica_count = replicas
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            # Losing a shard must not stop the others: their rooms keep running.
            "--cluster-require-full-coverage", "no",
            # A replica's first sync starts at once, not after the default 5 s wait for others.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        # Each node's cluster bus gets a port of its own: the default (port + 10000) may be
        # taken, or beyond 65535.
        count = primaries * (1 + replicas)
        self.bus_ports = [free_port(host) for _ in range(count)]
        self.nodes = [
            RedisServer(
                port=free_port(host), host=host, extra_args=[*args, "--cluster-port", str(bus)]
            )
            for bus in self.bus_ports
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.start()
            self._form(deadline)
        except BaseException:
            self.stop()
            raise

    def _form(self, deadline: float) -> None:
        primaries = self.nodes[: self.primary_count]
        for i, node in enumerate(primaries):
            first, last = SLOTS * i // len(primaries), SLOTS * (i + 1) // len(primaries) - 1
            self._call(node, "CLUSTER", "ADDSLOTSRANGE", first, last)
        for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
            self._call(self.nodes[0], "CLUSTER", "MEET", node.host, node.port, bus)
        wait_until(deadline, "every node to know the others", self._all_known)
        ids = [self._call(n, "CLUSTER", "MYID") for n in primaries]
        for i, node in enumerate(self.nodes[self.primary_count :]):
            self._call(node, "CLUSTER", "REPLICATE", ids[i % len(primaries)])
        self.wait_healthy(max(0.0, deadline - time.monotonic()))

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until every live node says the cluster is ok and every live replica is in sync."""
        wait_until(time.monotonic() + timeout, "the cluster to be healthy", self._healthy)

    def primary_for(self, key: str) -> RedisServer:
        """The node serving `key`'s slot now, as the live nodes see it."""
        slot = key_slot(key.encode())
        for node in self.live_nodes():
            with contextlib.suppress(redis.RedisError):
                for first, last, (_host, port, *_rest), *_replicas in self._call(
                    node, "CLUSTER", "SLOTS"
                ):
                    if first <= slot <= last:
                        return next(n for n in self.nodes if n.port == int(port))
        raise RedisServerError(f"no live node serves slot {slot}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for node in self.live_nodes():
            info = self._call(node, "INFO", "replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary.port:
                return node
        raise RedisServerError(f"{primary} has no live replica")

    def wait_failover(self, key: str, old: RedisServer, timeout: float = 20.0) -> RedisServer:
        """Until a live node other than `old` serves `key`'s slot as primary."""
        found: list[RedisServer] = []

        def moved() -> bool:
            node = self.primary_for(key)
            found[:] = [node]
            return node is not old and node.running

        wait_until(time.monotonic() + timeout, f"a new primary for {key}", moved)
        return found[0]

    def live_nodes(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.running]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _all_known(self) -> bool:
        for node in self.nodes:
            lines = self._call(node, "CLUSTER", "NODES").decode().splitlines()
            if len(lines) < len(self.nodes) or any("handshake" in x for x in lines):
                return False
        return True

    def _healthy(self) -> bool:
        for node in self.live_nodes():
            info = self._call(node, "CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info:
                return False
            replication = self._call(node, "INFO", "replication")
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False
        return True

    @staticmethod
    def _call(node: RedisServer, *args: object) -> Any:
        client = redis.Redis(host=node.host, port=node.port, socket_timeout=2.0)
        try:
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
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
