package stocktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omsd/omsd/inventory"
)

// RunLimits runs the purchase-limit contract suite. newLimits returns fresh,
// empty Limits for each subtest.
func RunLimits(t *testing.T, newLimits func(t *testing.T) inventory.Limits) {
	for _, tc := range limitTests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, context.Background(), newLimits(t))
		})
	}
}

var limitTests = []struct {
	name string
	run  func(t *testing.T, ctx context.Context, l inventory.Limits)
}{
	{"50 concurrent orders of one customer with a limit of 3: exactly 3 pass", testLimitRace},
	{"take is idempotent per order", testTakeIdempotent},
	{"give back is idempotent and frees the limit", testGiveBack},
	{"customers, SKUs and promotions are counted apart", testLimitScopes},
	{"quantities add up to the limit", testLimitQuantities},
	{"after the promotion no limit applies", testLimitOver},
	{"invalid input is rejected", testLimitInvalid},
}

func testLimitRace(t *testing.T, ctx context.Context, l inventory.Limits) {
	until := time.Now().Add(time.Hour)
	var ok, exceeded atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		wg.Go(func() {
			<-start
			err := l.Take(ctx, "d11", "alice", "lipstick", fmt.Sprint("order-", i), 1, 3, until)
			var le *inventory.LimitError
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &le) && errors.Is(err, inventory.ErrLimitExceeded):
				exceeded.Add(1)
				if le.Limit != 3 || le.Taken != 3 || le.Want != 1 {
					t.Errorf("limit error: got %+v, want limit 3, taken 3, want 1", le)
				}
			default:
				t.Errorf("take: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 3 || exceeded.Load() != 47 {
		t.Errorf("got %d passed and %d exceeded, want 3 and 47", ok.Load(), exceeded.Load())
	}
}

func testTakeIdempotent(t *testing.T, ctx context.Context, l inventory.Limits) {
	until := time.Now().Add(time.Hour)
	for i := range 5 {
		if err := l.Take(ctx, "p", "bob", "s", "o1", 2, 3, until); err != nil {
			t.Fatalf("take %d of the same order: %v", i+1, err)
		}
	}
	if err := l.Take(ctx, "p", "bob", "s", "o2", 1, 3, until); err != nil {
		t.Errorf("second order within the limit: %v", err)
	}
	if err := l.Take(ctx, "p", "bob", "s", "o3", 1, 3, until); !errors.Is(err, inventory.ErrLimitExceeded) {
		t.Errorf("third order past the limit: got %v, want ErrLimitExceeded", err)
	}
}

func testGiveBack(t *testing.T, ctx context.Context, l inventory.Limits) {
	until := time.Now().Add(time.Hour)
	if err := l.Take(ctx, "p", "carol", "s", "o1", 2, 2, until); err != nil {
		t.Fatal(err)
	}
	if err := l.Take(ctx, "p", "carol", "s", "o2", 1, 2, until); !errors.Is(err, inventory.ErrLimitExceeded) {
		t.Fatalf("got %v, want ErrLimitExceeded", err)
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if err := l.GiveBack(ctx, "p", "carol", "s", "o1"); err != nil {
				t.Errorf("give back: %v", err)
			}
		})
	}
	wg.Wait()
	if err := l.GiveBack(ctx, "p", "carol", "s", "never-taken"); err != nil {
		t.Errorf("give back of an order never taken: %v", err)
	}
	// Given back once, not five times: exactly 2 fit again.
	if err := l.Take(ctx, "p", "carol", "s", "o2", 2, 2, until); err != nil {
		t.Errorf("take after give back: %v", err)
	}
	if err := l.Take(ctx, "p", "carol", "s", "o3", 1, 2, until); !errors.Is(err, inventory.ErrLimitExceeded) {
		t.Errorf("take past the limit after give back: got %v, want ErrLimitExceeded", err)
	}
	// The order that was given back may be taken again (intake retried it).
	if err := l.GiveBack(ctx, "p", "carol", "s", "o2"); err != nil {
		t.Fatal(err)
	}
	if err := l.Take(ctx, "p", "carol", "s", "o1", 2, 2, until); err != nil {
		t.Errorf("retake of a given-back order: %v", err)
	}
}

func testLimitScopes(t *testing.T, ctx context.Context, l inventory.Limits) {
	until := time.Now().Add(time.Hour)
	for _, c := range []struct{ promo, customer, sku string }{
		{"p", "dan", "s"}, {"p", "eve", "s"}, {"p", "dan", "t"}, {"q", "dan", "s"},
		// Separators inside ids do not merge scopes.
		{"p:x", "dan", "s"}, {"p", "x:dan", "s"}, {"p\x00s", "dan", ""},
	} {
		sku := c.sku
		if sku == "" {
			sku = "s2"
		}
		if err := l.Take(ctx, c.promo, c.customer, sku, "o1", 1, 1, until); err != nil {
			t.Errorf("take in %+v: %v", c, err)
		}
	}
}

func testLimitQuantities(t *testing.T, ctx context.Context, l inventory.Limits) {
	until := time.Now().Add(time.Hour)
	if err := l.Take(ctx, "p", "fay", "s", "o1", 4, 5, until); err != nil {
		t.Fatal(err)
	}
	var le *inventory.LimitError
	if err := l.Take(ctx, "p", "fay", "s", "o2", 2, 5, until); !errors.As(err, &le) || le.Taken != 4 || le.Want != 2 {
		t.Errorf("take of 2 with 4 of 5 taken: got %v, want *LimitError{taken 4, want 2}", err)
	}
	if err := l.Take(ctx, "p", "fay", "s", "o3", 1, 5, until); err != nil {
		t.Errorf("take of the last unit: %v", err)
	}
}

func testLimitOver(t *testing.T, ctx context.Context, l inventory.Limits) {
	past := time.Now().Add(-time.Second)
	for i := range 3 {
		if err := l.Take(ctx, "old", "gus", "s", fmt.Sprint("o", i), 1, 1, past); err != nil {
			t.Errorf("take after the promotion: %v", err)
		}
	}
}

func testLimitInvalid(t *testing.T, ctx context.Context, l inventory.Limits) {
	until := time.Now().Add(time.Hour)
	for _, c := range []struct {
		name                        string
		promo, customer, sku, order string
		qty, limit                  int64
	}{
		{"empty promotion", "", "c", "s", "o", 1, 1},
		{"empty customer", "p", "", "s", "o", 1, 1},
		{"empty sku", "p", "c", "", "o", 1, 1},
		{"empty order", "p", "c", "s", "", 1, 1},
		{"zero quantity", "p", "c", "s", "o", 0, 1},
		{"negative limit", "p", "c", "s", "o", 1, -1},
	} {
		if err := l.Take(ctx, c.promo, c.customer, c.sku, c.order, c.qty, c.limit, until); !errors.Is(err, inventory.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", c.name, err)
		}
	}
}
