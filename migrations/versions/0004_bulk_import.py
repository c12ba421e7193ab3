"""the bulk import path on PostgreSQL: uploads stored uncompressed, item times by default

Revision ID: 0004_bulk_import
Revises: 0003_jobs_outlive_stores
Create Date: 2026-12-01 23:55:00

Hand-written, PostgreSQL only (SQLite has neither setting; nothing to do there).

- An upload's 1 MiB slices are written once and read once. TOAST compressed each one
  (pglz): storing a 62 MB CSV file took 1.1 s instead of 0.3 s (psycopg on loopback, on
  this repository's benchmark machine), time the client waits for its ``202`` and CPU
  the database server then lacks for the import. Reading is as fast either way.
  ``STORAGE EXTERNAL`` keeps the slices out of line, uncompressed.
- ``items.created_at`` and ``updated_at`` default to the transaction's time in UTC, so an
  import's ``COPY`` leaves them out: parsing two timestamps per row cost the server 0.7 s
  of the 9.5 s a million-row ``COPY`` takes. Every other write sets them, as before.
"""

from alembic import op

revision = "0004_bulk_import"
down_revision = "0003_jobs_outlive_stores"
branch_labels = None
depends_on = None

NOW_UTC = "(now() AT TIME ZONE 'utc')"


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE upload_chunks ALTER COLUMN data SET STORAGE EXTERNAL")
    op.execute(
        f"ALTER TABLE items ALTER COLUMN created_at SET DEFAULT {NOW_UTC}, "
        f"ALTER COLUMN updated_at SET DEFAULT {NOW_UTC}"
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE items ALTER COLUMN created_at DROP DEFAULT, "
        "ALTER COLUMN updated_at DROP DEFAULT"
    )
    op.execute("ALTER TABLE upload_chunks ALTER COLUMN data SET STORAGE EXTENDED")
