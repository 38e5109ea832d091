"""REDIS_URL to client: the URL forms, the errors a bad one gets at start-up, and real
connections (a bounded pool; TLS and a password through a real TLS terminator)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.exceptions import AuthenticationError, ConnectionError

from queue_core.connect import RedisUrlError, connect, parse_redis_url
from queue_core.redis_server import RedisServer

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("url", "kind", "hosts", "tls", "db", "service", "password"),
    [
        ("redis://127.0.0.1:6390/2", "single", [("127.0.0.1", 6390)], False, 2, "", None),
        ("redis://redis.internal", "single", [("redis.internal", 6379)], False, 0, "", None),
        ("rediss://:s3cret@rx:6380/0", "single", [("rx", 6380)], True, 0, "", "s3cret"),
        ("rediss://app:p%40ss@r:1", "single", [("r", 1)], True, 0, "", "p@ss"),
        ("redis://[::1]:7000/1", "single", [("::1", 7000)], False, 1, "", None),
        (
            "redis+sentinel://pw@s1:26379,s2:26380,s3/waitroom/3",
            "sentinel",
            [("s1", 26379), ("s2", 26380), ("s3", 26379)],
            False,
            3,
            "waitroom",
            "pw",
        ),
        ("rediss+sentinel://s1:1/m", "sentinel", [("s1", 1)], True, 0, "m", None),
        (
            "redis+cluster://:pw@n1:7000,n2:7001",
            "cluster",
            [("n1", 7000), ("n2", 7001)],
            False,
            0,
            "",
            "pw",
        ),
        ("rediss+cluster://n1:7000/0", "cluster", [("n1", 7000)], True, 0, "", None),
    ],
)  # fmt: skip
def test_url_forms(
    url: str,
    kind: str,
    hosts: list[tuple[str, int]],
    tls: bool,
    db: int,
    service: str,
    password: str | None,
) -> None:
    target = parse_redis_url(url)
    assert (target.kind, list(target.hosts), target.tls, target.db) == (kind, hosts, tls, db)
    assert (target.service, target.password) == (service, password)
    if password:
        assert password not in target.describe() and password not in repr(target)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "scheme (none)"),
        ("http://127.0.0.1:6379", "http:// is not supported"),
        ("redis://", "names no host"),
        ("redis://a:6379,b:6379", "for several use redis+sentinel"),
        ("redis://h:99999", "not a port number"),
        ("redis://h:63a9", "not a port number"),
        ("redis://h/zero", "database 'zero' is not a number"),
        ("redis://h/0/1", "too many parts"),
        ("redis+sentinel://s1:26379", "names the master"),
        ("redis+sentinel://s1:26379,/m", "names no host"),
        ("redis+cluster://n1:7000/3", "only database 0"),
        ("redis://h?socket_timeout=soon", "must be seconds"),
        ("redis://h?ssl_ca_certs=/ca.pem", "'ssl_ca_certs' is not supported"),
        ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
        ("redis+cluster://n1?sentinel_password=x", "'sentinel_password' is not supported"),
        ("redis://h?decode_responses=1", "'decode_responses' is not supported"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, says: str) -> None:
    with pytest.raises(RedisUrlError, match=re.escape(says)):
        parse_redis_url(url)


def test_a_bad_url_stops_the_gateway_at_start_up() -> None:
    from gateway.settings import Settings, SettingsError

    env = {"WAITROOM_DEV": "1", "REDIS_URL": "redis+sentinel://s1:26379"}
    with pytest.raises(SettingsError, match="names the master"):
        Settings.from_env(env)


async def test_the_pool_is_bounded_and_a_burst_waits(redis_url: str) -> None:
    client = connect(redis_url, max_connections=1, pool_timeout=0.2)
    try:
        assert await client.ping()
        # The only connection is busy for 1.5 s: a second command waits 0.2 s, then gives up.
        # (The busy command is given time to take the connection even on a loaded machine.)
        busy = asyncio.create_task(client.blpop(["wrtest-connect-never"], timeout=1.5))
        await asyncio.sleep(0.5)
        with pytest.raises(ConnectionError, match="No connection available"):
            await client.ping()
        await busy
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A self-signed certificate for 127.0.0.1 (openssl from the OS)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield folder


@contextlib.asynccontextmanager
async def tls_terminator(cert: Path, backend_port: int) -> AsyncIterator[int]:
    """TLS in front of a plaintext server, as stunnel or a cloud Redis's proxy does it: the
    embedded Valkey is built without TLS, so the TLS handshake is met here."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert / "cert.pem", cert / "key.pem")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_tls_with_a_password(certificate: Path) -> None:
    with RedisServer(password="correct horse battery") as server:
        async with tls_terminator(certificate, server.port) as port:
            ca = certificate / "cert.pem"
            good = connect(
                f"rediss://:correct%20horse%20battery@127.0.0.1:{port}/0?ssl_ca_certs={ca}"
            )
            wrong = connect(f"rediss://:nope@127.0.0.1:{port}/0?ssl_ca_certs={ca}")
            unverified = connect(f"rediss://:x@127.0.0.1:{port}/0")  # not our CA: refused
            try:
                assert await good.set("wrtest-tls", "1") and await good.get("wrtest-tls") == b"1"
                with pytest.raises(AuthenticationError):
                    await wrong.ping()
                with pytest.raises(ConnectionError, match="certificate verify failed"):
                    await unverified.ping()
            finally:
                for client in (good, wrong, unverified):
                    await client.aclose()
