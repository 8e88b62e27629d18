-- Every running tollgate instance holds a lease, renewed by a heartbeat; each
-- reservation names the instance that made it (`sends.instance`). While an instance's
-- lease holds, nobody else settles its reservations; once it lapses (the instance was
-- killed, stopped or cut off), any instance settles them as `uncertain` at once instead
-- of waiting for `reservation_timeout`. Times are the database's clock.
CREATE TABLE instances (
    id           TEXT   PRIMARY KEY,
    -- Where it runs (`host:port`): an instance started where another ran takes over
    -- that one's reservations at start.
    name         TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    lease_until  BIGINT NOT NULL,
    stopped_at   BIGINT
);
CREATE INDEX instances_by_name ON instances (name);
