"""Connections, transactions, migrations and error translation for the SQL metadata store.

:class:`SqlDatabase` turns a database URL into a configured SQLAlchemy engine and hands out
transactions.  What it sets up, per backend:

* **SQLite** (``sqlite:///path/mlengine.db``): the parent folder is created; every connection
  runs ``PRAGMA busy_timeout`` (wait that long for a lock), ``journal_mode=WAL`` (readers never
  block the writer), ``synchronous=NORMAL`` (safe with WAL: a process crash loses nothing) and
  ``foreign_keys=ON``.  The sqlite3 driver's own transaction handling is switched off and
  :meth:`SqlDatabase.transaction` emits ``BEGIN IMMEDIATE`` for writes and a deferred ``BEGIN``
  for reads, so a read-modify-write takes the write lock up front and never fails to upgrade.
  ``sqlite:///:memory:`` uses one shared connection (``StaticPool``) and a lock.
* **PostgreSQL** (``postgresql://`` is mapped to ``postgresql+psycopg://``): a pre-pinged pool;
  read-modify-writes lock their row with ``SELECT … FOR UPDATE`` (in the store).

Driver errors that mean "the database cannot be used right now" (connection refused, database
locked beyond the busy timeout, pool exhausted) become :class:`Unavailable`, naming the URL with
its password hidden.  Migrations run on open, serialised between processes (SQLite: the
``BEGIN IMMEDIATE`` lock; PostgreSQL: an advisory lock), so opening twice is a no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from mlengine.domain.errors import InvalidArgument, Unavailable

#: How long SQLite waits for another writer before the store reports Unavailable.
DEFAULT_BUSY_TIMEOUT = 30.0
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: ``pg_advisory_xact_lock`` key that serialises migrations between processes ("mleng").
_PG_MIGRATION_LOCK = 0x6D6C656E67
_WRITE = "mlengine_write"
_SCHEMES = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}


def normalise_url(url: str) -> URL:
    """Parse ``url`` and pick our drivers; raise InvalidArgument for anything else."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise InvalidArgument(
            f"Invalid database URL {url!r}: write sqlite:///path/mlengine.db or "
            "postgresql://user@host:5432/database.",
            field="database_url",
        ) from None
    driver = _SCHEMES.get(parsed.drivername)
    if driver is None:
        raise InvalidArgument(
            f"Unsupported database URL scheme {parsed.drivername!r}: use sqlite:///path or "
            "postgresql://user@host:5432/database.",
            field="database_url",
        )
    return parsed.set(drivername=driver)


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


class SqlDatabase:
    """A configured engine plus the transactions, migrations and errors of the store."""

    def __init__(self, url: str, *, echo: bool = False, busy_timeout: float = DEFAULT_BUSY_TIMEOUT):
        self.url = normalise_url(url)
        #: The URL as shown in messages and logs: the password, if any, is masked.
        self.shown_url = self.url.render_as_string(hide_password=True)
        self.dialect = "sqlite" if self.url.drivername == "sqlite" else "postgresql"
        self._busy_timeout = busy_timeout
        self._lock: AbstractContextManager[Any] = nullcontext()
        json_options: dict[str, Any] = {
            "json_serializer": _dump_json,
            "json_deserializer": orjson.loads,
        }
        if self.dialect == "sqlite":
            self.engine = self._sqlite_engine(echo, json_options)
        else:
            self.engine = create_engine(self.url, echo=echo, pool_pre_ping=True, **json_options)

    def _sqlite_engine(self, echo: bool, json_options: dict[str, Any]) -> Engine:
        connect_args: dict[str, Any] = {"timeout": self._busy_timeout, "check_same_thread": False}
        if _is_memory(self.url):
            # One connection shared by every thread: transactions must take turns.
            self._lock = threading.RLock()
            engine = create_engine(
                self.url,
                echo=echo,
                poolclass=StaticPool,
                connect_args=connect_args,
                **json_options,
            )
        else:
            assert self.url.database is not None
            if not self.url.database.startswith("file:"):
                Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, echo=echo, connect_args=connect_args, **json_options)
        event.listen(engine, "connect", self._configure_sqlite_connection)
        event.listen(engine, "begin", _begin_sqlite)
        return engine

    def _configure_sqlite_connection(self, dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
        # The driver must not issue BEGIN itself: _begin_sqlite does, choosing the lock mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Connection]:
        """One transaction, committed when the block ends, rolled back if it raises.

        ``write=True`` takes SQLite's write lock at BEGIN (``BEGIN IMMEDIATE``).  Driver errors
        that mean the database is unreachable or locked become :class:`Unavailable`.
        """
        with self._lock, self.translate_errors(), self.engine.connect() as connection:
            if write:
                connection.execution_options(**{_WRITE: True})
            with connection.begin():
                yield connection

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn "cannot use the database now" driver errors into :class:`Unavailable`."""
        try:
            yield
        except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
            raise Unavailable(self._unavailable_message(error)) from error
        except exc.DBAPIError as error:
            if error.connection_invalidated:
                raise Unavailable(self._unavailable_message(error)) from error
            raise

    def _unavailable_message(self, error: exc.SQLAlchemyError) -> str:
        cause = getattr(error, "orig", None) or error
        reason = " ".join(str(cause).split())
        if "locked" in reason:
            hint = (
                f"another process held the write lock for more than {self._busy_timeout:g}s; "
                "retry, or look for a stuck mlengine process"
            )
        else:
            hint = "check that the database server is running and the URL is right"
        return f"The metadata database {self.shown_url} is unavailable ({reason}): {hint}."

    def migrate(self) -> None:
        """Bring the schema to the newest revision (a no-op when it is already there)."""
        with self.transaction(write=True) as connection:
            if self.dialect == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            current = MigrationContext.configure(connection).get_current_revision()
            if current == _head_revision():
                return
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()


def _begin_sqlite(connection: Connection) -> None:
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _dump_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


@cache
def _head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()
