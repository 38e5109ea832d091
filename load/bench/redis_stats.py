"""What the gateways cost Redis, read from INFO.

Round trips: `total_reads_processed` counts the reads Redis made from client sockets. A command,
a pipeline or a MULTI...EXEC sent in one write is one read, and so is one EVALSHA however many
commands its script runs inside; so it counts round trips, where `total_commands_processed`
would count every command inside every script. A request larger than the server's read buffer
(16 KB) takes more than one read, which can only overcount. The INFO call that takes the reading
is itself one read, and is subtracted.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class RedisCounters:
    reads: int  # socket reads from clients: round trips
    commands: int  # every command, including those run inside scripts
    scripts: int  # EVAL and EVALSHA calls
    transactions: int  # EXEC calls
    script_usec: int  # time Redis spent in scripts

    def __add__(self, other: RedisCounters) -> RedisCounters:
        return RedisCounters(
            self.reads + other.reads,
            self.commands + other.commands,
            self.scripts + other.scripts,
            self.transactions + other.transactions,
            self.script_usec + other.script_usec,
        )

    def __sub__(self, other: RedisCounters) -> RedisCounters:
        return RedisCounters(
            self.reads - other.reads - 1,  # the INFO that read `self`
            self.commands - other.commands - 1,
            self.scripts - other.scripts,
            self.transactions - other.transactions,
            self.script_usec - other.script_usec,
        )


async def counters(redis: Redis) -> RedisCounters:
    info = await redis.info("everything")
    calls = {k: v for k, v in info.items() if k.startswith("cmdstat_") and isinstance(v, dict)}

    def stat(name: str, field: str = "calls") -> int:
        return int(calls.get(f"cmdstat_{name}", {}).get(field, 0))

    return RedisCounters(
        reads=int(info["total_reads_processed"]),
        commands=int(info["total_commands_processed"]),
        scripts=stat("eval") + stat("evalsha"),
        transactions=stat("exec"),
        script_usec=stat("eval", "usec") + stat("evalsha", "usec"),
    )


async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])
