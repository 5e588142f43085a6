package pgstore

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/omsd/omsd/oms"
)

func ackFn(sid string) func(o *oms.Order) ([]oms.OutboxEvent, error) {
	return func(o *oms.Order) ([]oms.OutboxEvent, error) {
		for i := range o.Shipments {
			if o.Shipments[i].ID == sid {
				o.Shipments[i].Status = oms.ShipmentAcknowledged
			}
		}
		return nil, nil
	}
}

// One batch holds what a poll of wms.events brings: events of several
// orders, a redelivered event, an unknown shipment, an event the
// transition refuses and one it ignores. Each gets ApplyEvent's answer;
// the stock and its ledger are booked per line, aggregated per key.
func TestApplyEventsAppliesABatchWithEachEventsOwnOutcome(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	if err := s.SetStock(ctx, "WH-1", "SKU-1", 10, 0); err != nil {
		t.Fatal(err)
	}
	a := storeOrder(t, s, "WH-1", "SKU-1", 3)
	b := storeOrder(t, s, "WH-1", "SKU-1", 4)
	c := storeOrder(t, s, "WH-1", "SKU-2", 2) // no stock row for SKU-2
	d := storeOrder(t, s, "WH-1", "SKU-1", 1)
	sa, sb, sc, sd := a.Shipments[0].ID, b.Shipments[0].ID, c.Shipments[0].ID, d.Shipments[0].ID
	if _, _, err := s.ApplyEvent(ctx, "ev-old", a.ID, ackFn(sa)); err != nil {
		t.Fatal(err)
	}
	refused := oms.Errorf(oms.KindConflict, oms.SlugInvalidTransition, "refused")
	ignored := errors.Join(oms.ErrEventIgnored, errors.New("covered"))
	got, err := s.ApplyEvents(ctx, []oms.EventApply{
		{EventID: "ev-old", ShipmentID: sa, Fn: shipFn(sa)}, // seen before
		{EventID: "ev-a", ShipmentID: sa, Fn: shipFn(sa)},   // ships 3
		{EventID: "ev-b", ShipmentID: sb, Fn: shipFn(sb)},   // ships 4
		{EventID: "ev-b", ShipmentID: sb, Fn: shipFn(sb)},   // the same event twice in one batch
		{EventID: "ev-c", ShipmentID: sc, Fn: shipFn(sc)},   // ships 2 of a SKU without a stock row
		{EventID: "ev-x", ShipmentID: uuid.NewString(), Fn: shipFn("")},
		{EventID: "ev-bad", ShipmentID: "not-a-uuid", Fn: shipFn("")},
		{EventID: "ev-refused", ShipmentID: sd, Fn: func(*oms.Order) ([]oms.OutboxEvent, error) { return nil, refused }},
		{EventID: "ev-ignored", ShipmentID: sd, Fn: func(*oms.Order) ([]oms.OutboxEvent, error) { return nil, ignored }},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		applied bool
		err     error
		status  oms.OrderStatus
	}{
		{false, nil, oms.OrderShipped}, // the batch's own ship of a is what the order shows now
		{true, nil, oms.OrderShipped},
		{true, nil, oms.OrderShipped},
		{false, nil, oms.OrderShipped},
		{true, nil, oms.OrderShipped},
		{false, oms.ErrNotFound, ""},
		{false, oms.ErrNotFound, ""},
		{false, refused, oms.OrderReleased},
		{false, oms.ErrEventIgnored, oms.OrderReleased},
	}
	for i, w := range want {
		g := got[i]
		if g.Applied != w.applied || !errors.Is(g.Err, w.err) || (w.err == nil) != (g.Err == nil) {
			t.Errorf("event %d: got applied %v err %v, want applied %v err %v", i, g.Applied, g.Err, w.applied, w.err)
		}
		if w.status != "" && (g.Order == nil || g.Order.Status != w.status) {
			t.Errorf("event %d: got order %+v, want status %s", i, g.Order, w.status)
		}
	}
	if n := onHand(t, s, "WH-1", "SKU-1"); n != 3 {
		t.Errorf("got on hand %d, want 10-3-4 = 3", n)
	}
	if n := onHand(t, s, "WH-1", "SKU-2"); n != 0 {
		t.Errorf("got SKU-2 on hand %d, want 0 (booked against zero)", n)
	}
	// The ledger rows follow the lines in order: 10-3 = 7, then 7-4 = 3.
	if n := count(t, s, `SELECT count(*) FROM stock_ledger WHERE kind = 'ship' AND ((ref = $1 AND qty = -3 AND on_hand_after = 7) OR (ref = $2 AND qty = -4 AND on_hand_after = 3) OR (ref = $3 AND qty = -2 AND on_hand_after = 0))`, sa, sb, sc); n != 3 {
		t.Errorf("got %d matching ship ledger rows, want 3", n)
	}
	for _, ev := range []string{"ev-a", "ev-b", "ev-c", "ev-ignored"} {
		if n := count(t, s, `SELECT count(*) FROM processed_events WHERE event_id = $1`, ev); n != 1 {
			t.Errorf("event %s: got %d processed marks, want 1", ev, n)
		}
	}
	for _, ev := range []string{"ev-refused", "ev-x", "ev-bad"} {
		if n := count(t, s, `SELECT count(*) FROM processed_events WHERE event_id = $1`, ev); n != 0 {
			t.Errorf("event %s: recorded as processed although it did not apply", ev)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM shipments WHERE id = ANY($1::uuid[]) AND status = 'shipped' AND tracking_number = 'TRK'`, []string{sa, sb, sc}); n != 3 {
		t.Errorf("got %d shipment rows shipped, want 3", n)
	}
	if n := count(t, s, `SELECT count(*) FROM shipments WHERE id = $1 AND status = 'requested'`, sd); n != 1 {
		t.Errorf("the refused and ignored events changed shipment %s", sd)
	}
	if n := count(t, s, `SELECT count(*) FROM orders WHERE id = ANY($1::uuid[]) AND status = 'shipped' AND version = 2`, []string{a.ID, b.ID, c.ID}); n != 2 {
		t.Errorf("got %d orders shipped at version 2, want 2 (b, c)", n)
	}
	if n := count(t, s, `SELECT count(*) FROM orders WHERE id = $1 AND status = 'shipped' AND version = 3`, a.ID); n != 1 {
		t.Errorf("order a: want shipped at version 3 (ack then ship)")
	}
	if n := count(t, s, `SELECT count(*) FROM outbox WHERE msg_key = ANY($1::text[])`, []string{a.ID, b.ID, c.ID, d.ID}); n != 3 {
		t.Errorf("got %d outbox rows, want 3", n)
	}
	// Applying the batch again changes nothing: every event is a duplicate.
	again, err := s.ApplyEvents(ctx, []oms.EventApply{{EventID: "ev-a", ShipmentID: sa, Fn: shipFn(sa)}, {EventID: "ev-b", ShipmentID: sb, Fn: shipFn(sb)}})
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range again {
		if g.Applied || g.Err != nil {
			t.Errorf("redelivered event %d: got applied %v err %v", i, g.Applied, g.Err)
		}
	}
	if n := onHand(t, s, "WH-1", "SKU-1"); n != 3 {
		t.Errorf("a redelivered batch moved stock: on hand %d", n)
	}
}

// Two events of one order in one batch run one after the other on it: the
// second sees the first's change, and the order is written once.
func TestApplyEventsRunsTheEventsOfOneOrderInTurn(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	o := storeOrder(t, s, "WH-1", "SKU-1", 1)
	sid := o.Shipments[0].ID
	var saw oms.ShipmentStatus
	got, err := s.ApplyEvents(ctx, []oms.EventApply{
		{EventID: "e1", ShipmentID: sid, Fn: ackFn(sid)},
		{EventID: "e2", ShipmentID: sid, Fn: func(o *oms.Order) ([]oms.OutboxEvent, error) {
			saw = o.Shipments[0].Status
			return shipFn(sid)(o)
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if saw != oms.ShipmentAcknowledged || !got[0].Applied || !got[1].Applied {
		t.Fatalf("second event saw %s (want acknowledged); outcomes %+v", saw, got)
	}
	if n := count(t, s, `SELECT count(*) FROM orders WHERE id = $1 AND version = 3 AND status = 'shipped'`, o.ID); n != 1 {
		t.Errorf("order not written as shipped at version 3")
	}
}

// Concurrent batches (several instances) fighting over the same orders and
// the same stock rows: every event applies exactly once, and the stock
// drops by exactly what shipped.
func TestApplyEventsConcurrentBatchesApplyEachEventOnce(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	if err := s.SetStock(ctx, "WH-1", "SKU-1", 1000, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStock(ctx, "WH-2", "SKU-1", 1000, 0); err != nil {
		t.Fatal(err)
	}
	var orders []*oms.Order
	for i := range 40 {
		orders = append(orders, storeOrder(t, s, []string{"WH-1", "WH-2"}[i%2], "SKU-1", 2))
	}
	var mu sync.Mutex
	applied := map[string]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []oms.EventApply
			for j := range orders {
				o := orders[(j+w*5)%len(orders)] // each worker in another order
				sid := o.Shipments[0].ID
				batch = append(batch, oms.EventApply{EventID: "ship-" + sid, ShipmentID: sid, Fn: shipFn(sid)})
				if len(batch) == 10 {
					got, err := s.ApplyEvents(ctx, batch)
					if err != nil {
						t.Errorf("batch: %v", err)
						return
					}
					mu.Lock()
					for i, g := range got {
						if g.Applied {
							applied[batch[i].EventID]++
						}
					}
					mu.Unlock()
					batch = nil
				}
			}
		}()
	}
	wg.Wait()
	if len(applied) != len(orders) {
		t.Errorf("got %d events applied, want %d", len(applied), len(orders))
	}
	for ev, n := range applied {
		if n != 1 {
			t.Errorf("event %s applied %d times", ev, n)
		}
	}
	if a, b := onHand(t, s, "WH-1", "SKU-1"), onHand(t, s, "WH-2", "SKU-1"); a != 960 || b != 960 {
		t.Errorf("got on hand %d and %d, want 960 each", a, b)
	}
	if n := count(t, s, `SELECT count(*) FROM stock_ledger WHERE kind = 'ship'`); n != len(orders) {
		t.Errorf("got %d ship ledger rows, want %d", n, len(orders))
	}
}
