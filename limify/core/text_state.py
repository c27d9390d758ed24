"""What the stores without Lua share: a check run over states kept as codec text.

PostgreSQL and Memcached keep each key's state as the text of its algorithm's
codec (:mod:`limify.core.algorithms.codecs`) and an expiry. Their adapters only
provide atomicity (a transaction, a compare-and-set); the decision itself is
:func:`~limify.core.algorithms.base.run_limits`, here, on the states the codec
reads back. A state past its expiry reads as absent, whatever the store still holds.

The outbound pause (``hold``) is kept the same way: its text is the end of the
pause in microseconds; :func:`hold_step` is the twin of ``pause.lua`` and of
:meth:`limify.InMemoryAdapter.hold`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from limify.core.algorithms.base import Outcome, run_limits
from limify.core.check import Check
from limify.core.clock import Clock

__all__ = ["Saved", "TextRun", "run_on_text", "hold_step", "check_clock", "encode_text"]


class Saved(NamedTuple):
    """One key's state as a store holds it: the codec's text and when it stops meaning anything."""

    text: str
    expires_us: int


class TextRun(NamedTuple):
    """What a store must do after running a check: answer ``outcome``, then save ``writes``.

    ``writes`` maps the index of a key to its new :class:`Saved` (``None``: delete it).
    """

    outcome: Outcome
    writes: dict[int, Saved | None]


def encode_text(text: str) -> bytes:
    """The bytes a store keeps for ``text`` (keys or states): UTF-8, lone surrogates kept as they are."""
    return text.encode("utf-8", "surrogatepass")


def run_on_text(check: Check, saved: Sequence[Saved | None], now_us: int) -> TextRun:
    """Run ``check`` on the states ``saved`` holds for its keys (``None``: no state), at ``now_us``."""
    codec = check.spec.codec
    states = [
        None if entry is None or entry.expires_us <= now_us or not entry.text else codec.loads(entry.text)
        for entry in saved
    ]
    outcome, writes = run_limits(check.spec, states, now_us, check.plans, check.cost, check.mode, check.token)
    changes: dict[int, Saved | None] = {}
    for index, state, ttl_us in writes:
        changes[index] = None if ttl_us <= 0 or state is None else Saved(codec.dumps(state), now_us + ttl_us)
    return TextRun(outcome, changes)


def hold_step(saved: Saved | None, now_us: int, ms: int) -> tuple[int, Saved | None, bool]:
    """The outbound pause of one key: ``(ms left, new saved state, whether to write it)``.

    A pause only grows: ``ms > 0`` extends it to at least ``ms`` from now; ``0`` reads it.
    """
    until = now_us
    if saved is not None and saved.expires_us > now_us and saved.text.isdigit():
        until = int(saved.text)
    left_us = until - now_us
    if ms > 0 and ms * 1000 > left_us:
        end = now_us + ms * 1000
        return ms, Saved(str(end), end), True
    if left_us <= 0:
        return 0, None, saved is not None
    return -(-left_us // 1000), saved, False


def check_clock(clock: Clock | None) -> None:
    """Raise ``TypeError`` unless ``clock`` is ``None`` (the server's time) or has ``now_us()``."""
    if clock is not None and not callable(getattr(clock, "now_us", None)):
        raise TypeError(f"clock must be None (the server's clock) or have a now_us() method, got {clock!r}")
