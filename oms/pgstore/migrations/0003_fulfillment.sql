-- Fulfillment pipeline: the outbox relay's per-key ordering check and the
-- expiry worker's scan. Runs unchanged on PostgreSQL 15 and CockroachDB
-- (partial indexes with IN are supported by both).

-- The relay claims the oldest unsent rows (outbox_unsent) and then checks,
-- per key, that no earlier unsent row of the same key is left to another
-- relay; this index answers that check.
CREATE INDEX IF NOT EXISTS outbox_unsent_key ON outbox (msg_key, created_at) WHERE sent_at IS NULL;

-- Unpaid orders by payment deadline, pending or on hold: the expiry worker
-- expires those whose deadline passed. A payment clears reserved_until and
-- sets payment_status, so paid orders leave the index.
CREATE INDEX IF NOT EXISTS orders_unpaid_deadline ON orders (reserved_until)
    WHERE payment_status = 'pending' AND status IN ('pending_payment', 'on_hold');
