"""OpenTelemetry metrics of every Limify decision: ``instrument()`` once at start-up.

.. code-block:: python

    from limify.contrib.opentelemetry import instrument

    instrument()  # the global meter provider; or instrument(meter_provider=provider)

Two instruments, on the meter ``limify``:

``limify.decisions`` (counter)
    one per decision, with attributes ``limit`` (the limit's name) and ``outcome``:
    ``allowed``, ``refused``, ``shadow-refused`` (shadow mode let it through) or
    ``storage-error`` (the failure policy answered).
``limify.check.duration`` (histogram, seconds)
    how long each decision took, storage round trip included, by ``limit``.

Attributes are limit names and outcomes only, never keys, so their number stays
bounded whatever the traffic. Install with ``pip install 'limify[opentelemetry]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from limify import __version__, events
from limify._extras import missing_extra

try:
    from opentelemetry import metrics
except ModuleNotFoundError as missing:  # pragma: no cover - exercised without the extra
    raise missing_extra(__name__, "OpenTelemetry", "opentelemetry", missing) from missing

__all__ = ["instrument"]


def instrument(meter_provider: Any = None) -> Callable[[], None]:
    """Record every decision on ``meter_provider`` (the global one by default).

    Returns a function that stops recording.
    """
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    meter = provider.get_meter("limify", __version__)
    decisions = meter.create_counter("limify.decisions", unit="1", description="Rate-limit decisions")
    durations = meter.create_histogram(
        "limify.check.duration", unit="s", description="Time taken by one rate-limit decision"
    )

    def record(decision: events.Decision) -> None:
        decisions.add(1, {"limit": decision.name, "outcome": decision.outcome})
        durations.record(decision.duration, {"limit": decision.name})

    events.subscribe(record)
    return lambda: events.unsubscribe(record)
