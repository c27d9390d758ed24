"""``python -m benchmarks.rst bench.json``: README.rst tables from a run's JSON.

Prints the machine line and three reStructuredText simple tables (latency as
ratios to the floors, throughput, memory per key), so the README's
"Performance" section can be refreshed from one run without retyping numbers.
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["summary"]

_SECTIONS = (
    ("memory_sync", "memory, sync"),
    ("memory_async", "memory, async"),
    ("redis_sync", "Redis, sync"),
    ("redis_async", "Redis, async"),
)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * width for width in widths)

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [rule, line(header), rule, *(line(cells) for cells in rows), rule, ""]


def _row(section: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((row for row in section["rows"] if row["name"] == name), None)


def _ratio(row: dict[str, Any] | None, path: str) -> str:
    ratio = None if row is None else row.get(f"{path}_ratio")
    return "-" if ratio is None else f"{ratio:.2f}"


def _floor_cell(section: dict[str, Any], key: str) -> str:
    row = _row(section, section["floor"]) or {}
    unit, scale = ("µs", 1000.0) if key.startswith("redis") else ("ns", 1.0)
    values = [row.get(f"{path}_ns") for path in ("allowed", "rejected")]
    digits = 0 if unit == "ns" else 1
    shown = " / ".join("-" if v is None else f"{v / scale:,.{digits}f}" for v in values)
    return f"{shown} {unit}"


def _latency(document: dict[str, Any]) -> list[str]:
    latency = document["latency"]
    names: list[str] = []
    for key, _ in _SECTIONS:
        for row in latency[key]["rows"]:
            if row["kind"] != "floor" and row["name"] not in names:
                names.append(row["name"])
    rows = [["**floor** (allowed / rejected)", *(_floor_cell(latency[key], key) for key, _ in _SECTIONS)]]
    for name in names:
        cells = []
        for key, _ in _SECTIONS:
            row = _row(latency[key], name)
            cells.append(f"{_ratio(row, 'allowed')} / {_ratio(row, 'rejected')}")
        rows.append([name, *cells])
    return _table(["contender", *(label for _, label in _SECTIONS)], rows)


def _throughput(document: dict[str, Any]) -> list[str]:
    rows = []
    for row in document["throughput"]["rows"]:
        rate = "-" if row["ops_per_s"] is None else f"{row['ops_per_s']:,.0f}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        rows.append([row["name"], rate, ratio])
    return _table(["contender", "checks/s", "ratio to the floor"], rows)


def _bytes(row: dict[str, Any] | None, field: str) -> str:
    if row is None:
        return "-"
    if row.get("error"):
        return "error"
    value = row.get(field)
    return "-" if value is None else f"{value:,.0f}"


def _memory(document: dict[str, Any]) -> list[str]:
    memory = document["memory_per_key"]
    in_process = {row["name"]: row for row in memory["in_process"]}
    in_redis = {row["name"]: row for row in memory["redis"]}
    rows = [
        [
            name,
            _bytes(in_process.get(name), "bytes_per_key"),
            _bytes(in_redis.get(name), "memory_usage_bytes"),
            _bytes(in_redis.get(name), "used_memory_growth_per_key"),
        ]
        for name in dict.fromkeys([*in_process, *in_redis])
    ]
    header = ["store", "in process", "Redis MEMORY USAGE", "Redis used_memory growth"]
    return _table(header, rows)


def _http(document: dict[str, Any]) -> list[str]:
    section = document["http"]
    server = section["server"]
    header = ["contender", "route", "requests/s", "p50 ms", "p99 ms", "p99.9 ms"]
    rows = []
    for row in section["rows"]:
        cells = [row["name"], row["path"]]
        rate = row["requests_per_s"]
        cells.append("-" if rate is None else f"{rate:,.0f}")
        cells += [
            "-" if row[name] is None else f"{row[name]:.1f}" for name in ("p50_ms", "p99_ms", "p999_ms")
        ]
        rows.append(cells)
    intro = (
        f"HTTP load: ``{section['tool']}`` against a FastAPI app served by one uvicorn worker "
        f"({server['http']}, {server['loop']}) on loopback; medians of {section['repeats']} runs."
    )
    return [intro, "", *_table(header, rows)]


def summary(document: dict[str, Any]) -> str:
    """The README tables for one run's JSON document."""
    info = document["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items() if version)
    load = ", ".join(f"{value:.1f}" for value in info["load_average_at_start"] or [])
    latency = document["latency"]
    throughput = document["throughput"]
    memory = document["memory_per_key"]
    key_bytes = memory["redis"][-1]["key_name_bytes"]
    lines = [
        f"Measured by ``python -m benchmarks`` ({document['mode']} mode) on {info['cpu_model']}, "
        f"{info['cpu_count']} CPUs, {info['python']}, redis-server {info['redis_server']} on loopback; "
        f"{packages}; load average at start {load}.",
        "",
        "Per check, ratio to the section's floor, allowed / rejected (lower is better; the floor row "
        "gives the floor's own median time). Floors: "
        + "; ".join(f"{label}: {latency[key]['floor']}" for key, label in _SECTIONS)
        + ".",
        "",
        *_latency(document),
        f"Async throughput: {throughput['tasks']} tasks on one client, {throughput['checks_per_task']} "
        f"checks each on its own key (higher is better); the floor is '{throughput['floor']}' "
        "run the same way.",
        "",
        *_throughput(document),
        f"Memory per idle key, in bytes: in process over {memory['keys_in_process']:,} keys "
        f"(key strings excluded), in Redis over {memory['keys_in_redis']:,} keys whose names are "
        f"{key_bytes} bytes long (included in MEMORY USAGE).",
        "",
        *_memory(document),
    ]
    if "http" in document:
        lines += _http(document)
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.rst BENCH.json")
    with open(sys.argv[1], encoding="utf-8") as source:
        print(summary(json.load(source)))
