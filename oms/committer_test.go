package oms_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/omstest"
)

func TestCommitterRetriesABatchWithoutTheOrderWhoseDataIsRefused(t *testing.T) {
	fx := newIntake(t, map[string]int64{"A/SKU-1": 100})
	g := newStall()
	fx.orders.BeforeCommit = g.hold
	fx.orders.Refuse = func(o *oms.Order) bool { return o.ExternalID == "BAD" }
	ctx := context.Background()
	errs := make(map[string]chan error)
	// The first order stalls its shard, so the rest queue into one batch.
	for _, ext := range []string{"FIRST", "E1", "BAD", "E2", "E3"} {
		ch := make(chan error, 1)
		errs[ext] = ch
		go func() {
			_, err := fx.in.Submit(ctx, "web", "", request(ext, line("SKU-1", 1)))
			ch <- err
		}()
		if ext == "FIRST" {
			<-g.arrived
		}
	}
	time.Sleep(50 * time.Millisecond) // let the others queue behind the stalled batch
	close(g.open)
	for ext, ch := range errs {
		err := <-ch
		if ext == "BAD" {
			if oms.KindOf(err) != oms.KindInvalid {
				t.Errorf("got %v for the refused order, want 422", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("order %s: got %v, want it stored without the refused one", ext, err)
		}
	}
	if fx.orders.Len() != 4 {
		t.Errorf("got %d stored orders, want 4", fx.orders.Len())
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 4 {
		t.Errorf("got reserved %d, want 4 (the refused order's hold released)", l.Reserved)
	}
}

func TestCommitterFlushesWhatIsQueuedWhenStopped(t *testing.T) {
	orders := omstest.NewOrders()
	g := newStall()
	orders.BeforeCommit = g.hold
	c, err := oms.NewCommitter(oms.CommitterConfig{Shards: 1}, orders)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		_ = c.Run(ctx)
		close(ran)
	}()
	results := make(chan error, 5)
	for i := range 5 {
		go func() {
			o := &oms.Order{ID: oms.OrderID("web", string(rune('a'+i))), Channel: "web", Status: oms.OrderReleased}
			results <- c.Commit(&oms.NewOrder{Order: o, RequestHash: []byte{1}})
		}()
		if i == 0 {
			<-g.arrived
		}
	}
	time.Sleep(20 * time.Millisecond)
	stop() // shut down while four orders wait behind the stalled batch
	close(g.open)
	<-ran
	for range 5 {
		if err := <-results; err != nil {
			t.Errorf("got %v, want every queued order committed", err)
		}
	}
	if orders.Len() != 5 {
		t.Errorf("got %d stored, want 5", orders.Len())
	}
	o := &oms.Order{ID: oms.OrderID("web", "late"), Channel: "web"}
	if err := c.Commit(&oms.NewOrder{Order: o}); !errors.Is(err, oms.ErrClosed) {
		t.Errorf("got %v after stop, want ErrClosed", err)
	}
}
