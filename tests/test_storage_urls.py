"""Storage URLs: the schemes other libraries write, and redis-py's options (TLS included) on every topology.

Real servers throughout: redis-server with TLS (a self-signed certificate made with
openssl), as a standalone server, a one-node cluster and a master behind a sentinel;
a server on a Unix socket; the session's server under the valkey:// alias.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import pytest
import redis

from limify import Limify, LimifyConfig, RequestContext, Rule, rate_limit
from limify.core.redis_clients import ALIASES, canonical, check_url, url_options
from limify.core.storage import SCHEMES, StorageURL
from tests.servers import free_port


@dataclass
class Certificate:
    """A self-signed certificate for 127.0.0.1, also the CA clients trust."""

    cert: str
    key: str


@pytest.fixture(scope="module")
def certificate() -> Iterator[Certificate]:
    """A fresh self-signed certificate and key, made by the openssl command line tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS tests need the openssl command on PATH (apt-get install openssl)", pytrace=False)
    folder = tempfile.mkdtemp(prefix="limify-tls-")
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    yield Certificate(cert, key)
    shutil.rmtree(folder, ignore_errors=True)


class TLSRedis:
    """A redis-server (or sentinel) that only speaks TLS, on a free loopback port."""

    def __init__(self, certificate: Certificate, *extra: str, sentinel_config: str | None = None) -> None:
        self.port = free_port(cluster_bus="--cluster-enabled" in extra)
        self.dir = tempfile.mkdtemp(prefix="limify-tls-redis-")
        self.certificate = certificate
        self.extra = extra
        self.sentinel_config = sentinel_config
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        """A TLS client trusting the certificate."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            ssl=True,
            ssl_ca_certs=self.certificate.cert,
            socket_connect_timeout=0.5,
        )

    def start(self) -> TLSRedis:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not on PATH"
        head: list[str] = [binary]
        if self.sentinel_config is not None:
            config = os.path.join(self.dir, "sentinel.conf")
            with open(config, "w") as handle:
                handle.write(self.sentinel_config)
            head += [config, "--sentinel"]
        cert, key = self.certificate.cert, self.certificate.key
        self.process = subprocess.Popen(
            [*head, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert,
             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", self.dir, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        client = self.client()
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    assert self.process.poll() is None, "redis-server with TLS exited at start"
                    assert time.monotonic() < deadline, "redis-server with TLS did not answer"
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)


def _tls_query(certificate: Certificate) -> str:
    return f"ssl=true&ssl_ca_certs={certificate.cert}&ssl_check_hostname=false"


def _counts(url: str, name: str) -> list[bool]:
    """Three calls of a 2-per-minute limit on ``url``, sync then async: which were admitted."""

    @rate_limit("2/minute", storage=url, name=f"{name}-sync")
    def call() -> bool:
        return True

    @rate_limit("2/minute", storage=url, name=f"{name}-async")
    async def acall() -> bool:
        return True

    admitted = []
    for _ in range(3):
        try:
            admitted.append(call())
        except Exception:
            admitted.append(False)

    async def run() -> None:
        for _ in range(3):
            try:
                admitted.append(await acall())
            except Exception:
                admitted.append(False)

    anyio.run(run)
    return admitted


def test_tls_through_a_cluster_url(certificate: Certificate) -> None:
    """redis+cluster://...?ssl=true&ssl_ca_certs=...: limits run on a cluster that only speaks TLS."""
    node = TLSRedis(certificate, "--cluster-enabled", "yes", "--tls-cluster", "yes",
                    "--cluster-config-file", "nodes.conf").start()  # fmt: skip
    try:
        with node.client() as client:
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            deadline = time.monotonic() + 20
            while client.cluster("info")["cluster_state"] != "ok":
                assert time.monotonic() < deadline, "the one-node TLS cluster did not come up"
                time.sleep(0.05)
        url = f"redis+cluster://127.0.0.1:{node.port}?{_tls_query(certificate)}"
        assert _counts(url, "tls-cluster") == [True, True, False] * 2
        assert (
            _counts(url.replace("redis+cluster", "valkey+cluster"), "tls-cluster-alias")
            == [True, True, False] * 2
        )
    finally:
        node.stop()


def test_tls_through_a_sentinel_url(certificate: Certificate) -> None:
    """redis+sentinel://...?ssl=true: the sentinel and the master it names are both reached over TLS."""
    master = TLSRedis(certificate).start()
    config = (
        f"sentinel monitor tlsmaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds tlsmaster 5000\ntls-replication yes\n"
    )
    sentinel = TLSRedis(certificate, sentinel_config=config).start()
    try:
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/tlsmaster?{_tls_query(certificate)}"
        assert _counts(url, "tls-sentinel") == [True, True, False] * 2
        with master.client() as client:
            assert client.keys("limify:tls-sentinel-*")  # the counts live on the master
    finally:
        sentinel.stop()
        master.stop()


def test_tls_standalone_under_rediss_valkeys_and_ssl_true(certificate: Certificate) -> None:
    """rediss://, valkeys:// and redis://...?ssl=true all reach a TLS-only server."""
    server = TLSRedis(certificate).start()
    try:
        ca = f"ssl_ca_certs={certificate.cert}&ssl_check_hostname=false"
        for index, url in enumerate(
            [
                f"rediss://127.0.0.1:{server.port}/0?{ca}",
                f"valkeys://127.0.0.1:{server.port}/0?{ca}",
                f"redis://127.0.0.1:{server.port}/0?ssl=true&{ca}",
            ]
        ):
            assert _counts(url, f"tls-standalone-{index}") == [True, True, False] * 2, url
    finally:
        server.stop()


def test_valkey_scheme_reaches_a_plain_server(redis_url: str) -> None:
    """valkey://host:port/db is redis://host:port/db: same protocol, same keys."""
    url = redis_url.replace("redis://", "valkey://")
    limify = Limify(config=LimifyConfig([Rule("items", rate="1/minute")]), storage=url)
    context = RequestContext("GET", "/items", client_ip="192.0.2.1")
    assert [limify.sync_limiter.check(context).allowed for _ in range(2)] == [True, False]
    assert redis.Redis.from_url(redis_url).exists("limify:items:default:ip:192.0.2.1")


def test_redis_unix_scheme_reaches_a_unix_socket() -> None:
    """redis+unix:///path.sock?db=0 (limits' spelling) is unix:///path.sock?db=0."""
    from tests.servers import RedisServer

    folder = tempfile.mkdtemp(prefix="limify-unix-")
    socket_path = os.path.join(folder, "redis.sock")
    server = RedisServer(None, "--unixsocket", socket_path, "--unixsocketperm", "700").start()
    try:
        assert _counts(f"redis+unix://{socket_path}?db=0", "unix") == [True, True, False] * 2
        with redis.Redis(unix_socket_path=socket_path) as client:
            assert client.keys("limify:unix-*")
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_aliases_are_registered_storage_schemes() -> None:
    """Every alias is a storage scheme, and each stands for a Redis scheme."""
    for alias, scheme in ALIASES.items():
        assert alias in SCHEMES
        assert canonical(f"{alias}://h:1/0") == f"{scheme}://h:1/0"
        assert isinstance(
            StorageURL(f"{alias}://127.0.0.1:1/name" if "sentinel" in alias else f"{alias}://127.0.0.1:1/0"),
            StorageURL,
        )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis://h:1/0?sockettimeout=1", "unknown option 'sockettimeout'"),
        ("redis+cluster://h:1?ssl=maybe", "ssl='maybe'"),
        ("valkey+sentinel://h:1/m?socket_timeout=soon", "socket_timeout='soon'"),
        ("redis+cluster://h:1?ssl_ca_path=/x", "takes no ssl_ca_path"),
        ("valkeys://h:1/0?max_connections=many", "max_connections='many'"),
    ],
)
def test_bad_url_options_fail_where_the_url_is_configured(url: str, words: str) -> None:
    """An option redis-py does not take, or a bad value, is a ValueError naming it when the limit is declared."""
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("?", r"\?")):
        rate_limit("1/s", storage=url)
    with pytest.raises(ValueError):
        check_url(url)


def test_url_options_are_typed_as_redis_py_types_them() -> None:
    """Timeouts are floats, pools ints, TLS switches booleans, paths strings."""
    options = url_options("socket_timeout=0.5&max_connections=7&ssl=yes&ssl_ca_certs=/ca.pem&protocol=3")
    assert options == {
        "socket_timeout": 0.5, "max_connections": 7, "ssl": True, "ssl_ca_certs": "/ca.pem", "protocol": 3,
    }  # fmt: skip
