-- Alerts: one state machine per (rule, channel), and the durable outbox of
-- notifications with every delivery attempt.

CREATE TABLE alert_states (
    -- Stable handle for the API (`POST /v1/alerts/{id}/ack`).
    id               TEXT   NOT NULL UNIQUE,
    rule             TEXT   NOT NULL,
    channel          TEXT   NOT NULL,
    state            TEXT   NOT NULL CHECK (state IN ('ok', 'firing', 'resolved')),
    severity         TEXT   NOT NULL,
    -- The current (or last) firing: when it began and when it was last notified.
    fired_at         BIGINT,
    resolved_at      BIGINT,
    last_notified_at BIGINT,
    -- Set by an acknowledgement; cleared by every change of state.
    acknowledged_at  BIGINT,
    acknowledged_by  TEXT,
    summary          TEXT,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (rule, channel)
);

-- One row per notifier per event, written in the same transaction as the state change
-- that caused it, before anything is sent.
CREATE TABLE notifications (
    id              TEXT   PRIMARY KEY,
    -- The event's id (the same for every notifier and every retry).
    event_id        TEXT   NOT NULL,
    notifier        TEXT   NOT NULL,
    rule            TEXT,
    channel         TEXT,
    -- The event JSON exactly as delivered.
    payload         TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    -- When the next attempt is due; a worker claiming the row pushes it forward by a
    -- lease, so that a crash mid-delivery only delays it.
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    -- Set when the last allowed attempt failed.
    abandoned_at    BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (event_id, notifier)
);
CREATE INDEX notifications_due ON notifications (next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;

CREATE TABLE notification_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT   NOT NULL REFERENCES notifications (id),
    notifier        TEXT   NOT NULL,
    outcome         TEXT   NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    attempted_at    BIGINT NOT NULL,
    error           TEXT
);
CREATE INDEX notification_attempts_by_notification ON notification_attempts (notification_id);
