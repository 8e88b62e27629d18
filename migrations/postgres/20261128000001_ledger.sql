-- The quota ledger: purchased packages, sends with their reservations, and the
-- append-only entries (charges and reconciliation adjustments) that cost is summed from.

CREATE TABLE packages (
    id              BIGSERIAL PRIMARY KEY,
    channel         TEXT    NOT NULL,
    units           BIGINT  NOT NULL CHECK (units > 0),
    price_micros    BIGINT  NOT NULL CHECK (price_micros >= 0),
    purchased_at    BIGINT  NOT NULL,
    expires_at      BIGINT,
    vendor_order_id TEXT    UNIQUE,
    note            TEXT,
    -- Units reserved or charged. A reservation adds to it, a release takes it back.
    taken           BIGINT  NOT NULL DEFAULT 0,
    -- Units charged; only ever moves forward (except through reconciliation), and is
    -- the position that per-unit costs are computed from.
    charged         BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    CHECK (expires_at IS NULL OR expires_at > purchased_at),
    CHECK (taken >= 0 AND taken <= units),
    CHECK (charged >= 0 AND charged <= taken)
);
CREATE INDEX packages_by_channel ON packages (channel, expires_at, purchased_at);

CREATE TABLE sends (
    id                  TEXT    PRIMARY KEY,
    channel             TEXT    NOT NULL,
    client              TEXT    NOT NULL,
    idempotency_key     TEXT,
    request_hash        TEXT,
    mobile_masked       TEXT    NOT NULL,
    mobile_full         TEXT,
    units               BIGINT  NOT NULL CHECK (units > 0),
    -- What the reservation took, as "package_id:units,…"; read back only by the
    -- sweeper after a crash, since the process that reserved settles from memory.
    allocation          TEXT    NOT NULL,
    unmetered_units     BIGINT  NOT NULL DEFAULT 0,
    status              TEXT    NOT NULL,
    charged_units       BIGINT  NOT NULL DEFAULT 0,
    cost_micros         BIGINT  NOT NULL DEFAULT 0,
    upstream_status     BIGINT,
    upstream_request_id TEXT,
    upstream_task_id    TEXT,
    upstream_message    TEXT,
    -- The vendor's own count of what is left (its body's RemainPoint), when it says.
    upstream_remain_point BIGINT,
    latency_ms          BIGINT,
    needs_reconciliation BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT  NOT NULL,
    settled_at          BIGINT,
    UNIQUE (client, idempotency_key)
);
CREATE INDEX sends_reserved ON sends (created_at) WHERE status = 'reserved';
CREATE INDEX sends_by_channel ON sends (channel, created_at);

CREATE TABLE reconciliations (
    id               BIGSERIAL PRIMARY KEY,
    channel          TEXT   NOT NULL,
    vendor_remaining BIGINT NOT NULL CHECK (vendor_remaining >= 0),
    local_remaining  BIGINT NOT NULL,
    adjusted_units   BIGINT NOT NULL,
    note             TEXT,
    created_at       BIGINT NOT NULL
);

CREATE TABLE ledger_entries (
    id                BIGSERIAL PRIMARY KEY,
    channel           TEXT   NOT NULL,
    package_id        BIGINT REFERENCES packages (id),
    send_id           TEXT   REFERENCES sends (id),
    reconciliation_id BIGINT REFERENCES reconciliations (id),
    client            TEXT,
    units             BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    CHECK ((send_id IS NULL) <> (reconciliation_id IS NULL))
);
CREATE INDEX ledger_entries_by_channel ON ledger_entries (channel, created_at);
CREATE INDEX ledger_entries_by_time ON ledger_entries (created_at);

-- Running totals of what sends were charged, per channel: only ever grows (adjustments
-- are not included), so that metrics exported from it are true counters, identical on
-- every instance and unaffected by restarts.
CREATE TABLE channel_totals (
    channel      TEXT   PRIMARY KEY,
    billed_units BIGINT NOT NULL,
    cost_micros  BIGINT NOT NULL
);
