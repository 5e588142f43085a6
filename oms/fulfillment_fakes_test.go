package oms

import (
	"context"
	"encoding/json"
	"errors"
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
