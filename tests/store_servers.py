"""Real PostgreSQL and memcached processes for the tests, beside the redis-servers of tests/servers.py.

Each is a private server on a free loopback port, in a temporary directory, that
fault tests may SIGKILL and restart. A missing binary fails the test with the
install advice (never a skip). ``LIMIFY_TEST_POSTGRES_URL`` replaces the session's
PostgreSQL (not the private ones fault tests start).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

import pytest

from tests.servers import free_port, sigkill

POSTGRES_HINT = (
    "Limify's PostgreSQL tests start a private server from the PostgreSQL binaries (initdb, postgres). "
    "Install them: Debian/Ubuntu 'apt-get install postgresql', macOS 'brew install postgresql'; "
    "or set LIMIFY_TEST_POSTGRES_URL=postgresql://user@host:port/db to a database the tests may write to."
)
MEMCACHED_HINT = (
    "Limify's Memcached tests start private memcached processes. Install it: Debian/Ubuntu "
    "'apt-get install memcached', macOS 'brew install memcached'."
)


def _as_user() -> dict[str, Any]:
    """Popen arguments that drop root to the ``postgres`` user (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, the tests need a 'postgres' user to run PostgreSQL as", pytrace=False)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def postgres_binary(name: str) -> str:
    """The path of one PostgreSQL binary (``initdb``, ``postgres``), or the test fails saying how to install it."""
    found = shutil.which(name)
    for candidate in [
        found,
        f"/usr/local/bin/{name}",
        *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")),
    ]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{name} was not found. {POSTGRES_HINT}", pytrace=False)


class PostgresServer:
    """One private PostgreSQL cluster (initdb into a temp dir), its postmaster a child of the tests."""

    def __init__(self, *settings: str) -> None:
        #: Extra ``-c name=value`` settings, e.g. ``"log_statement=all"``.
        self.settings = settings
        self.initdb, self.postgres = postgres_binary("initdb"), postgres_binary("postgres")
        self.dir = tempfile.mkdtemp(prefix="limify-pg-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._user = _as_user()
        if self._user:
            os.chown(self.dir, self._user["user"], self._user["group"])
        self.data = os.path.join(self.dir, "data")

    @property
    def url(self) -> str:
        return f"postgresql://limify@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """initdb (once), then start the postmaster and wait until it accepts connections."""
        if not os.path.exists(self.data):
            subprocess.run(
                [self.initdb, "-D", self.data, "-U", "limify", "-A", "trust", "--no-sync", "-E", "UTF8"],
                check=True, capture_output=True, timeout=120, **self._user,
            )  # fmt: skip
        command = [
            self.postgres, "-D", self.data, "-p", str(self.port), "-k", self.dir,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200",
            *(part for setting in self.settings for part in ("-c", setting)),
        ]  # fmt: skip
        log = open(os.path.join(self.dir, "postgres.log"), "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True, **self._user)
        log.close()
        self._wait(timeout)
        return self

    def _wait(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start: {self._log_tail()}")
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres on port {self.port} did not answer in {timeout}s") from None
                time.sleep(0.05)

    def log(self) -> str:
        """The server's log so far."""
        with open(os.path.join(self.dir, "postgres.log"), errors="replace") as log:
            return log.read()

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log().strip().splitlines()[-5:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend, as a crash of the machine's database would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def restart(self) -> PostgresServer:
        """Start again on the same port and data (crash recovery keeps what was committed)."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class MemcachedServer:
    """One private memcached process on a free loopback port."""

    def __init__(self, memory_mb: int = 64) -> None:
        binary = shutil.which("memcached") or (
            "/usr/bin/memcached" if os.access("/usr/bin/memcached", os.X_OK) else None
        )
        if binary is None:
            pytest.fail(f"memcached was not found on PATH. {MEMCACHED_HINT}", pytrace=False)
        self.binary = binary
        self.memory_mb = memory_mb
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"memcached://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> MemcachedServer:
        """Start memcached and wait until it answers."""
        command = [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", str(self.memory_mb)]
        if os.geteuid() == 0:
            command += ["-u", "memcache" if _has_user("memcache") else "nobody"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"memcached exited at start: {error.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"mn\r\n")
                    if sock.recv(16).startswith(b"MN"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"memcached on port {self.port} did not answer in {timeout}s")
            time.sleep(0.02)

    def flush(self) -> None:
        """Drop every item."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"flush_all\r\n")
            sock.recv(16)

    def kill(self) -> None:
        """SIGKILL the server."""
        sigkill(self.process)

    def restart(self) -> MemcachedServer:
        """Start again on the same port, empty."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Terminate the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
