-- The relay's indexes over rows still to publish (unsent and not dead).
-- Both are partial indexes, accepted unchanged by PostgreSQL 15 and
-- CockroachDB.

-- Discovery: rows by the database time at which they were enqueued. The
-- relay reads it from its last position, and again over a lookback that
-- covers the longest transaction, so that a row committed late is found
-- within a second of its commit whatever created_at says.
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (enqueued_at) WHERE sent_at IS NULL AND dead_at IS NULL;

-- Order: each key's rows in (seq, created_at) order. seq is the
-- aggregate's version, so it grows with every committed transaction of
-- one aggregate; created_at only breaks ties between the events of one
-- transaction (one clock reading, staggered by a microsecond each).
CREATE INDEX IF NOT EXISTS outbox_pending_key ON outbox (topic, msg_key, seq, created_at) WHERE sent_at IS NULL AND dead_at IS NULL;

-- Rows the relay gave up on, for the dead-row gauge and for operators.
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (dead_at) WHERE dead_at IS NOT NULL AND sent_at IS NULL;

-- Replaced by outbox_pending and outbox_pending_key.
DROP INDEX IF EXISTS outbox_unsent;
DROP INDEX IF EXISTS outbox_unsent_key;
