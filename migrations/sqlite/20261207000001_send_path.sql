-- The send path's database work, made cheaper. (The one-statement batch and its
-- conflict function are PostgreSQL's; SQLite writes batches in one local transaction.)

-- Burn rates, reports and the vendor-status look-up read the aggregates now; these
-- indexes only cost every charge and settlement a write.
DROP INDEX IF EXISTS ledger_entries_by_channel;
DROP INDEX IF EXISTS ledger_entries_by_time;
DROP INDEX IF EXISTS sends_by_channel;
