"""Alembic environment of the metadata store.

``SqlMetadataStore`` runs the migrations itself, inside the write transaction it opened (see
:func:`mlengine.stores.sql_engine.SqlDatabase.migrate`), and hands that connection over in
``config.attributes["connection"]``; Alembic then joins the transaction instead of starting its
own.  Without a connection (the ``alembic`` command line, with ``sqlalchemy.url`` set) it
connects to that URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or let SqlMetadataStore run the migrations")
    engine = create_engine(url)
    with engine.connect() as owned:
        _run(owned)
    engine.dispose()


_main()
