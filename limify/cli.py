"""The ``limify`` command: look at, clear and explain limits without writing Python.

::

    limify explain "10/second;1000/day"
    limify keys    --storage redis://localhost:6379/0 [PATTERN]
    limify inspect --storage redis://localhost:6379/0 [--rate RATE] [--algorithm NAME] NAME [KEY]
    limify reset   --storage redis://localhost:6379/0 NAME [KEY]

``NAME`` is a limit's name as it appears in storage keys: a decorated
function's ``module.qualname`` (or its ``name=``), a web rule's id, an outbound
gate's name. ``KEY`` narrows to one caller (the key value, e.g. a user id).
``inspect`` reads each key's state and, given the limit's ``--rate``, what the
next call of cost 1 would get (admitted or not, what it would leave, when the
limit is full again), through the peek path: nothing is consumed. ``keys`` lists
Limify's keys with ``SCAN`` (never ``KEYS``, which blocks a busy server).

Exit status: 0 on success, 1 when nothing matched or the server cannot be
reached, 2 for bad arguments (a malformed rate or URL, an unknown algorithm).
Built on the standard library's ``argparse``, so the command costs the core
package no dependency.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from limify.core.algorithms import ALGORITHMS, algorithm_classes
from limify.core.keys import PREFIX, encode_part
from limify.core.plan import Plan
from limify.core.rate import parse_rates
from limify.core.redis_clients import SCHEMES as REDIS_SCHEMES
from limify.core.redis_clients import check_url, sync_client
from limify.core.redis_errors import is_storage_failure

__all__ = ["main", "explain"]

_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


class CommandError(Exception):
    """A problem the command reports on stderr, with its exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _period(seconds: float) -> str:
    for size, unit in _UNITS:
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{unit}" if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"


def explain(rate: str) -> list[str]:
    """What ``rate`` means, one line per limit, then how they combine."""
    try:
        limits = parse_rates(rate)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc), 2) from None
    lines = []
    for plan, shared in limits:
        when = (
            "per calendar month (UTC) with algorithm='quota', else per 30 days"
            if plan.calendar
            else (f"per {_period(plan.period_seconds)}")
        )
        owner = "shared by every key" if shared else "per key"
        lines.append(f"{plan.limit} units of cost {when}, {owner} (plan id {plan.id!r})")
    if len(limits) > 1:
        lines.append(
            "A call is admitted only when every limit admits it; then it counts against all of them."
        )
    return lines


def _client(url: str) -> Any:
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        raise CommandError(
            f"unsupported storage URL {url!r}: the command reads Redis storage "
            f"({', '.join(f'{s}://' for s in REDIS_SCHEMES)})",
            2,
        )
    try:
        check_url(url)
        client = sync_client(url)
        client.ping()
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    except Exception as exc:
        if is_storage_failure(exc):
            raise CommandError(f"cannot reach the storage at {url!r}: {exc}") from None
        raise
    return client


def _scan(client: Any, pattern: str) -> Iterator[str]:
    for key in client.scan_iter(match=pattern, count=500):
        yield key.decode() if isinstance(key, bytes) else key


def _keys_of(client: Any, name: str, key: str | None) -> list[str]:
    """The storage keys of limit ``name`` (and caller ``key``): single and compound layouts."""
    scope = encode_part(name)
    identity = None if key is None else encode_part(key)
    found = set(_scan(client, f"{PREFIX}:{scope}:*"))
    found |= set(_scan(client, f"{PREFIX}:{{{scope}*"))
    if identity is not None:
        found = {k for k in found if k.endswith(f":{identity}") or f":{identity}}}" in k}
    return sorted(found)


def _state_text(client: Any, key: str) -> str:
    kind = client.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "zset":
        return f"sorted set of {client.zcard(key)} members"
    raw = client.get(key)
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _inspect(args: argparse.Namespace) -> list[str]:
    client = _client(args.storage)
    spec_classes = _algorithm(args.algorithm)
    plans: list[Plan] = [] if args.rate is None else [plan for plan, _ in _rates(args.rate)]
    keys = _keys_of(client, args.name, args.key)
    if not keys:
        raise CommandError(
            f"no keys for limit {args.name!r}" + ("" if args.key is None else f" and key {args.key!r}")
        )
    from limify.core.redis_adapter import RedisSyncAdapter

    shell = spec_classes[0](RedisSyncAdapter(client))
    lines = []
    for key in keys:
        ttl = client.pttl(key)
        line = f"{key}  state={_state_text(client, key)}  ttl={ttl / 1000:.3f}s"
        plan = next(
            (p for p in plans if f":{encode_part(p.id)}" in key), plans[0] if len(plans) == 1 else None
        )
        if plan is not None:
            result = shell.peek(key, plan) if not shell.spec.lease else shell.check_all([key], [plan], 1, "0")
            verdict = "allowed" if result.allowed else "refused"
            line += (
                f"  next call: {verdict}, remaining={result.remaining}/{result.limit}"
                f" reset_after={result.reset_after:.3f}s retry_after={result.retry_after:.3f}s"
            )
        lines.append(line)
    return lines


def _rates(rate: str) -> list[tuple[Plan, bool]]:
    try:
        return parse_rates(rate)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc), 2) from None


def _algorithm(name: str) -> tuple[type[Any], type[Any]]:
    try:
        return algorithm_classes(name)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None


def _reset(args: argparse.Namespace) -> list[str]:
    client = _client(args.storage)
    keys = _keys_of(client, args.name, args.key)
    if not keys:
        raise CommandError(
            f"no keys for limit {args.name!r}" + ("" if args.key is None else f" and key {args.key!r}")
        )
    for first in range(0, len(keys), 500):
        client.delete(*keys[first : first + 500])
    return [f"deleted {len(keys)} key{'s' if len(keys) != 1 else ''} of limit {args.name!r}"]


def _list_keys(args: argparse.Namespace) -> list[str]:
    client = _client(args.storage)
    pattern = args.pattern if args.pattern.startswith(f"{PREFIX}:") else f"{PREFIX}:{args.pattern}"
    return sorted(_scan(client, pattern))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="limify", description="Look at, clear and explain Limify limits.")
    commands = parser.add_subparsers(dest="command", required=True)
    explain_ = commands.add_parser("explain", help="what a rate string means")
    explain_.add_argument("rate", help='e.g. "10/second;1000/day"')
    for name, helptext in (
        ("inspect", "a limit's state for a key (nothing consumed)"),
        ("reset", "clear a limit"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--storage", required=True, help="a Redis storage URL")
        sub.add_argument("name", help="the limit's name (function module.qualname, rule id, gate name)")
        sub.add_argument("key", nargs="?", help="one caller's key value")
        if name == "inspect":
            sub.add_argument("--rate", help="the limit's rate, to show remaining and reset")
            sub.add_argument("--algorithm", default="token_bucket", choices=sorted(ALGORITHMS))
    keys_ = commands.add_parser("keys", help="list Limify's keys (SCAN)")
    keys_.add_argument("--storage", required=True, help="a Redis storage URL")
    keys_.add_argument(
        "pattern", nargs="?", default="*", help="a glob on the key after 'limify:' (default *)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    args = _parser().parse_args(argv)
    run = {"explain": lambda a: explain(a.rate), "inspect": _inspect, "reset": _reset, "keys": _list_keys}
    try:
        lines = run[args.command](args)
    except CommandError as error:
        print(f"limify: {error}", file=sys.stderr)
        return error.status
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m limify.cli`
    sys.exit(main())
