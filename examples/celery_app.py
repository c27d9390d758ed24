"""Celery tasks throttled by one global limit, shared by every worker through Redis.

Celery's own rate_limit option counts per worker process; this limit is shared by
all of them. A refused task is not failed and does not sleep in its worker: it
goes back to the broker with a countdown (LimifyTask) and runs when its turn comes.

Run, with a Redis you may use (LIMIFY_REDIS_URL, default redis://localhost:6379/0):

    python -m pip install '.[celery]'
    celery --workdir examples -A celery_app worker --concurrency 2 --loglevel INFO
    python examples/celery_app.py          # in another terminal: enqueue 12 tasks, print when each ran
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

from limify import rate_limit
from limify.contrib.celery import LimifyTask

REDIS_URL = os.environ.get("LIMIFY_REDIS_URL", "redis://localhost:6379/0")

# The name "celery_app" keeps task names the same when this file runs as __main__.
app = Celery("celery_app", broker=REDIS_URL, backend=REDIS_URL)
app.conf.broker_connection_retry_on_startup = True


@app.task(bind=True, base=LimifyTask, limify_max_retries=50)
@rate_limit("5/second", key="customer", storage=REDIS_URL)
def send_invoice(self: Any, customer: str, number: int) -> dict[str, Any]:
    """At most 5 invoices per second per customer, across every worker."""
    return {"customer": customer, "number": number, "ran_at": time.time(), "retries": self.request.retries}


if __name__ == "__main__":
    results = [send_invoice.delay("acme", number) for number in range(12)]
    runs = sorted((result.get(timeout=60) for result in results), key=lambda run: run["ran_at"])
    print("12 invoices for one customer at 5/second (a burst of 5, then one every 0.2 s):")
    for run in runs:
        print(
            f"  +{run['ran_at'] - runs[0]['ran_at']:4.2f}s  invoice {run['number']:2d}"
            f"  (retried {run['retries']} times)"
        )
