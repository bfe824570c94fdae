"""Job queue and upload bookkeeping: jobs, job_log, upload_sets, upload_files.

Jobs are claimed with ``FOR UPDATE SKIP LOCKED``; triggers NOTIFY ``terracat_jobs`` when a job
becomes runnable and ``terracat_job_cancel`` when a cancel is requested, so idle workers wake
at once and running ones stop within a heartbeat. The partial unique index on
``upload_files (collection_id, sha256)`` makes duplicate detection race-free across workers.

Revision ID: 0003_jobs_uploads
Revises: 0002_drop_end_datetime_index
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_jobs_uploads"
down_revision: str | None = "0002_drop_end_datetime_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE jobs (
            id uuid PRIMARY KEY,
            process_id text NOT NULL,
            status text NOT NULL DEFAULT 'accepted' CHECK (
                status IN ('accepted', 'running', 'successful', 'failed', 'dismissed')),
            progress smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
            message text,
            inputs jsonb NOT NULL DEFAULT '{}'::jsonb,
            outputs jsonb,
            error_code text,
            error_message text,
            log_lines integer NOT NULL DEFAULT 0,
            attempts integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
            timeout_s integer NOT NULL CHECK (timeout_s >= 1),
            cancel_requested boolean NOT NULL DEFAULT false,
            worker_id text,
            run_after timestamptz NOT NULL DEFAULT now(),
            created timestamptz NOT NULL DEFAULT now(),
            updated timestamptz NOT NULL DEFAULT now(),
            started timestamptz,
            finished timestamptz,
            heartbeat timestamptz
        )
        """
    )
    op.execute("CREATE INDEX jobs_queue_idx ON jobs (run_after, created) WHERE status = 'accepted'")
    op.execute("CREATE INDEX jobs_running_idx ON jobs (heartbeat) WHERE status = 'running'")
    op.execute("CREATE INDEX jobs_created_idx ON jobs (created DESC, id DESC)")
    op.execute(
        """
        CREATE TABLE job_log (
            job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            line integer NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            message text NOT NULL,
            PRIMARY KEY (job_id, line)
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION terracat_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status = 'accepted' AND (TG_OP = 'INSERT' OR OLD.status <> 'accepted'
                                            OR OLD.run_after <> NEW.run_after) THEN
                PERFORM pg_notify('terracat_jobs', NEW.id::text);
            END IF;
            IF TG_OP = 'UPDATE' AND NEW.cancel_requested AND NOT OLD.cancel_requested THEN
                PERFORM pg_notify('terracat_job_cancel', NEW.id::text);
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE ON jobs "
        "FOR EACH ROW EXECUTE FUNCTION terracat_jobs_notify()"
    )
    op.execute(
        """
        CREATE TABLE upload_sets (
            id uuid PRIMARY KEY,
            collection_id text NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
            title text,
            expected_files integer CHECK (expected_files >= 1),
            item_datetime timestamptz,
            completed boolean NOT NULL DEFAULT false,
            created timestamptz NOT NULL DEFAULT now(),
            updated timestamptz NOT NULL DEFAULT now(),
            completed_at timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE upload_files (
            id uuid PRIMARY KEY,
            upload_set_id uuid NOT NULL REFERENCES upload_sets (id) ON DELETE CASCADE,
            collection_id text NOT NULL,
            filename text NOT NULL,
            source text NOT NULL CHECK (source IN ('multipart', 'tus', 'url')),
            href text,
            size bigint,
            sha256 text,
            status text NOT NULL DEFAULT 'received' CHECK (
                status IN ('received', 'processing', 'ready', 'rejected', 'duplicate')),
            error_code text,
            error_message text,
            item_id text,
            job_id uuid REFERENCES jobs (id) ON DELETE SET NULL,
            staged_path text,
            created timestamptz NOT NULL DEFAULT now(),
            updated timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX upload_files_set_idx ON upload_files (upload_set_id, created)")
    op.execute("CREATE INDEX upload_files_job_idx ON upload_files (job_id)")
    op.execute(
        "CREATE UNIQUE INDEX upload_files_sha256_idx ON upload_files (collection_id, sha256) "
        "WHERE sha256 IS NOT NULL AND status IN ('received', 'processing', 'ready')"
    )


def downgrade() -> None:
    op.execute("DROP TABLE upload_files")
    op.execute("DROP TABLE upload_sets")
    op.execute("DROP TABLE job_log")
    op.execute("DROP TABLE jobs")
    op.execute("DROP FUNCTION terracat_jobs_notify()")
