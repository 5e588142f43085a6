package memstock

import (
	"context"
	"sync"
	"time"

	"github.com/omsd/omsd/inventory"
)

// Limits is an in-memory inventory.Limits with redisstock's behaviour.
type Limits struct {
	mu     sync.Mutex
	now    func() time.Time
	counts map[limitKey]*limitCount
}

type limitKey struct{ promo, customer, sku string }

type limitCount struct {
	total  int64
	orders map[string]int64
	until  time.Time
}

var _ inventory.Limits = (*Limits)(nil)

// NewLimits returns empty Limits; now is the clock (nil means time.Now).
func NewLimits(now func() time.Time) *Limits {
	if now == nil {
		now = time.Now
	}
	return &Limits{now: now, counts: map[limitKey]*limitCount{}}
}

// count returns the live count of k, forgetting one past its end.
func (l *Limits) count(k limitKey) *limitCount {
	c := l.counts[k]
	if c != nil && !l.now().Before(c.until) {
		delete(l.counts, k)
		c = nil
	}
	return c
}

// Take implements inventory.Limits.
func (l *Limits) Take(_ context.Context, promo, customer, sku, orderID string, qty, limit int64, until time.Time) error {
	if err := inventory.ValidateTake(promo, customer, sku, orderID, qty, limit); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.now().Before(until) {
		return nil // the promotion is over: no limit applies
	}
	k := limitKey{promo, customer, sku}
	c := l.count(k)
	if c == nil {
		c = &limitCount{orders: map[string]int64{}}
		l.counts[k] = c
	}
	if _, ok := c.orders[orderID]; ok {
		return nil
	}
	if c.total+qty > limit {
		return &inventory.LimitError{Promo: promo, SKU: sku, Limit: limit, Taken: c.total, Want: qty}
	}
	c.total += qty
	c.orders[orderID] = qty
	c.until = until
	return nil
}

// GiveBack implements inventory.Limits.
func (l *Limits) GiveBack(_ context.Context, promo, customer, sku, orderID string) error {
	if err := inventory.ValidateTake(promo, customer, sku, orderID, 1, 0); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.count(limitKey{promo, customer, sku})
	if c == nil {
		return nil
	}
	if q, ok := c.orders[orderID]; ok {
		c.total -= q
		delete(c.orders, orderID)
	}
	return nil
}
