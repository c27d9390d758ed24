"""The client's address, from the socket peer and, behind trusted proxies only, a forwarding header.

A forwarding header is a list each proxy appends the address it saw to, so only
its right end is written by machines you run; anything to the left may have been
sent by the client. The walk therefore starts at the socket peer and moves left
only while the current hop is a trusted proxy; the first untrusted address is the
client. A request from an untrusted peer is identified by the peer alone, so a
client can never choose its identity by sending a header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Union

__all__ = ["resolve_client_ip", "forwarded_addresses"]

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
    ``"forwarded"`` (RFC 7239: the ``for=`` parameter of each element). Several
    header lines count as one comma-joined list, as HTTP says.
    """
    joined = ",".join(header_values)
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


def _trusted(address: Address | None, networks: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def resolve_client_ip(
    peer: str | None,
    header_values: Iterable[str],
    *,
    trusted_proxies: Sequence[Network],
    header: str = "x-forwarded-for",
) -> str | None:
    """The client address of a request (see module docs).

    Args:
        peer: the socket peer's address (``None`` when unknown, e.g. a Unix socket).
        header_values: every value of the forwarding header the proxies set.
        trusted_proxies: networks whose hops may speak for their client.
        header: ``"x-forwarded-for"`` or ``"forwarded"``.
    """
    if peer is None:
        return None
    current = _parse_address(peer)
    if not _trusted(current, trusted_proxies):
        return str(current) if current is not None else peer
    hops = forwarded_addresses(header_values, header) if trusted_proxies else []
    for entry in reversed(hops):
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
