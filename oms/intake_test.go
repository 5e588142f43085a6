package oms_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/memstock"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/omstest"
)

// intakeFixture is intake without services: memstock for the stock and the
// purchase limits, omstest for the order store, the review memory and the
// catalog.
type intakeFixture struct {
	t       *testing.T
	stock   *memstock.Store
	limits  *memstock.Limits
	orders  *omstest.Orders
	recent  *omstest.Recent
	catalog *omstest.Catalog
	in      *oms.Intake
}

func newIntake(t *testing.T, stock map[string]int64, tweak ...func(*oms.IntakeConfig)) *intakeFixture {
	t.Helper()
	fx := &intakeFixture{t: t, stock: memstock.New(memstock.Config{}), limits: memstock.NewLimits(nil),
		orders: omstest.NewOrders(), recent: omstest.NewRecent(), catalog: &omstest.Catalog{}}
	nodes := map[string]bool{}
	for k, n := range stock {
		node, sku, _ := strings.Cut(k, "/")
		if !nodes[node] {
			nodes[node] = true
			fx.catalog.Nodes = append(fx.catalog.Nodes, oms.Node{ID: node, Name: node, Type: oms.NodeWarehouse, Active: true, Priority: len(nodes)})
			if err := fx.stock.MarkReady(context.Background(), node); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := fx.stock.SetStock(context.Background(), node, sku, n, 0); err != nil {
			t.Fatal(err)
		}
	}
	fx.in = fx.intake(fx.orders, tweak...)
	return fx
}

// intake builds another intake over the fixture's stock, memory and
// catalog (a second instance), committing into orders.
func (fx *intakeFixture) intake(orders *omstest.Orders, tweak ...func(*oms.IntakeConfig)) *oms.Intake {
	fx.t.Helper()
	cfg := oms.IntakeConfig{}
	for _, f := range tweak {
		f(&cfg)
	}
	in, err := oms.NewIntake(cfg, oms.IntakeDeps{Catalog: fx.catalog, Stock: fx.stock, Limits: fx.limits,
		Recent: fx.recent, Committer: omstest.StartCommitter(fx.t, oms.CommitterConfig{Shards: 1}, orders), Store: orders})
	if err != nil {
		fx.t.Fatal(err)
	}
	return in
}

func (fx *intakeFixture) level(node, sku string) inventory.Level {
	fx.t.Helper()
	ls, err := fx.stock.Levels(context.Background(), []inventory.Key{{Node: node, SKU: sku}})
	if err != nil {
		fx.t.Fatal(err)
	}
	return ls[0]
}

func request(ext string, lines ...oms.Line) *oms.OrderRequest {
	lat, lon := 30.2, 120.1
	return &oms.OrderRequest{ExternalID: ext, Customer: oms.Customer{ID: "C-" + ext},
		ShipTo: &oms.Address{Name: "A", Line1: "1 Road", City: "Hangzhou", Region: "CN-ZJ", PostalCode: "310000", Country: "CN", Lat: &lat, Lon: &lon},
		Lines:  lines, Currency: "CNY", Payment: oms.Payment{Status: oms.PaymentPaid}, Fulfillment: oms.Fulfillment{Type: oms.FulfillShip}}
}

func line(sku string, qty int64) oms.Line { return oms.Line{SKU: sku, Qty: qty, UnitPrice: 100} }

func slugOf(err error) oms.Slug {
	var e *oms.Error
	if errors.As(err, &e) {
		return e.Slug
	}
	return ""
}

func TestIntakeCopyIsAnsweredWithTheStoredOrder(t *testing.T) {
	fx := newIntake(t, map[string]int64{"A/SKU-1": 10})
	ctx := context.Background()
	first, err := fx.in.Submit(ctx, "web", "", request("E1", line("SKU-1", 2)))
	if err != nil || !first.Created {
		t.Fatalf("got %v created=%v, want a created order", err, first.Created)
	}
	again, err := fx.in.Submit(ctx, "web", "", request("E1", line("SKU-1", 2)))
	if err != nil || again.Created || again.Order.ID != first.Order.ID {
		t.Fatalf("got %v created=%v, want the stored order (200)", err, again.Created)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 2 {
		t.Errorf("got reserved %d after a copy, want 2 (the copy's hold released)", l.Reserved)
	}
	_, err = fx.in.Submit(ctx, "web", "", request("E1", line("SKU-1", 3)))
	if slugOf(err) != oms.SlugIdempotencyConflict {
		t.Errorf("got %v for another body under the same external_id, want idempotency-conflict", err)
	}
}

// stealing is a stock whose first reservation loses the race: just
// before it, another buyer takes that node's units of sku.
type stealing struct {
	*memstock.Store
	sku    string
	once   sync.Once
	robbed string
}

func (s *stealing) Reserve(ctx context.Context, h inventory.Hold) error {
	s.once.Do(func() {
		s.robbed = h.Node
		l, _ := s.Levels(ctx, []inventory.Key{{Node: h.Node, SKU: s.sku}})
		_ = s.Store.Reserve(ctx, inventory.Hold{ID: "thief", Node: h.Node, Lines: []inventory.Line{{SKU: s.sku, Qty: l[0].Available}}})
	})
	return s.Store.Reserve(ctx, h)
}

func TestIntakeLostRaceIsPlannedAgainElsewhere(t *testing.T) {
	fx := newIntake(t, map[string]int64{"A/SKU-1": 5, "B/SKU-1": 5})
	st := &stealing{Store: fx.stock, sku: "SKU-1"}
	in, err := oms.NewIntake(oms.IntakeConfig{}, oms.IntakeDeps{Catalog: fx.catalog, Stock: st,
		Committer: omstest.StartCommitter(t, oms.CommitterConfig{}, fx.orders), Store: fx.orders})
	if err != nil {
		t.Fatal(err)
	}
	res, err := in.Submit(context.Background(), "web", "", request("E1", line("SKU-1", 3)))
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"A": "B", "B": "A"}[st.robbed]
	if len(res.Order.Shipments) != 1 || res.Order.Shipments[0].NodeID != other {
		t.Fatalf("got shipments %+v, want one at %s, the node that still had stock", res.Order.Shipments, other)
	}
	if r, o := fx.level(st.robbed, "SKU-1"), fx.level(other, "SKU-1"); r.Reserved != 5 || o.Reserved != 3 {
		t.Errorf("got reserved %s=%d %s=%d, want 5 (the other buyer) and 3", st.robbed, r.Reserved, other, o.Reserved)
	}
}

// stall holds batches back until opened (a database that stalls).
type stall struct {
	arrived chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newStall() *stall { return &stall{arrived: make(chan struct{}), open: make(chan struct{})} }

func (g *stall) hold(ctx context.Context, _ []*oms.NewOrder) error {
	g.once.Do(func() { close(g.arrived) })
	<-g.open
	return nil
}

func TestIntakeCallerThatHangsUpDoesNotCancelItsBatch(t *testing.T) {
	// A client times out while its batch is stalled in the database: the
	// order is stored when the database comes back, and its stock must
	// still be held (an order stored without its stock is an oversell).
	fx := newIntake(t, map[string]int64{"A/SKU-1": 10})
	g := newStall()
	fx.orders.BeforeCommit = g.hold
	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		res oms.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := fx.in.Submit(ctx, "web", "", request("E1", line("SKU-1", 4)))
		done <- answer{res, err}
	}()
	<-g.arrived
	cancel()
	time.Sleep(20 * time.Millisecond) // give a wrong implementation the time to give up
	close(g.open)
	a := <-done
	if fx.orders.Len() != 1 {
		t.Fatalf("got %d stored orders, want 1", fx.orders.Len())
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 4 {
		t.Fatalf("got reserved %d for the stored order, want 4: stored without its stock", l.Reserved)
	}
	if a.err != nil || !a.res.Created {
		t.Errorf("got %v, want the created order as the answer", a.err)
	}
}

func TestIntakeAmbiguousCommitThatStoredTheOrderKeepsItsStock(t *testing.T) {
	fx := newIntake(t, map[string]int64{"A/SKU-1": 10})
	fx.orders.AfterCommit = func([]*oms.NewOrder) error { return errors.New("connection lost at COMMIT") }
	res, err := fx.in.Submit(context.Background(), "web", "", request("E1", line("SKU-1", 3)))
	if err != nil || !res.Created {
		t.Fatalf("got %v, want the order created (the settle finds it with our holds)", err)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 3 {
		t.Errorf("got reserved %d, want 3", l.Reserved)
	}
}

func TestIntakeFailedCommitReleasesEverything(t *testing.T) {
	fx := newIntake(t, map[string]int64{"A/SKU-1": 10})
	now := time.Now()
	fx.catalog.Promotions = []oms.Promotion{{ID: "P", SKU: "SKU-1", PerCustomerLimit: 3, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)}}
	fx.orders.BeforeCommit = func(context.Context, []*oms.NewOrder) error { return errors.New("database down") }
	_, err := fx.in.Submit(context.Background(), "web", "", request("E1", line("SKU-1", 3)))
	if oms.KindOf(err) != oms.KindUnavailable {
		t.Fatalf("got %v, want 503", err)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 0 {
		t.Errorf("got reserved %d, want 0", l.Reserved)
	}
	if err := fx.limits.Take(context.Background(), "P", "C-E1", "SKU-1", "other", 3, 3, now.Add(time.Hour)); err != nil {
		t.Errorf("the failed order's purchase-limit slot was not given back: %v", err)
	}
}

func TestIntakeRetryAfterSellOutKeepsTheStoredOrdersLimitSlot(t *testing.T) {
	fx := newIntake(t, map[string]int64{"A/SKU-1": 2})
	now := time.Now()
	fx.catalog.Promotions = []oms.Promotion{{ID: "P", SKU: "SKU-1", PerCustomerLimit: 2, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)}}
	ctx := context.Background()
	if _, err := fx.in.Submit(ctx, "web", "", request("E1", line("SKU-1", 2))); err != nil {
		t.Fatal(err)
	}
	// Sold out now; the channel retries the stored order.
	res, err := fx.in.Submit(ctx, "web", "", request("E1", line("SKU-1", 2)))
	if err != nil || res.Created {
		t.Fatalf("got %v, want the stored order", err)
	}
	if _, err := fx.stock.SetStock(ctx, "A", "SKU-1", 10, 0); err != nil {
		t.Fatal(err)
	}
	other := request("E2", line("SKU-1", 1))
	other.Customer.ID = "C-E1"
	if _, err := fx.in.Submit(ctx, "web", "", other); slugOf(err) != oms.SlugLimitExceeded {
		t.Errorf("got %v for a third unit within a limit of 2, want limit-exceeded: the retry gave the slot back", err)
	}
}

func TestIntakeCopyRacingOnAnotherInstanceIsNotAnsweredNoStock(t *testing.T) {
	// Instance 1 holds the last units for order E1 and is committing it;
	// the channel's copy reaches instance 2, which finds no stock. It must
	// not answer "insufficient stock" for an order that is being stored.
	fx := newIntake(t, map[string]int64{"A/SKU-1": 3})
	g := newStall()
	fx.orders.BeforeCommit = g.hold
	second := fx.intake(fx.orders)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := fx.in.Submit(ctx, "web", "", request("E1", line("SKU-1", 3)))
		done <- err
	}()
	<-g.arrived
	_, err := second.Submit(ctx, "web", "", request("E1", line("SKU-1", 3)))
	if slugOf(err) == oms.SlugInsufficientStock || oms.KindOf(err) != oms.KindUnavailable {
		t.Errorf("got %v from the racing copy, want 503 (retry), never insufficient-stock", err)
	}
	close(g.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	res, err := second.Submit(ctx, "web", "", request("E1", line("SKU-1", 3)))
	if err != nil || res.Created {
		t.Errorf("got %v on retry, want the stored order", err)
	}
	// A real sell-out is still a 409 (no copy in flight).
	if _, err := second.Submit(ctx, "web", "", request("E2", line("SKU-1", 1))); slugOf(err) != oms.SlugInsufficientStock {
		t.Errorf("got %v, want insufficient-stock", err)
	}
}

func TestIntakePastItsAdmissionBudgetAnswersOverloadedAtOnce(t *testing.T) {
	fx := newIntake(t, map[string]int64{"A/SKU-1": 10}, func(c *oms.IntakeConfig) { c.MinInFlight, c.MaxInFlight = 1, 1 })
	g := newStall()
	fx.orders.BeforeCommit = g.hold
	done := make(chan error, 1)
	go func() {
		_, err := fx.in.Submit(context.Background(), "web", "", request("E1", line("SKU-1", 1)))
		done <- err
	}()
	<-g.arrived
	_, err := fx.in.Submit(context.Background(), "web", "", request("E2", line("SKU-1", 1)))
	if slugOf(err) != oms.SlugOverloaded {
		t.Errorf("got %v past the budget, want overloaded", err)
	}
	if l := fx.level("A", "SKU-1"); l.Reserved != 1 {
		t.Errorf("got reserved %d, want 1: an overloaded order reserves nothing", l.Reserved)
	}
	close(g.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestIntakeRefusesTextTheDatabaseCannotTake(t *testing.T) {
	fx := newIntake(t, map[string]int64{"A/SKU-1": 10})
	for _, tc := range []struct {
		name  string
		edit  func(r *oms.OrderRequest)
		field string
	}{
		{"a NUL in the ship-to name", func(r *oms.OrderRequest) { r.ShipTo.Name = "A\x00B" }, "ship_to.name"},
		{"an unbounded address line 2", func(r *oms.OrderRequest) { r.ShipTo.Line2 = strings.Repeat("x", 201) }, "ship_to.line2"},
		{"a control character in the customer id", func(r *oms.OrderRequest) { r.Customer.ID = "C\x01" }, "customer.id"},
		{"a NUL in the associate", func(r *oms.OrderRequest) { r.Attribution = &oms.Attribution{Associate: "\x00"} }, "attribution.associate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request("E-"+tc.field, line("SKU-1", 1))
			tc.edit(r)
			_, err := fx.in.Submit(context.Background(), "web", "", r)
			var e *oms.Error
			if !errors.As(err, &e) || e.Kind != oms.KindInvalid || !hasField(e.Fields, tc.field) {
				t.Fatalf("got %v, want 422 naming %s", err, tc.field)
			}
		})
	}
	_, err := fx.in.Submit(context.Background(), "web", "key\xff", request("E9", line("SKU-1", 1)))
	var e *oms.Error
	if !errors.As(err, &e) || e.Kind != oms.KindBadRequest || !hasField(e.Fields, "Idempotency-Key") {
		t.Errorf("got %v for a non-UTF-8 Idempotency-Key, want 400 naming the header", err)
	}
	if fx.orders.Len() != 0 {
		t.Errorf("got %d stored orders, want none", fx.orders.Len())
	}
}

func hasField(fs []oms.FieldError, name string) bool {
	for _, f := range fs {
		if f.Field == name {
			return true
		}
	}
	return false
}
