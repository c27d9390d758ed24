"""Turning measurements into the JSON document and the printed tables."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

from benchmarks.throughput import Throughput
from benchmarks.timing import Batching, Measured, summarise

__all__ = ["machine", "latency_section", "throughput_section", "render"]


_PACKAGES = (
    "limify", "redis", "hiredis", "wrapt", "anyio", "limits", "pyrate-limiter", "throttled-py", "fastapi",
    "starlette", "uvicorn", "slowapi", "fastapi-limiter",
)  # fmt: skip


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine(redis_info: dict[str, Any]) -> dict[str, Any]:
    """What the numbers were measured on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_build": " ".join(platform.python_build()),
        "redis_server": redis_info.get("redis_version"),
        "redis_malloc": redis_info.get("mem_allocator"),
        "packages": {name: _version(name) for name in _PACKAGES},
        "load_average_at_start": list(load) if load else None,
        "executable": sys.executable,
    }


def _ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or not floor:
        return None
    return value / floor


def latency_section(measured: list[Measured], floor_name: str, batching: Batching) -> dict[str, Any]:
    """One latency section: a row per contender, allowed and rejected, ratios to ``floor_name``."""
    by_name: dict[str, dict[str, Any]] = {}
    for slot in measured:
        contender = slot.contender
        row = by_name.setdefault(
            contender.name,
            {
                "name": contender.name,
                "kind": contender.kind,
                "algorithm": contender.algorithm,
                "via": contender.via,
                "errors": [],
                "unexpected_batches": 0,
            },
        )
        stats = summarise(slot.samples)
        row[f"{slot.path}_ns"] = stats["median"]
        row[f"{slot.path}_q1_ns"] = stats["q1"]
        row[f"{slot.path}_q3_ns"] = stats["q3"]
        row[f"{slot.path}_samples"] = len(slot.samples)
        row[f"{slot.path}_calls_per_batch"] = slot.calls
        row["unexpected_batches"] += slot.unexpected
        if slot.error:
            row["errors"].append(f"{slot.path}: {slot.error}")
    floor = by_name.get(floor_name, {})
    for row in by_name.values():
        for path in ("allowed", "rejected"):
            row.setdefault(f"{path}_ns", None)
            row[f"{path}_ratio"] = _ratio(row[f"{path}_ns"], floor.get(f"{path}_ns"))
    return {
        "floor": floor_name,
        "batch_target_ns": batching.target_ns,
        "repeats": batching.repeats,
        "rows": list(by_name.values()),
    }


def throughput_section(
    results: list[Throughput], floor_name: str, tasks: int, per_task: int, repeats: int
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for result in results:
        contender = result.contender
        stats = summarise(result.samples)
        rows.append(
            {
                "name": contender.name,
                "kind": contender.kind,
                "algorithm": contender.algorithm,
                "via": contender.via,
                "ops_per_s": stats["median"],
                "q1_ops_per_s": stats["q1"],
                "q3_ops_per_s": stats["q3"],
                "samples": len(result.samples),
                "unexpected_rounds": result.unexpected,
                "errors": [result.error] if result.error else [],
            }
        )
    floor = next((row["ops_per_s"] for row in rows if row["name"] == floor_name), None)
    for row in rows:
        row["ratio"] = _ratio(row["ops_per_s"], floor)
    return {
        "floor": floor_name,
        "tasks": tasks,
        "checks_per_task": per_task,
        "repeats": repeats,
        "rows": rows,
    }


# Rendering -------------------------------------------------------------------------


def _fmt_time(ns: float | None, unit: str) -> str:
    if ns is None:
        return "-"
    return f"{ns / 1000:,.1f}" if unit == "us" else f"{ns:,.0f}"


def _fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


_TITLES = {
    "memory_sync": "In memory, sync",
    "memory_async": "In memory, async",
    "redis_sync": "Redis, sync",
    "redis_async": "Redis, async",
}


def _latency_table(key: str, section: dict[str, Any]) -> list[str]:
    from benchmarks.stores import TITLES

    unit = "ns" if key.startswith("memory") else "us"
    lines = [
        f"{_TITLES.get(key) or TITLES[key]}: {unit} per check, median of {section['repeats']} batches of "
        f"~{section['batch_target_ns'] / 1e6:g} ms; ratios to '{section['floor']}'",
        f"  {'contender':<48} {'allowed':>10} {'ratio':>7} {'rejected':>10} {'ratio':>7}",
    ]
    for row in section["rows"]:
        flag = " !" if row["unexpected_batches"] else ""
        lines.append(
            f"  {row['name'][:48]:<48} {_fmt_time(row['allowed_ns'], unit):>10} "
            f"{_fmt_ratio(row['allowed_ratio']):>7} {_fmt_time(row['rejected_ns'], unit):>10} "
            f"{_fmt_ratio(row['rejected_ratio']):>7}{flag}"
        )
        for error in row["errors"]:
            lines.append(f"      error: {error}")
    return lines


def _throughput_table(section: dict[str, Any]) -> list[str]:
    lines = [
        f"Redis, async throughput: {section['tasks']} concurrent tasks x "
        f"{section['checks_per_task']} checks, checks/s, median of {section['repeats']} rounds; "
        f"ratios to '{section['floor']}'",
        f"  {'contender':<48} {'checks/s':>10} {'ratio':>7}",
    ]
    for row in section["rows"]:
        rate = "-" if row["ops_per_s"] is None else f"{row['ops_per_s']:,.0f}"
        flag = " !" if row["unexpected_rounds"] else ""
        lines.append(f"  {row['name'][:48]:<48} {rate:>10} {_fmt_ratio(row['ratio']):>7}{flag}")
        for error in row["errors"]:
            lines.append(f"      error: {error}")
    return lines


def _fmt_bytes(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _memory_tables(section: dict[str, Any]) -> list[str]:
    lines = ["Memory per idle key, in process (tracemalloc; key strings excluded)"]
    lines.append(f"  {'store':<48} {'bytes/key':>10} {'key str':>8}")
    for row in section["in_process"]:
        if row.get("error"):
            lines.append(f"  {row['name']:<48} error: {row['error']}")
            continue
        lines.append(f"  {row['name']:<48} {row['bytes_per_key']:>10,.0f} {row['key_string_bytes']:>8}")
    lines.append(
        "Memory per idle key, in Redis (MEMORY USAGE, key name included; used_memory growth per key)"
    )
    lines.append(f"  {'store':<48} {'MEMORY USAGE':>12} {'- key name':>10} {'used_memory':>11}")
    for row in section["redis"]:
        if row.get("error"):
            lines.append(f"  {row['name']:<48} error: {row['error']}")
            continue
        usage, beyond = row["memory_usage_bytes"], row["bytes_beyond_key_name"]
        lines.append(
            f"  {row['name']:<48} {_fmt_bytes(usage):>12} {_fmt_bytes(beyond):>10} "
            f"{_fmt_bytes(row['used_memory_growth_per_key']):>11}"
        )
    name_bytes = section["redis"][-1]["key_name_bytes"]
    lines.append(f"  (key names are {name_bytes} bytes, shaped like the decorator's)")
    return lines


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _http_table(section: dict[str, Any]) -> list[str]:
    server = section["server"]
    lines = [
        f"HTTP load: {section['tool']} against one uvicorn worker ({server['http']}, {server['loop']}) on "
        f"loopback, FastAPI {server['fastapi']}; medians of {section['repeats']} runs. gc: the collector's "
        "young (gen 0) and full (gen 2) passes and its milliseconds per 10,000 requests",
        f"  {'contender':<34} {'route':<9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
        f"{'gen0':>6} {'gen2':>5} {'gc ms':>6}",
    ]
    for row in section["rows"]:
        rate = "-" if row["requests_per_s"] is None else f"{row['requests_per_s']:,.0f}"
        counts, spent = row["gc_collections_per_10k"] or [None] * 3, row["gc_ms_per_10k"]
        young = "-" if counts[0] is None else f"{counts[0]:.0f}"
        full = "-" if counts[2] is None else f"{counts[2]:.1f}"
        gc_ms = "-" if not spent else f"{sum(spent):.0f}"
        flag = " !" if row["unexpected"] else ""
        lines.append(
            f"  {row['name'][:34]:<34} {row['path']:<9} {rate:>7} {_fmt_ms(row['p50_ms']):>7} "
            f"{_fmt_ms(row['p99_ms']):>7} {_fmt_ms(row['p999_ms']):>8} {young:>6} {full:>5} {gc_ms:>6}{flag}"
        )
        for error in row["errors"]:
            lines.append(f"      error: {error}")
    return lines


def render(document: dict[str, Any]) -> str:
    """The human-readable report of a whole run."""
    info = document["machine"]
    lines = [
        f"Limify benchmark ({document['mode']} mode)",
        f"Machine: {info['cpu_model']}, {info['cpu_count']} CPUs; {info['python']}; "
        f"redis-server {info['redis_server']}; load average at start {info['load_average_at_start']}",
        "Packages: " + ", ".join(f"{name} {ver}" for name, ver in info["packages"].items() if ver),
    ]
    lines += [f"Peers: {note}" for note in document["peers"]["notes"]]
    lines.append("Rows marked ! made decisions other than expected in some batch (see JSON).")
    for key in document["latency"]:
        lines += ["", *_latency_table(key, document["latency"][key])]
    lines += ["", *_throughput_table(document["throughput"])]
    lines += ["", *_memory_tables(document["memory_per_key"])]
    if "http" in document:
        lines += ["", *_http_table(document["http"])]
    return "\n".join(lines) + "\n"
