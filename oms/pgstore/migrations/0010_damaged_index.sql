-- GET /v1/inventory/{sku} reads the damaged units of one SKU over every
-- node (stock's key is (node_id, sku), so without this it scans the table;
-- an audit that reads every SKU spent minutes there). Few rows are ever
-- damaged, so a partial index keeps it small; PostgreSQL 15 and CockroachDB
-- accept it unchanged.
CREATE INDEX IF NOT EXISTS stock_damaged_by_sku ON stock (sku) WHERE damaged > 0;
