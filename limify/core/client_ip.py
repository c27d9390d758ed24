"""The client's address, from the socket peer and, behind your proxies only, a forwarding header.

A forwarding header is a list each proxy appends the address it saw to, so only
its right end is written by machines you run; anything to the left may have been
sent by the client. Two ways to know where your proxies' part starts:

Trusted networks (``trusted_proxies``)
    The walk starts at the socket peer and moves left only while the current hop
    is in a trusted network; the first untrusted address is the client. A request
    from an untrusted peer is identified by the peer alone. A client whose own
    address is inside a trusted network is taken for a proxy, so it can name
    any identity in the header.

Hop counting (``trusted_hops=N``)
    ``N`` proxies stand in front of the application, the socket peer being the
    nearest, and each appends the address it saw. The client is then the
    ``N``-th entry from the right, written by the outermost proxy; the socket
    peer itself is not an entry and is not counted. Whatever a client prepends
    stays to the left of the ``N`` entries your proxies wrote. A header with
    fewer than ``N`` entries, or whose ``N``-th entry from the right is not an
    address, did not come through all ``N`` proxies: the socket peer is used, so
    such requests cannot pick an identity. ``N = 0`` means no proxy: the peer.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Union

__all__ = ["resolve_client_ip", "forwarded_addresses", "check_trusted_hops"]

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _parse_address(text: str) -> Address | None:
    """An address from one header entry: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``"[::1]"``."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_addresses(header_values: Iterable[str], header: str) -> list[str]:
    """The addresses in a forwarding header, leftmost first, as written.

    ``header`` is ``"x-forwarded-for"`` (comma-separated addresses) or
    ``"forwarded"`` (RFC 7239: the ``for=`` parameter of each element, ``""``
    for an element without one). Several header lines count as one
    comma-joined list, as HTTP says; no header, or only blank ones, is ``[]``.
    """
    joined = ",".join(header_values)
    if not joined.strip():
        return []
    entries = [entry.strip() for entry in joined.split(",")]
    if header == "x-forwarded-for":
        return entries
    found = []
    for element in entries:
        value = ""
        for pair in element.split(";"):
            name, _, raw = pair.partition("=")
            if name.strip().lower() == "for":
                value = raw.strip()
        found.append(value)
    return found


def check_trusted_hops(trusted_hops: object) -> int:
    """Return ``trusted_hops`` if it is an int >= 0, else raise ``TypeError``/``ValueError``."""
    if isinstance(trusted_hops, bool) or not isinstance(trusted_hops, int):
        raise TypeError(
            f"trusted_hops must be an int (how many reverse proxies stand in front of the app), "
            f"got {trusted_hops!r}"
        )
    if trusted_hops < 0:
        raise ValueError(f"trusted_hops must be >= 0 (0: no proxy), got {trusted_hops!r}")
    return trusted_hops


def _trusted(address: Address | None, networks: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


@functools.lru_cache(maxsize=4096)
def _normalized_peer(peer: str) -> str:
    """The socket peer as an address is written (``::ffff:1.2.3.4`` -> ``1.2.3.4``), else as given.

    Cached: a server sees the same peers again and again (its proxies, keep-alive
    clients), and parsing an address is most of what resolving a client costs.
    """
    address = _parse_address(peer)
    return str(address) if address is not None else peer


def _peer_address(peer: str | None) -> str | None:
    return None if peer is None else _normalized_peer(peer)


def _counted_hop(peer: str | None, hops: list[str], trusted_hops: int) -> str | None:
    # Every element is a hop, empty ones included: a proxy writing a Forwarded
    # element without for= still takes its place, so the count cannot shift left.
    if len(hops) >= trusted_hops:
        address = _parse_address(hops[-trusted_hops])
        if address is not None:
            return str(address)
    return _peer_address(peer)


def resolve_client_ip(
    peer: str | None,
    header_values: Iterable[str],
    *,
    trusted_proxies: Sequence[Network] = (),
    trusted_hops: int = 0,
    header: str = "x-forwarded-for",
) -> str | None:
    """The client address of a request (see module docs).

    Args:
        peer: the socket peer's address (``None`` when unknown, e.g. a Unix socket).
        header_values: every value of the forwarding header the proxies set.
        trusted_proxies: networks whose hops may speak for their client.
        trusted_hops: how many proxies stand in front of the app (instead of
            ``trusted_proxies``); the header is then read even from a peer
            ``None`` (a proxy on a Unix socket).
        header: ``"x-forwarded-for"`` or ``"forwarded"``.

    Raises:
        ValueError: both ``trusted_proxies`` and ``trusted_hops`` are given.
    """
    if trusted_hops:
        if trusted_proxies:
            raise ValueError("give trusted_proxies or trusted_hops, not both")
        return _counted_hop(peer, forwarded_addresses(header_values, header), trusted_hops)
    if peer is None:
        return None
    if not trusted_proxies:  # no proxy can speak for the client: the peer is the client
        return _normalized_peer(peer)
    current = _parse_address(peer)
    if not _trusted(current, trusted_proxies):
        return str(current) if current is not None else peer
    for entry in reversed(forwarded_addresses(header_values, header)):
        if not entry:
            continue
        address = _parse_address(entry)
        if address is None:
            # A trusted proxy reported something that is not an address: stop at that proxy.
            break
        current = address
        if not _trusted(current, trusted_proxies):
            break
    return str(current)
