"""Commands packed as RESP bytes for a connection, without the client's per-argument checks.

redis-py packs each command in Python, testing every argument against several types
through its encoder; for the scripts Limify sends (a SHA, a few keys and numbers)
that was a third of an async check's time. :func:`packed` writes the same bytes
(``*<n>`` then one ``$<len>`` bulk string per argument) with the connection's own
text encoding, so keys are the bytes the client itself would send. A connection that
packs with hiredis (redis-py's sync connections, when hiredis is installed) gets
hiredis' own ``pack_command``, called directly: the very bytes it would send, in C.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any


def _hiredis_packer() -> Callable[..., bytes] | None:
    """hiredis' ``pack_command``, or ``None`` without hiredis (optional: the hiredis extra)."""
    try:
        module = importlib.import_module("hiredis")  # by name: type checks pass without it too
    except ImportError:
        return None
    return getattr(module, "pack_command", None)


_hiredis_pack = _hiredis_packer()

__all__ = ["packed"]


def packed(commands: Sequence[tuple[Any, ...]], connection: Any) -> Any:
    """``commands`` as a list of RESP byte strings, for ``send_packed_command``.

    The connection's own packing is used when it has no redis-py ``encoder`` (a client
    of another kind) or an argument is of a type this does not pack (str, bytes, int,
    float); either way the bytes on the wire are the same.
    """
    encoder = getattr(connection, "encoder", None)
    if encoder is None:
        return connection.pack_commands(commands)
    if _hiredis_pack is not None and type(getattr(connection, "_command_packer", None)).__name__ == (
        "HiredisRespSerializer"
    ):  # the connection's packer is hiredis.pack_command behind a Python wrapper: call it directly
        return [_hiredis_pack(command) for command in commands]
    encoding, errors = encoder.encoding, encoder.encoding_errors
    parts: list[bytes] = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for arg in command:
            kind = type(arg)
            if kind is str:
                data = arg.encode(encoding, errors)
            elif kind is int or kind is float:
                data = repr(arg).encode()  # as redis-py's encoder (bool, an int too, is refused below)
            elif kind is bytes:
                data = arg
            else:
                return connection.pack_commands(commands)
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return [b"".join(parts)]
