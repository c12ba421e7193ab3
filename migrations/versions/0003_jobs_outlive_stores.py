"""jobs outlive their store; the last failure of a job is kept

Revision ID: 0003_jobs_outlive_stores
Revises: 0002_import_jobs
Create Date: 2026-12-02 10:00:00

Hand-written. ``jobs.store_id`` becomes nullable with ``ON DELETE SET NULL`` (deleting a
store no longer deletes its jobs), and ``jobs.last_failure`` records why the job's last
attempt failed (a second identical failure fails the job). SQLite cannot alter a
constraint, so batch mode rebuilds the table there (env.py turns foreign keys off around
it, or dropping the old table would cascade to job_errors and upload_chunks); PostgreSQL
gets plain ALTERs.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_jobs_outlive_stores"
down_revision = "0002_import_jobs"
branch_labels = None
depends_on = None

FK = "fk_jobs_store_id_stores"


def upgrade():
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("last_failure", sa.Text(), nullable=True))
        batch.alter_column("store_id", existing_type=sa.Integer(), nullable=True)
        batch.drop_constraint(FK, type_="foreignkey")
        batch.create_foreign_key(FK, "stores", ["store_id"], ["id"], ondelete="SET NULL")


def downgrade():
    # Jobs whose store is gone cannot satisfy NOT NULL again: they go, with what is theirs
    # (explicitly: foreign keys are off on SQLite while migrating).
    orphans = "SELECT id FROM jobs WHERE store_id IS NULL"
    op.execute(f"DELETE FROM job_errors WHERE job_id IN ({orphans})")
    op.execute(f"DELETE FROM upload_chunks WHERE job_id IN ({orphans})")
    op.execute("DELETE FROM jobs WHERE store_id IS NULL")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(FK, type_="foreignkey")
        batch.create_foreign_key(FK, "stores", ["store_id"], ["id"], ondelete="CASCADE")
        batch.alter_column("store_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("last_failure")
