package oms

import (
	"context"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRejectedShipmentIsSourcedAgainElsewhere(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10, "B/SKU-1": 10, "C/SKU-1": 10})
	o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 4))
	mark := fx.store.mark()
	got := fx.mustWMS(WMSRejected, o.Shipments[0].ID, "")
	if got.Status != OrderReleased || len(got.Shipments) != 2 || got.Shipments[0].Status != ShipmentRejected ||
		got.Shipments[1].NodeID != "B" || got.Shipments[1].Status != ShipmentRequested {
		t.Fatalf("got %s %v, want A rejected and B requested (priority order, A excluded)", got.Status, statuses(got))
	}
	if tp := fx.store.types(mark); !slices.Equal(tp, []string{"shipment.requested"}) {
		t.Errorf("got events %v, want one shipment.requested", tp)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 0 {
		t.Errorf("A: got reserved %d, want 0 (released)", l.Reserved)
	}
	if l := fx.level("B", "SKU-1"); l.Reserved != 4 {
		t.Errorf("B: got reserved %d, want 4", l.Reserved)
	}
	// B rejects too: C, never A again.
	got = fx.mustWMS(WMSRejected, got.Shipments[1].ID, "")
	if len(got.Shipments) != 3 || got.Shipments[2].NodeID != "C" {
		t.Fatalf("got %v, want a third shipment at C", statuses(got))
	}
	// C rejects: nothing left; backordered, stock all released.
	mark = fx.store.mark()
	got = fx.mustWMS(WMSRejected, got.Shipments[2].ID, "")
	if len(got.Shipments) != 3 || !slices.Contains(got.Flags, FlagBackordered) || got.Status != OrderReleased {
		t.Fatalf("got %s %v flags %v, want backordered", got.Status, statuses(got), got.Flags)
	}
	if tp := fx.store.types(mark); !slices.Equal(tp, []string{"order.backordered"}) {
		t.Errorf("got events %v, want order.backordered", tp)
	}
	for _, n := range []string{"A", "B", "C"} {
		if l := fx.level(n, "SKU-1"); l.Reserved != 0 {
			t.Errorf("%s: got reserved %d, want 0", n, l.Reserved)
		}
	}
}

func TestRejectedDuplicateReleasesItsPreparedHolds(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10, "B/SKU-1": 10})
	o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 4))
	ev := WMSEvent{EventID: "rej-1", Type: WMSRejected, ShipmentID: o.Shipments[0].ID, Reason: "short-pick"}
	if _, err := fx.f.ApplyWMSEvent(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	// A second delivery racing the first: it prepared its own holds, finds
	// the event processed, and must give them back.
	fx.store.mu.Lock()
	delete(fx.store.processed, "rej-1")
	cur := fx.store.orders[o.ID]
	saved := clone(cur)
	cur.Shipments = cur.Shipments[:1]
	cur.Shipments[0].Status = ShipmentRequested
	fx.store.mu.Unlock()
	store := &racingStore{fakeStore: fx.store, restore: saved}
	fx.f.store = store
	if _, err := fx.f.ApplyWMSEvent(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if l := fx.level("B", "SKU-1"); l.Reserved != 4 {
		t.Errorf("B: got reserved %d, want 4 (only the stored shipment's hold)", l.Reserved)
	}
}

// racingStore lets prepareResource see the order before the first
// delivery was applied, then restores the applied state and the processed
// mark before the transaction: the second delivery is a duplicate.
type racingStore struct {
	*fakeStore
	restore *Order
}

func (s *racingStore) ApplyEvent(ctx context.Context, eventID, orderID string, fn func(o *Order) ([]OutboxEvent, error)) (*Order, bool, error) {
	s.mu.Lock()
	s.orders[orderID] = s.restore
	s.processed[eventID] = true
	s.mu.Unlock()
	return s.fakeStore.ApplyEvent(ctx, eventID, orderID, fn)
}

// counterValue reads one series of a counter vector from the registry.
func counterValue(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestResourcingIsCountedByOutcome(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10, "B/SKU-1": 10})
	o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 4))
	got := fx.mustWMS(WMSRejected, o.Shipments[0].ID, "")
	got = fx.mustWMS(WMSRejected, got.Shipments[1].ID, "") // B: nothing left at C
	if !slices.Contains(got.Flags, FlagBackordered) {
		t.Fatalf("got flags %v, want backordered", got.Flags)
	}
	for outcome, want := range map[string]float64{"fulfilled": 1, "none": 1, "partial": 0} {
		if n := counterValue(t, fx.reg, "omsd_fulfillment_resourcing_total", "outcome", outcome); n != want {
			t.Errorf("got %v re-sourcings %s, want %v", n, outcome, want)
		}
	}
	// A duplicate sources nothing more.
	fx.mustWMS(WMSAcknowledged, got.Shipments[1].ID, "")
	if n := counterValue(t, fx.reg, "omsd_fulfillment_operations_total", "result", "ignored"); n != 1 {
		t.Errorf("got %v ignored events, want the late acknowledgement", n)
	}
}
