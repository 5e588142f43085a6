package oms

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/memstock"
	"github.com/omsd/omsd/sourcing"
)

type promoCatalog struct{ p Promotion }

func (c promoCatalog) Node(string) (Node, bool)    { return Node{}, false }
func (c promoCatalog) Candidates() []sourcing.Node { return nil }
func (c promoCatalog) Rules() *sourcing.RuleSet    { return nil }
func (c promoCatalog) Promotion(sku string, at time.Time) (Promotion, bool) {
	return c.p, sku == c.p.SKU && !at.Before(c.p.StartsAt) && at.Before(c.p.EndsAt)
}

// TestARefundedUnitGivesItsPurchaseLimitSlotBack: a buyer at the limit who
// returns two of three units may buy two again, not three.
func TestARefundedUnitGivesItsPurchaseLimitSlotBack(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	promo := Promotion{ID: "P1", SKU: "A", PerCustomerLimit: 3, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)}
	lim := memstock.NewLimits(time.Now)
	take := func(order string, qty int64) error {
		return lim.Take(ctx, "P1", "C1", "A", order, qty, promo.PerCustomerLimit, promo.EndsAt)
	}
	if err := take("o1", 3); err != nil {
		t.Fatal(err)
	}
	if err := take("o2", 1); !errors.Is(err, inventory.ErrLimitExceeded) {
		t.Fatalf("past the limit: got %v", err)
	}
	s := &ReturnService{cfg: ReturnsConfig{Limits: lim, Promos: promoCatalog{promo}, Timeout: time.Second}, log: slog.New(slog.DiscardHandler)}
	o := &Order{ID: "o1", Customer: Customer{ID: "C1"}, CreatedAt: now, Lines: []Line{{SKU: "A", Qty: 3, UnitPrice: 1}}}
	s.giveBackLimits(ctx, o, &Return{ReceivedLines: []ReceivedLine{{SKU: "A", Qty: 1, Condition: ConditionSellable}, {SKU: "A", Qty: 1, Condition: ConditionDamaged}}})
	if err := take("o2", 2); err != nil {
		t.Fatalf("two slots came back: got %v", err)
	}
	if err := take("o3", 1); !errors.Is(err, inventory.ErrLimitExceeded) {
		t.Fatalf("the kept unit still counts: got %v", err)
	}
}
