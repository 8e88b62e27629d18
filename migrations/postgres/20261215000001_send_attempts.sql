-- A send through a route (SPEC §13) may try several channels before one carries it.
-- Each vendor call is a send row of its own; the row of the attempt that carried the
-- send (or the last one) lists the channels tried before it, in order, as JSON
-- (`[{"channel":"kapool_sms","status":"vendor_quota_exhausted"}, …]`); '' when none was.
ALTER TABLE sends ADD COLUMN attempts TEXT NOT NULL DEFAULT '';
