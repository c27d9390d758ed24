"""limify.testing and the pytest plugin: users' own suites stay deterministic."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from limify import InMemoryAdapter, Limify, ManualClock, RateLimitExceeded, RequestContext, events, rate_limit
from limify.testing import disabled, isolated, reset_all

ROOT = Path(__file__).resolve().parent.parent


@rate_limit("1/minute", key="user", name="testing.fetch")
def fetch(user: str) -> str:
    """A limit on the process default storage (memory://)."""
    return user


def test_disabled_refuses_nothing_but_still_reports() -> None:
    """Inside disabled() every call runs; the decisions are still computed and reported, unenforced."""
    seen: list[events.Decision] = []
    reset_all()
    with events.subscribed(seen.append), disabled():
        assert [fetch("ann") for _ in range(3)] == ["ann"] * 3
    assert [(event.allowed, event.enforced) for event in seen] == [
        (True, False),
        (False, False),
        (False, False),
    ]
    with pytest.raises(RateLimitExceeded):
        fetch("ann")  # enforced again, and the first call had consumed the minute's one


@disabled()
def test_disabled_decorates_a_sync_test() -> None:
    """As a decorator, disabled() covers the whole test function."""
    reset_all()
    assert fetch("bob") == fetch("bob") == "bob"


@pytest.mark.anyio
@disabled()
async def test_disabled_decorates_an_async_test() -> None:
    """disabled() decorates async tests too."""

    @rate_limit("1/minute", storage=InMemoryAdapter(), name="testing.async")
    async def ping() -> str:
        return "pong"

    assert [await ping(), await ping()] == ["pong", "pong"]


def test_isolated_moves_every_limit_onto_a_clock_it_hands_out() -> None:
    """Inside isolated() limits run on a fresh store and a manual clock; outside, on their own again."""
    own = InMemoryAdapter()

    @rate_limit("1/minute", storage=own, name="testing.own")
    def explicit() -> None:
        return None

    with isolated() as clock:
        explicit()
        with pytest.raises(RateLimitExceeded):
            explicit()
        clock.advance(60)
        explicit()
    assert len(own) == 0  # the limit's own store was never touched
    explicit()


def test_isolated_rejects_anything_but_a_manual_clock() -> None:
    """isolated(clock) needs a ManualClock: a clear TypeError otherwise."""
    with pytest.raises(TypeError, match="ManualClock"), isolated(object()):  # type: ignore[arg-type]
        pass


def test_reset_all_forgets_the_in_memory_stores() -> None:
    """reset_all() gives every memory:// limit a fresh start."""
    reset_all()
    fetch("cy")
    with pytest.raises(RateLimitExceeded):
        fetch("cy")
    reset_all()
    assert fetch("cy") == "cy"


def test_reset_all_forgets_each_limify_s_own_memory() -> None:
    """A Limify's private in-memory store (memory://) is reset by reset_all() too."""
    app = Limify(config={"rules": [{"id": "items", "path": "/items", "rate": "1/hour"}]}, storage="memory://")
    request = RequestContext("GET", "/items", client_ip="192.0.2.7")
    assert app.sync_limiter.decide(request).status == 200
    assert app.sync_limiter.decide(request).status == 429
    reset_all()
    assert app.sync_limiter.decide(request).status == 200


def _plugin_entry_point() -> bool:
    return any(
        point.name == "limify.pytest_plugin" for point in importlib.metadata.entry_points(group="pytest11")
    )


def test_the_pytest_plugin_fixtures_drive_a_users_suite(tmp_path: Path) -> None:
    """A user's test file using limify_clock and limify_memory passes under the plugin."""
    if not _plugin_entry_point():  # PYTHONPATH=. runs have no entry point: name the plugin
        (tmp_path / "conftest.py").write_text('pytest_plugins = ["limify.pytest_plugin"]\n')
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from limify import InMemoryAdapter, RateLimitExceeded, rate_limit

            @rate_limit("1/minute", key="user", storage="redis://127.0.0.1:1/0")
            def fetch(user):
                return user

            def test_the_second_call_waits_a_minute(limify_clock, limify_memory):
                assert isinstance(limify_memory, InMemoryAdapter)
                assert fetch("alice") == "alice"
                with pytest.raises(RateLimitExceeded):
                    fetch("alice")
                limify_clock.advance(60)
                assert fetch("alice") == "alice"
            """
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_plugin_is_declared_as_a_pytest11_entry_point() -> None:
    """setup.cfg registers the plugin under its module's name (and the command), so installing Limify is enough."""
    setup = (ROOT / "setup.cfg").read_text()
    assert "pytest11 =\n    limify.pytest_plugin = limify.pytest_plugin" in setup
    assert "console_scripts =\n    limify = limify.cli:main" in setup


def test_naming_the_plugin_beside_its_entry_point_registers_it_once(tmp_path: Path) -> None:
    """A conftest's pytest_plugins and -p limify.pytest_plugin work whether or not the entry point loaded it."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["limify.pytest_plugin"]\n')
    (tmp_path / "test_fixture.py").write_text(
        "def test_clock(limify_clock):\n    assert limify_clock.now_us()\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "limify.pytest_plugin", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_isolated_clock_is_a_manual_clock() -> None:
    """The clock isolated() yields is a limify.ManualClock that the store follows."""
    with isolated() as clock:
        assert isinstance(clock, ManualClock)
