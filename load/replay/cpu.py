"""CPU used by each party of a replay, read from /proc (Linux), so a figure such as "held
140,000 visitors" comes with what it cost the driver and what it cost the gateway.

A party is a process and its descendants (uvicorn's workers are children of its
supervisor). Elsewhere than Linux the figures are simply absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

PROC = Path("/proc")


def _ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def _stat(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ")".
    return text.rsplit(")", 1)[1].split()


def children(pids: Iterable[int]) -> set[int]:
    """The processes and all their descendants that are alive now."""
    wanted = set(pids)
    parents: dict[int, int] = {}
    for entry in PROC.iterdir() if PROC.exists() else ():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    found = {p for p in wanted if p in parents}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of these processes (not of their children: list those too)."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / _ticks()


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores, not idle or iowait)."""
    try:
        first = (PROC / "stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _ticks()


class CpuMeter:
    """CPU per party between `start()` and `stop()`.

    `trees` are parties counted with their descendants (a uvicorn supervisor and its
    workers); `alone` are counted without (the driver, whose children are the stack). The
    rest of the machine's busy time is reported as `everything_else`: other people's work
    on a shared machine weighs on every figure, so it is measured, not guessed."""

    def __init__(
        self, trees: Mapping[str, Iterable[int]], alone: Mapping[str, Iterable[int]] | None = None
    ) -> None:
        self.trees = {name: list(pids) for name, pids in trees.items()}
        self.alone = {name: set(pids) for name, pids in (alone or {}).items()}
        self._start: dict[str, float] = {}
        self._pids: dict[str, set[int]] = dict(self.alone)
        self._machine: float | None = None
        self.seconds: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        for name, roots in self.trees.items():
            self._pids[name] = self._pids.get(name, set()) | children(roots)
        return {name: cpu_seconds(pids) for name, pids in self._pids.items()}

    def start(self) -> None:
        self._start = self._read()
        self._machine = machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        end = self._read()
        self.seconds = {name: round(end[name] - self._start.get(name, 0.0), 2) for name in end}
        machine = machine_busy_seconds()
        if machine is not None and self._machine is not None:
            busy = machine - self._machine
            self.seconds["machine"] = round(busy, 2)
            ours = sum(end[n] - self._start.get(n, 0.0) for n in end)
            self.seconds["everything_else"] = round(busy - ours, 2)
        return self.seconds
