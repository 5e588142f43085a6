-- Orders, shipments, idempotency keys, the outbox and processed events.

CREATE TABLE IF NOT EXISTS orders (
    -- UUIDv5 of (channel, external id): duplicates collide on the key.
    id             UUID PRIMARY KEY,
    channel_id     TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    status         TEXT NOT NULL,
    payment_status TEXT NOT NULL,
    reserved_until TIMESTAMPTZ NULL,
    request_hash   BYTEA NOT NULL,
    doc            JSONB NOT NULL,
    version        INT NOT NULL DEFAULT 1,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (channel_id, external_id)
);
CREATE INDEX IF NOT EXISTS orders_pending_deadline ON orders (reserved_until) WHERE status = 'pending_payment';

CREATE TABLE IF NOT EXISTS order_lines (
    order_id   UUID NOT NULL,
    line_no    INT NOT NULL,
    sku        TEXT NOT NULL,
    qty        BIGINT NOT NULL,
    unit_price BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE IF NOT EXISTS shipments (
    id              UUID PRIMARY KEY,
    order_id        UUID NOT NULL,
    node_id         TEXT NOT NULL,
    status          TEXT NOT NULL,
    -- The inventory hold (reservation) of this shipment in Redis.
    hold_id         TEXT NOT NULL,
    reserved_until  TIMESTAMPTZ NULL,
    tracking_number TEXT NOT NULL DEFAULT '',
    version         INT NOT NULL DEFAULT 1,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS shipments_order ON shipments (order_id);
CREATE INDEX IF NOT EXISTS shipments_open ON shipments (node_id) WHERE status IN ('pending', 'requested', 'acknowledged', 'cancel_requested');

CREATE TABLE IF NOT EXISTS shipment_lines (
    shipment_id UUID NOT NULL,
    sku         TEXT NOT NULL,
    qty         BIGINT NOT NULL,
    PRIMARY KEY (shipment_id, sku)
);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    channel_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    order_id     UUID NOT NULL,
    request_hash BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, key)
);

-- Events written in the same transaction as the state change they report;
-- the relay publishes them to Kafka and marks them sent.
CREATE TABLE IF NOT EXISTS outbox (
    id            UUID PRIMARY KEY,
    topic         TEXT NOT NULL,
    msg_key       TEXT NOT NULL,
    -- Order within one key (the aggregate's version).
    seq           BIGINT NOT NULL,
    payload       JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    sent_at       TIMESTAMPTZ NULL,
    claimed_until TIMESTAMPTZ NULL
);
-- The relay's claim reads this index in (created_at, seq) order, so that
-- ORDER BY ... LIMIT stops after LIMIT rows instead of sorting a backlog.
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (created_at, seq) WHERE sent_at IS NULL;

-- Warehouse events already applied (deduplication by event id).
CREATE TABLE IF NOT EXISTS processed_events (
    event_id     TEXT PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Flash-sale purchase limits per customer and SKU.
CREATE TABLE IF NOT EXISTS promotions (
    id                 TEXT PRIMARY KEY,
    sku                TEXT NOT NULL,
    per_customer_limit BIGINT NOT NULL,
    starts_at          TIMESTAMPTZ NOT NULL,
    ends_at            TIMESTAMPTZ NOT NULL
);
