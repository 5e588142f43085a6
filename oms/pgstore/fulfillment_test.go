package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omsd/omsd/oms"
)

// migrated opens a store on a fresh, migrated database.
func migrated(t testing.TB) *Store {
	t.Helper()
	s := openTest(t)
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

// storeOrder commits a released order with one requested shipment of qty
// units of sku at node.
func storeOrder(t *testing.T, s *Store, node, sku string, qty int64) *oms.Order {
	t.Helper()
	now := time.Now().UTC()
	sid := uuid.NewString()
	o := &oms.Order{ID: uuid.NewString(), ExternalID: uuid.NewString(), Channel: "web", Status: oms.OrderReleased,
		PaymentStatus: oms.PaymentPaid, Lines: []oms.Line{{SKU: sku, Qty: qty, UnitPrice: 1}}, Currency: "CNY",
		Shipments: []oms.Shipment{{ID: sid, NodeID: node, Status: oms.ShipmentRequested, Lines: []oms.ShipLine{{SKU: sku, Qty: qty}}, HoldID: sid}},
		Version:   1, CreatedAt: now, UpdatedAt: now}
	no := &oms.NewOrder{Order: o, RequestHash: []byte{1}}
	if err := s.CommitOrders(context.Background(), []*oms.NewOrder{no}); err != nil || no.Outcome != oms.OutcomeInserted {
		t.Fatalf("commit order: %v (outcome %v)", err, no.Outcome)
	}
	return o
}

func onHand(t *testing.T, s *Store, node, sku string) int64 {
	t.Helper()
	var n int64
	if err := s.pool.QueryRow(context.Background(), `SELECT on_hand FROM stock WHERE node_id = $1 AND sku = $2`, node, sku).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func count(t *testing.T, s *Store, q string, args ...any) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func shipFn(sid string) func(o *oms.Order) ([]oms.OutboxEvent, error) {
	return func(o *oms.Order) ([]oms.OutboxEvent, error) {
		for i := range o.Shipments {
			if o.Shipments[i].ID == sid {
				o.Shipments[i].Status = oms.ShipmentShipped
				o.Shipments[i].TrackingNumber = "TRK"
			}
		}
		o.Status = oms.OrderShipped
		id := oms.EventID(o.ID, "test.shipped")
		return []oms.OutboxEvent{{ID: id, Topic: oms.TopicOrders, Key: o.ID, Seq: 2, Payload: []byte(`{"event_id":"` + id + `"}`), At: time.Now()}}, nil
	}
}

func TestApplyEventRecordsTheEventAndTheShipLedgerOnce(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	if err := s.SetStock(ctx, "WH-1", "SKU-1", 10, 0); err != nil {
		t.Fatal(err)
	}
	o := storeOrder(t, s, "WH-1", "SKU-1", 3)
	sid := o.Shipments[0].ID
	// Concurrent deliveries of one event: exactly one applies.
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, ok, err := s.ApplyEvent(ctx, "ev-1", o.ID, shipFn(sid))
			if err != nil {
				t.Errorf("apply: %v", err)
				return
			}
			if got.Status != oms.OrderShipped {
				t.Errorf("got status %s, want shipped", got.Status)
			}
			if ok {
				mu.Lock()
				applied++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if applied != 1 {
		t.Fatalf("got %d deliveries applied, want 1", applied)
	}
	if n := onHand(t, s, "WH-1", "SKU-1"); n != 7 {
		t.Errorf("got on hand %d, want 7", n)
	}
	if n := count(t, s, `SELECT count(*) FROM stock_ledger WHERE kind = 'ship' AND ref = $1 AND qty = -3 AND on_hand_after = 7`, sid); n != 1 {
		t.Errorf("got %d ship ledger rows, want 1", n)
	}
	if n := count(t, s, `SELECT count(*) FROM outbox WHERE msg_key = $1`, o.ID); n != 1 {
		t.Errorf("got %d outbox rows, want 1", n)
	}
	if n := count(t, s, `SELECT count(*) FROM shipments WHERE id = $1 AND status = 'shipped' AND tracking_number = 'TRK'`, sid); n != 1 {
		t.Errorf("shipment row not shipped")
	}
	// The shipped shipment is no open hold of the ledger any more.
	holds, err := s.OpenHolds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range holds {
		if h.ID == sid {
			t.Errorf("shipped hold %s is still open in the ledger", sid)
		}
	}
}

func TestApplyEventKeepsAnIgnoredEventAndAbortsOnOtherErrors(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	o := storeOrder(t, s, "WH-1", "SKU-1", 1)
	ignored := fmt.Errorf("late: %w", oms.ErrEventIgnored)
	got, ok, err := s.ApplyEvent(ctx, "ev-ign", o.ID, func(o *oms.Order) ([]oms.OutboxEvent, error) {
		o.Status = oms.OrderShipped // must not be written
		return nil, ignored
	})
	if !errors.Is(err, oms.ErrEventIgnored) || ok || got == nil || got.Status != oms.OrderReleased {
		t.Fatalf("got %v, %v, %v; want the unchanged order and the ignored error", got, ok, err)
	}
	if _, ok, err := s.ApplyEvent(ctx, "ev-ign", o.ID, shipFn(o.Shipments[0].ID)); ok || err != nil {
		t.Fatalf("redelivery of an ignored event: got applied=%v, %v; want a duplicate", ok, err)
	}
	boom := errors.New("boom")
	if _, _, err := s.ApplyEvent(ctx, "ev-boom", o.ID, func(*oms.Order) ([]oms.OutboxEvent, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if n := count(t, s, `SELECT count(*) FROM processed_events WHERE event_id = 'ev-boom'`); n != 0 {
		t.Errorf("a failed event was recorded as processed")
	}
}

func TestDueForExpiry(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func(status oms.OrderStatus, pay string, until time.Time) string {
		o := &oms.Order{ID: uuid.NewString(), ExternalID: uuid.NewString(), Channel: "web", Status: status, PaymentStatus: pay,
			ReservedUntil: &until, Version: 1, CreatedAt: now, UpdatedAt: now}
		if err := s.CommitOrders(ctx, []*oms.NewOrder{{Order: o, RequestHash: []byte{1}}}); err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	due := mk(oms.OrderPendingPayment, oms.PaymentPending, now.Add(-time.Minute))
	dueHeld := mk(oms.OrderInReview, oms.PaymentPending, now.Add(-2*time.Minute))
	mk(oms.OrderPendingPayment, oms.PaymentPending, now.Add(time.Minute))
	mk(oms.OrderInReview, oms.PaymentPaid, now.Add(-time.Minute))
	mk(oms.OrderExpired, oms.PaymentPending, now.Add(-time.Minute))
	ids, err := s.DueForExpiry(ctx, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != dueHeld || ids[1] != due {
		t.Errorf("got %v, want [%s %s] (earliest first)", ids, dueHeld, due)
	}
}

func TestTransitionClearsTheShipmentsDeadlineWithThePayment(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	until := now.Add(time.Hour)
	sid := uuid.NewString()
	o := &oms.Order{ID: uuid.NewString(), ExternalID: "x", Channel: "web", Status: oms.OrderInReview, PaymentStatus: oms.PaymentPending,
		ReservedUntil: &until, Version: 1, CreatedAt: now, UpdatedAt: now,
		Shipments: []oms.Shipment{{ID: sid, NodeID: "WH-1", Status: oms.ShipmentPending, Lines: []oms.ShipLine{{SKU: "S", Qty: 1}}, HoldID: sid}}}
	if err := s.CommitOrders(ctx, []*oms.NewOrder{{Order: o, RequestHash: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionOrder(ctx, o.ID, func(o *oms.Order) ([]oms.OutboxEvent, error) {
		o.PaymentStatus, o.ReservedUntil = oms.PaymentPaid, nil // status and shipments unchanged
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	holds, err := s.OpenHolds(ctx)
	if err != nil || len(holds) != 1 || !holds[0].Deadline.IsZero() {
		t.Fatalf("got %+v, %v; want one open hold without a deadline", holds, err)
	}
}

// outboxRow inserts an unsent outbox row.
func outboxRow(t *testing.T, s *Store, key string, seq int64, at time.Time) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO outbox (id, topic, msg_key, seq, payload, created_at) VALUES ($1, 'oms.orders', $2, $3, '{}', $4)`,
		id, key, seq, at); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestClaimOutboxLeasesAndKeepsEachKeyInOrder(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Microsecond).Add(-time.Minute)
	a1 := outboxRow(t, s, "A", 1, t0)
	b1 := outboxRow(t, s, "B", 1, t0.Add(time.Millisecond))
	a2 := outboxRow(t, s, "A", 2, t0.Add(2*time.Millisecond))
	b2 := outboxRow(t, s, "B", 2, t0.Add(3*time.Millisecond))
	now := time.Now()
	lease := time.Minute

	// Relay 1 takes the two oldest rows.
	first, err := s.ClaimOutbox(ctx, lease, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || first[0].ID != a1 || first[1].ID != b1 {
		t.Fatalf("got %v, want [a1 b1]", ids(first))
	}
	// Relay 2 sees a2 and b2, but their keys' earlier rows are leased to
	// relay 1: it takes nothing.
	second, err := s.ClaimOutbox(ctx, lease, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Fatalf("got %v, want nothing while the earlier rows of A and B are leased", ids(second))
	}
	// Relay 1 publishes a1 only; a2 becomes claimable, b2 does not.
	if err := s.MarkOutboxSent(ctx, []string{a1}, now); err != nil {
		t.Fatal(err)
	}
	third, err := s.ClaimOutbox(ctx, lease, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(third) != 1 || third[0].ID != a2 {
		t.Fatalf("got %v, want [a2]", ids(third))
	}
	// Relay 1 dies: after its lease (ended here by the database's clock),
	// b1 and b2 are claimed again, in order, with a2.
	if _, err := s.pool.Exec(ctx, `UPDATE outbox SET claimed_until = now() - interval '1 second' WHERE claimed_until IS NOT NULL AND sent_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Minute)
	fourth, err := s.ClaimOutbox(ctx, lease, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(fourth) != 3 || fourth[0].ID != b1 || fourth[1].ID != b2 || fourth[2].ID != a2 {
		t.Fatalf("got %v, want [b1 b2 a2] (each key's rows together, in order)", ids(fourth))
	}
	if err := s.MarkOutboxSent(ctx, ids(fourth), later); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.OldestUnsentOutbox(ctx); ok || err != nil {
		t.Errorf("got unsent rows left (%v), want none", err)
	}
}

func TestConcurrentClaimsNeverShareARow(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-time.Minute)
	for i := range 200 {
		outboxRow(t, s, fmt.Sprintf("K%d", i), 1, t0.Add(time.Duration(i)*time.Microsecond))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				evs, err := s.ClaimOutbox(ctx, time.Minute, 17)
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if len(evs) == 0 {
					return
				}
				mu.Lock()
				for _, e := range evs {
					seen[e.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 200 {
		t.Errorf("got %d rows claimed, want 200", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("row %s claimed %d times", id, n)
		}
	}
}

func ids(evs []oms.OutboxEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}
