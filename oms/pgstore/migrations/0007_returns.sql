-- After-sales: returns of shipped units, their idempotency keys, and the
-- damaged units that came back (counted apart from on hand: they are not
-- sellable). Every change of a return locks its order's row first, so the
-- returns of one order (and the check "never more than shipped less
-- returned") are serialized by the order.
CREATE TABLE IF NOT EXISTS returns (
    -- UUIDv5 of (order id, external id): copies collide on the key.
    id           UUID PRIMARY KEY,
    order_id     UUID NOT NULL,
    external_id  TEXT NOT NULL,
    channel_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    doc          JSONB NOT NULL,
    version      INT NOT NULL DEFAULT 1,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (order_id, external_id)
);

CREATE TABLE IF NOT EXISTS return_idempotency_keys (
    -- '' for an operator (admin key).
    channel_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    return_id    UUID NOT NULL,
    request_hash BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, key)
);

ALTER TABLE stock ADD COLUMN IF NOT EXISTS damaged BIGINT NOT NULL DEFAULT 0;
