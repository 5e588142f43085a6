package oms_test

import (
	"context"
	"testing"
	"time"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/omstest"
)

// TestNothingReservedUnderALapsedLeaseIsStored: once this instance's lease
// lapses, other instances may release the holds it took, so an order
// reserved under it must not be stored (its stock could be sold again): a
// batch in flight is cancelled, one queued is refused, both answer 503 and
// give their stock back, and the holds name their owner.
func TestNothingReservedUnderALapsedLeaseIsStored(t *testing.T) {
	fx := newIntake(t, map[string]int64{"A/SKU-1": 10})
	lease := omstest.NewLease()
	var cancelled error
	g := newStall()
	fx.orders.BeforeCommit = func(ctx context.Context, b []*oms.NewOrder) error {
		g.once.Do(func() { close(g.arrived) })
		select {
		case <-g.open:
		case <-ctx.Done():
			cancelled = ctx.Err()
		}
		return nil
	}
	in, err := oms.NewIntake(oms.IntakeConfig{}, oms.IntakeDeps{Catalog: fx.catalog, Stock: fx.stock, Limits: fx.limits,
		Recent: fx.recent, Store: fx.orders, Lease: lease,
		Committer: omstest.StartCommitter(t, oms.CommitterConfig{Shards: 1, Lease: lease}, fx.orders)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	errs := make(chan error, 2)
	go func() {
		_, err := in.Submit(ctx, "web", "", request("FIRST", line("SKU-1", 2)))
		errs <- err
	}()
	<-g.arrived // FIRST's batch is in the store
	snap, err := fx.stock.Snapshot(ctx, "A")
	if err != nil || len(snap.Holds) != 1 || snap.Holds[0].Owner != "test.0" {
		t.Fatalf("holds while committing: got %+v (%v), want one owned by test.0", snap.Holds, err)
	}
	go func() {
		_, err := in.Submit(ctx, "web", "", request("QUEUED", line("SKU-1", 3)))
		errs <- err
	}()
	time.Sleep(50 * time.Millisecond) // QUEUED waits behind FIRST
	lease.Renew()                     // the lease lapsed and a new one began
	for range 2 {
		if err := <-errs; oms.KindOf(err) != oms.KindUnavailable {
			t.Errorf("order reserved under the lapsed lease: got %v, want 503", err)
		}
	}
	if cancelled == nil {
		t.Error("the batch in flight was not cancelled when its lease lapsed")
	}
	if n := fx.orders.Len(); n != 0 {
		t.Errorf("got %d stored orders, want none", n)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 0 {
		t.Errorf("got reserved %d, want 0 (every hold given back)", l.Reserved)
	}
	// Under the new lease orders go in again.
	fx.orders.BeforeCommit = nil
	if _, err := in.Submit(ctx, "web", "", request("AFTER", line("SKU-1", 1))); err != nil {
		t.Fatalf("order under the new lease: %v", err)
	}
	snap, _ = fx.stock.Snapshot(ctx, "A")
	if len(snap.Holds) != 1 || snap.Holds[0].Owner != "test.1" {
		t.Errorf("holds after the renewal: got %+v, want one owned by test.1", snap.Holds)
	}
	lease.Lapse()
	_, err = in.Submit(ctx, "web", "", request("NONE", line("SKU-1", 1)))
	if oms.KindOf(err) != oms.KindUnavailable {
		t.Errorf("order with no lease: got %v, want 503", err)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 1 {
		t.Errorf("got reserved %d, want 1 (nothing taken without a lease)", l.Reserved)
	}
}
