"""Hop counting (trusted_hops): which forwarding entry is the client, fallbacks, validation, adapters."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from limify import InMemoryAdapter, Limify, LimifyConfig, ManualClock, Rule
from limify.adapters.fastapi.middleware import LimifyMiddleware
from limify.adapters.flask import LimifyFlask
from limify.adapters.http import limify_from_settings
from limify.core.client_ip import resolve_client_ip
from tests.asgi_client import client_from


def test_the_client_is_the_nth_entry_from_the_right() -> None:
    """trusted_hops=N takes the N-th entry from the right; the socket peer is not counted."""
    spoofed = ["6.6.6.6, 198.51.100.7"]  # the client sent 6.6.6.6; one proxy appended 198.51.100.7
    assert resolve_client_ip("10.0.0.2", spoofed, trusted_hops=1) == "198.51.100.7"
    two_proxies = ["6.6.6.6, 198.51.100.7", "10.0.0.3"]  # the inner proxy added its own line
    assert resolve_client_ip("10.0.0.2", two_proxies, trusted_hops=2) == "198.51.100.7"
    forwarded = ['for=6.6.6.6, for="[2001:db8::7]:4711";proto=https, proto=https']  # last: no for=
    assert resolve_client_ip("10.0.0.2", forwarded, trusted_hops=2, header="forwarded") == "2001:db8::7"
    assert resolve_client_ip("10.0.0.2", ["::ffff:198.51.100.7"], trusted_hops=1) == "198.51.100.7"


def test_short_or_garbled_headers_fall_back_to_the_peer() -> None:
    """Fewer entries than N, a non-address N-th entry, or N=0: the socket peer, never a header value."""
    assert resolve_client_ip("10.0.0.2", ["198.51.100.7"], trusted_hops=2) == "10.0.0.2"
    assert resolve_client_ip("10.0.0.2", [], trusted_hops=1) == "10.0.0.2"
    assert resolve_client_ip("10.0.0.2", [" "], trusted_hops=1) == "10.0.0.2"
    assert resolve_client_ip("10.0.0.2", ["unknown, 10.0.0.3"], trusted_hops=2) == "10.0.0.2"
    assert resolve_client_ip("::ffff:10.0.0.2", ["6.6.6.6"], trusted_hops=0) == "10.0.0.2"
    # A proxy on a Unix socket (no peer address): the header is still read; without it, no IP.
    assert resolve_client_ip(None, ["198.51.100.7"], trusted_hops=1) == "198.51.100.7"
    assert resolve_client_ip(None, [], trusted_hops=1) is None


@pytest.mark.parametrize(
    ("hops", "error", "message"),
    [
        ("1", TypeError, "trusted_hops must be an int"),
        (True, TypeError, "trusted_hops must be an int"),
        (1.0, TypeError, "trusted_hops must be an int"),
        (None, TypeError, "trusted_hops must be an int"),
        (-1, ValueError, "trusted_hops must be >= 0"),
    ],
)
def test_bad_trusted_hops_are_refused_at_configuration(
    hops: Any, error: type[Exception], message: str
) -> None:
    """A trusted_hops that is not an int >= 0 fails when the config is built, in code or settings."""
    with pytest.raises(error, match=message):
        LimifyConfig(trusted_hops=hops)
    with pytest.raises(error, match=message):
        limify_from_settings({"TRUSTED_HOPS": hops}, "settings.LIMIFY")


def test_trusted_proxies_and_trusted_hops_together_are_refused() -> None:
    """The two ways of reading the header exclude each other: a ValueError naming both."""
    with pytest.raises(ValueError, match="trusted_proxies=.*trusted_hops=1.*give one"):
        LimifyConfig(trusted_proxies=["10.0.0.0/8"], trusted_hops=1)
    networks = [ipaddress.ip_network("10.0.0.0/8")]
    with pytest.raises(ValueError, match="not both"):
        resolve_client_ip("10.0.0.1", [], trusted_proxies=networks, trusted_hops=1)
    assert LimifyConfig(trusted_proxies=["10.0.0.0/8"], trusted_hops=0).trusted_hops == 0


def _app(clock: ManualClock, **config: Any) -> Starlette:
    """A Starlette app limiting /items to 1/minute per client IP."""

    async def items(request: Request) -> PlainTextResponse:
        return PlainTextResponse("items")

    limify = Limify(
        config=LimifyConfig([Rule("items", "GET", "/items", "1/minute")], **config),
        storage=InMemoryAdapter(clock=clock),
    )
    middleware = [Middleware(LimifyMiddleware, limiter=limify)]
    return Starlette(routes=[Route("/items", items)], middleware=middleware)


def test_an_internal_client_spoofs_under_trusted_networks_but_not_under_hops(clock: ManualClock) -> None:
    """Client 10.1.2.3 behind proxy 10.0.0.1: with 10/8 trusted it picks identities; with 1 hop it cannot."""
    by_networks = client_from(_app(clock, trusted_proxies=["10.0.0.0/8"]), "10.0.0.1", 4000)
    by_hops = client_from(_app(clock, trusted_hops=1), "10.0.0.1", 4000)
    for spoof in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        header = {"X-Forwarded-For": f"{spoof}, 10.1.2.3"}  # the proxy appended the client's address
        assert by_networks.get("/items", headers=header).status_code == 200  # a fresh bucket each time
    spoofs = [{"X-Forwarded-For": f"192.0.2.{n}, 10.1.2.3"} for n in range(3)]
    assert [by_hops.get("/items", headers=header).status_code for header in spoofs] == [200, 429, 429]
    assert by_hops.get("/items", headers={"X-Forwarded-For": "10.1.2.4"}).status_code == 200


def test_flask_reads_limify_trusted_hops(clock: ManualClock) -> None:
    """LIMIFY_TRUSTED_HOPS=2 in Flask's config: the second entry from the right is the client."""
    from flask import Flask

    app = Flask(__name__)
    app.config.update(
        LIMIFY_RULES=[Rule("items", "GET", "/items", "1/minute")],
        LIMIFY_STORAGE=InMemoryAdapter(clock=clock),
        LIMIFY_TRUSTED_HOPS=2,
    )
    LimifyFlask(app)
    app.add_url_rule("/items", "items", lambda: "items")
    client = app.test_client()
    inner = {"REMOTE_ADDR": "10.0.0.2"}
    for spoof in ("192.0.2.1", "192.0.2.2"):
        header = {"X-Forwarded-For": f"{spoof}, 198.51.100.7, 10.0.0.3"}
        expected = 200 if spoof == "192.0.2.1" else 429
        assert client.get("/items", environ_base=inner, headers=header).status_code == expected
    header = {"X-Forwarded-For": "198.51.100.8, 10.0.0.3"}
    assert client.get("/items", environ_base=inner, headers=header).status_code == 200
