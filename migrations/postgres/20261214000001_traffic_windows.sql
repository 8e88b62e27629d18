-- The counts of the traffic limits (SPEC §12): one row per limit and subject (a client's
-- name, or a keyed hash of a mobile number, never the number), holding the window's
-- slots as `index:amount;…` (see src/policy/window.rs). Every instance on one database
-- counts in the same rows, under their row locks, so several instances see one count.
-- A row whose slots have all left its window expires at `expires_at` (database clock,
-- UTC microseconds) and is deleted by housekeeping.
CREATE TABLE traffic_windows (
    limit_name TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    slots      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (limit_name, subject)
);
CREATE INDEX traffic_windows_by_expiry ON traffic_windows (expires_at);
