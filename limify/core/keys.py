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

import functools
import hashlib
from collections.abc import Sequence
from typing import Any

__all__ = [
    "encode_part",
    "identity_text",
    "limit_keys",
    "stacked_keys",
    "SHARED_TAG",
    "period_tag",
    "MAX_PART_LENGTH",
    "MAX_KEY_LENGTH",
    "PREFIX",
]

PREFIX = "limify"
#: Longest encoded part kept verbatim; longer ones become ``%%`` + 64 hex digits.
MAX_PART_LENGTH = 128
#: Longest storage key :func:`limit_keys` can build: prefix, braces, three parts of
#: at most MAX_PART_LENGTH, separators and a period tag of at most 20 characters.
MAX_KEY_LENGTH = 420

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@+=,!~<>/-")
_ESCAPES = [chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256)]


def identity_text(value: Any) -> bytes:
    """The bytes an identity value is compared by.

    ``str`` values by their UTF-8 (lone surrogates kept), ``bytes`` as they are,
    ``int`` by their decimal digits (so ``42`` and ``"42"`` are the same caller),
    however many, anything else by ``str(value)``.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        text = value
    elif type(value) is int:
        text = _decimal(value)
    else:
        text = str(value)
    return text.encode("utf-8", "surrogatepass")


#: Digits converted per step by :func:`_decimal`, well under Python's int-to-str limit.
_CHUNK_DIGITS = 1000
_CHUNK = 10**_CHUNK_DIGITS


def _decimal(value: int) -> str:
    """``str(value)`` for any int, also past Python's int-to-str digit limit (4300 by default).

    That limit guards ``str()`` from quadratic conversions of attacker-sized ints;
    a key is converted once per call, and hashed when long, so any int works.
    """
    if -_CHUNK < value < _CHUNK:
        return str(value)
    sign, value = ("-", -value) if value < 0 else ("", value)
    chunks = []
    while value >= _CHUNK:
        value, low = divmod(value, _CHUNK)
        chunks.append(f"{low:0{_CHUNK_DIGITS}d}")
    chunks.append(str(value))
    return sign + "".join(reversed(chunks))


def encode_part(value: Any) -> str:
    """Encode one key part; distinct inputs (by :func:`identity_text`) never collide."""
    if isinstance(value, str):
        if value.isascii() and value.isalnum() and len(value) <= MAX_PART_LENGTH:
            return value  # the common case: already safe, nothing to do
        return _encoded_text(value)
    return _encoded(value)


@functools.lru_cache(maxsize=4096)
def _encoded_text(value: str) -> str:
    """:func:`_encoded` of a string, remembered: client addresses and user ids come back often."""
    return _encoded(value)


def _encoded(value: Any) -> str:
    raw = identity_text(value)
    if len(raw) <= MAX_PART_LENGTH:
        encoded = "".join([_ESCAPES[b] for b in raw])
        if len(encoded) <= MAX_PART_LENGTH:
            return encoded
    return "%%" + hashlib.sha256(raw).hexdigest()


def period_tag(period_us: int) -> str:
    """A period as it appears in compound keys: ``1s``, ``86400s``, ``1500000us``."""
    seconds, micros = divmod(period_us, 1_000_000)
    return f"{seconds}s" if not micros else f"{period_us}us"


def limit_keys(
    scope: str,
    plan_ids: Sequence[str],
    periods_us: Sequence[int],
    shared: Sequence[bool],
    identity: str | None,
) -> tuple[str, ...]:
    """The storage keys of one call's limits; all parts already encoded.

    One limit keeps the seed's layout, ``limify:<scope>:<plan>[:<identity>]``.
    Several limits run in one script, so their keys share a Redis Cluster hash
    slot through a hash tag: ``limify:{<scope>:<identity>}:<plan>.<period>`` when
    every limit is per key, or ``limify:{<scope>}:<plan>.<period>[:<identity>]``
    when one is shared by every key (which pins the callable to one slot).
    """
    if len(plan_ids) == 1:
        base = f"{PREFIX}:{scope}:{plan_ids[0]}"
        return (base if identity is None or shared[0] else f"{base}:{identity}",)
    tags = [f"{plan_id}.{period_tag(period)}" for plan_id, period in zip(plan_ids, periods_us, strict=True)]
    if identity is not None and not any(shared):
        return tuple(f"{PREFIX}:{{{scope}:{identity}}}:{tag}" for tag in tags)
    return tuple(
        f"{PREFIX}:{{{scope}}}:{tag}"
        if is_shared or identity is None
        else f"{PREFIX}:{{{scope}}}:{tag}:{identity}"
        for tag, is_shared in zip(tags, shared, strict=True)
    )


#: The hash tag of a stacked check holding a limit shared by every identity: such a
#: check must live in that limit's one slot. ``*`` never appears in an encoded part.
SHARED_TAG = "*"


def stacked_keys(
    scopes: Sequence[str],
    plan_ids: Sequence[str],
    periods_us: Sequence[int],
    shared: Sequence[bool],
    identity: str,
) -> tuple[str, ...]:
    """The keys of a check whose limits come from several scopes; all parts already encoded.

    A route's rule, the application-wide limits and a penalty all count one
    identity in one atomic check, so their keys share a Redis Cluster hash slot:
    the identity is the hash tag, ``limify:{<identity>}:<scope>:<plan>.<period>``
    (``limify:{user:42}:items:default.60s``, ``limify:{user:42}:*app:default.3600s``).
    When a limit is shared by every identity, every key of the check takes the tag
    :data:`SHARED_TAG`: ``limify:{*}:<scope>:<plan>.<period>`` for the shared
    limits, the identity appended for the others. An identity tag always holds a
    ``:`` and ``*`` tags none, and rule ids are encoded (never ``*``), so these
    keys never equal each other nor a key of :func:`limit_keys`.
    """
    tags = [f"{plan_id}.{period_tag(period)}" for plan_id, period in zip(plan_ids, periods_us, strict=True)]
    if not any(shared):
        return tuple(
            f"{PREFIX}:{{{identity}}}:{scope}:{tag}" for scope, tag in zip(scopes, tags, strict=True)
        )
    return tuple(
        f"{PREFIX}:{{{SHARED_TAG}}}:{scope}:{tag}"
        if is_shared
        else f"{PREFIX}:{{{SHARED_TAG}}}:{scope}:{tag}:{identity}"
        for scope, tag, is_shared in zip(scopes, tags, shared, strict=True)
    )
