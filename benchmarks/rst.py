"""``python -m benchmarks.rst bench.json``: README.rst tables from a run's JSON.

Prints reStructuredText ``list-table`` blocks (allowed path, rejected path,
throughput, memory per key) and the machine line, so the README's
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


def _time(ns: float | None, section: str) -> str:
    if ns is None:
        return "-"
    if section.startswith("redis"):
        return f"{ns / 1000:,.1f} µs"
    return f"{ns:,.0f} ns"


def _cell(row: dict[str, Any] | None, path: str, section: str) -> str:
    if row is None or row.get(f"{path}_ns") is None:
        return "-"
    ratio = row.get(f"{path}_ratio")
    text = _time(row[f"{path}_ns"], section)
    return text if ratio is None else f"{text} ({ratio:.2f}x)"


def _table(title: str, widths: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for cells in [header, *rows]:
        lines.append(f"   * - {cells[0]}")
        lines += [f"     - {cell}" for cell in cells[1:]]
    return [*lines, ""]


def _latency(document: dict[str, Any], path: str) -> list[str]:
    latency = document["latency"]
    names: list[str] = []
    for key, _ in _SECTIONS:
        for row in latency[key]["rows"]:
            if row["kind"] != "floor" and row["name"] not in names:
                names.append(row["name"])
    floors = ["**floor**"]
    floors += [_cell(_row(latency[key], latency[key]["floor"]), path, key) for key, _ in _SECTIONS]
    rows = [floors]
    for name in names:
        rows.append([name, *(_cell(_row(latency[key], name), path, key) for key, _ in _SECTIONS)])
    header = ["contender", *(label for _, label in _SECTIONS)]
    return _table(
        f"{path.capitalize()} checks: median time per check (ratio to the floor)",
        "40 15 15 15 15",
        header,
        rows,
    )


def _row(section: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((row for row in section["rows"] if row["name"] == name), None)


def _throughput(document: dict[str, Any]) -> list[str]:
    section = document["throughput"]
    rows = []
    for row in section["rows"]:
        rate = "-" if row["ops_per_s"] is None else f"{row['ops_per_s']:,.0f}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        rows.append([row["name"], rate, ratio])
    title = f"Redis, async: {section['tasks']} concurrent tasks on one client, checks per second"
    return _table(title, "60 20 20", ["contender", "checks/s", "ratio to the floor"], rows)


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
    header = ["store", "in process (bytes)", "Redis MEMORY USAGE", "Redis used_memory growth"]
    return _table("Memory per idle key", "40 20 20 20", header, rows)


def summary(document: dict[str, Any]) -> str:
    """The README tables for one run's JSON document."""
    info = document["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items() if version)
    lines = [
        f"Measured with ``python -m benchmarks`` ({document['mode']} mode) on {info['cpu_model']}, "
        f"{info['cpu_count']} CPUs, {info['python']}, redis-server {info['redis_server']} on loopback; "
        f"{packages}. Load average at start: "
        + ", ".join(f"{load:.1f}" for load in info["load_average_at_start"] or []),
        "",
        "Floors: "
        + "; ".join(f"{label}: {document['latency'][key]['floor']}" for key, label in _SECTIONS)
        + f"; throughput: {document['throughput']['floor']} with as many tasks.",
        "",
    ]
    lines += _latency(document, "allowed")
    lines += _latency(document, "rejected")
    lines += _throughput(document)
    lines += _memory(document)
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.rst BENCH.json")
    with open(sys.argv[1], encoding="utf-8") as source:
        print(summary(json.load(source)))
