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
from collections.abc import Callable, Generator, Sequence
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from limify.core.check import Check
from limify.core.clock import SYSTEM_CLOCK, Clock
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


#: Rows for keys that had none, inserted in key order (locked by the insert); which it inserted.
_INSERT = (
    "INSERT INTO {0} (key, state, expires_us) SELECT k, ''::bytea, 0 FROM unnest(%s::bytea[]) AS k "
    "ORDER BY k ON CONFLICT (key) DO NOTHING RETURNING key"
)
#: The rows of the check that exist, locked in key order.
_LOCK = "SELECT key, state, expires_us FROM {0} WHERE key = ANY(%s::bytea[]) ORDER BY key FOR UPDATE"
_UPDATE = (
    "UPDATE {0} AS t SET state = w.state, expires_us = w.expires_us "
    "FROM unnest(%s::bytea[], %s::bytea[], %s::bigint[]) AS w(key, state, expires_us) WHERE t.key = w.key"
)
_DELETE = "DELETE FROM {0} WHERE key = ANY(%s::bytea[])"
#: A small batch of expired rows, skipping rows other checks hold.
_SWEEP = (
    "DELETE FROM {0} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {0} WHERE expires_us <= %s "
    "LIMIT %s FOR UPDATE SKIP LOCKED))"
)
#: The benchmarks' floor: one statement, one round trip, no decision.
_FLOOR = (
    "INSERT INTO {0} (key, state, expires_us) VALUES (%s, %s, %s) "
    "ON CONFLICT (key) DO UPDATE SET state = excluded.state, expires_us = excluded.expires_us"
)


class Statements:
    """Every statement the store runs, composed once for one table (``{0}`` in each text)."""

    def __init__(self, table: str) -> None:
        from psycopg import sql  # the extra's, imported once a store is built

        parts = check_table(table)
        name = sql.Identifier(*parts)

        def on_table(text: str) -> Any:
            return sql.SQL(text).format(name)

        self.table = table
        self.create = [
            on_table(
                "CREATE TABLE IF NOT EXISTS {0} (key bytea PRIMARY KEY, state bytea NOT NULL, "
                "expires_us bigint NOT NULL)"
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (expires_us)").format(
                sql.Identifier(f"{parts[-1]}_expires"), name
            ),
        ]
        self.insert = on_table(_INSERT)
        self.lock = on_table(_LOCK)
        #: The same, each row with the server's clock read as it is output: the last row's clock is
        #: read once every row is locked (a CTE's rows are locked one by one as the outer query reads them).
        self.lock_with_clock = on_table(
            f"WITH locked AS MATERIALIZED ({_LOCK}) SELECT key, state, expires_us, {_SERVER_NOW} FROM locked"
        )
        self.now = sql.SQL("SELECT " + _SERVER_NOW)
        self.update = on_table(_UPDATE)
        self.delete = on_table(_DELETE)
        self.sweep = on_table(_SWEEP)
        self.floor = on_table(_FLOOR)


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


#: What a row inserted for a key met for the first time holds: nothing, expired.
_PLACEHOLDER = Saved("", 0)

#: One statement of a transaction: ``(statement, params, fetch)``; ``fetch``: whether its rows are read.
Statement = tuple[Any, "tuple[Any, ...] | None", bool]
_Adapter = TypeVar("_Adapter", bound="RowsBase")


class Steps:
    """Drives a transaction's steps (:meth:`RowsBase.steps`) for a sync or an async connection.

    ``send(rows)`` hands the rows of the last statement back and returns the next
    statement, or ``None`` once the steps are done and :attr:`answer` is set.
    """

    __slots__ = ("_steps", "answer")

    def __init__(self, steps: Generator[Statement, Any, Any]) -> None:
        self._steps = steps
        self.answer: Any = None

    def send(self, rows: Any) -> Statement | None:
        try:
            return self._steps.send(rows)
        except StopIteration as done:
            self.answer = done.value
            return None


class RowsBase:
    """What both adapters share (see :class:`limify.core.postgres_adapter.PostgresSyncAdapter`
    for the arguments): the statements, the clock, each transaction's steps, and what to
    write after a decision."""

    #: The psycopg_pool class :meth:`from_url` opens.
    pool_class: Any = None

    def __init__(
        self,
        pool: Any,
        *,
        table: str = DEFAULT_TABLE,
        create_table: bool = True,
        clock: Clock | None = None,
        timeout: float = 5.0,
        sweep_every: int = 100,
        sweep_batch: int = 100,
    ) -> None:
        if not self._accepts(pool):
            raise TypeError(f"pool must be a psycopg_pool.{self.pool_class.__name__}, got {pool!r}")
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
        self._setup()

    def _setup(self) -> None:
        """What a subclass adds to the adapter's state."""

    @staticmethod
    def _accepts(pool: Any) -> bool:
        return callable(getattr(pool, "connection", None))

    @classmethod
    def from_url(cls: type[_Adapter], url: str, *, clock: Clock | None = None, **options: Any) -> _Adapter:
        """An adapter with pools of its own for ``url`` (its options: docs/postgresql.md).

        The sync adapter opens its pool at first use, and again in a forked child (a
        pre-fork server's worker); the async one opens one pool per event loop.
        """
        parsed = parse_url(url)

        def new_pool() -> Any:
            return cls.pool_class(
                parsed.conninfo, min_size=parsed.pool_min, max_size=parsed.pool_max, open=False,
                timeout=parsed.timeout, name=f"limify:{parsed.table}",
            )  # fmt: skip

        if clock is None and parsed.client_clock:
            clock = SYSTEM_CLOCK
        options.update(
            table=parsed.table, create_table=parsed.create_table, clock=clock, timeout=parsed.timeout
        )
        return cls._with_pools(new_pool, options)

    @classmethod
    def _with_pools(cls: type[_Adapter], new_pool: Callable[[], Any], options: dict[str, Any]) -> _Adapter:
        """An adapter on the pools ``new_pool`` opens (what :meth:`from_url` builds)."""
        raise NotImplementedError

    def steps(self, keys: Sequence[str], decide: Decide) -> Generator[Statement, Any, Any]:
        """The statements of one check's transaction (see the adapter module's docs), as a
        generator that is sent each statement's rows and returns ``decide``'s answer."""
        encoded, order = self._order(keys)
        server = self.clock is None
        rows = yield (self.sql.lock_with_clock if server else self.sql.lock, (order,), True)
        found = self._saved(rows)
        now = max(row[3] for row in rows) if server and rows else 0
        missing = [key for key in order if key not in found]
        if missing:  # keys met for the first time (or swept): rows to lock, after those that exist
            inserted = {bytes(row[0]) for row in (yield (self.sql.insert, (missing,), True))}
            found.update((key, _PLACEHOLDER) for key in inserted)  # dropped after, unless written
            raced = [key for key in missing if key not in inserted]  # created meanwhile by another check
            if raced:
                found.update(self._saved((yield (self.sql.lock, (raced,), True))))
            if server:
                now = (yield (self.sql.now, None, True))[0][0]  # read once every row is held
        now = int(now) if server else self.clock.now_us()  # type: ignore[union-attr]
        answer, writes = decide([found.get(key) for key in encoded], now)
        for statement, params in self._after(encoded, found, writes, now):
            yield statement, params, False
        return answer

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
