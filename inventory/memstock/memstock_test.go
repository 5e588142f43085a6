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

func TestRestockIDsAreForgottenAfterTheMemory(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	s := memstock.New(memstock.Config{AutoReady: true, Now: func() time.Time { return now }})
	if _, err := s.SetStock(ctx, "n1", "a", 5, 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Restock(ctx, "n1", "r1", "a", 2); !ok || err != nil {
		t.Fatalf("Restock: %v, %v", ok, err)
	}
	now = now.Add(inventory.RestockMemory - time.Minute)
	if ok, err := s.Restock(ctx, "n1", "r1", "a", 2); ok || err != nil {
		t.Errorf("repeat within the memory: got %v, %v; want false, nil", ok, err)
	}
	if snap, _ := s.Snapshot(ctx, "n1"); len(snap.Restocks) != 1 {
		t.Errorf("snapshot within the memory: got %v, want r1", snap.Restocks)
	}
	now = now.Add(2 * time.Minute)
	if snap, _ := s.Snapshot(ctx, "n1"); len(snap.Restocks) != 0 {
		t.Errorf("snapshot past the memory: got %v, want none", snap.Restocks)
	}
	if ok, err := s.Restock(ctx, "n1", "r1", "a", 2); !ok || err != nil {
		t.Errorf("an id past the memory is forgotten: got %v, %v; want true, nil", ok, err)
	}
	if ls, _ := s.Levels(ctx, []inventory.Key{{Node: "n1", SKU: "a"}}); ls[0].OnHand != 9 {
		t.Errorf("on hand: got %d, want 9", ls[0].OnHand)
	}
}
