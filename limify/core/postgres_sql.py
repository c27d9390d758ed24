"""The SQL of the PostgreSQL store, its storage URLs, and what its sync and async adapters share.

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
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from limify.core.check import Check
from limify.core.clock import Clock
from limify.core.text_state import Saved, check_clock, encode_text, hold_step, run_on_text
from limify.errors import StorageError

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
        #: Rows for keys that had none, inserted in key order (locked by the insert); which it inserted.
        self.insert = sql.SQL(
            "INSERT INTO {} (key, state, expires_us) SELECT k, ''::bytea, 0 FROM unnest(%s::bytea[]) AS k "
            "ORDER BY k ON CONFLICT (key) DO NOTHING RETURNING key"
        ).format(name)
        #: The rows of the check that exist, locked in key order.
        self.lock = sql.SQL(
            "SELECT key, state, expires_us FROM {} WHERE key = ANY(%s::bytea[]) ORDER BY key FOR UPDATE"
        ).format(name)
        #: The same, each row with the server's clock read as it is output: the last row's clock is
        #: read once every row is locked (a CTE's rows are locked one by one as the outer query reads them).
        self.lock_with_clock = sql.SQL(
            "WITH locked AS MATERIALIZED (SELECT key, state, expires_us FROM {} WHERE key = ANY(%s::bytea[]) "
            "ORDER BY key FOR UPDATE) SELECT key, state, expires_us, " + _SERVER_NOW + " FROM locked"
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


#: ``decide(saved, now_us) -> (answer, writes)``: what one transaction decides on its locked rows.
Decide = Callable[[list[Saved | None], int], tuple[Any, dict[int, Saved | None]]]


def _check_int(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {least}, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    return value


class RowsBase:
    """What both adapters share: the statements, the clock, and what to write after a decision."""

    def __init__(
        self,
        pool: Any,
        *,
        table: str,
        create_table: bool,
        clock: Clock | None,
        timeout: float,
        sweep_every: int,
        sweep_batch: int,
    ) -> None:
        check_clock(clock)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self.pool = pool
        self.sql = Statements(table)
        self.table = table
        self.create_table = create_table
        #: ``None``: the database server's clock; else the adapter's own.
        self.clock = clock
        self.timeout = float(timeout)
        self.sweep_every = _check_int("sweep_every", sweep_every, 1)
        self.sweep_batch = _check_int("sweep_batch", sweep_batch, 1)
        self._ready = not create_table
        self._checks = 0
        #: Whether this adapter opened a pool it was given closed (it never reopens one closed later).
        self._opened = False
        self._recreated = False

    def _order(self, keys: Sequence[str]) -> tuple[list[bytes], list[bytes]]:
        encoded = [encode_text(key) for key in keys]
        return encoded, sorted(set(encoded))

    @staticmethod
    def _saved(rows: Sequence[Sequence[Any]]) -> dict[bytes, Saved]:
        """Key -> saved state of rows ``(key, state, expires_us, ...)``."""
        return {bytes(row[0]): Saved(bytes(row[1]).decode("utf-8", "surrogatepass"), row[2]) for row in rows}

    def _after(
        self, keys: list[bytes], rows: dict[bytes, Saved], writes: dict[int, Saved | None], now: int
    ) -> list[tuple[Any, tuple[Any, ...]]]:
        """The statements that save ``writes`` and drop the rows of ``keys`` that mean nothing now."""
        changed: dict[bytes, Saved] = {}
        dropped: list[bytes] = []
        for index, key in enumerate(keys):
            if index in writes:
                saved = writes[index]
                if saved is None:
                    dropped.append(key)
                else:
                    changed[key] = saved
            elif key in rows and rows[key].expires_us <= now:
                dropped.append(key)  # a placeholder, or a state that expired: absent either way
        statements: list[tuple[Any, tuple[Any, ...]]] = []
        if changed:
            names = list(changed)
            texts = [encode_text(saved.text) for saved in changed.values()]
            statements.append(
                (self.sql.update, (names, texts, [saved.expires_us for saved in changed.values()]))
            )
        if dropped:
            statements.append((self.sql.delete, (dropped,)))
        self._checks += 1
        if self._checks % self.sweep_every == 0:
            statements.append((self.sql.sweep, (now, self.sweep_batch)))
        return statements

    def _decide_check(self, check: Check) -> Decide:
        return lambda saved, now: (lambda run: (run.outcome, run.writes))(run_on_text(check, saved, now))

    @staticmethod
    def _decide_hold(ms: int) -> Decide:
        def decide(saved: list[Saved | None], now: int) -> tuple[Any, dict[int, Saved | None]]:
            left, new, write = hold_step(saved[0], now, ms)
            return left, ({0: new} if write else {})

        return decide

    def _failed(self, error: Exception) -> StorageError:
        return StorageError(f"PostgreSQL unreachable ({type(error).__name__}): {error}".strip())

    def __repr__(self) -> str:
        clock = "server clock" if self.clock is None else repr(self.clock)
        return f"{type(self).__name__}(table={self.table!r}, clock={clock})"
