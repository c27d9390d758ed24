"""Argument checks shared by every public entry point that waits or raises."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_wait_options"]


def check_wait_options(on_exceeded: Any, max_wait: Any) -> None:
    """Validate ``on_exceeded`` (``"raise"`` or ``"wait"``) and ``max_wait`` (seconds or None).

    Raises:
        ValueError: an unknown mode, a negative or infinite wait, or ``max_wait`` without ``"wait"``.
        TypeError: ``max_wait`` is not a number.
    """
    if on_exceeded not in ("raise", "wait"):
        raise ValueError(f"on_exceeded must be 'raise' or 'wait', got {on_exceeded!r}")
    if max_wait is None:
        return
    if on_exceeded != "wait":
        raise ValueError("max_wait only applies with on_exceeded='wait'")
    if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)):
        raise TypeError(f"max_wait must be a number of seconds or None, got {max_wait!r}")
    if not (max_wait >= 0 and math.isfinite(max_wait)):
        raise ValueError(f"max_wait must be a finite number of seconds >= 0, got {max_wait!r}")


def check_reporting(shadow: Any, on_breach: Any) -> None:
    """Raise ``TypeError`` unless ``shadow`` is a bool or None and ``on_breach`` a callable or None."""
    if shadow is not None and not isinstance(shadow, bool):
        raise TypeError(f"shadow must be True, False or None (the process default), got {shadow!r}")
    if on_breach is not None and not callable(on_breach):
        raise TypeError(
            f"on_breach must be None or a callable taking a limify.events.Decision, got {on_breach!r}"
        )
