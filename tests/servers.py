"""Real redis-server processes for the tests: started on free loopback ports, disposable.

Tests never mock Redis. The suite starts its own servers so that fault tests can
kill and restart them without touching anything else on the machine. Without the
redis-server binary, every test that starts one fails with the install advice,
given once (:func:`missing_binary_message`); none is skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import redis

#: The advice every test that needs the redis-server binary fails with when it is missing.
INSTALL_HINT = "Install it: Debian/Ubuntu 'apt-get install redis-server', macOS 'brew install redis'."


def missing_binary_message() -> str:
    """Why a test that starts redis-server processes cannot run, and what to install: said once."""
    if os.environ.get("LIMIFY_TEST_REDIS_URL"):
        return (
            "redis-server is not on PATH, and this test starts redis-server processes of its own "
            "(to kill or restart them, for a Cluster or Sentinel, for a Celery worker or an example), "
            "which LIMIFY_TEST_REDIS_URL does not replace.\n" + INSTALL_HINT
        )
    return (
        "redis-server is not on PATH; Limify's tests run against real Redis servers they start.\n"
        + INSTALL_HINT
        + " (LIMIFY_TEST_REDIS_URL=redis://host:port/db replaces the one plain server most tests "
        "share, not the servers the others start; see README.rst, Try it.)"
    )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def sigkill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a server process still running, as a crash would, and close its stderr pipe."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    if process is not None and process.stderr is not None:
        process.stderr.close()


def free_port(*, cluster_bus: bool = False) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    With ``cluster_bus``, port + 10000 (a cluster node's bus port) is free too and
    within range.
    """
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not cluster_bus:
            return port
        if port <= 55535 and _port_is_free(port + 10000):
            return port
        if 20000 < port - 20000 <= 55535 and _port_is_free(port - 20000) and _port_is_free(port - 10000):
            return port - 20000
    raise RuntimeError("no free port pair for a cluster node")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child started with ``start_new_session``; after 15 s, SIGKILL its whole group."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class RedisServer:
    """One redis-server child process with persistence off."""

    def __init__(self, port: int | None = None, *extra_args: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(missing_binary_message(), pytrace=False)
        self.binary = binary
        self._fixed_port = port is not None
        self._cluster = "--cluster-enabled" in extra_args
        self.port = port or free_port(cluster_bus=self._cluster)
        self.extra_args = extra_args
        #: Arguments placed before the options, e.g. a config file and --sentinel.
        self.binary_args: tuple[str, ...] = ()
        self.dir = tempfile.mkdtemp(prefix="limify-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server; a port taken meanwhile by someone else is replaced by a fresh one."""
        for attempt in range(5):
            try:
                return self._start_once(timeout)
            except RuntimeError as exc:
                if self._fixed_port or "in use" not in str(exc) or attempt == 4:
                    raise
                self.port = free_port(cluster_bus=self._cluster)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> RedisServer:
        command = [
            self.binary, *self.binary_args, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.dir,
            "--logfile", os.path.join(self.dir, "redis.log"), *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                if self.process.poll() is not None:
                    stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"redis-server exited at start: {stderr.strip()} {self._log_tail()}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s")
                time.sleep(0.02)
        finally:
            client.close()

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log")) as log:
                return " | ".join(log.read().strip().splitlines()[-3:])
        except OSError:
            return ""

    def restart(self) -> RedisServer:
        """Start the server again on the same port (after kill or stop), empty."""
        self.kill()
        self._fixed_port = True
        return self.start()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        sigkill(self.process)

    def stop(self) -> None:
        """Terminate the server and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


class RedisClusterServers:
    """A real Redis Cluster: ``masters`` redis-server processes joined by redis-cli --cluster create."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(None, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
            for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.extra_args = (
                *node.extra_args,
                "--cluster-config-file",
                os.path.join(node.dir, "nodes.conf"),
            )
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli was not found on PATH; it comes with redis-server (redis-tools)")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            _wait_for(lambda c=client: c.cluster("info")["cluster_state"] == "ok", 30, "cluster state ok")  # type: ignore[misc]
            client.close()
        return self

    def slot_owner(self, slot: int) -> int:
        """The port of the master serving ``slot``, as the first node sees it."""
        client = redis.Redis(port=self.nodes[0].port, decode_responses=True)
        try:
            for line in client.execute_command("CLUSTER", "NODES").splitlines():
                address, ranges = line.split()[1], line.split()[8:]
                for span in ranges:
                    if span.startswith("["):  # "[slot->-id]": a migration in progress, not ownership
                        continue
                    first, _, last = span.partition("-")
                    if int(first) <= slot <= int(last or first):
                        return int(address.split("@")[0].rsplit(":", 1)[1])
        finally:
            client.close()
        raise RuntimeError(f"no master serves slot {slot}")

    def begin_migration(self, slot: int) -> SlotMigration:
        """Start moving ``slot`` to the next master (see :class:`SlotMigration`)."""
        return SlotMigration(self, slot)

    def migrate_slot(self, slot: int, *, batch: int = 10, pause: float = 0.0) -> tuple[int, int]:
        """Move ``slot`` to the next master, the way ``redis-cli --cluster reshard`` does.

        The keys move ``batch`` at a time, ``pause`` seconds apart, so that clients
        meet the half-moved slot. Returns the source and target ports.
        """
        migration = self.begin_migration(slot)
        migration.move_all(batch=batch, pause=pause)
        migration.finish()
        return migration.source, migration.target

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelServers:
    """One master, one replica and three sentinels, all real processes on loopback."""

    service = "limify-test"

    def __init__(self) -> None:
        self.master = RedisServer()
        self.replica = RedisServer()
        self.sentinels: list[RedisServer] = []

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{nodes}/{self.service}"

    def start(self) -> SentinelServers:
        self.master.start()
        self.replica.extra_args = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica.start()
        for _ in range(3):
            sentinel = RedisServer()
            config = os.path.join(sentinel.dir, "sentinel.conf")
            with open(config, "w") as handle:
                handle.write(
                    f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.service} 1000\n"
                    f"sentinel failover-timeout {self.service} 5000\n"
                    f"sentinel parallel-syncs {self.service} 1\n"
                )
            sentinel.binary_args = (config, "--sentinel")
            sentinel.start()
            self.sentinels.append(sentinel)
        probe = redis.Redis(port=self.sentinels[0].port)
        _wait_for(
            lambda: (
                int(probe.sentinel_master(self.service).get("num-other-sentinels", 0)) >= 2
                and int(probe.sentinel_master(self.service).get("num-slaves", 0)) >= 1
            ),
            30,
            "sentinels to discover each other and the replica",
        )
        probe.close()
        return self

    def master_port(self) -> int:
        """The port of the current master, as the sentinels see it."""
        probe = redis.Redis(port=self.sentinels[0].port)
        try:
            return int(probe.sentinel_get_master_addr_by_name(self.service)[1])
        finally:
            probe.close()

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.stop()


class SlotMigration:
    """One slot on its way from its master to the next one, step by step.

    Created: the target is IMPORTING and the source MIGRATING the slot. Then
    :meth:`move` / :meth:`move_all` send keys with MIGRATE, and :meth:`finish`
    tells every master the new owner.
    """

    def __init__(self, cluster: RedisClusterServers, slot: int) -> None:
        self.slot = slot
        self.clients = {
            node.port: redis.Redis(port=node.port, decode_responses=True) for node in cluster.nodes
        }
        self.ids = {port: client.execute_command("CLUSTER", "MYID") for port, client in self.clients.items()}
        ports = list(self.clients)
        self.source = cluster.slot_owner(slot)
        self.target = ports[(ports.index(self.source) + 1) % len(ports)]
        self.clients[self.target].execute_command(
            "CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[self.source]
        )
        self.clients[self.source].execute_command(
            "CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[self.target]
        )

    def move(self, keys: list[str]) -> None:
        """MIGRATE ``keys`` (those still on the source) to the target."""
        if keys:
            self.clients[self.source].execute_command(
                "MIGRATE", "127.0.0.1", self.target, "", 0, 5000, "KEYS", *keys
            )

    def move_all(self, *, batch: int = 10, pause: float = 0.0) -> None:
        """Move every key left in the slot, ``batch`` at a time, sleeping ``pause`` between batches."""
        source = self.clients[self.source]
        while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, batch):
            self.move(keys)
            time.sleep(pause)

    def finish(self) -> None:
        """Give the slot to the target on every master (the target first), then close the clients."""
        try:
            for port in sorted(self.clients, key=lambda p: (p != self.target, p != self.source)):
                self.clients[port].execute_command(
                    "CLUSTER", "SETSLOT", self.slot, "NODE", self.ids[self.target]
                )
        finally:
            for client in self.clients.values():
                client.close()
