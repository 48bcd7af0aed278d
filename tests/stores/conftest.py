"""Fixtures of the metadata-store contract suite: one store per test, on every backend.

``store_url`` is parametrised over ``sqlite`` (a fresh file under ``tmp_path``) and
``postgres``.  The PostgreSQL backend needs a server: ``eval "$(scripts/postgres start)"``
exports ``MLENGINE_TEST_POSTGRES_URL``; without it those tests are skipped.  Each test module
gets its own PostgreSQL schema (dropped afterwards, so concurrent runs never collide) and each
test starts from empty tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from mlengine.stores.sql import SqlMetadataStore
from mlengine.stores.sql_engine import normalise_url

POSTGRES_URL_VARIABLE = "MLENGINE_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = "set MLENGINE_TEST_POSTGRES_URL (scripts/postgres start)"
STORE_TABLES = ("jobs", "job_log_heads", "job_logs", "operations", "models", "versions")

OpenStore = Callable[..., SqlMetadataStore]


class PostgresSchema:
    """A schema of the test server, reached through ``url`` (its ``search_path``)."""

    def __init__(self, base_url: str) -> None:
        self.name = f"mlengine_test_{uuid.uuid4().hex[:12]}"
        self._admin = create_engine(normalise_url(base_url), isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.name}"'))
        separator = "&" if "?" in base_url else "?"
        self.url = f"{base_url}{separator}options={quote(f'-csearch_path={self.name}')}"
        SqlMetadataStore(self.url).close()  # migrate once, so tests can truncate

    def reset(self) -> None:
        tables = ", ".join(f'"{self.name}".{table}' for table in STORE_TABLES)
        with self._admin.connect() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))

    def drop(self) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self._admin.dispose()


@pytest.fixture(scope="module")
def postgres_schema() -> Iterator[PostgresSchema]:
    base_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not base_url:
        if os.environ.get("CI"):  # CI promises a real PostgreSQL: never skip silently there
            pytest.fail(f"CI run without PostgreSQL: {POSTGRES_SKIP_REASON}")
        pytest.skip(POSTGRES_SKIP_REASON)
    schema = PostgresSchema(base_url)
    yield schema
    schema.drop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/home/mlengine.db"
    schema: PostgresSchema = request.getfixturevalue("postgres_schema")
    schema.reset()
    return schema.url


@pytest.fixture
def open_store(store_url: str) -> Iterator[OpenStore]:
    """Open (another) store on the test's database; every store is closed afterwards."""
    opened: list[SqlMetadataStore] = []

    def open_(**options: Any) -> SqlMetadataStore:
        store = SqlMetadataStore(store_url, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> SqlMetadataStore:
    return open_store()
