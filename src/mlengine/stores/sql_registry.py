"""The model registry half of the SQL metadata store: models and versions.

:class:`SqlModelRegistry` is mixed into :class:`~mlengine.stores.sql.SqlMetadataStore`; it
implements the model and version methods of :class:`~mlengine.stores.base.MetadataStore` on
the ``models`` and ``versions`` tables (:mod:`mlengine.stores.sql_schema`).

How the contract's guarantees are met:

* a model's default version is the ``models.default_version`` column; reads join it so that
  ``StoredModel.default`` and ``StoredVersion.is_default`` come from the same statement;
* every write that touches a version locks its model row first (``SELECT … FOR UPDATE`` on
  PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises all writers), so the default pointer,
  the version rows and a model delete never interleave;
* the foreign key ``versions → models`` is the last line of defence against orphans;
* an ``operation`` passed to a version write is inserted or replaced in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    exc,
    func,
    insert,
    select,
    update,
)

from mlengine.domain.errors import AlreadyExists, FailedPrecondition, Internal, NotFound
from mlengine.domain.registry_filter import RegistryQuery
from mlengine.domain.resources import Model, Version, VersionState
from mlengine.stores.base import (
    OperationWrite,
    StoredModel,
    StoredVersion,
    VersionChange,
    VersionRuntime,
)
from mlengine.stores.page_tokens import decode_page_token, encode_page_token
from mlengine.stores.sql_engine import SqlDatabase
from mlengine.stores.sql_rows import (
    AnyRow,
    check_operation,
    check_same_model,
    check_same_version,
    json_copy,
    model_values,
    new_etag,
    stored_model,
    stored_version,
    version_state_counts,
    version_values,
)
from mlengine.stores.sql_schema import models, operations, versions

#: Version ids named in the error of a model delete refused for its versions.
MAX_NAMED_VERSIONS = 10

_default = versions.alias("default_versions")
_MODEL_FROM = models.outerjoin(
    _default,
    and_(
        _default.c.project == models.c.project,
        _default.c.model == models.c.name,
        _default.c.name == models.c.default_version,
    ),
)
_MODEL_COLUMNS = (
    models.c.seq,
    models.c.project,
    models.c.body,
    models.c.default_version,
    _default.c.body.label("default_body"),
)
_VERSION_FROM = versions.join(
    models, and_(models.c.project == versions.c.project, models.c.name == versions.c.model)
)
_VERSION_COLUMNS = (
    versions.c.seq,
    versions.c.project,
    versions.c.model,
    versions.c.name,
    versions.c.body,
    versions.c.runtime,
    models.c.default_version,
)


class SqlModelRegistry:
    """Models and versions on the tables of :mod:`mlengine.stores.sql_schema`."""

    _db: SqlDatabase

    # --- models ------------------------------------------------------------------------

    def create_model(self, project: str, model: Model) -> StoredModel:
        model_id = _id_of(model.name)
        model = model.model_copy(update={"etag": new_etag(), "default_version": None})
        values = {"project": project, "name": model_id, **model_values(model, None)}
        try:
            with self._db.transaction(write=True) as connection:
                key = connection.execute(insert(models).values(values)).inserted_primary_key
        except exc.IntegrityError:
            raise AlreadyExists(
                f"Model 'projects/{project}/models/{model_id}' already exists; choose another "
                "name, or delete the existing model (and its versions) first.",
                field="name",
            ) from None
        assert key is not None
        return StoredModel(project=project, model=model, seq=int(key[0]))

    def get_model(self, project: str, model_id: str) -> StoredModel:
        with self._db.transaction(write=False) as connection:
            return _read_model(connection, project, model_id)

    def list_models(
        self, project: str, query: RegistryQuery, *, page_size: int, page_token: str | None
    ) -> tuple[list[StoredModel], str | None]:
        kind = "models"
        after = decode_page_token(page_token, kind, project)
        conditions = [models.c.project == project, *_matching(models, query)]
        if after is not None:
            conditions.append(models.c.seq < after)
        statement = (
            select(*_MODEL_COLUMNS)
            .select_from(_MODEL_FROM)
            .where(*conditions)
            .order_by(models.c.seq.desc())
            .limit(page_size + 1)
        )
        with self._db.transaction(write=False) as connection:
            rows = connection.execute(statement).all()
        page = [stored_model(row) for row in rows[:page_size]]
        more = len(rows) > page_size
        return page, encode_page_token(kind, project, page[-1].seq) if more else None

    def update_model(
        self, project: str, model_id: str, change: Callable[[StoredModel], StoredModel]
    ) -> StoredModel:
        with self._db.transaction(write=True) as connection:
            current = _read_model(connection, project, model_id, lock=True)
            changed = change(current)
            wanted = changed.default_version
            if wanted not in (None, current.default_version):
                _read_version(connection, project, model_id, wanted, default=None)
            _write_model(connection, current, changed)
            return _read_model(connection, project, model_id)

    def delete_model(
        self, project: str, model_id: str, *, operation: Mapping[str, Any] | None = None
    ) -> None:
        with self._db.transaction(write=True) as connection:
            current = _read_model(connection, project, model_id, lock=True)
            names = (
                connection.execute(
                    select(versions.c.name)
                    .where(versions.c.project == project, versions.c.model == model_id)
                    .order_by(versions.c.seq)
                    .limit(MAX_NAMED_VERSIONS + 1)
                )
                .scalars()
                .all()
            )
            if names:
                raise _model_has_versions(current, names)
            connection.execute(delete(models).where(models.c.seq == current.seq))
            _write_operation(connection, project, operation)

    # --- versions ----------------------------------------------------------------------

    def create_version(
        self,
        project: str,
        model_id: str,
        version: Version,
        *,
        runtime: VersionRuntime | None = None,
        operation: Mapping[str, Any] | None = None,
    ) -> StoredVersion:
        version_id = _id_of(version.name)
        version = version.model_copy(update={"etag": new_etag(), "is_default": None})
        runtime = runtime or VersionRuntime()
        values = {
            "project": project,
            "model": model_id,
            "name": version_id,
            **version_values(version, runtime),
        }
        try:
            with self._db.transaction(write=True) as connection:
                _read_model(connection, project, model_id, lock=True)
                key = connection.execute(insert(versions).values(values)).inserted_primary_key
                _write_operation(connection, project, operation)
        except exc.IntegrityError:
            raise AlreadyExists(
                f"Version 'projects/{project}/models/{model_id}/versions/{version_id}' already "
                "exists; choose another name, or delete the existing version first.",
                field="name",
            ) from None
        assert key is not None
        return StoredVersion(project, model_id, version, int(key[0]), runtime)

    def get_version(self, project: str, model_id: str, version_id: str) -> StoredVersion:
        with self._db.transaction(write=False) as connection:
            row = connection.execute(
                select(*_VERSION_COLUMNS)
                .select_from(_VERSION_FROM)
                .where(*_version_key(project, model_id, version_id))
            ).one_or_none()
        if row is None:
            raise _version_not_found(project, model_id, version_id)
        return _version_of(row)

    def list_versions(
        self,
        project: str,
        model_id: str,
        query: RegistryQuery,
        *,
        page_size: int,
        page_token: str | None,
    ) -> tuple[list[StoredVersion], str | None]:
        kind = f"versions/{model_id}"
        after = decode_page_token(page_token, kind, project)
        conditions = [
            versions.c.project == project,
            versions.c.model == model_id,
            *_matching(versions, query),
        ]
        if query.states is not None:
            conditions.append(versions.c.state.in_(sorted(s.value for s in query.states)))
        if after is not None:
            conditions.append(versions.c.seq < after)
        statement = (
            select(*_VERSION_COLUMNS)
            .select_from(_VERSION_FROM)
            .where(*conditions)
            .order_by(versions.c.seq.desc())
            .limit(page_size + 1)
        )
        with self._db.transaction(write=False) as connection:
            _read_model(connection, project, model_id)
            rows = connection.execute(statement).all()
        page = [_version_of(row) for row in rows[:page_size]]
        more = len(rows) > page_size
        return page, encode_page_token(kind, project, page[-1].seq) if more else None

    def update_version(
        self,
        project: str,
        model_id: str,
        version_id: str,
        change: VersionChange,
        *,
        operation: OperationWrite | None = None,
    ) -> tuple[StoredModel, StoredVersion]:
        with self._db.transaction(write=True) as connection:
            model = _read_model(connection, project, model_id, lock=True)
            current = _read_version(
                connection, project, model_id, version_id, model.default_version
            )
            new_model, new_version = change(model, current)
            check_same_version(current, new_version)
            allowed = {model.default_version, version_id}
            if model.default_version in (None, version_id):
                allowed.add(None)
            if new_model.default_version not in allowed:
                raise Internal(
                    f"update_version of {current.version.name} may set the model's default "
                    f"only to this version, not {new_model.default_version!r}."
                )
            body = new_version.version.model_copy(update={"is_default": None})
            if body != current.version or new_version.runtime != current.runtime:
                body = body.model_copy(update={"etag": new_etag(current.version.etag)})
                connection.execute(
                    update(versions)
                    .where(versions.c.seq == current.seq)
                    .values(version_values(body, new_version.runtime))
                )
            _write_model(connection, model, new_model)
            model = _read_model(connection, project, model_id)
            written = _read_version(
                connection, project, model_id, version_id, model.default_version
            )
            if callable(operation):
                operation = operation(model, written)
            _write_operation(connection, project, operation)
            return model, written

    def delete_version(
        self,
        project: str,
        model_id: str,
        version_id: str,
        *,
        operation: Mapping[str, Any] | None = None,
    ) -> None:
        with self._db.transaction(write=True) as connection:
            model = _read_model(connection, project, model_id, lock=True)
            current = _read_version(
                connection, project, model_id, version_id, model.default_version
            )
            if current.is_default:
                _write_model(connection, model, replace(model, default_version=None))
            connection.execute(delete(versions).where(versions.c.seq == current.seq))
            _write_operation(connection, project, operation)

    def versions_in_states(self, states: Collection[VersionState]) -> list[StoredVersion]:
        if not states:
            return []
        statement = (
            select(*_VERSION_COLUMNS)
            .select_from(_VERSION_FROM)
            .where(versions.c.state.in_(sorted(VersionState(s).value for s in states)))
            .order_by(versions.c.seq)
        )
        with self._db.transaction(write=False) as connection:
            rows = connection.execute(statement).all()
        return [_version_of(row) for row in rows]

    def count_models(self) -> int:
        with self._db.transaction(write=False) as connection:
            return int(connection.execute(select(func.count()).select_from(models)).scalar_one())

    def count_versions_by_state(self) -> dict[VersionState, int]:
        statement = select(versions.c.state, func.count()).group_by(versions.c.state)
        with self._db.transaction(write=False) as connection:
            rows = connection.execute(statement).all()
        return version_state_counts(rows)


# --- reading and writing rows ------------------------------------------------------------------


def _read_model(
    connection: Connection, project: str, model_id: str, *, lock: bool = False
) -> StoredModel:
    statement = (
        select(*_MODEL_COLUMNS)
        .select_from(_MODEL_FROM)
        .where(models.c.project == project, models.c.name == model_id)
    )
    if lock:
        statement = statement.with_for_update(of=models)
    row = connection.execute(statement).one_or_none()
    if row is None:
        raise _model_not_found(project, model_id)
    return stored_model(row)


def _read_version(
    connection: Connection, project: str, model_id: str, version_id: str, default: str | None
) -> StoredVersion:
    row = connection.execute(
        select(versions).where(*_version_key(project, model_id, version_id)).with_for_update()
    ).one_or_none()
    if row is None:
        raise _version_not_found(project, model_id, version_id)
    return stored_version(row, is_default=default == version_id)


def _version_of(row: AnyRow) -> StoredVersion:
    return stored_version(row, is_default=row.default_version == row.name)


def _write_model(connection: Connection, current: StoredModel, changed: StoredModel) -> None:
    """Write ``changed`` over ``current`` when the resource or its default changed."""
    check_same_model(current, changed)
    same_body = changed.model.model_copy(update={"default_version": None}) == current.model
    if same_body and changed.default_version == current.default_version:
        return
    model = changed.model.model_copy(update={"etag": new_etag(current.model.etag)})
    connection.execute(
        update(models)
        .where(models.c.seq == current.seq)
        .values(model_values(model, changed.default_version))
    )


def _write_operation(
    connection: Connection, project: str, operation: Mapping[str, Any] | None
) -> None:
    """Insert ``operation``, or replace the stored one of the same name."""
    if operation is None:
        return
    name = check_operation(project, operation)
    body = json_copy(operation)
    values = {"done": bool(body.get("done")), "body": body}
    replaced = connection.execute(
        update(operations).where(operations.c.name == name).values(values)
    ).rowcount
    if not replaced:
        connection.execute(insert(operations).values(name=name, project=project, **values))


def _matching(table: Any, query: RegistryQuery) -> list[ColumnElement[bool]]:
    """SQL conditions for the name and label parts of ``query`` on ``models``/``versions``."""
    conditions: list[ColumnElement[bool]] = []
    for prefix in query.name_prefixes:
        # substr, not LIKE: exact and case-sensitive on both backends, no escaping of _ and %.
        conditions.append(func.substr(table.c.name, 1, len(prefix)) == prefix)
    conditions.extend(table.c.name == name for name in query.names)
    for key, value in sorted(query.labels.items()):
        conditions.append(table.c.labels[key].as_string() == value)
    conditions.extend(
        table.c.labels[key].as_string().is_not(None) for key in sorted(query.label_keys)
    )
    return conditions


def _version_key(project: str, model_id: str, version_id: str) -> tuple[ColumnElement[bool], ...]:
    return (
        versions.c.project == project,
        versions.c.model == model_id,
        versions.c.name == version_id,
    )


def _id_of(name: str | None) -> str:
    if not name:
        raise Internal("A model or version needs its name to be stored.")
    return name.rsplit("/", 1)[-1]


def _model_not_found(project: str, model_id: str) -> NotFound:
    return NotFound(
        f"Model 'projects/{project}/models/{model_id}' was not found; check the project and "
        "model name (list models to see them)."
    )


def _version_not_found(project: str, model_id: str, version_id: str) -> NotFound:
    return NotFound(
        f"Version 'projects/{project}/models/{model_id}/versions/{version_id}' was not found; "
        "check the model and version names (list the model's versions to see them)."
    )


def _model_has_versions(model: StoredModel, names: Sequence[str]) -> FailedPrecondition:
    shown = ", ".join(names[:MAX_NAMED_VERSIONS])
    if len(names) > MAX_NAMED_VERSIONS:
        shown += ", …"
    return FailedPrecondition(
        f"Model '{model.model.name}' still has versions ({shown}); delete them first, then "
        "the model.",
        field="name",
    )
