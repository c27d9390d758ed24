"""The SQL of the PostgreSQL store, and its storage URLs.

One table, one row per key::

    CREATE TABLE IF NOT EXISTS limify_state (
        key        bytea  PRIMARY KEY,  -- the storage key, UTF-8
        state      bytea  NOT NULL,     -- the algorithm codec's text, UTF-8
        expires_us bigint NOT NULL      -- microseconds since the epoch; an expired row reads as absent
    );
    CREATE INDEX IF NOT EXISTS limify_state_expires ON limify_state (expires_us);

Keys and states travel as bound parameters only; the table name is the one piece
of SQL text that comes from configuration, so it must be a plain identifier
(optionally ``schema.table``) and is quoted with :class:`psycopg.sql.Identifier`.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "SCHEMES",
    "DEFAULT_TABLE",
    "Statements",
    "PostgresOptions",
    "parse_url",
    "check_url",
    "check_table",
]

#: The URL schemes of the PostgreSQL store.
SCHEMES = ("postgresql", "postgres")
#: The table the store keeps its rows in unless told otherwise.
DEFAULT_TABLE = "limify_state"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,54}\Z")
#: The database server's clock, read after the rows are locked.
_SERVER_NOW = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"


def check_table(table: Any) -> tuple[str, ...]:
    """The parts of a table name (``"name"`` or ``"schema.name"``); ``ValueError`` unless each is an identifier."""
    if not isinstance(table, str):
        raise TypeError(f"table must be a str such as {DEFAULT_TABLE!r}, got {table!r}")
    parts = tuple(table.split("."))
    if len(parts) > 2 or not all(_IDENTIFIER.match(part) for part in parts):
        raise ValueError(
            f"table must be a plain SQL identifier (letters, digits, '_', at most 55, not starting with a "
            f"digit), optionally 'schema.table', got {table!r}"
        )
    return parts


class Statements:
    """Every statement the store runs, composed once for one table."""

    def __init__(self, table: str) -> None:
        from psycopg import sql  # the extra's, imported once a store is built

        parts = check_table(table)
        name = sql.Identifier(*parts)
        index = sql.Identifier(f"{parts[-1]}_expires")
        self.table = table
        self.create = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key bytea PRIMARY KEY, state bytea NOT NULL, "
                "expires_us bigint NOT NULL)"
            ).format(name),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (expires_us)").format(index, name),
        ]
        #: Rows for the keys that have none yet, inserted in key order (locked by the insert).
        self.insert = sql.SQL(
            "INSERT INTO {} (key, state, expires_us) SELECT k, ''::bytea, 0 FROM unnest(%s::bytea[]) AS k "
            "ORDER BY k ON CONFLICT (key) DO NOTHING"
        ).format(name)
        #: Every row of the check, locked in key order: two checks never wait on each other in a cycle.
        self.lock = sql.SQL(
            "SELECT key, state, expires_us FROM {} WHERE key = ANY(%s::bytea[]) ORDER BY key FOR UPDATE"
        ).format(name)
        self.now = sql.SQL("SELECT " + _SERVER_NOW)
        self.update = sql.SQL(
            "UPDATE {} AS t SET state = w.state, expires_us = w.expires_us "
            "FROM unnest(%s::bytea[], %s::bytea[], %s::bigint[]) AS w(key, state, expires_us) WHERE t.key = w.key"
        ).format(name)
        self.delete = sql.SQL("DELETE FROM {} WHERE key = ANY(%s::bytea[])").format(name)
        #: A small batch of expired rows, skipping rows other checks hold.
        self.sweep = sql.SQL(
            "DELETE FROM {0} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {0} WHERE expires_us <= %s "
            "LIMIT %s FOR UPDATE SKIP LOCKED))"
        ).format(name)
        #: The benchmarks' floor: one statement, one round trip, no decision.
        self.floor = sql.SQL(
            "INSERT INTO {} (key, state, expires_us) VALUES (%s, %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET state = excluded.state, expires_us = excluded.expires_us"
        ).format(name)


class PostgresOptions(NamedTuple):
    """A PostgreSQL storage URL split into the connection's and the store's options."""

    conninfo: str
    table: str
    create_table: bool
    client_clock: bool
    pool_min: int
    pool_max: int
    timeout: float


def _flag(url: str, name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"storage URL {url!r}: {name} must be true or false, got {value!r}")


def _number(url: str, name: str, value: str, kind: type, least: float) -> Any:
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or number < least:
        raise ValueError(f"storage URL {url!r}: {name} must be a {kind.__name__} >= {least}, got {value!r}")
    return number


def parse_url(url: str) -> PostgresOptions:
    """Split a ``postgresql://`` / ``postgres://`` URL (see docs/postgresql.md for its options).

    ``table``, ``create_table``, ``clock`` (``server`` or ``client``), ``pool_min``,
    ``pool_max`` and ``timeout`` (seconds) are the store's; every other query
    option goes to libpq as it is (``sslmode``, ``application_name`` ...).

    Raises:
        ValueError: the URL or one of the store's options is malformed.
    """
    if not isinstance(url, str):
        raise TypeError(f"storage URL must be a str, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"unsupported PostgreSQL URL {url!r}: expected postgresql://... or postgres://...")
    values = {"table": DEFAULT_TABLE, "create_table": "true", "clock": "server"}
    values.update(pool_min="1", pool_max="10", timeout="5")
    passed: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in values:
            values[name] = value
        else:
            passed.append((name, value))
    check_table(values["table"])
    if values["clock"] not in ("server", "client"):
        raise ValueError(f"storage URL {url!r}: clock must be 'server' or 'client', got {values['clock']!r}")
    pool_min = _number(url, "pool_min", values["pool_min"], int, 0)
    pool_max = _number(url, "pool_max", values["pool_max"], int, 1)
    if pool_max < pool_min:
        raise ValueError(f"storage URL {url!r}: pool_max ({pool_max}) is below pool_min ({pool_min})")
    timeout = _number(url, "timeout", values["timeout"], float, 0.001)
    if not any(name == "connect_timeout" for name, _ in passed):
        passed.append(("connect_timeout", str(max(2, round(timeout)))))
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(passed), parts.fragment))
    return PostgresOptions(
        conninfo,
        values["table"],
        _flag(url, "create_table", values["create_table"]),
        values["clock"] == "client",
        pool_min,
        pool_max,
        timeout,
    )


def check_url(url: str) -> str:
    """Validate a PostgreSQL storage URL without connecting; return its scheme."""
    parse_url(url)
    return urlsplit(url).scheme.lower()
