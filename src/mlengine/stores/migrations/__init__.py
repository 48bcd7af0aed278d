"""Alembic migrations of the SQL metadata store (run by ``SqlMetadataStore`` on open).

``env.py`` is Alembic's environment; ``versions/`` holds one hand-written script per
revision.  See ``docs/metadata-store.md`` for how to add one.
"""
