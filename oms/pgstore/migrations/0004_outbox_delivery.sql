-- Outbox delivery: the relay finds unsent rows by the database's clock
-- (enqueued_at, set by now() in the inserting transaction, never by an
-- instance's wall clock), counts failed publications (attempts,
-- last_error) and sets a row it gave up on aside (dead_at) so that it
-- blocks nothing behind it. created_at stays the event's own time (the
-- Kafka message time); it no longer orders or finds anything.
--
-- Columns only: their indexes are created by the next migration, so that
-- no statement refers to a column added in the same transaction (which
-- CockroachDB restricts).
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS attempts INT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_error TEXT NULL;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS dead_at TIMESTAMPTZ NULL;
