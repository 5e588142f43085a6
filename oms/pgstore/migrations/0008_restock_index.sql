-- The reconciliation's and the rebuild's read of recent restocks
-- (stock_ledger rows of kind 'return' booked by after-sales returns, ref =
-- the restock id) within inventory.RestockWindow: a partial index by time,
-- accepted unchanged by PostgreSQL 15 and CockroachDB.
CREATE INDEX IF NOT EXISTS stock_ledger_restocks ON stock_ledger (at) WHERE kind = 'return';
