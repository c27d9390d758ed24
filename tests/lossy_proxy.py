"""A loopback TCP proxy in front of a real redis-server that can lose a reply on purpose.

The request goes through and the server runs it; the reply is thrown away and the
client's connection closed (or left silent until the client's read times out). That
is what a network blip after the server answered looks like to a client, and the case
in which re-sending the request would run it twice.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class LossyProxy:
    """Forwards 127.0.0.1:``port`` to ``127.0.0.1:upstream_port``; see :meth:`lose_next_reply`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: list[Any] | None = None  # [markers, then, requests still to let through]
        self._sockets: list[socket.socket] = []
        self._closed = False
        #: Replies thrown away so far, and set each time one is.
        self.lost = 0
        self.reply_lost = threading.Event()
        #: Client connections accepted so far.
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def lose_next_reply(self, *markers: bytes, then: str = "close", skip: int = 0) -> None:
        """Lose the reply to the next request containing one of ``markers`` (EVALSHA, EVAL).

        ``then="close"`` closes the client's connection once the server has answered;
        ``then="stall"`` keeps it open and silent, so the client waits for its timeout.
        ``skip`` such requests go through first. Later requests, on any connection, go
        through untouched.
        """
        if then not in ("close", "stall"):
            raise ValueError(then)
        with self._lock:
            self._armed = [markers or (b"EVALSHA", b"EVAL"), then, skip]
            self.reply_lost.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self.connections += 1
                self._sockets += [client, upstream]
            losing: dict[str, str | None] = {"mode": None}
            threading.Thread(target=self._requests, args=(client, upstream, losing), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, losing), daemon=True).start()

    def _requests(
        self, client: socket.socket, upstream: socket.socket, losing: dict[str, str | None]
    ) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    if self._armed is not None and any(marker in data for marker in self._armed[0]):
                        if self._armed[2] > 0:
                            self._armed[2] -= 1
                        else:
                            losing["mode"] = self._armed[1]
                            self._armed = None
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(upstream)

    def _replies(self, upstream: socket.socket, client: socket.socket, losing: dict[str, str | None]) -> None:
        try:
            while data := upstream.recv(65536):
                mode = losing["mode"]
                if mode is None:
                    client.sendall(data)
                    continue
                if mode != "gone":
                    losing["mode"] = "gone" if mode == "close" else "silent"
                    with self._lock:
                        self.lost += 1
                    self.reply_lost.set()
                if losing["mode"] == "gone":
                    _shutdown(client)
                    return
        except OSError:
            pass
        finally:
            if losing["mode"] != "silent":
                _shutdown(client)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        self._listener.close()
        for sock in sockets:
            _shutdown(sock)
            sock.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@contextmanager
def lossy_proxy(upstream_port: int) -> Iterator[LossyProxy]:
    """A :class:`LossyProxy` closed on exit."""
    proxy = LossyProxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
