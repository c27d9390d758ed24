"""The limify command, run as a subprocess against a real redis-server."""

from __future__ import annotations

import subprocess
import sys

import redis

from limify import rate_limit


def limify(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m limify.cli ARGS`` (what the ``limify`` console script runs)."""
    return subprocess.run(
        [sys.executable, "-m", "limify.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_explain_says_what_a_rate_means() -> None:
    """explain prints one line per limit and how compound limits combine."""
    done = limify("explain", "10/second;1000/day")
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "10 units of cost per second, per key (plan id 'default')",
        "1000 units of cost per day, per key (plan id 'default')",
        "A call is admitted only when every limit admits it; then it counts against all of them.",
    ]


def test_a_bad_rate_or_url_is_exit_status_two() -> None:
    """Bad arguments print the reason and exit with 2."""
    bad_rate = limify("explain", "10 per fortnight")
    assert bad_rate.returncode == 2 and "invalid rate" in bad_rate.stderr
    bad_url = limify("keys", "--storage", "mongodb://x")
    assert bad_url.returncode == 2 and "unsupported storage URL" in bad_url.stderr


def test_an_unreachable_server_is_exit_status_one() -> None:
    """A storage that cannot be reached is reported, exit 1."""
    done = limify("keys", "--storage", "redis://127.0.0.1:1/0?socket_connect_timeout=0.5")
    assert done.returncode == 1 and "cannot reach" in done.stderr


def test_keys_inspect_and_reset_on_a_real_server(redis_url: str) -> None:
    """keys lists Limify's keys, inspect peeks (nothing consumed), reset clears; unknown names exit 1."""

    @rate_limit("5/minute", key="user", storage=redis_url, name="cli.fetch")
    def fetch(user: str) -> str:
        return user

    fetch("ann")
    fetch("ann")
    fetch("bob")
    redis.Redis.from_url(redis_url).set("not-limify", "1")
    listed = limify("keys", "--storage", redis_url)
    assert listed.returncode == 0
    assert listed.stdout.split() == ["limify:cli.fetch:default:ann", "limify:cli.fetch:default:bob"]
    for _ in range(2):  # twice: inspecting consumes nothing
        seen = limify("inspect", "--storage", redis_url, "--rate", "5/minute", "cli.fetch", "ann")
        assert seen.returncode == 0 and seen.stdout.count("\n") == 1
        assert "limify:cli.fetch:default:ann" in seen.stdout
        assert "next call: allowed, remaining=2/5" in seen.stdout  # 3 left now, 2 after one more call
    cleared = limify("reset", "--storage", redis_url, "cli.fetch", "ann")
    assert cleared.returncode == 0 and "deleted 1 key" in cleared.stdout
    assert fetch.rate_limit.peek("ann").remaining == 4  # type: ignore[attr-defined]
    unknown = limify("inspect", "--storage", redis_url, "no.such.limit")
    assert unknown.returncode == 1 and "no keys for limit 'no.such.limit'" in unknown.stderr
