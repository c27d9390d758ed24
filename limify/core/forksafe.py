"""Locks that survive ``os.fork``.

A child process starts with a copy of every lock as it was at the fork, but only
with the thread that forked. A lock that another thread of the parent held at
that instant stays held for ever in the child, so its first check deadlocks
(pre-fork servers such as gunicorn fork while the master's threads run). Every
lock Limify holds is made with :func:`fork_safe_lock`, which remembers its owner
(weakly); in a forked child each one is replaced by a fresh, unheld lock before
the child's own code runs. The state a lock guarded is kept as it is: each
update under those locks is a sequence of single dict or attribute operations,
so the child never sees one half done.

Plain ``threading.Lock`` objects are kept (no wrapper), so the hot path pays
nothing for this.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, MutableMapping
from typing import Any, Generic, TypeVar

__all__ = ["fork_safe_lock", "OnePer"]

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")

#: Owner -> names of its attributes holding fork-safe locks.
_owners: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def fork_safe_lock(owner: Any, attribute: str = "_lock") -> threading.Lock:
    """A new lock for ``owner.<attribute>``, replaced by a fresh one in forked children.

    ``owner`` is the object (or module) that keeps the lock in ``attribute``; it
    must be weakly referenceable and hashable (plain instances and modules are).
    """
    with _registry_lock:
        _owners.setdefault(owner, set()).add(attribute)
    return threading.Lock()


class OnePer(Generic[_Key, _Value]):
    """One value per key of ``table``, made on first demand under a fork-safe lock, so that
    two threads asking at once share one value; a value already made is read without the lock."""

    def __init__(self, table: MutableMapping[_Key, _Value]) -> None:
        self.table = table
        self._lock = fork_safe_lock(self)

    def get(self, key: _Key, make: Callable[[], _Value]) -> _Value:
        """The value of ``key``, made by ``make()`` if there is none yet."""
        found = self.table.get(key)
        if found is None:
            with self._lock:
                found = self.table.get(key)
                if found is None:
                    found = self.table[key] = make()
        return found

    def find(self, key: _Key) -> _Value | None:
        """The value of ``key``, if one was made."""
        return self.table.get(key)

    def values(self) -> list[_Value]:
        """Every value made so far."""
        with self._lock:
            return list(self.table.values())


def _renew_locks_in_child() -> None:
    # Runs in the child right after fork, on its only thread: nothing else can
    # hold these locks now, including the registry's own.
    global _registry_lock
    _registry_lock = threading.Lock()
    for owner, attributes in list(_owners.items()):
        for attribute in attributes:
            setattr(owner, attribute, threading.Lock())


os.register_at_fork(after_in_child=_renew_locks_in_child)
