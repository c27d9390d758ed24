"""Redis and valkey client errors, recognised by class name, and what each means for Limify.

redis-py and valkey-py (its API-compatible fork) raise their own exception
classes; matching by name handles both alike. See :mod:`limify.core.redis_adapter`
for which errors become :class:`limify.StorageError`.
"""

from __future__ import annotations

__all__ = [
    "client_error_names",
    "is_reply_error",
    "is_unreachable",
    "is_refusal",
    "is_storage_failure",
    "is_noscript",
    "is_resharding",
]


def client_error_names(error: BaseException) -> set[str]:
    """The names of ``error``'s classes that come from redis-py or valkey-py.

    Errors are recognised by class name so that redis-py and valkey-py (its API-
    compatible fork, with its own exception classes) are handled alike.
    """
    return {
        cls.__name__ for cls in type(error).__mro__ if cls.__module__.split(".")[0] in ("redis", "valkey")
    }


def is_reply_error(error: BaseException) -> bool:
    """True when ``error`` is the server's error reply (the connection is still in step)."""
    names = client_error_names(error)
    return "ResponseError" in names and "ConnectionError" not in names


# Errors are recognised by class name (see client_error_names).
_UNREACHABLE = frozenset(
    {
        "ConnectionError",
        "TimeoutError",
        "ClusterDownError",
        "MasterNotFoundError",
        "SlaveNotFoundError",
        "SlotNotCoveredError",
    }
)
#: Error replies meaning the server cannot take the call now, whatever the call.
#: redis-py and valkey-py raise the first ones as their own classes (with the code
#: cut off the message); the others come as a plain ResponseError starting with it.
_REFUSALS = frozenset(
    {"OutOfMemoryError", "ReadOnlyError", "NoPermissionError", "MasterDownError", "BusyLoadingError"}
)
_REFUSAL_CODES = frozenset(
    {"OOM", "READONLY", "NOPERM", "BUSY", "NOREPLICAS", "MISCONF", "MASTERDOWN", "LOADING"}
)


def is_unreachable(error: BaseException) -> bool:
    """True when ``error`` means the server could not be reached (not a bad command)."""
    return isinstance(error, OSError) or bool(client_error_names(error) & _UNREACHABLE)


def is_refusal(error: BaseException) -> bool:
    """True when ``error`` is the server saying it cannot serve any call now (OOM, READONLY...).

    See the module docs for the list; other error replies are the call's own fault.
    """
    names = client_error_names(error)
    if names & _REFUSALS:
        return True
    if "ResponseError" not in names:
        return False
    code = getattr(error, "status_code", None) or str(error).split(" ", 1)[0]
    return code in _REFUSAL_CODES


def is_storage_failure(error: BaseException) -> bool:
    """True when ``error`` means the storage cannot be used: unreachable, or refusing every call."""
    return is_unreachable(error) or is_refusal(error)


def is_noscript(error: BaseException) -> bool:
    """True when ``error`` is the server's NOSCRIPT answer."""
    return "NoScriptError" in client_error_names(error)


def is_resharding(error: BaseException) -> bool:
    """True when ``error`` means a Cluster slot is half-migrated and the command did not run.

    That is ``TRYAGAIN``, or the cluster client giving up after too many of them
    (redis-py and valkey-py raise a bare ``ClusterError`` only for that; its
    subclass ``ClusterDownError`` is a different matter).
    """
    return "TryAgainError" in client_error_names(error) or type(error).__name__ == "ClusterError"
