"""What a web rule may compute per request: its identity (``key=``), its ``cost``, its exemption.

Key shortcuts, as django-ratelimit spells them:

==========================  ===============================================================
``key=``                    the request is counted under
==========================  ===============================================================
``"ip"``                    its client address (an IPv6 one grouped by ``ipv6_prefix``)
``"user"``                  its ``user_id``; requests without one share one bucket
``"user_or_ip"``            its ``user_id``, else its client address
``"header:<name>"``         the value of that request header (``"header:x-api-key"``);
                            requests without it share one bucket
a callable                  ``key(request)``: a value, an ``(identity_type, value)`` pair,
                            or ``None`` for the default identity
==========================  ===============================================================

Hooks (``key``, ``cost``, ``exempt_when``) receive the framework's request (a Flask
or Django request, a Starlette ``Request``), or the
:class:`~limify.RequestContext` when the limiter is called directly. They run
synchronously, on every request the rule matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from limify.core.context import ANONYMOUS, Identity, RequestContext

__all__ = ["KEY_SHORTCUTS", "compile_key", "check_hook", "request_of", "KeyFunction"]

#: The plain shortcuts (``"header:<name>"`` comes on top).
KEY_SHORTCUTS = ("ip", "user", "user_or_ip")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
#: ``(context) -> identity | None`` (``None``: the default identity).
KeyFunction = Callable[[RequestContext], "Identity | None"]


def request_of(context: RequestContext) -> Any:
    """What hooks receive: the framework's request the adapter attached, else the context itself."""
    return context.__dict__.get("request", context)


def _set(value: Any) -> bool:
    return value is not None and value != ""


def _ip(context: RequestContext) -> Identity:
    return ("ip", context.client_ip) if _set(context.client_ip) else ANONYMOUS


def _user(context: RequestContext) -> Identity:
    return ("user", context.user_id) if _set(context.user_id) else ANONYMOUS


def _user_or_ip(context: RequestContext) -> Identity:
    return ("user", context.user_id) if _set(context.user_id) else _ip(context)


def _header(name: str) -> KeyFunction:
    identity_type = f"header:{name}"

    def by_header(context: RequestContext) -> Identity:
        value = context.header(name)
        return (identity_type, value) if _set(value) else ANONYMOUS

    return by_header


def _call(rule_id: str, key: Callable[[Any], Any]) -> KeyFunction:
    def by_callable(context: RequestContext) -> Identity | None:
        found = key(request_of(context))
        if found is None:
            return None
        if isinstance(found, tuple):
            if len(found) == 2 and isinstance(found[0], str) and found[0]:
                return found
            raise TypeError(
                f"rule {rule_id!r}: key() must return a value, (type, value) or None, got {found!r}"
            )
        return ("key", found)

    return by_callable


def compile_key(rule_id: str, key: Any) -> KeyFunction | None:
    """The identity function of ``key=`` (see the module docs); ``None`` for the default identity.

    Raises:
        ValueError: an unknown shortcut or a bad header name, naming the rule.
        TypeError: ``key`` is neither a string nor a callable.
    """
    if key is None:
        return None
    if isinstance(key, str):
        if key == "ip":
            return _ip
        if key == "user":
            return _user
        if key == "user_or_ip":
            return _user_or_ip
        kind, _, name = key.partition(":")
        if kind == "header" and _HEADER_NAME.fullmatch(name):
            return _header(name.lower())
        raise ValueError(
            f"rule {rule_id!r}: unknown key {key!r}; expected 'ip', 'user', 'user_or_ip', "
            "'header:<name>' (e.g. 'header:x-api-key') or a callable (request) -> value"
        )
    if callable(key):
        return _call(rule_id, key)
    raise TypeError(f"rule {rule_id!r}: key must be a shortcut such as 'ip' or a callable, got {key!r}")


def check_hook(rule_id: str, name: str, hook: Any) -> None:
    """Raise ``TypeError`` unless ``hook`` is ``None`` or callable (``name`` and the rule in the message)."""
    if hook is not None and not callable(hook):
        raise TypeError(f"rule {rule_id!r}: {name} must be a callable (request) -> ..., got {hook!r}")
