"""The outbound pause script: not an algorithm, the Redis side of ``hold(key, ms)``.

A pause is storage data: one key per upstream whose remaining lifetime is the
pause left, extended to the longer of two pauses. ``pause.lua`` runs it on
Redis with the server's clock (``PTTL``), so app servers with skewed clocks agree
on when it ends; :meth:`limify.InMemoryAdapter.hold` is its Python twin.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["PAUSE_SCRIPT"]

#: The source of ``pause.lua``. KEYS[1]: the pause key; ARGV[1]: the pause in ms (0 reads).
PAUSE_SCRIPT = files("limify.core.algorithms").joinpath("pause.lua").read_text(encoding="utf-8")
