package memstock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/memstock"
	"github.com/omsd/omsd/inventory/stocktest"
)

func TestContract(t *testing.T) {
	stocktest.Run(t, func(t *testing.T) inventory.Store { return memstock.New(memstock.Config{}) })
}

func TestLimitsContract(t *testing.T) {
	stocktest.RunLimits(t, func(t *testing.T) inventory.Limits { return memstock.NewLimits(nil) })
}

func TestAutoReadyAndLose(t *testing.T) {
	ctx := context.Background()
	s := memstock.New(memstock.Config{AutoReady: true})
	if _, err := s.SetStock(ctx, "n1", "a", 5, 0); err != nil {
		t.Fatalf("SetStock on an auto-ready store: %v", err)
	}
	if err := s.Reserve(ctx, inventory.Hold{ID: "h", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 2}}}); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	s.Lose()
	err := s.Reserve(ctx, inventory.Hold{ID: "h2", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 1}}})
	if !errors.Is(err, inventory.ErrNotReady) {
		t.Errorf("Reserve after Lose: got %v, want ErrNotReady", err)
	}
}

func TestClosedIDsAreForgottenAfterTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	s := memstock.New(memstock.Config{AutoReady: true, ClosedTTL: time.Hour, Now: func() time.Time { return now }})
	if _, err := s.SetStock(ctx, "n1", "a", 5, 0); err != nil {
		t.Fatal(err)
	}
	h := inventory.Hold{ID: "h", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 1}}}
	if err := s.Reserve(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, "n1", "h"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(ctx, h); !errors.Is(err, inventory.ErrHoldClosed) {
		t.Errorf("reserve with a closed id: got %v, want ErrHoldClosed", err)
	}
	now = now.Add(2 * time.Hour)
	if err := s.Reserve(ctx, h); err != nil {
		t.Errorf("reserve with an id closed longer than the TTL ago: got %v, want nil", err)
	}
}

func TestLimitsExpireAfterUntil(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	l := memstock.NewLimits(func() time.Time { return now })
	until := now.Add(time.Hour)
	if err := l.Take(ctx, "p", "c", "s", "o1", 1, 1, until); err != nil {
		t.Fatal(err)
	}
	if err := l.Take(ctx, "p", "c", "s", "o2", 1, 1, until); !errors.Is(err, inventory.ErrLimitExceeded) {
		t.Fatalf("got %v, want ErrLimitExceeded", err)
	}
	now = until.Add(time.Minute)
	if err := l.Take(ctx, "p", "c", "s", "o2", 1, 1, until.Add(24*time.Hour)); err != nil {
		t.Errorf("take in a later promotion window after the counter expired: %v", err)
	}
}
