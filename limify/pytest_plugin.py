"""Pytest fixtures for suites that test code using Limify.

Registered when Limify is installed (the ``pytest11`` entry point
``limify.pytest_plugin``); without an installation, name it in your
``conftest.py``: ``pytest_plugins = ["limify.pytest_plugin"]``.

``limify_clock``
    Runs the test under :func:`limify.testing.isolated`: every declared limit on
    one fresh in-memory store, on the :class:`~limify.ManualClock` the fixture
    returns (``limify_clock.advance(60)`` moves a minute on).
``limify_memory``
    That store (an :class:`~limify.InMemoryAdapter`), to look into or to pass
    where an adapter is expected.

Example::

    def test_the_second_call_waits_a_minute(limify_clock):
        assert fetch("alice")
        with pytest.raises(limify.RateLimitExceeded):
            fetch("alice")
        limify_clock.advance(60)
        assert fetch("alice")
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from limify.core.clock import ManualClock
from limify.core.memory_adapter import InMemoryAdapter
from limify.core.storage import DEFAULTS
from limify.testing import isolated

__all__ = ["limify_clock", "limify_memory"]


@pytest.fixture
def limify_clock() -> Iterator[ManualClock]:
    """Every Limify limit on a fresh in-memory store driven by this manual clock."""
    with isolated() as clock:
        yield clock


@pytest.fixture
def limify_memory(limify_clock: ManualClock) -> InMemoryAdapter:
    """The in-memory store every Limify limit runs on during the test (see ``limify_clock``)."""
    store = DEFAULTS.override
    assert isinstance(store, InMemoryAdapter)
    return store
