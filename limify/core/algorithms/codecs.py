"""State codecs: each algorithm's state as text, the Python twin of its Lua ``load``/``save``.

A store without Lua (PostgreSQL, Memcached) keeps each key's state as the text
its algorithm's codec writes, and runs the Python transition on what the codec
reads back; the text is the one the Lua twin stores on Redis, so a state means
the same thing wherever it lives. ``tests/test_codecs.py`` binds every codec to
its Lua twin on a real server.

Two kinds of state:

``"string"``
    A few numbers in one string value (``"<tokens>:<last_us>"``, ``"<whole>+<k>/<limit>"``):
    :class:`NumbersCodec`, whose formats are those of the Lua ``string.format``
    calls (``%.17g`` for floats, ``%d`` for integers), so both write identical text.
``"zset"``
    A sorted set of members with scores (the sliding log's entries, the
    concurrency leases). Its text is the members as JSON, ``[[score, "member"],
    ...]``, in Redis' order (by score, then by member); :class:`ZsetCodec` turns
    that to and from the algorithm's Python state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["StateCodec", "NumbersCodec", "ZsetCodec", "Member"]

#: ``(score, member)``: one member of a sorted-set state.
Member = tuple[float, str]


class StateCodec(Protocol):
    """A state's text form (see the module docs)."""

    #: How Redis holds the state: ``"string"`` or ``"zset"``.
    redis_kind: str

    def dumps(self, state: Any) -> str:
        """The text of ``state`` (not ``None``)."""
        ...

    def loads(self, text: str) -> Any:
        """The state ``text`` stands for; ``None`` for text no state was written as."""
        ...


class NumbersCodec:
    """A state of a few numbers in one string, e.g. ``NumbersCodec("%.17g:%d")``.

    ``pattern`` is the Lua ``string.format`` pattern of the twin's ``save``: ``%d``
    and ``%.17g`` fields between literal separators.
    """

    redis_kind = "string"

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        fields = re.findall(r"%(?:\.17g|d)", pattern)
        self._parsers: tuple[Callable[[str], Any], ...] = tuple(
            float if f == "%.17g" else int for f in fields
        )
        number = r"(-?[0-9.eE+\-]+|-?inf|nan)"
        literal = re.split(r"%(?:\.17g|d)", pattern)
        self._regex = re.compile(number.join(re.escape(part) for part in literal) + r"\Z")

    def dumps(self, state: Sequence[Any]) -> str:
        """The text Lua's ``string.format(pattern, ...)`` writes for ``state``."""
        return self.pattern % tuple(state)

    def loads(self, text: str) -> tuple[Any, ...] | None:
        """The numbers of ``text``, or ``None`` when it does not match the pattern."""
        found = self._regex.match(text)
        if found is None:
            return None
        try:
            return tuple(parse(part) for parse, part in zip(self._parsers, found.groups(), strict=True))
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"NumbersCodec({self.pattern!r})"


class ZsetCodec:
    """A sorted-set state, as JSON members (see the module docs).

    Args:
        to_members: ``state -> [(score, member), ...]`` (any order).
        from_members: ``[(score, member), ...] -> state`` (Redis' order).
    """

    redis_kind = "zset"

    def __init__(
        self,
        to_members: Callable[[Any], Sequence[Member]],
        from_members: Callable[[Sequence[Member]], Any],
    ) -> None:
        self._to_members = to_members
        self._from_members = from_members

    @staticmethod
    def text(members: Sequence[Member]) -> str:
        """The text of a set of members: JSON, in Redis' order, integral scores as integers."""
        ordered = sorted(members, key=lambda member: (member[0], member[1].encode("utf-8", "surrogatepass")))
        rows = [[int(score) if float(score).is_integer() else score, member] for score, member in ordered]
        return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)

    def dumps(self, state: Any) -> str:
        """The members of ``state`` as text."""
        return self.text(self._to_members(state))

    def loads(self, text: str) -> Any:
        """The state of ``text``'s members (``None`` for no members or malformed text)."""
        try:
            rows = json.loads(text)
            members = [(float(score), str(member)) for score, member in rows]
        except (ValueError, TypeError):
            return None
        return self._from_members(members) if members else None
