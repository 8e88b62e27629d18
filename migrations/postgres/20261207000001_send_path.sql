-- The send path's database work, made cheaper.

-- Raised by the ledger writer's one-statement batch when the database does not hold
-- what the batch was planned against (another instance or a reconciliation changed a
-- package, a send was settled meanwhile, an idempotency key was taken): the error
-- undoes the whole statement, and the writer applies the batch again the locked way.
CREATE FUNCTION tollgate_batch_conflict(ok boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'tollgate: the ledger batch met a change it was not planned against'
            USING ERRCODE = 'TG001';
    END IF;
    RETURN ok;
END
$$;

-- Burn rates, reports and the vendor-status look-up read the aggregates now; these
-- indexes only cost every charge and settlement a write.
DROP INDEX IF EXISTS ledger_entries_by_channel;
DROP INDEX IF EXISTS ledger_entries_by_time;
DROP INDEX IF EXISTS sends_by_channel;
