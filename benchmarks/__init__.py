"""Limify's benchmark suite: ``python -m benchmarks [--quick] [--json PATH] [--redis-url URL]``.

Measures, in one run on one machine and one Redis, Limify beside reference
floors written here (``floors``) and the peers ``limits``, ``pyrate-limiter``
and ``throttled-py`` (``peers``, from the ``bench`` extra): per-check latency in
memory and on Redis, sync and async, allowed and rejected (``timing``); async
throughput under 100 concurrent tasks (``throughput``); memory per idle key
(``memory``). See README.rst, "Performance".
"""
