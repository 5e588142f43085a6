-- The relay reads, for each key of a claim, that key's pending rows in
-- (seq, created_at, id) order. With outbox_pending_key lacking id, the
-- planner sorted anyway and so preferred outbox_pending (by enqueued_at)
-- filtered on the key: every key of a claim walked every pending row, and
-- the keys of oms.shipments (one per node) made that the largest cost of
-- the database under load (pg_stat_statements: 16,000 buffers per claim).
-- The full sort key makes the key's rows an index range read in order.
CREATE INDEX IF NOT EXISTS outbox_pending_key_order ON outbox (topic, msg_key, seq, created_at, id) WHERE sent_at IS NULL AND dead_at IS NULL;
DROP INDEX IF EXISTS outbox_pending_key;
