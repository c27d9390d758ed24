"""Prometheus metrics of every Limify decision: ``instrument()`` once at start-up.

.. code-block:: python

    from limify.contrib.prometheus import instrument

    instrument()  # the default registry; or instrument(registry=my_registry)

``limify_decisions_total{limit, outcome}``
    a counter of decisions; ``outcome`` is ``allowed``, ``refused``,
    ``shadow-refused`` or ``storage-error`` (:attr:`limify.events.Decision.outcome`).
``limify_check_seconds{limit}``
    a histogram of how long each decision took, storage round trip included.

Labels are limit names and outcomes, never keys, so their number stays bounded.
Under gunicorn (several worker processes) use prometheus_client's multi-process
mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the workers
start, call ``instrument()`` in each worker (gunicorn's ``post_fork`` hook), and
serve a registry holding a ``prometheus_client.multiprocess.MultiProcessCollector``
from the scrape endpoint. Install with ``pip install 'limify[prometheus]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from limify import events
from limify._extras import missing_extra

try:
    from prometheus_client import REGISTRY, Counter, Histogram
except ModuleNotFoundError as missing:  # pragma: no cover - exercised without the extra
    raise missing_extra(__name__, "prometheus_client", "prometheus", missing) from missing

__all__ = ["instrument"]


def instrument(registry: Any = None) -> Callable[[], None]:
    """Record every decision in ``registry`` (prometheus_client's default by default).

    Returns a function that stops recording and unregisters the metrics.
    """
    registry = REGISTRY if registry is None else registry
    decisions = Counter("limify_decisions", "Rate-limit decisions", ["limit", "outcome"], registry=registry)
    durations = Histogram(
        "limify_check_seconds", "Time taken by one rate-limit decision", ["limit"], registry=registry
    )

    def record(decision: events.Decision) -> None:
        decisions.labels(decision.name, decision.outcome).inc()
        durations.labels(decision.name).observe(decision.duration)

    events.subscribe(record)

    def stop() -> None:
        events.unsubscribe(record)
        registry.unregister(decisions)
        registry.unregister(durations)

    return stop
