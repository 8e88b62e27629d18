-- Schedules and monthly reports: one record per scheduled run (the unique key is what
-- makes a due job run once across all instances), and daily roll-ups of the ledger so
-- that a month's report reads ~30 rows per channel and client instead of every charge.

-- A job's schedule is first seen here; a due time before it is never "missed".
CREATE TABLE schedule_jobs (
    job           TEXT   PRIMARY KEY,
    first_seen_at BIGINT NOT NULL
);

-- Whoever inserts (job, due_at) first runs it; everyone else sees the conflict.
CREATE TABLE schedule_runs (
    job         TEXT   NOT NULL,
    due_at      BIGINT NOT NULL,
    instance    TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    -- NULL while running (or if the instance died mid-run), then 'succeeded' or 'failed'.
    outcome     TEXT,
    error       TEXT,
    PRIMARY KEY (job, due_at)
);

-- One row per local day rolled up: [day_start, day_end) in UTC microseconds, as the
-- configured time zone cut it. Days are rolled up in order and never overlap.
CREATE TABLE rollup_days (
    day         TEXT   NOT NULL,
    timezone    TEXT   NOT NULL,
    day_start   BIGINT PRIMARY KEY,
    day_end     BIGINT NOT NULL UNIQUE,
    rolled_at   BIGINT NOT NULL,
    CHECK (day_end > day_start)
);

-- What sends did in one rolled-up day, per channel and client: counts by the send's
-- created_at, charged units and cost by the charge entry's created_at.
CREATE TABLE daily_usage (
    day_start    BIGINT NOT NULL REFERENCES rollup_days (day_start),
    day_end      BIGINT NOT NULL,
    channel      TEXT   NOT NULL,
    client       TEXT   NOT NULL,
    sends        BIGINT NOT NULL,
    sent         BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    uncertain    BIGINT NOT NULL,
    billed_units BIGINT NOT NULL,
    cost_micros  BIGINT NOT NULL,
    PRIMARY KEY (day_start, channel, client)
);

-- Reports and roll-ups read sends by time across all channels.
CREATE INDEX sends_by_time ON sends (created_at);
-- Reconciliation adjustments are read raw (they are few, and never deleted).
CREATE INDEX ledger_entries_adjustments ON ledger_entries (created_at) WHERE reconciliation_id IS NOT NULL;
-- Retention deletes a send only once no charge entry refers to it.
CREATE INDEX ledger_entries_by_send ON ledger_entries (send_id);
