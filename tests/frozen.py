"""A redis-server that stops answering without closing anything: SIGSTOP, then SIGCONT.

A stopped server still accepts connections (the kernel completes the handshake
and buffers what clients send), so clients block until their socket timeout,
as with a frozen host or a dropped network path. Killing the server instead
would refuse connections at once, which is the easy case.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from tests.servers import RedisServer


@contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """Stop ``server`` for the ``with`` body; it resumes afterwards, whatever happened."""
    assert server.process is not None and server.process.poll() is None, "the server is not running"
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
