"""The model registry: models and versions.

Revision ID: 0002_models
Revises: 0001_initial

Written by hand and frozen: later changes go in new revisions, never here.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002_models"
down_revision: str | None = "0001_initial"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _seq() -> sa.Column[int]:
    return sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "models",
        _seq(),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("default_version", sa.String(128), nullable=True),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("body", _json(), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_models"),
        sa.UniqueConstraint("project", "name", name="uq_models_project_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_models_project_seq", "models", ["project", sa.text("seq DESC")])

    op.create_table(
        "versions",
        _seq(),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("body", _json(), nullable=False),
        sa.Column("runtime", _json(), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_versions"),
        sa.UniqueConstraint("project", "model", "name", name="uq_versions_project_model_name"),
        sa.ForeignKeyConstraint(
            ["project", "model"], ["models.project", "models.name"], name="fk_versions_models"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_versions_project_model_seq", "versions", ["project", "model", sa.text("seq DESC")]
    )
    op.create_index("ix_versions_state_seq", "versions", ["state", "seq"])


def downgrade() -> None:
    op.drop_table("versions")
    op.drop_table("models")
