"""Checks .ci/extras runs inside a virtualenv that holds one extra of Limify's.

    python .ci/smoke.py guards         each optional integration imports when its packages
                                       are installed, and raises the ImportError naming its
                                       extra when they are not
    python .ci/smoke.py hiredis URL    redis-py parses replies with hiredis; a limit on the
                                       Redis at URL admits 2 calls of 3
    python .ci/smoke.py valkey URL     valkey-py clients, sync and async, drive both Redis
                                       adapters on the server at URL

Run from the checkout's root as ``python .ci/smoke.py``: the script's own directory,
not the checkout, comes first on sys.path, so limify is the installed one.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys

#: Optional module -> (the packages it imports, the extra that installs them).
GUARDS = {
    "limify.adapters.fastapi.dependencies": (("starlette",), "fastapi"),
    "limify.adapters.flask": (("flask",), "flask"),
    "limify.adapters.django": (("django",), "django"),
    "limify.contrib.celery": (("celery",), "celery"),
    "limify.contrib.httpx": (("httpx",), "httpx"),
    "limify.contrib.requests": (("requests",), "requests"),
    "limify.contrib.opentelemetry": (("opentelemetry",), "opentelemetry"),
    "limify.contrib.prometheus": (("prometheus_client",), "prometheus"),
    "limify.core.postgres_adapter": (("psycopg", "psycopg_pool"), "postgres"),
}


def guards() -> None:
    import limify

    assert "site-packages" in limify.__file__, f"limify imported from {limify.__file__}, not installed"
    for module, (packages, extra) in GUARDS.items():
        present = all(importlib.util.find_spec(package) is not None for package in packages)
        try:
            importlib.import_module(module)
        except ImportError as error:
            assert not present, f"{module} failed although {packages} are installed: {error}"
            assert type(error) is ImportError and f"pip install 'limify[{extra}]'" in str(error), repr(error)
            print(f"  without {extra}: {error}")
        else:
            assert present, f"{module} imported although {packages} are not installed"
            print(f"  with {extra}: {module} imports")


def hiredis(url: str) -> None:
    import redis.utils

    from limify import RateLimitExceeded, rate_limit

    assert redis.utils.HIREDIS_AVAILABLE, "redis-py does not see hiredis"

    @rate_limit("2/minute", storage=url, name="ci-smoke-hiredis")
    def call() -> None: ...

    call.rate_limit.reset()
    outcomes = []
    for _ in range(3):
        try:
            call()
            outcomes.append(True)
        except RateLimitExceeded:
            outcomes.append(False)
    assert outcomes == [True, True, False], outcomes
    print("  hiredis: 2 of 3 calls admitted on", url)


def valkey(url: str) -> None:
    import valkey as valkey_py
    import valkey.asyncio

    from limify import Plan
    from limify.core.algorithms.token_bucket import AsyncTokenBucketAlgorithm, TokenBucketAlgorithm
    from limify.core.redis_adapter import RedisAsyncAdapter, RedisSyncAdapter

    plan = Plan("default", 2, 60)
    client = valkey_py.Valkey.from_url(url)
    client.delete("limify:ci-smoke-valkey", "limify:ci-smoke-valkey-async")
    sync = TokenBucketAlgorithm(RedisSyncAdapter(client))
    assert [sync.check("limify:ci-smoke-valkey", plan).allowed for _ in range(3)] == [True, True, False]

    async def run() -> list[bool]:
        aclient = valkey.asyncio.Valkey.from_url(url)
        shell = AsyncTokenBucketAlgorithm(RedisAsyncAdapter(aclient))
        try:
            return [(await shell.check("limify:ci-smoke-valkey-async", plan)).allowed for _ in range(3)]
        finally:
            await aclient.aclose()

    assert asyncio.run(run()) == [True, True, False]
    client.close()
    print("  valkey: sync and async clients decide on", url)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"guards": guards, "hiredis": hiredis, "valkey": valkey}[command](*args)
