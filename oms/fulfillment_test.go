package oms

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omsd/omsd/inventory/memstock"
)

func TestPayReleasesTheOrderAndConfirmsItsHolds(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderPendingPayment, PaymentPending, ship1("A", ShipmentPending, "SKU-1", 2))
	mark := fx.store.mark()
	got, err := fx.f.Pay(context.Background(), "web", o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != OrderReleased || got.PaymentStatus != PaymentPaid || got.ReservedUntil != nil || got.Shipments[0].Status != ShipmentRequested {
		t.Fatalf("got %s/%s until %v shipments %v, want released, paid, no deadline, requested", got.Status, got.PaymentStatus, got.ReservedUntil, statuses(got))
	}
	if tp := fx.store.types(mark); !slices.Equal(tp, []string{"shipment.requested", "order.paid"}) {
		t.Errorf("got events %v, want shipment.requested, order.paid", tp)
	}
	// Confirmed: the sweeper never expires it, long after the deadline.
	if ids, _ := fx.stock.SweepExpired(context.Background(), fx.now.Add(24*time.Hour), 0); len(ids) != 0 {
		t.Errorf("got %v swept after payment, want none", ids)
	}
	// Paying again answers the same order and publishes nothing.
	mark = fx.store.mark()
	again, err := fx.f.Pay(context.Background(), "web", o.ID)
	if err != nil || again.Version != got.Version || again.Status != OrderReleased {
		t.Fatalf("second payment: got %v, %v; want the same order", again, err)
	}
	if tp := fx.store.types(mark); len(tp) != 0 {
		t.Errorf("second payment wrote %v, want nothing", tp)
	}
	// Another channel's order does not exist for the caller.
	if _, err := fx.f.Pay(context.Background(), "other", o.ID); KindOf(err) != KindNotFound {
		t.Errorf("another channel: got %v, want not found", err)
	}
}

func TestPayAfterTheDeadlineIsExpired(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderPendingPayment, PaymentPending, ship1("A", ShipmentPending, "SKU-1", 2))
	fx.now = fx.now.Add(31 * time.Minute)
	_, err := fx.f.Pay(context.Background(), "web", o.ID)
	wantSlug(t, err, "expired")
	n, err := fx.f.ExpireDue(context.Background(), fx.now, 0)
	if err != nil || n != 1 {
		t.Fatalf("expire: got %d, %v; want 1", n, err)
	}
	_, err = fx.f.Pay(context.Background(), "web", o.ID)
	wantSlug(t, err, "expired")
}

func TestPayOnHoldRecordsThePaymentAndStaysOnHold(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderInReview, PaymentPending, ship1("A", ShipmentPending, "SKU-1", 2))
	got, err := fx.f.Pay(context.Background(), "web", o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != OrderInReview || got.PaymentStatus != PaymentPaid || got.ReservedUntil != nil || got.Shipments[0].Status != ShipmentPending {
		t.Fatalf("got %s/%s until %v %v, want on_hold, paid, no deadline, pending", got.Status, got.PaymentStatus, got.ReservedUntil, statuses(got))
	}
	if n, _ := fx.f.ExpireDue(context.Background(), fx.now.Add(time.Hour), 0); n != 0 {
		t.Errorf("a paid on-hold order expired")
	}
}

func TestExpireDueExpiresOnceAndReleasesTheStock(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderPendingPayment, PaymentPending, ship1("A", ShipmentPending, "SKU-1", 3))
	fresh := fx.order(OrderPendingPayment, PaymentPending, ship1("A", ShipmentPending, "SKU-1", 1))
	if l := fx.level("A", "SKU-1"); l.Reserved != 4 {
		t.Fatalf("got reserved %d, want 4", l.Reserved)
	}
	if n, _ := fx.f.ExpireDue(context.Background(), fx.now.Add(29*time.Minute), 0); n != 0 {
		t.Fatalf("expired %d before the deadline", n)
	}
	fx.store.mu.Lock()
	later := fx.now.Add(time.Hour)
	fx.store.orders[fresh.ID].ReservedUntil = &later
	fx.store.mu.Unlock()
	mark := fx.store.mark()
	n, err := fx.f.ExpireDue(context.Background(), fx.now.Add(31*time.Minute), 0)
	if err != nil || n != 1 {
		t.Fatalf("got %d expired, %v; want 1", n, err)
	}
	if n, _ := fx.f.ExpireDue(context.Background(), fx.now.Add(31*time.Minute), 0); n != 0 {
		t.Fatalf("second pass expired %d, want 0", n)
	}
	got, _, _ := fx.store.GetOrder(context.Background(), o.ID)
	if got.Status != OrderExpired || got.Shipments[0].Status != ShipmentCancelled {
		t.Errorf("got %s %v, want expired with its shipment cancelled", got.Status, statuses(got))
	}
	if tp := fx.store.types(mark); !slices.Equal(tp, []string{"order.expired"}) {
		t.Errorf("got events %v, want order.expired", tp)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 1 || l.OnHand != 10 {
		t.Errorf("got on hand %d reserved %d, want 10 and 1", l.OnHand, l.Reserved)
	}
	// The Redis sweeper, later, finds nothing of it to release.
	if ids, _ := fx.stock.SweepExpired(context.Background(), fx.now.Add(40*time.Minute), 0); slices.Contains(ids, o.Shipments[0].ID) {
		t.Errorf("the sweeper released the expired order's hold again")
	}
}

func TestCancelBeforeReleaseCancelsAtOnce(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderPendingPayment, PaymentPending, ship1("A", ShipmentPending, "SKU-1", 3))
	mark := fx.store.mark()
	got, err := fx.f.Cancel(context.Background(), "web", o.ID, "changed my mind")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != OrderCancelled || got.Shipments[0].Status != ShipmentCancelled || got.CancelReason != "changed my mind" {
		t.Fatalf("got %s %v %q, want cancelled", got.Status, statuses(got), got.CancelReason)
	}
	if tp := fx.store.types(mark); !slices.Equal(tp, []string{"order.cancelled"}) {
		t.Errorf("got events %v, want order.cancelled", tp)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 0 {
		t.Errorf("got reserved %d, want 0", l.Reserved)
	}
	again, err := fx.f.Cancel(context.Background(), "web", o.ID, "again")
	if err != nil || again.Status != OrderCancelled || again.CancelReason != "changed my mind" {
		t.Fatalf("second cancel: got %v, %v; want the cancelled order unchanged", again, err)
	}
}

func TestCancelOfAReleasedOrderIsInterceptedByTheWarehouse(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 3))
	var givenBack []string
	fx.f.GiveBack = func(_ context.Context, o *Order) { givenBack = append(givenBack, o.ID+"/"+string(o.Status)) }
	fx.mustWMS(WMSAcknowledged, o.Shipments[0].ID, "")
	mark := fx.store.mark()
	got, err := fx.f.Cancel(context.Background(), "web", o.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != OrderCancelRequested || got.Shipments[0].Status != ShipmentCancelRequested {
		t.Fatalf("got %s %v, want cancel_requested", got.Status, statuses(got))
	}
	if tp := fx.store.types(mark); !slices.Equal(tp, []string{"shipment.cancel_requested", "order.cancel_requested"}) {
		t.Errorf("got events %v", tp)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 3 {
		t.Errorf("got reserved %d before the warehouse answered, want 3", l.Reserved)
	}
	if len(givenBack) != 0 {
		t.Errorf("purchase limits given back before the warehouse confirmed: %v", givenBack)
	}
	mark = fx.store.mark()
	got = fx.mustWMS(WMSCancelled, o.Shipments[0].ID, "")
	if got.Status != OrderCancelled || got.Shipments[0].Status != ShipmentCancelled {
		t.Fatalf("got %s %v, want cancelled", got.Status, statuses(got))
	}
	if tp := fx.store.types(mark); !slices.Equal(tp, []string{"order.cancelled"}) {
		t.Errorf("got events %v, want order.cancelled", tp)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 0 || l.OnHand != 10 {
		t.Errorf("got on hand %d reserved %d, want 10 and 0", l.OnHand, l.Reserved)
	}
	if !slices.Equal(givenBack, []string{o.ID + "/" + string(OrderCancelled)}) {
		t.Errorf("got purchase limits given back %v, want once for the cancelled order", givenBack)
	}
}

func TestCancelRefusedIsFlaggedNotCancelled(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tracking   string
		wantShip   ShipmentStatus
		wantStatus OrderStatus
	}{
		{"refused before shipping: it will ship", "", ShipmentAcknowledged, OrderReleased},
		{"refused with a tracking number: it shipped", "TRK-1", ShipmentShipped, OrderShipped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
			o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 3))
			if _, err := fx.f.Cancel(context.Background(), "web", o.ID, "too late?"); err != nil {
				t.Fatal(err)
			}
			mark := fx.store.mark()
			got := fx.mustWMS(WMSCancelRefused, o.Shipments[0].ID, tc.tracking)
			if got.Status != tc.wantStatus || got.Shipments[0].Status != tc.wantShip || !slices.Contains(got.Flags, FlagCancelFailed) {
				t.Fatalf("got %s %v flags %v, want %s %s flagged", got.Status, statuses(got), got.Flags, tc.wantStatus, tc.wantShip)
			}
			if tp := fx.store.types(mark); !slices.Contains(tp, "order.cancel_failed") || slices.Contains(tp, "order.cancelled") {
				t.Errorf("got events %v, want order.cancel_failed and no order.cancelled", tp)
			}
			// A second cancel cannot be sent to the warehouse again.
			_, err := fx.f.Cancel(context.Background(), "web", o.ID, "again")
			wantSlug(t, err, SlugAlreadyShipped)
			if tc.tracking == "" {
				got = fx.mustWMS(WMSShipped, o.Shipments[0].ID, "TRK-2")
				if got.Status != OrderShipped {
					t.Fatalf("after the ship report: got %s, want shipped", got.Status)
				}
			}
			if l := fx.level("A", "SKU-1"); l.Reserved != 0 || l.OnHand != 7 {
				t.Errorf("got on hand %d reserved %d, want 7 and 0", l.OnHand, l.Reserved)
			}
		})
	}
}

func TestCancelAfterEveryShipmentShippedIsAConflict(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 3))
	fx.mustWMS(WMSShipped, o.Shipments[0].ID, "T")
	_, err := fx.f.Cancel(context.Background(), "web", o.ID, "")
	wantSlug(t, err, SlugAlreadyShipped)
}

func TestCancelOfAPartiallyShippedOrderCancelsTheRestAndFlags(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10, "B/SKU-2": 10})
	o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 1), ship1("B", ShipmentRequested, "SKU-2", 1))
	got := fx.mustWMS(WMSShipped, o.Shipments[0].ID, "T")
	if got.Status != OrderPartiallyShipped {
		t.Fatalf("got %s, want partially_shipped", got.Status)
	}
	got, err := fx.f.Cancel(context.Background(), "web", o.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != OrderCancelRequested || !slices.Contains(got.Flags, FlagCancelFailed) {
		t.Fatalf("got %s %v, want cancel_requested and flagged", got.Status, got.Flags)
	}
	got = fx.mustWMS(WMSCancelled, o.Shipments[1].ID, "")
	if got.Status != OrderShipped || got.Shipments[1].Status != ShipmentCancelled {
		t.Fatalf("got %s %v, want shipped (the rest cancelled), never cancelled", got.Status, statuses(got))
	}
	if l := fx.level("B", "SKU-2"); l.Reserved != 0 || l.OnHand != 10 {
		t.Errorf("B: got on hand %d reserved %d, want 10 and 0", l.OnHand, l.Reserved)
	}
}

func TestShippedCommitsTheStockOnce(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 3))
	ev := WMSEvent{EventID: "e-ship-1", Type: WMSShipped, ShipmentID: o.Shipments[0].ID, TrackingNumber: "TRK"}
	mark := fx.store.mark()
	got, err := fx.f.ApplyWMSEvent(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != OrderShipped || got.Shipments[0].Status != ShipmentShipped || got.Shipments[0].TrackingNumber != "TRK" {
		t.Fatalf("got %s %v, want shipped with tracking", got.Status, statuses(got))
	}
	again, err := fx.f.ApplyWMSEvent(context.Background(), ev)
	if err != nil || again.Version != got.Version {
		t.Fatalf("duplicate: got %v, %v; want the same order", again, err)
	}
	if tp := fx.store.types(mark); !slices.Equal(tp, []string{"order.shipped"}) {
		t.Errorf("got events %v, want one order.shipped", tp)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 0 || l.OnHand != 7 {
		t.Errorf("got on hand %d reserved %d, want 7 and 0", l.OnHand, l.Reserved)
	}
	if n := fx.store.shipped["A/SKU-1"]; n != 3 {
		t.Errorf("ledger booked %d units, want 3", n)
	}
	// Late acknowledgement: recorded, no error, no change.
	late := fx.mustWMS(WMSAcknowledged, o.Shipments[0].ID, "")
	if late.Status != OrderShipped || late.Version != got.Version {
		t.Errorf("late acknowledgement changed the order: %s v%d", late.Status, late.Version)
	}
}

func TestShippedAfterCancelledIsAConflictAndChangesNothing(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 3))
	if _, err := fx.f.Cancel(context.Background(), "web", o.ID, ""); err != nil {
		t.Fatal(err)
	}
	fx.mustWMS(WMSCancelled, o.Shipments[0].ID, "")
	ev := WMSEvent{EventID: "e-x", Type: WMSShipped, ShipmentID: o.Shipments[0].ID}
	got, err := fx.f.ApplyWMSEvent(context.Background(), ev)
	wantSlug(t, err, SlugEventConflict)
	if got == nil || got.Status != OrderCancelled {
		t.Fatalf("got %v, want the cancelled order", got)
	}
	// Recorded: the redelivery is a plain duplicate.
	if _, err := fx.f.ApplyWMSEvent(context.Background(), ev); err != nil {
		t.Errorf("redelivery: got %v, want a duplicate (nil)", err)
	}
}

func TestInvalidAndUnknownEvents(t *testing.T) {
	fx := newFixture(t, nil)
	for _, tc := range []struct {
		name string
		ev   WMSEvent
		kind Kind
	}{
		{"no event id", WMSEvent{Type: WMSShipped, ShipmentID: uuid.NewString()}, KindInvalid},
		{"unknown type", WMSEvent{EventID: "e", Type: "shipment.lost", ShipmentID: uuid.NewString()}, KindInvalid},
		{"shipment id not a uuid", WMSEvent{EventID: "e", Type: WMSShipped, ShipmentID: "x"}, KindInvalid},
		{"unknown shipment", WMSEvent{EventID: "e", Type: WMSShipped, ShipmentID: uuid.NewString()}, KindNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := fx.f.ApplyWMSEvent(context.Background(), tc.ev); KindOf(err) != tc.kind {
				t.Errorf("got %v (kind %d), want kind %d", err, KindOf(err), tc.kind)
			}
		})
	}
}

// A warehouse may answer a cancel request with a rejection instead of a
// cancellation; the order is cancelled all the same, and its purchase
// limits come back, again on a redelivery (the limit store is idempotent).
func TestRejectionOfACancelRequestedShipmentGivesThePurchaseLimitsBack(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	o := fx.order(OrderReleased, PaymentPaid, ship1("A", ShipmentRequested, "SKU-1", 3))
	var givenBack []string
	fx.f.GiveBack = func(_ context.Context, o *Order) { givenBack = append(givenBack, string(o.Status)) }
	if _, err := fx.f.Cancel(context.Background(), "web", o.ID, "changed my mind"); err != nil {
		t.Fatal(err)
	}
	ev := WMSEvent{EventID: "rej-cancel", Type: WMSRejected, ShipmentID: o.Shipments[0].ID}
	got, err := fx.f.ApplyWMSEvent(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != OrderCancelled || got.Shipments[0].Status != ShipmentCancelled {
		t.Fatalf("got %s %v, want cancelled", got.Status, statuses(got))
	}
	if !slices.Equal(givenBack, []string{string(OrderCancelled)}) {
		t.Fatalf("got purchase limits given back %v, want once for the cancelled order", givenBack)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 0 {
		t.Errorf("got reserved %d, want 0", l.Reserved)
	}
	if _, err := fx.f.ApplyWMSEvent(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if len(givenBack) != 2 {
		t.Errorf("redelivery: got purchase limits given back %d times in all, want 2 (a crash before the first would be repaired)", len(givenBack))
	}
}

// reviewStore is the admin store of ClearReview: transitions on the fake.
type reviewStore struct {
	AdminStore
	f *fakeStore
}

func (s reviewStore) TransitionOrder(ctx context.Context, id string, fn func(o *Order) ([]OutboxEvent, error)) (*Order, error) {
	return s.f.TransitionOrder(ctx, id, fn)
}

func TestAdminClearReviewReleasesAPaidOrderWithOrderedEvents(t *testing.T) {
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10, "B/SKU-2": 10})
	o := fx.order(OrderInReview, PaymentPaid, ship1("A", ShipmentPending, "SKU-1", 1), ship1("B", ShipmentPending, "SKU-2", 1))
	a := NewAdmin(reviewStore{f: fx.store}, nil, nil, nil, nil)
	a.Now = func() time.Time { return fx.now }
	mark := fx.store.mark()
	got, err := a.ClearReview(context.Background(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != OrderReleased || !slices.Equal(statuses(got), []string{"A:requested", "B:requested"}) {
		t.Fatalf("got %s %v, want released with both shipments requested", got.Status, statuses(got))
	}
	if tp := fx.store.types(mark); !slices.Equal(tp, []string{"shipment.requested", "shipment.requested", "order.released"}) {
		t.Errorf("got events %v", tp)
	}
	fx.store.mu.Lock()
	written := slices.Clone(fx.store.outbox[mark:])
	fx.store.mu.Unlock()
	for i := 1; i < len(written); i++ {
		if !written[i].At.After(written[i-1].At) {
			t.Errorf("event %d: got created at %s, not after the one before (%s): the relay could publish them out of order", i, written[i].At, written[i-1].At)
		}
	}
	if _, err := a.ClearReview(context.Background(), o.ID); KindOf(err) != KindConflict {
		t.Errorf("clearing again: got %v, want a not-on-hold conflict", err)
	}
}

func TestNewFulfillmentServiceRefusesABadConfigAndReportsRegistrationErrors(t *testing.T) {
	store, stock := newFakeStore(), memstock.New(memstock.Config{AutoReady: true})
	for _, cfg := range []FulfillmentConfig{{MaxPlanAttempts: -1}, {SideEffectTimeout: -time.Second}, {ExpiryBatch: -1}, {ExpiryPeriod: -time.Second}} {
		if _, err := NewFulfillmentService(cfg, store, stock, nil); err == nil {
			t.Errorf("config %+v: got no error, want it refused", cfg)
		}
	}
	if _, err := NewFulfillmentService(FulfillmentConfig{}, nil, stock, nil); err == nil {
		t.Errorf("no store: got no error, want one")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewFulfillmentService(FulfillmentConfig{Registerer: reg}, store, stock, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFulfillmentService(FulfillmentConfig{Registerer: reg}, store, stock, nil); err == nil {
		t.Errorf("metrics registered twice: got no error, want the registration error")
	}
	f, err := NewFulfillmentService(FulfillmentConfig{}, store, stock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.MaxPlanAttempts != 4 || f.cfg.SideEffectTimeout != 10*time.Second || f.cfg.ExpiryBatch != 200 || f.cfg.ExpiryPeriod != time.Second {
		t.Errorf("got defaults %+v, want 4 attempts, 10s, 200 and 1s", f.cfg)
	}
}
