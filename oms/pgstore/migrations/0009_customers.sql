-- Customers across channels and B2B2C attribution.
--
-- A customer is found through its matching keys: keyed hashes (HMAC) of
-- the buyer's normalized phone and email, never the values themselves.
-- Merged customers point at the survivor (merged_into, kept flat: never a
-- chain), so that every id keeps answering. The binding (who brought the
-- customer, until when) lives on the survivor's row with a version that
-- every change bumps: a change applies only to the version it was decided
-- on.
CREATE TABLE IF NOT EXISTS customers (
    id                UUID PRIMARY KEY,
    merged_into       UUID NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    bound_associate   TEXT NOT NULL DEFAULT '',
    bound_store       TEXT NOT NULL DEFAULT '',
    bound_distributor TEXT NOT NULL DEFAULT '',
    bound_at          TIMESTAMPTZ NULL,
    bound_until       TIMESTAMPTZ NULL,
    bound_order_id    UUID NULL,
    binding_version   INT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS customers_merged ON customers (merged_into) WHERE merged_into IS NOT NULL;

CREATE TABLE IF NOT EXISTS customer_keys (
    -- HMAC-SHA256 of (kind, normalized value) under the key named key_id.
    key_hash    BYTEA PRIMARY KEY,
    key_id      TEXT NOT NULL,
    customer_id UUID NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS customer_keys_customer ON customer_keys (customer_id);

ALTER TABLE orders ADD COLUMN IF NOT EXISTS customer_id UUID NULL;
-- A customer's orders in creation order (GET /v1/customers/{id}/orders).
CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_id, created_at, id) WHERE customer_id IS NOT NULL;

-- Attribution totals per (group, key, hour of creation, currency),
-- maintained in the transaction that creates an order and in the one
-- that refunds a return. A row is split into slots so that concurrent
-- commit batches of one busy store or associate do not queue on one row
-- lock; the summary adds the slots up.
CREATE TABLE IF NOT EXISTS attribution_hourly (
    dim      TEXT NOT NULL,
    key      TEXT NOT NULL,
    hour     TIMESTAMPTZ NOT NULL,
    currency TEXT NOT NULL,
    slot     INT NOT NULL,
    orders   BIGINT NOT NULL DEFAULT 0,
    gmv      BIGINT NOT NULL DEFAULT 0,
    refunded BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (dim, hour, key, currency, slot)
);
