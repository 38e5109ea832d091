"""`waitroom up` as a newcomer runs it: everything starts, the line works, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from helpers import REPO_ROOT, free_port

pytestmark = pytest.mark.slow


def test_waitroom_up_starts_the_stack_and_ctrl_c_stops_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port, backend_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "WAITROOM_SECRET"}}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "up",
            "--port",
            str(port),
            "--backend-port",
            str(backend_port),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C to stop" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/book" in output, output
        assert "embedded Valkey" in output
        # A generated secret is kept private and reused, so a restart keeps everyone's place.
        secret_file = tmp_path / "state" / "secret"
        assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
        assert len(secret_file.read_text()) >= 32

        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as visitor:
            first = visitor.get("/book")
            assert first.status_code == 200
            assert "Visitor:" in first.text  # empty line: straight through to the booking site
            # The site's own link to its home page, outside the room, still works.
            assert visitor.get("/").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["ready"]
        # Defence in depth: the booking site itself refuses anyone who went round the line.
        direct = httpx.get(f"http://127.0.0.1:{backend_port}/book")
        assert direct.status_code == 403
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    for p in (port, backend_port):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{p}/healthz", timeout=1)
