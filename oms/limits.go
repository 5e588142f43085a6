package oms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/omsd/omsd/inventory"
)

// Promotion limits how many units of a SKU one customer may buy during a
// window (a flash-sale rule).
type Promotion struct {
	ID               string    `json:"id"`
	SKU              string    `json:"sku"`
	PerCustomerLimit int64     `json:"per_customer_limit"`
	StartsAt         time.Time `json:"starts_at"`
	EndsAt           time.Time `json:"ends_at"`
}

// limitTaker takes and gives back the per-customer purchase limits of the
// promoted SKUs of an order. The limit store keys every slot by order id,
// so taking again for the same order is a no-op and giving back is
// idempotent.
type limitTaker struct {
	limits  inventory.Limits // nil: no limits
	catalog interface {
		Promotion(sku string, at time.Time) (Promotion, bool)
	}
	log     *slog.Logger
	timeout time.Duration
}

// take takes the limits of o's promoted lines, before its stock; a refusal
// is a 422 limit-exceeded naming the line.
func (l *limitTaker) take(ctx context.Context, o *Order) ([]Promotion, error) {
	if l.limits == nil {
		return nil, nil
	}
	var taken []Promotion
	for i, line := range o.Lines {
		p, ok := l.catalog.Promotion(line.SKU, o.CreatedAt)
		if !ok {
			continue
		}
		err := l.limits.Take(ctx, p.ID, o.Customer.ID, line.SKU, o.ID, line.Qty, p.PerCustomerLimit, p.EndsAt)
		if err == nil {
			taken = append(taken, p)
			continue
		}
		l.giveBack(ctx, o, taken)
		if errors.Is(err, inventory.ErrLimitExceeded) {
			e := Invalid("a purchase limit is exceeded", FieldError{fmt.Sprintf("lines[%d].qty", i),
				fmt.Sprintf("exceeds the limit of %d units per customer of promotion %s", p.PerCustomerLimit, p.ID)})
			e.Slug = SlugLimitExceeded
			return nil, e
		}
		return nil, unavailable("purchase limits are unavailable", err)
	}
	return taken, nil
}

// giveBack returns the slots of taken, detached from ctx's cancellation.
// Errors are logged: a slot kept by mistake only ever errs on the
// customer's side.
func (l *limitTaker) giveBack(ctx context.Context, o *Order, taken []Promotion) {
	if l.limits == nil || len(taken) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmpOr(l.timeout, 10*time.Second))
	defer cancel()
	for _, p := range taken {
		if err := l.limits.GiveBack(ctx, p.ID, o.Customer.ID, p.SKU, o.ID); err != nil {
			l.log.Error("give back purchase limit", "order_id", o.ID, "promotion", p.ID, "err", err)
		}
	}
}

// giveBackUnlessStored gives the slots back only when no order with o's
// id is stored: the slots of a stored copy are that order's.
func (l *limitTaker) giveBackUnlessStored(ctx context.Context, store OrderStore, o *Order, taken []Promotion) {
	if l.limits == nil || len(taken) == 0 {
		return
	}
	if _, _, err := store.GetOrder(ctx, o.ID); err == nil || KindOf(err) != KindNotFound {
		return
	}
	l.giveBack(ctx, o, taken)
}

// GiveBackLimits returns a function that gives back the purchase-limit
// slots an order took for its promoted SKUs (the promotion active when the
// order was created), for orders that expire unpaid or are cancelled.
// Errors are logged.
func GiveBackLimits(limits inventory.Limits, catalog Catalog, log *slog.Logger) func(ctx context.Context, o *Order) {
	lt := &limitTaker{limits: limits, catalog: catalog, log: log}
	return func(ctx context.Context, o *Order) {
		if limits == nil || o == nil {
			return
		}
		var taken []Promotion
		for _, line := range o.Lines {
			if p, ok := catalog.Promotion(line.SKU, o.CreatedAt); ok {
				taken = append(taken, p)
			}
		}
		lt.giveBack(ctx, o, taken)
	}
}
