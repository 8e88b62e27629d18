-- Aggregates the ledger maintains in the same transaction as the charges, so that quota
-- views, burn rates, forecasts, metrics, alerts and reports cost the same whatever the
-- size of the history: running totals per channel (beside the per-package counters of
-- `packages`), and usage per hour and per local day, channel, client, class and route.

-- Per channel, beside the counters of charges (`billed_units`, `cost_micros`):
--   purchased_units   every unit of every package ever registered;
--   reserved_units    package units held by sends not yet settled;
--   unmetered_units   observe mode only: units sent beyond the packages (not in any package);
--   reconciled_*      the signed net of reconciliation adjustments (negative: written off);
--   auth_failing      1 while the vendor's last word on the AppCode was a refusal;
--   vendor_remaining  the vendor's own count of what is left, from its last answer;
--   first_purchased_at  the earliest purchase, where the burn rate's window may start.
ALTER TABLE channel_totals ADD COLUMN purchased_units BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channel_totals ADD COLUMN reserved_units BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channel_totals ADD COLUMN unmetered_units BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channel_totals ADD COLUMN reconciled_units BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channel_totals ADD COLUMN reconciled_cost_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channel_totals ADD COLUMN auth_failing BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channel_totals ADD COLUMN vendor_remaining BIGINT;
ALTER TABLE channel_totals ADD COLUMN vendor_remaining_at BIGINT;
ALTER TABLE channel_totals ADD COLUMN first_purchased_at BIGINT;

INSERT INTO channel_totals (channel, billed_units, cost_micros)
    SELECT DISTINCT channel, 0, 0 FROM packages
    WHERE channel NOT IN (SELECT channel FROM channel_totals);
UPDATE channel_totals SET
    purchased_units = COALESCE((SELECT SUM(units) FROM packages p
        WHERE p.channel = channel_totals.channel), 0),
    reserved_units = COALESCE((SELECT SUM(taken - charged) FROM packages p
        WHERE p.channel = channel_totals.channel), 0),
    unmetered_units = COALESCE((SELECT SUM(units) FROM ledger_entries e
        WHERE e.channel = channel_totals.channel AND e.send_id IS NOT NULL
        AND e.package_id IS NULL), 0),
    reconciled_units = COALESCE((SELECT -SUM(units) FROM ledger_entries e
        WHERE e.channel = channel_totals.channel AND e.reconciliation_id IS NOT NULL), 0),
    reconciled_cost_micros = COALESCE((SELECT -SUM(cost_micros) FROM ledger_entries e
        WHERE e.channel = channel_totals.channel AND e.reconciliation_id IS NOT NULL), 0),
    first_purchased_at = (SELECT MIN(purchased_at) FROM packages p
        WHERE p.channel = channel_totals.channel);

-- Usage per time bucket. `span` is 'hour' (a local hour of [server] timezone, kept for
-- 35 days: burn rates, bursts) or 'day' (a local day, kept for good: reports, charts);
-- `bucket_start` is the bucket's first instant in UTC microseconds. A send counts in the
-- bucket of its settlement, with what it was charged; a reconciliation adjustment counts
-- with client '' in the bucket of the reconciliation.
CREATE TABLE usage_buckets (
    span                 TEXT   NOT NULL CHECK (span IN ('hour', 'day')),
    channel              TEXT   NOT NULL,
    bucket_start         BIGINT NOT NULL,
    client               TEXT   NOT NULL,
    class                TEXT   NOT NULL,
    route                TEXT   NOT NULL,
    sends                BIGINT NOT NULL DEFAULT 0,
    sent                 BIGINT NOT NULL DEFAULT 0,
    failed               BIGINT NOT NULL DEFAULT 0,
    uncertain            BIGINT NOT NULL DEFAULT 0,
    billed_units         BIGINT NOT NULL DEFAULT 0,
    cost_micros          BIGINT NOT NULL DEFAULT 0,
    adjusted_units       BIGINT NOT NULL DEFAULT 0,
    adjusted_cost_micros BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (span, channel, bucket_start, client, class, route)
);
CREATE INDEX usage_buckets_by_time ON usage_buckets (span, bucket_start);

-- What each send is, for cost attribution and crash recovery: its class (critical,
-- normal, bulk), the route it was sent through ('' for none), and the instance that
-- reserved it (whose lease decides when another instance may settle it).
ALTER TABLE sends ADD COLUMN class TEXT NOT NULL DEFAULT '';
ALTER TABLE sends ADD COLUMN route TEXT NOT NULL DEFAULT '';
ALTER TABLE sends ADD COLUMN instance TEXT;

-- One-time work done by the application after the migrations (e.g. building the usage
-- buckets of an existing history), recorded so it is done once.
CREATE TABLE ledger_meta (
    key   TEXT   PRIMARY KEY,
    value TEXT   NOT NULL
);

-- Delivery attempts per notifier and outcome, kept by the outbox worker with every
-- attempt it records, so that `tollgate_notifications_total` is one small read.
CREATE TABLE notification_totals (
    notifier TEXT   NOT NULL,
    outcome  TEXT   NOT NULL,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (notifier, outcome)
);
INSERT INTO notification_totals (notifier, outcome, attempts)
    SELECT notifier, outcome, COUNT(*) FROM notification_attempts GROUP BY notifier, outcome;
