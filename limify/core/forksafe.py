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
from typing import Any

__all__ = ["fork_safe_lock"]

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


def _renew_locks_in_child() -> None:
    # Runs in the child right after fork, on its only thread: nothing else can
    # hold these locks now, including the registry's own.
    global _registry_lock
    _registry_lock = threading.Lock()
    for owner, attributes in list(_owners.items()):
        for attribute in attributes:
            setattr(owner, attribute, threading.Lock())


os.register_at_fork(after_in_child=_renew_locks_in_child)
