"""Storage keys: injective, bounded and safe for Redis Cluster.

Every part of a key (scope name, plan id, identity value) goes through
:func:`encode_part`, which maps distinct inputs to distinct outputs:

* characters outside ``[A-Za-z0-9._@+=,!~<>/-]`` are percent-encoded from their
  UTF-8 bytes (``%`` itself included), so ``:`` never appears inside a part and
  ``{``, ``}``, ``*``, whitespace and control characters never appear at all;
* an encoding longer than :data:`MAX_PART_LENGTH` is replaced by ``%%`` and the
  SHA-256 of the raw bytes. ``%%`` never starts a percent-encoding, so a hashed
  part cannot equal an encoded one.

Parts are joined with ``:`` behind the ``limify:`` prefix, so a key's structure
is unambiguous and its length bounded (see :data:`MAX_PART_LENGTH`).
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["encode_part", "identity_text", "MAX_PART_LENGTH", "PREFIX"]

PREFIX = "limify"
#: Longest encoded part kept verbatim; longer ones become ``%%`` + 64 hex digits.
MAX_PART_LENGTH = 128

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@+=,!~<>/-")
_ESCAPES = [chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256)]


def identity_text(value: Any) -> bytes:
    """The bytes an identity value is compared by.

    ``str`` values by their UTF-8 (lone surrogates kept), ``bytes`` as they are,
    ``int`` by their decimal digits (so ``42`` and ``"42"`` are the same caller),
    anything else by ``str(value)``.
    """
    if isinstance(value, bytes):
        return value
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "surrogatepass")


def encode_part(value: Any) -> str:
    """Encode one key part; distinct inputs (by :func:`identity_text`) never collide."""
    if isinstance(value, str) and value.isascii() and value.isalnum() and len(value) <= MAX_PART_LENGTH:
        return value  # the common case: already safe, nothing to do
    raw = identity_text(value)
    if len(raw) <= MAX_PART_LENGTH:
        encoded = "".join([_ESCAPES[b] for b in raw])
        if len(encoded) <= MAX_PART_LENGTH:
            return encoded
    return "%%" + hashlib.sha256(raw).hexdigest()
