package redisstock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/inventory"
)

// Limits is the Redis implementation of inventory.Limits: one hash per
// (promotion, SKU, customer) holding the total and each order's quantity,
// changed by one script each, expiring at the end of the promotion.
type Limits struct {
	rdb redis.UniversalClient
	cfg Config
	m   *metrics
}

var _ inventory.Limits = (*Limits)(nil)

// NewLimits returns Limits on rdb, using cfg's Prefix, Now and Registerer.
func NewLimits(rdb redis.UniversalClient, cfg Config) (*Limits, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Limits{rdb: rdb, cfg: cfg, m: m}, nil
}

// key is the counter of (promo, sku, customer), its own hash tag. The
// triple is hashed: the key then needs no escaping of separators or braces,
// spreads evenly over a cluster, and does not spell out customer ids.
func (l *Limits) key(promo, customer, sku string) string {
	h := sha256.Sum256([]byte(promo + "\x00" + sku + "\x00" + customer))
	return "{" + l.cfg.Prefix + ":lim:" + hex.EncodeToString(h[:16]) + "}"
}

// Take implements inventory.Limits.
func (l *Limits) Take(ctx context.Context, promo, customer, sku, orderID string, qty, limit int64, until time.Time) error {
	if err := inventory.ValidateTake(promo, customer, sku, orderID, qty, limit); err != nil {
		return err
	}
	if !l.cfg.Now().Before(until) {
		return nil // the promotion is over: no limit applies
	}
	cmd, err := run(ctx, l.rdb, l.m, takeScript, []string{l.key(promo, customer, sku)},
		orderID, qty, limit, until.UnixMilli())
	if err != nil {
		l.m.take(outcomeError)
		return err
	}
	tag, vals, err := reply(cmd)
	if err != nil {
		l.m.take(outcomeError)
		return err
	}
	switch tag {
	case "ok":
		l.m.take(outcomeOK)
		return nil
	case "dup":
		l.m.take(outcomeDuplicate)
		return nil
	case "exceeded":
		l.m.take("exceeded")
		taken, _ := toInt(first(vals))
		return &inventory.LimitError{Promo: promo, SKU: sku, Limit: limit, Taken: taken, Want: qty}
	}
	l.m.take(outcomeError)
	return fmt.Errorf("redisstock: take: unexpected reply %q", tag)
}

// GiveBack implements inventory.Limits.
func (l *Limits) GiveBack(ctx context.Context, promo, customer, sku, orderID string) error {
	if err := inventory.ValidateTake(promo, customer, sku, orderID, 1, 0); err != nil {
		return err
	}
	_, err := run(ctx, l.rdb, l.m, giveBackScript, []string{l.key(promo, customer, sku)}, orderID)
	return err
}
