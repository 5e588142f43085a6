-- Channels, fulfillment nodes, the stock ledger and sourcing rule sets.
-- Runs unchanged on PostgreSQL 15 and CockroachDB.

CREATE TABLE IF NOT EXISTS channels (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- SHA-256 of the API key: keys are 256-bit random, so a fast hash is
    -- enough and lets every request be authenticated by one lookup.
    key_hash    BYTEA NOT NULL UNIQUE,
    rate_per_sec FLOAT8 NOT NULL DEFAULT 0,
    burst       INT NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS nodes (
    id         TEXT PRIMARY KEY,
    doc        JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The absolute stock per (node, SKU): the last WMS/ERP snapshot, lowered
-- by every shipment committed since. Redis is rebuilt from this table plus
-- the open shipments.
CREATE TABLE IF NOT EXISTS stock (
    node_id      TEXT NOT NULL,
    sku          TEXT NOT NULL,
    on_hand      BIGINT NOT NULL,
    safety_stock BIGINT NOT NULL DEFAULT 0,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, sku)
);

-- Every change of on_hand, for audit: snapshots and shipments.
CREATE TABLE IF NOT EXISTS stock_ledger (
    id            UUID PRIMARY KEY,
    node_id       TEXT NOT NULL,
    sku           TEXT NOT NULL,
    kind          TEXT NOT NULL,
    qty           BIGINT NOT NULL,
    on_hand_after BIGINT NOT NULL,
    ref           TEXT NOT NULL DEFAULT '',
    at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stock_ledger_node_sku ON stock_ledger (node_id, sku, at);

-- Sourcing rule sets; the highest version is the active one.
CREATE TABLE IF NOT EXISTS rule_sets (
    version    BIGINT PRIMARY KEY,
    doc        JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
