package oms

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/memstock"
	"github.com/omsd/omsd/sourcing"
)

// fakeStore is an in-memory FulfillmentStore with the semantics of
// pgstore: one lock per call stands for the transaction.
type fakeStore struct {
	mu        sync.Mutex
	orders    map[string]*Order
	processed map[string]bool
	outbox    []OutboxEvent
	shipped   map[string]int64 // "node/sku" -> units booked by the ship ledger
}

func newFakeStore() *fakeStore {
	return &fakeStore{orders: map[string]*Order{}, processed: map[string]bool{}, shipped: map[string]int64{}}
}

func clone(o *Order) *Order {
	b, _ := json.Marshal(o)
	var c Order
	_ = json.Unmarshal(b, &c)
	for i := range c.Shipments {
		c.Shipments[i].HoldID = c.Shipments[i].ID
	}
	return &c
}

func (s *fakeStore) put(o *Order) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orders[o.ID] = clone(o)
}

func (s *fakeStore) transition(id string, fn func(o *Order) ([]OutboxEvent, error)) (*Order, []OutboxEvent, error) {
	cur, ok := s.orders[id]
	if !ok {
		return nil, nil, ErrNotFound
	}
	o := clone(cur)
	v := o.Version
	evs, err := fn(o)
	if err != nil {
		return nil, nil, err
	}
	if o.Version == v {
		o.Version++
	}
	return o, evs, nil
}

func (s *fakeStore) TransitionOrder(_ context.Context, id string, fn func(o *Order) ([]OutboxEvent, error)) (*Order, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, evs, err := s.transition(id, fn)
	if err != nil {
		return nil, err
	}
	s.orders[id] = clone(o)
	s.outbox = append(s.outbox, evs...)
	return clone(o), nil
}

func (s *fakeStore) ApplyEvent(_ context.Context, eventID, orderID string, fn func(o *Order) ([]OutboxEvent, error)) (*Order, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.processed[eventID] {
		o, ok := s.orders[orderID]
		if !ok {
			return nil, false, ErrNotFound
		}
		return clone(o), false, nil
	}
	was := map[string]ShipmentStatus{}
	for _, sh := range s.orders[orderID].Shipments {
		was[sh.ID] = sh.Status
	}
	o, evs, err := s.transition(orderID, fn)
	if errors.Is(err, ErrEventIgnored) {
		s.processed[eventID] = true
		return clone(s.orders[orderID]), false, err
	}
	if err != nil {
		return nil, false, err
	}
	s.processed[eventID] = true
	for _, sh := range o.Shipments {
		if sh.Status == ShipmentShipped && was[sh.ID] != ShipmentShipped {
			for _, l := range sh.Lines {
				s.shipped[sh.NodeID+"/"+l.SKU] += l.Qty
			}
		}
	}
	s.orders[orderID] = clone(o)
	s.outbox = append(s.outbox, evs...)
	return clone(o), true, nil
}

func (s *fakeStore) ShipmentOrder(_ context.Context, shipmentID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.orders {
		for _, sh := range o.Shipments {
			if sh.ID == shipmentID {
				return o.ID, nil
			}
		}
	}
	return "", ErrNotFound
}

func (s *fakeStore) DueForExpiry(_ context.Context, now time.Time, limit int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, o := range s.orders {
		if o.PaymentStatus == PaymentPending && (o.Status == OrderPendingPayment || o.Status == OrderInReview) &&
			o.ReservedUntil != nil && !o.ReservedUntil.After(now) && len(ids) < limit {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (s *fakeStore) GetOrder(_ context.Context, id string) (*Order, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		return nil, nil, ErrNotFound
	}
	return clone(o), nil, nil
}

// types returns the event types written to the outbox since mark.
func (s *fakeStore) types(mark int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.outbox[mark:] {
		var p struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(e.Payload, &p)
		out = append(out, p.Type)
	}
	return out
}

func (s *fakeStore) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outbox)
}

type fakeCatalog struct{ nodes []sourcing.Node }

func (c fakeCatalog) Candidates() []sourcing.Node { return c.nodes }
func (c fakeCatalog) Rules() *sourcing.RuleSet    { return sourcing.DefaultRules() }

// fixture is a pipeline on fakes, with stock at nodes A, B and C.
type fixture struct {
	t     *testing.T
	store *fakeStore
	stock *memstock.Store
	f     *FulfillmentService
	reg   *prometheus.Registry
	now   time.Time
}

func newFixture(t *testing.T, stock map[string]int64) *fixture {
	t.Helper()
	fx := &fixture{t: t, store: newFakeStore(), stock: memstock.New(memstock.Config{AutoReady: true}),
		now: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC), reg: prometheus.NewRegistry()}
	var nodes []sourcing.Node
	for i, n := range []string{"A", "B", "C"} {
		nodes = append(nodes, sourcing.Node{ID: n, Type: sourcing.NodeWarehouse, Priority: 30 - 10*i, Active: true})
	}
	for key, q := range stock {
		node, sku, _ := cut(key)
		if _, err := fx.stock.SetStock(context.Background(), node, sku, q, 0); err != nil {
			t.Fatal(err)
		}
	}
	f, err := NewFulfillmentService(FulfillmentConfig{Registerer: fx.reg}, fx.store, fx.stock, fakeCatalog{nodes})
	if err != nil {
		t.Fatal(err)
	}
	fx.f = f
	fx.f.Now = func() time.Time { return fx.now }
	return fx
}

func cut(key string) (string, string, bool) {
	for i := range key {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

// order stores an order with one shipment per node spec ("A:SKU-1=2"),
// reserving their holds.
func (fx *fixture) order(status OrderStatus, payment string, ships ...Shipment) *Order {
	fx.t.Helper()
	o := &Order{ID: uuid.NewString(), Channel: "web", Status: status, PaymentStatus: payment, Version: 1,
		ShipTo: &Address{Region: "CN-ZJ"}, Currency: "CNY"}
	if payment == PaymentPending {
		until := fx.now.Add(30 * time.Minute)
		o.ReservedUntil = &until
	}
	for _, s := range ships {
		s.ID = uuid.NewString()
		s.HoldID = s.ID
		var hl []inventory.Line
		for _, l := range s.Lines {
			hl = append(hl, inventory.Line{SKU: l.SKU, Qty: l.Qty})
			o.Lines = append(o.Lines, Line{SKU: l.SKU, Qty: l.Qty, UnitPrice: 100})
		}
		var deadline time.Time
		if o.ReservedUntil != nil {
			deadline = o.ReservedUntil.Add(5 * time.Minute)
		}
		if err := fx.stock.Reserve(context.Background(), inventory.Hold{ID: s.ID, Node: s.NodeID, Lines: hl, Deadline: deadline}); err != nil {
			fx.t.Fatalf("reserve: %v", err)
		}
		o.Shipments = append(o.Shipments, s)
	}
	fx.store.put(o)
	return o
}

func ship1(node string, status ShipmentStatus, sku string, qty int64) Shipment {
	return Shipment{NodeID: node, Status: status, Lines: []ShipLine{{SKU: sku, Qty: qty}}}
}

func (fx *fixture) level(node, sku string) inventory.Level {
	fx.t.Helper()
	ls, err := fx.stock.Levels(context.Background(), []inventory.Key{{Node: node, SKU: sku}})
	if err != nil {
		fx.t.Fatal(err)
	}
	return ls[0]
}

func (fx *fixture) wms(typ EventType, shipmentID, tracking string) (*Order, error) {
	return fx.f.ApplyWMSEvent(context.Background(), WMSEvent{EventID: uuid.NewString(), Type: typ, ShipmentID: shipmentID, TrackingNumber: tracking})
}

func (fx *fixture) mustWMS(typ EventType, shipmentID, tracking string) *Order {
	fx.t.Helper()
	o, err := fx.wms(typ, shipmentID, tracking)
	if err != nil {
		fx.t.Fatalf("%s: %v", typ, err)
	}
	return o
}

func statuses(o *Order) []string {
	var out []string
	for _, s := range o.Shipments {
		out = append(out, s.NodeID+":"+string(s.Status))
	}
	return out
}

func wantSlug(t *testing.T, err error, slug Slug) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Slug != slug {
		t.Fatalf("got error %v, want slug %s", err, slug)
	}
}

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
