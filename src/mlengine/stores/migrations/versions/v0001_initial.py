"""Initial tables: jobs, job_log_heads, job_logs, operations.

Revision ID: 0001_initial
Revises: (none)

Written by hand and frozen: later changes go in new revisions, never here.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_initial"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _seq() -> sa.Column[int]:
    return sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False
    )


def _utc_time(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
        _seq(),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        _utc_time("create_time", nullable=True),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("body", _json(), nullable=False),
        sa.Column("runtime", _json(), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_jobs"),
        sa.UniqueConstraint("project", "job_id", name="uq_jobs_project_job_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_project_seq", "jobs", ["project", sa.text("seq DESC")])
    op.create_index("ix_jobs_project_state_seq", "jobs", ["project", "state", "seq"])
    op.create_index("ix_jobs_state_seq", "jobs", ["state", "seq"])

    op.create_table(
        "job_log_heads",
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project", "job_id", name="pk_job_log_heads"),
        sa.ForeignKeyConstraint(
            ["project", "job_id"],
            ["jobs.project", "jobs.job_id"],
            name="fk_job_log_heads_jobs",
        ),
    )

    op.create_table(
        "job_logs",
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        _utc_time("time", nullable=False),
        sa.Column("task_name", sa.String(128), nullable=False),
        sa.Column("trial_id", sa.String(64), nullable=True),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("project", "job_id", "seq", name="pk_job_logs"),
        sa.ForeignKeyConstraint(
            ["project", "job_id"], ["jobs.project", "jobs.job_id"], name="fk_job_logs_jobs"
        ),
    )

    op.create_table(
        "operations",
        _seq(),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("body", _json(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_operations"),
        sa.UniqueConstraint("name", name="uq_operations_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_operations_project_seq", "operations", ["project", sa.text("seq DESC")])


def downgrade() -> None:
    op.drop_table("operations")
    op.drop_table("job_logs")
    op.drop_table("job_log_heads")
    op.drop_table("jobs")
