"""Where the time goes: py-spy samples of one worker while a hot path is under load.

Optional (`waitroom bench --profile DIR`, with py-spy installed: `pip install py-spy`). Each
profile is kept as py-spy's raw collapsed stacks (for flame graphs) and summarised here as the
share of samples spent inside each function (inclusive) and at the top of the stack (self).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# Frames (nearly) every sample has, the process's start-up and event loop, say nothing.
_EVERYWHERE = 0.97
_EVENT_LOOP = "Server.run (uvicorn/server.py"


def find_py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def frame_name(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module.py)`."""
    name, _, where = frame.partition(" (")
    module = where.split(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({module})" if module else name


def summarise(lines: Iterable[str], top: int = 40) -> str:
    """Shares of the samples of the worker's event loop (other threads, such as uvicorn's
    supervisor ping, only wait)."""
    stacks: list[tuple[str, int]] = []
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack, int(count)))
    if any(_EVENT_LOOP in stack for stack, _ in stacks):
        stacks = [(stack, n) for stack, n in stacks if _EVENT_LOOP in stack]
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for stack, n in stacks:
        total += n
        frames = [frame_name(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    if not total:
        return "no samples\n"
    out = [f"{total} samples", "", "inclusive  function"]
    roots = max(inclusive.values())
    shown = [(k, v) for k, v in inclusive.most_common() if v < _EVERYWHERE * roots]
    out += [f"{100 * v / total:8.1f}%  {k}" for k, v in shown[:top]]
    out += ["", "self       function"]
    out += [f"{100 * v / total:8.1f}%  {k}" for k, v in own.most_common(top // 2)]
    return "\n".join(out) + "\n"


class Profiler:
    def __init__(self, py_spy: str, out_dir: Path) -> None:
        self.py_spy = py_spy
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self._running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, pid: int, seconds: int) -> None:
        raw = self.out_dir / f"{name}.collapsed"
        command = [self.py_spy, "record", "--pid", str(pid), "--duration", str(seconds)]
        # Blocking (the default): the worker is paused for each sample, so stacks are whole.
        command += ["--rate", "200", "--format", "raw", "--output", str(raw)]
        self._running[name] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def finish(self, name: str) -> Path:
        self._running.pop(name).wait(60)
        raw = self.out_dir / f"{name}.collapsed"
        summary = self.out_dir / f"{name}.txt"
        with open(raw, encoding="utf-8") as f:
            summary.write_text(summarise(f), encoding="utf-8")
        return summary
