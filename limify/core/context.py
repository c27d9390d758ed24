"""RequestContext: what a framework adapter knows about one request, and whose it is.

Adapters translate a framework's request into a :class:`RequestContext`; the
limiter never sees a framework object. The identity a request is counted under is
the first of ``user_id``, ``org_id``, ``api_key``, ``client_ip`` that is set
(neither ``None`` nor ``""``); a request with none of them is ``anonymous`` and
shares one bucket with every other anonymous request of the same rule.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RequestContext", "Identity", "IDENTITY_TYPES", "ANONYMOUS"]

#: ``(identity_type, identity_value)``, e.g. ``("user", 42)``.
Identity = tuple[str, Any]

#: The identity types, in priority order, with the context field each comes from.
IDENTITY_TYPES: tuple[tuple[str, str], ...] = (
    ("user", "user_id"),
    ("org", "org_id"),
    ("apikey", "api_key"),
    ("ip", "client_ip"),
)
#: The identity of a request that carries none of the fields above.
ANONYMOUS: Identity = ("anonymous", "all")


class RequestContext:
    """One request as the limiter sees it.

    Args:
        method: the HTTP method (``"GET"``); matched case-insensitively.
        path: the decoded request path (``"/items/42"``).
        user_id: an identity field (see the module docs), the first one counted.
        org_id: an identity field, counted when ``user_id`` is not set.
        api_key: an identity field, counted when neither of the above is set.
        client_ip: the client's address, counted when no other identity is set.
        **extra: anything else plan providers or key resolvers need
            (``tenant="acme"``); read back as attributes. Adapters set
            ``request`` (the framework's request, what rule hooks receive) and
            ``headers``: a mapping, or ``(lower-case name) -> list of values``,
            read by :meth:`header`.
    """

    def __init__(
        self,
        method: str,
        path: str,
        user_id: Any = None,
        org_id: Any = None,
        api_key: Any = None,
        client_ip: Any = None,
        **extra: Any,
    ) -> None:
        if not isinstance(method, str) or not method:
            raise TypeError(f"RequestContext method must be a non-empty str, got {method!r}")
        if not isinstance(path, str):
            raise TypeError(f"RequestContext path must be a str, got {path!r}")
        self.method = method.upper()
        self.path = path
        self.user_id = user_id
        self.org_id = org_id
        self.api_key = api_key
        self.client_ip = client_ip
        for name, value in extra.items():
            setattr(self, name, value)

    def identity(self) -> Identity:
        """``(type, value)`` of the first identity field set, else :data:`ANONYMOUS`."""
        for identity_type, field in IDENTITY_TYPES:
            value = getattr(self, field)
            if value is not None and value != "":
                return identity_type, value
        return ANONYMOUS

    def header(self, name: str) -> str | None:
        """The first value of request header ``name`` (any case), or ``None``; needs ``headers``."""
        found = self.__dict__.get("headers")
        if found is None:
            return None
        wanted = name.lower()
        if callable(found):
            values = found(wanted)
            return values[0] if values else None
        for key, value in found.items():
            if key.lower() == wanted:
                return str(value)
        return None

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}"
            for name, value in vars(self).items()
            if value is not None and name not in ("request", "headers")
        )
        return f"RequestContext({fields})"
