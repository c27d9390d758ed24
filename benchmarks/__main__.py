"""``python -m benchmarks``: run the benchmark, print the tables, optionally write JSON."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence

from benchmarks.redis_server import OwnRedisServer, delete_run_keys
from benchmarks.report import render
from benchmarks.run import FULL, QUICK, run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Limify against the floors and the peers (limits, pyrate-limiter, throttled-py), "
        "in memory and on Redis, in one run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few small repeats: proves it works, in seconds"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="use this Redis instead of starting a private redis-server; only this run's keys "
        "are deleted afterwards, but the timings are only fair on an otherwise idle server",
    )
    parser.add_argument(
        "--postgres-url",
        metavar="URL",
        help="also time the PostgreSQL store on this database (needs limify[postgres])",
    )
    parser.add_argument("--memcached-url", metavar="URL", help="also time the Memcached store on this server")
    parser.add_argument("--no-peers", action="store_true", help="measure Limify and the floors only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = QUICK if args.quick else FULL
    tag = "lb" + secrets.token_hex(4)  # alphanumeric: marks every key this run creates
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    server = None
    url = args.redis_url
    if url is None:
        server = OwnRedisServer().start()
        url = server.url
        progress(f"started redis-server on {url}")
    try:
        document = run(
            url, tag, settings, use_peers=not args.no_peers, progress=progress,
            postgres_url=args.postgres_url, memcached_url=args.memcached_url,
        )  # fmt: skip
    finally:
        deleted = delete_run_keys(url, tag)
        if server is not None:
            server.stop()
    document["keys_deleted_at_end"] = deleted
    document["duration_s"] = round(time.monotonic() - started, 1)
    print(render(document), end="")
    print(f"\n{deleted} keys of this run deleted; {document['duration_s']} s in all.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
