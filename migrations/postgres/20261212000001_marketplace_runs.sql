-- What the marketplace said of each channel's product, one row per run of
-- `tollgate reconcile --from-marketplace` or of the `marketplace_sync` job (SPEC §14),
-- with the ledger's count at that moment. Written only by the ledger, in the same
-- transaction as the reconciliation a run applies; append-only like the rest of the
-- ledger's history.
--
--   product_code           the channel's `product_code`;
--   observed_at            when the ledger recorded the run (UTC microseconds);
--   row_count              the rows `DescribeApiMetering` answered for the product;
--   total_quota, total_usage, total_capacity
--                          their figures as the marketplace wrote them, summed over the
--                          rows (`total_capacity` NULL when a row had none);
--   marketplace_remaining  what is left as tollgate reads those figures
--                          (`marketplace::remaining_from`, an interpretation Alibaba has
--                          not confirmed);
--   confirmed              1 when every row's `TotalCapacity` confirmed that reading;
--   ledger_remaining       the units the ledger could still reserve at that moment;
--   drift                  marketplace_remaining − ledger_remaining (negative: the
--                          ledger counts more than the marketplace has left);
--   outcome                'agreed' (no drift), 'reconciled' (the drift was applied as
--                          the reconciliation `reconciliation_id`) or 'recorded'
--                          (`[marketplace] apply = false`: nothing changed);
--   request_ids            the answers' RequestIds, comma separated, for Alibaba's support.
CREATE TABLE marketplace_runs (
    id                    BIGSERIAL PRIMARY KEY,
    channel               TEXT   NOT NULL,
    product_code          TEXT   NOT NULL,
    observed_at           BIGINT NOT NULL,
    row_count             BIGINT NOT NULL CHECK (row_count >= 0),
    total_quota           BIGINT NOT NULL,
    total_usage           BIGINT NOT NULL,
    total_capacity        BIGINT,
    marketplace_remaining BIGINT NOT NULL CHECK (marketplace_remaining >= 0),
    confirmed             BIGINT NOT NULL CHECK (confirmed IN (0, 1)),
    ledger_remaining      BIGINT NOT NULL,
    drift                 BIGINT NOT NULL,
    outcome               TEXT   NOT NULL CHECK (outcome IN ('agreed', 'reconciled', 'recorded')),
    reconciliation_id     BIGINT REFERENCES reconciliations (id),
    request_ids           TEXT   NOT NULL,
    CHECK ((outcome = 'reconciled') = (reconciliation_id IS NOT NULL))
);
-- The latest run of a channel is its highest id.
CREATE INDEX marketplace_runs_by_channel ON marketplace_runs (channel, id);
