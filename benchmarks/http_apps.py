"""The FastAPI apps the HTTP section serves, one per contender and store, each as its docs set it up.

``python -m benchmarks.http_apps CONTENDER STORE URL TAG PORT`` serves one of them
with one uvicorn worker on ``127.0.0.1:PORT`` (``STORE`` is ``memory`` or ``redis``,
``URL`` the benchmark's Redis, ``TAG`` the run's key marker, which every storage key
of the app contains). Every app has the same three routes, each answering
``{"ok": true}``:

``/allowed``
    limited to :data:`ALLOWED_RATE` per client: never reached during a run.
``/refused``
    limited to 1 per hour per client: the runner's priming request spends it, so
    every measured request is refused (429).
``/open``
    limited by nothing. With Limify's middleware it is the *unmatched* route: the
    middleware is installed and no rule matches it.

and ``/_gc``, outside every limit, which reports the garbage collector's work so
far (collections and milliseconds per generation, timed by a ``gc.callbacks``
hook that only measures): the runner reads it before and after each measurement.

Contenders: ``baseline`` (no limiter; on Redis, one ``PING`` per request and no
limit), ``limify-middleware`` (rules matched by
:class:`~limify.adapters.fastapi.middleware.LimifyMiddleware`),
``limify-dependency`` (a ``RateLimit`` dependency per route, with Limify's
exception handlers), ``limify-decorator`` (``@rate_limit`` on the endpoints, keyed
by the client address, with the same handlers), ``slowapi`` (``@limiter.limit``)
and ``fastapi-limiter`` (its ``RateLimiter`` dependency over a pyrate-limiter
``Limiter``: an ``InMemoryBucket``, or a ``RedisBucket`` on ``redis.asyncio``).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations
# (``request: Request``) at run time, and these endpoints are local functions.

import collections
import contextlib
import gc
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["CONTENDERS", "STORES", "ALLOWED_RATE", "ROUTES", "build_app", "main"]

#: Never reached in a run (a one-worker app serves well under 10^5 requests per second).
ALLOWED_LIMIT = 1_000_000_000
ALLOWED_RATE = f"{ALLOWED_LIMIT}/hour"
REFUSED_RATE = "1/hour"
STORES = ("memory", "redis")
CONTENDERS = (
    "baseline", "limify-middleware", "limify-dependency", "limify-decorator", "slowapi", "fastapi-limiter",
)  # fmt: skip
#: Routes measured, by path kind.
ROUTES = {"allowed": "/allowed", "refused": "/refused", "unmatched": "/open"}

Endpoint = Callable[..., Any]


def _described(found: Any) -> str:
    kind = type(found).__qualname__
    code = (
        getattr(found, "__code__", None) or getattr(found, "cr_code", None) or getattr(found, "gi_code", None)
    )
    if code is not None:
        return f"{kind} {code.co_qualname}"
    if kind == "tuple" and found:
        return f"tuple of {len(found)}, first {type(found[0]).__qualname__}"
    return kind


class GcClock:
    """Counts and times the collector's passes per generation (it changes nothing).

    With ``LIMIFY_BENCH_GC_CENSUS=1`` in the environment it also counts, at the start
    of every young collection, the types of the objects the collection finds (what
    was allocated since the last one and is still alive), and with
    ``LIMIFY_BENCH_GC_GARBAGE=1`` as well the types of what it frees (the reference
    cycles): diagnosis aids that slow the app down, never on in a measured run.
    """

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.ms = [0.0, 0.0, 0.0]
        self.longest_ms = [0.0, 0.0, 0.0]
        self._started = 0.0
        self.census: collections.Counter[str] | None = (
            collections.Counter() if os.environ.get("LIMIFY_BENCH_GC_CENSUS") == "1" else None
        )
        if self.census is not None and os.environ.get("LIMIFY_BENCH_GC_GARBAGE") == "1":
            gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector would free, kept to be counted
        if os.environ.get("LIMIFY_BENCH_GC_GARBAGE") == "1":  # what the collector frees: kept to be counted
            gc.set_debug(gc.DEBUG_SAVEALL)
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and self.census is not None and gc.garbage:
            self.census.update("garbage " + _described(found) for found in gc.garbage)
            gc.garbage.clear()
        if phase == "start":
            if self.census is not None and info["generation"] == 0:
                self.census.update(_described(found) for found in gc.get_objects(0))
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        took = (time.perf_counter() - self._started) * 1000
        self.collections[generation] += 1
        self.ms[generation] += took
        self.longest_ms[generation] = max(self.longest_ms[generation], took)

    def report(self) -> dict[str, Any]:
        """Collections, milliseconds and the longest pass per generation so far (and the census)."""
        found: dict[str, Any] = {
            "collections": list(self.collections), "ms": list(self.ms), "longest_ms": list(self.longest_ms),
        }  # fmt: skip
        if self.census is not None:
            passes = max(self.collections[0], 1)
            found["census_per_pass"] = {name: count / passes for name, count in self.census.most_common(120)}
        return found


def _ok() -> dict[str, bool]:
    return {"ok": True}


def _baseline(app: Any, store: str, url: str, tag: str) -> Callable[[], Any] | None:
    if store == "memory":
        for path in ROUTES.values():
            app.get(path)(_plain())
        return None
    # No limit, one Redis round trip (PING) per request: the reference of the Redis rows.
    # A request that awaits anything keeps its whole stack alive meanwhile, and with many in
    # flight the collector runs far more often than for requests that never suspend.
    clients: list[Any] = []

    async def endpoint() -> dict[str, bool]:
        await clients[0].ping()
        return _ok()

    for path in ROUTES.values():
        app.get(path)(endpoint)

    async def connect() -> Any:
        import redis.asyncio

        clients.append(redis.asyncio.Redis.from_url(url))
        return clients[0]

    return connect


def _plain() -> Endpoint:
    async def endpoint() -> dict[str, bool]:
        return _ok()

    return endpoint


def _limify(store: str, url: str) -> Any:
    from limify import Limify, LimifyConfig

    return Limify(config=LimifyConfig([]), storage=None if store == "memory" else url)


def _limify_handlers(app: Any) -> None:
    from limify.adapters.fastapi.dependencies import rate_limit_exceeded_handler, storage_error_handler
    from limify.errors import RateLimitExceeded, StorageError

    app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)
    app.add_exception_handler(StorageError, storage_error_handler)


def _limify_middleware(app: Any, store: str, url: str, tag: str) -> None:
    from limify import Limify, LimifyConfig, Rule
    from limify.adapters.fastapi.middleware import LimifyMiddleware

    rules = [
        Rule(f"{tag}allowed", "GET", ROUTES["allowed"], ALLOWED_RATE),
        Rule(f"{tag}refused", "GET", ROUTES["refused"], REFUSED_RATE),
    ]
    limify = Limify(config=LimifyConfig(rules), storage=None if store == "memory" else url)
    app.add_middleware(LimifyMiddleware, limiter=limify)
    for path in ROUTES.values():
        app.get(path)(_plain())


def _limify_dependency(app: Any, store: str, url: str, tag: str) -> None:
    from fastapi import Depends

    from limify.adapters.fastapi.dependencies import RateLimit

    limify = _limify(store, url)
    _limify_handlers(app)
    for kind, rate in (("allowed", ALLOWED_RATE), ("refused", REFUSED_RATE)):
        limit = RateLimit(f"{tag}{kind}", rate, limify=limify)
        app.get(ROUTES[kind], dependencies=[Depends(limit)])(_plain())
    app.get(ROUTES["unmatched"])(_plain())


def _limify_decorator(app: Any, store: str, url: str, tag: str) -> None:
    from starlette.requests import Request

    from limify import rate_limit

    _limify_handlers(app)
    storage = f"memory://{tag}" if store == "memory" else url

    def client(request: Request) -> str:
        return request.client.host if request.client else "-"

    for kind, rate in (("allowed", ALLOWED_RATE), ("refused", REFUSED_RATE)):

        @rate_limit(rate, key=client, storage=storage, name=f"{tag}{kind}")
        async def endpoint(request: Request) -> dict[str, bool]:
            return _ok()

        app.get(ROUTES[kind])(endpoint)
    app.get(ROUTES["unmatched"])(_plain())


def _slowapi(app: Any, store: str, url: str, tag: str) -> None:
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from slowapi.util import get_remote_address
    from starlette.requests import Request

    limiter = Limiter(key_func=get_remote_address, storage_uri="memory://" if store == "memory" else url,
                      key_prefix=tag)  # fmt: skip
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)
    for kind, rate in (("allowed", ALLOWED_RATE), ("refused", REFUSED_RATE)):

        async def endpoint(request: Request) -> dict[str, bool]:
            return _ok()

        # slowapi keys its limits by the endpoint's module and name: one name per route.
        endpoint.__name__ = endpoint.__qualname__ = f"{kind}_endpoint"
        app.get(ROUTES[kind])(limiter.limit(rate)(endpoint))
    app.get(ROUTES["unmatched"])(_plain())


def _fastapi_limiter(app: Any, store: str, url: str, tag: str) -> Callable[[], Any] | None:
    from fastapi import Depends
    from fastapi_limiter.depends import RateLimiter
    from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate, RedisBucket

    limits = {"allowed": ALLOWED_LIMIT, "refused": 1}
    dependencies = {}
    for kind, limit in limits.items():
        rates = [Rate(limit, Duration.HOUR)]
        bucket = InMemoryBucket(rates) if store == "memory" else None
        dependencies[kind] = RateLimiter(limiter=Limiter(bucket) if bucket is not None else None)  # type: ignore[arg-type]
        app.get(ROUTES[kind], dependencies=[Depends(dependencies[kind])])(_plain())
    app.get(ROUTES["unmatched"])(_plain())
    if store == "memory":
        return None

    async def connect() -> Any:  # RedisBucket.init on an async client is a coroutine: awaited at startup
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(url)
        for kind, limit in limits.items():
            bucket = await RedisBucket.init([Rate(limit, Duration.HOUR)], client, f"{tag}{kind}")
            dependencies[kind].limiter = Limiter(bucket)
        return client

    return connect


_BUILDERS: dict[str, Callable[[Any, str, str, str], Any]] = {
    "baseline": _baseline,
    "limify-middleware": _limify_middleware,
    "limify-dependency": _limify_dependency,
    "limify-decorator": _limify_decorator,
    "slowapi": _slowapi,
    "fastapi-limiter": _fastapi_limiter,
}


def build_app(contender: str, store: str, url: str, tag: str, clock: GcClock | None = None) -> Any:
    """The FastAPI app of ``contender`` on ``store`` (see the module docs)."""
    if contender not in _BUILDERS:
        raise ValueError(f"unknown contender {contender!r}; expected one of {list(_BUILDERS)}")
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}; expected one of {list(STORES)}")
    from fastapi import FastAPI

    startup: list[Callable[[], Any]] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        opened = [await connect() for connect in startup]
        yield
        for client in opened:
            await client.aclose()

    app = FastAPI(lifespan=lifespan)
    found = _BUILDERS[contender](app, store, url, tag)
    if found is not None:
        startup.append(found)
    gc_clock = clock or GcClock()

    @app.get("/_gc")
    async def gc_report() -> dict[str, Any]:
        return gc_clock.report()

    return app


def main(argv: list[str]) -> int:
    """Serve one app (arguments: CONTENDER STORE URL TAG PORT) until terminated."""
    import uvicorn

    contender, store, url, tag, port = argv
    app = build_app(contender, store, url, tag)
    uvicorn.run(app, host="127.0.0.1", port=int(port), workers=1, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
