package oms_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/kafkabus"
	"github.com/omsd/omsd/oms/omstest"
	"github.com/omsd/omsd/oms/pgstore"
	"github.com/omsd/omsd/oms/relay"
	"github.com/omsd/omsd/oms/wmsevents"
	"github.com/omsd/omsd/oms/wmssim"
)

// These end-to-end tests run the fulfillment pipeline on the local stack
// (PostgreSQL, redis-server, the Kafka-protocol broker) with the warehouse
// simulator in-process: intake -> outbox -> relay -> oms.shipments ->
// wms-sim -> wms.events -> consumer -> fulfillment -> stock, and check the
// topics with an independent Kafka client (kcat).

func TestMain(m *testing.M) { stacktest.Main(m) }

const channel = "web"

// pipeline is one OMS deployment wired by hand from the components
// cmd/omsd wires, on a fresh database, a private Redis and a private broker.
type pipeline struct {
	t       *testing.T
	ctx     context.Context
	store   *pgstore.Store
	stock   *redisstock.Store
	admin   *oms.Admin
	intake  *oms.Intake
	f       *oms.FulfillmentService
	gate    *gate
	brokers []string
	reg     *prometheus.Registry
	wg      sync.WaitGroup
}

type loader struct {
	l inventory.Ledger
	s inventory.Rebuildable
}

func (x loader) Rebuild(ctx context.Context, nodes ...string) error {
	return inventory.Rebuild(ctx, x.l, x.s, nodes...)
}

func newPipeline(t *testing.T, paymentTimeout time.Duration) *pipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{t: t, ctx: ctx, reg: prometheus.NewRegistry()}
	t.Cleanup(func() {
		cancel()
		p.wg.Wait()
	})
	var err error
	p.store, err = pgstore.Open(ctx, pgstore.Config{URL: stacktest.Database(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.store.Close)
	if _, err := p.store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r := stacktest.NewRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	p.stock, err = redisstock.New(rdb, redisstock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := oms.NewCatalogCache(ctx, p.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.admin = oms.NewAdmin(p.store, p.stock, loader{p.store, p.stock}, catalog, nil)
	committer := omstest.StartCommitter(t, oms.CommitterConfig{}, p.store)
	p.intake, err = oms.NewIntake(oms.IntakeConfig{PaymentTimeout: paymentTimeout}, oms.IntakeDeps{
		Catalog: catalog, Stock: p.stock, Committer: committer, Store: p.store,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.f, err = oms.NewFulfillmentService(oms.FulfillmentConfig{ExpiryPeriod: 100 * time.Millisecond, Registerer: p.reg}, p.store, p.stock, catalog)
	if err != nil {
		t.Fatal(err)
	}
	p.gate = &gate{inner: p.f, held: map[string]*hold{}, seen: map[string]int{}}
	p.brokers = stacktest.NewKafka(t).Brokers()
	return p
}

// gate lets a test hold back the warehouse events of a shipment at the
// consumer, to order what the warehouse and the buyer do.
type gate struct {
	inner *oms.FulfillmentService
	mu    sync.Mutex
	held  map[string]*hold // shipment id -> gate
	seen  map[string]int   // event id -> deliveries to the service
}

func (g *gate) deliveries(eventID string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen[eventID]
}

type hold struct {
	typ     oms.EventType
	arrived chan struct{}
	open    chan struct{}
	once    sync.Once
}

func (g *gate) ApplyWMSEvent(ctx context.Context, ev oms.WMSEvent) (*oms.Order, error) {
	g.mu.Lock()
	h := g.held[ev.ShipmentID]
	g.seen[ev.EventID]++
	g.mu.Unlock()
	if h != nil && h.typ == ev.Type {
		h.once.Do(func() { close(h.arrived) })
		select {
		case <-h.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.inner.ApplyWMSEvent(ctx, ev)
}

func (g *gate) hold(shipmentID string, typ oms.EventType) *hold {
	h := &hold{typ: typ, arrived: make(chan struct{}), open: make(chan struct{})}
	g.mu.Lock()
	g.held[shipmentID] = h
	g.mu.Unlock()
	return h
}

// run starts a worker until the test ends; its error is reported.
func (p *pipeline) run(name string, fn func(ctx context.Context) error) {
	t, ctx := p.t, p.ctx
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("%s: %v", name, err)
		}
	}()
}

func (p *pipeline) writer() *kafka.Writer {
	w, err := kafkabus.NewWriter(kafkabus.WriterConfig{Brokers: p.brokers})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { _ = w.Close() })
	return w
}

func (p *pipeline) newRelay(cfg relay.Config) *relay.Relay {
	if cfg.Lease == 0 {
		cfg.Lease = time.Second
	}
	r, err := relay.New(cfg, p.store, p.writer())
	if err != nil {
		p.t.Fatal(err)
	}
	return r
}

func (p *pipeline) newConsumer(cfg wmsevents.Config) *wmsevents.Consumer {
	cfg.Brokers = p.brokers
	if cfg.GroupID == "" {
		cfg.GroupID = "omsd-test"
	}
	cfg.SessionTimeout = 2 * time.Second
	c, err := wmsevents.New(cfg, p.gate)
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

func (p *pipeline) sim(group string, cfg wmssim.Config) {
	cfg.Brokers, cfg.Group = p.brokers, group
	p.run("wms-sim "+group, func(ctx context.Context) error { return wmssim.Run(ctx, cfg) })
}

// startAll runs a relay, a consumer and the expiry worker.
func (p *pipeline) startAll() {
	p.run("relay", p.newRelay(relay.Config{}).Run)
	p.run("consumer", p.newConsumer(wmsevents.Config{}).Run)
	p.run("expiry", p.f.RunExpiry)
}

func (p *pipeline) node(id string, priority int) {
	p.t.Helper()
	n := oms.Node{ID: id, Name: "Node " + id, Type: oms.NodeWarehouse, Location: oms.Location{Lat: 30.27, Lon: 120.15},
		Priority: priority, Active: true}
	if _, err := p.admin.PutNode(p.ctx, n); err != nil {
		p.t.Fatalf("node %s: %v", id, err)
	}
}

func (p *pipeline) setStock(node, sku string, onHand int64) {
	p.t.Helper()
	if _, err := p.admin.SetStock(p.ctx, node, sku, oms.StockSnapshot{OnHand: &onHand}); err != nil {
		p.t.Fatalf("stock %s/%s: %v", node, sku, err)
	}
}

var orderSeq atomic.Int64

func (p *pipeline) submit(sku string, qty int64, payment string) *oms.Order {
	p.t.Helper()
	lat, lon := 30.2, 120.1
	req := &oms.OrderRequest{
		ExternalID: fmt.Sprintf("E2E-%d-%d", time.Now().UnixNano(), orderSeq.Add(1)),
		Customer:   oms.Customer{ID: "C1"},
		ShipTo: &oms.Address{Name: "Buyer", Line1: "1 West Lake Rd", City: "Hangzhou", Region: "CN-ZJ",
			PostalCode: "310000", Country: "CN", Lat: &lat, Lon: &lon},
		Lines:       []oms.Line{{SKU: sku, Qty: qty, UnitPrice: 1999}},
		Currency:    "CNY",
		Payment:     oms.Payment{Status: payment},
		Fulfillment: oms.Fulfillment{Type: oms.FulfillShip},
	}
	res, err := p.intake.Submit(p.ctx, channel, "", req)
	if err != nil {
		p.t.Fatalf("submit: %v", err)
	}
	return res.Order
}

func (p *pipeline) order(id string) *oms.Order {
	p.t.Helper()
	o, _, err := p.store.GetOrder(p.ctx, id)
	if err != nil {
		p.t.Fatal(err)
	}
	return o
}

// waitOrder polls until cond holds for the order, or fails after timeout.
func (p *pipeline) waitOrder(id string, timeout time.Duration, what string, cond func(o *oms.Order) bool) *oms.Order {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o := p.order(id)
		if cond(o) {
			return o
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(o)
			p.t.Fatalf("order %s: not %s after %s: %s", id, what, timeout, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *pipeline) level(node, sku string) inventory.Level {
	p.t.Helper()
	ls, err := p.stock.Levels(p.ctx, []inventory.Key{{Node: node, SKU: sku}})
	if err != nil {
		p.t.Fatal(err)
	}
	return ls[0]
}

// sqlOnHand is the SQL ledger's on hand of (node, sku).
func (p *pipeline) sqlOnHand(node, sku string) int64 {
	p.t.Helper()
	var n int64
	if err := p.store.Pool().QueryRow(p.ctx, `SELECT on_hand FROM stock WHERE node_id = $1 AND sku = $2`, node, sku).Scan(&n); err != nil {
		p.t.Fatal(err)
	}
	return n
}

// wantStock checks Redis and the SQL ledger.
func (p *pipeline) wantStock(node, sku string, onHand, reserved int64) {
	p.t.Helper()
	// SQL is written first and Redis right after it: an order seen in its
	// new state may be read a moment before its Redis commit or release.
	l := p.level(node, sku)
	for deadline := time.Now().Add(5 * time.Second); (l.OnHand != onHand || l.Reserved != reserved) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		l = p.level(node, sku)
	}
	if l.OnHand != onHand || l.Reserved != reserved {
		p.t.Errorf("Redis %s/%s: got on hand %d reserved %d, want %d and %d", node, sku, l.OnHand, l.Reserved, onHand, reserved)
	}
	if n := p.sqlOnHand(node, sku); n != onHand {
		p.t.Errorf("SQL %s/%s: got on hand %d, want %d", node, sku, n, onHand)
	}
}

// record is one message read by kcat.
type record struct {
	Key string
	Ev  struct {
		EventID        string `json:"event_id"`
		Type           string `json:"type"`
		ShipmentID     string `json:"shipment_id"`
		OrderID        string `json:"order_id"`
		NodeID         string `json:"node_id"`
		TrackingNumber string `json:"tracking_number"`
	}
}

// kcat reads a whole topic with kcat, an independent Kafka client.
func kcat(t *testing.T, brokers []string, topic string) []record {
	t.Helper()
	var recs []record
	for _, m := range kcatMessages(t, brokers, topic) {
		r := record{Key: m.key}
		if err := json.Unmarshal([]byte(m.value), &r.Ev); err != nil {
			t.Fatalf("kcat %s: undecodable message %q: %v", topic, m.value, err)
		}
		recs = append(recs, r)
	}
	return recs
}

type kcatMessage struct{ key, value string }

// kcatMessages reads a whole topic with kcat: each message's key and value.
func kcatMessages(t *testing.T, brokers []string, topic string) []kcatMessage {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "-C", "-b", strings.Join(brokers, ","), "-t", topic, "-e", "-o", "beginning", "-q", "-f", "%k %s\n")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %s: %v: %s", topic, err, stderr.String())
	}
	var msgs []kcatMessage
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		msgs = append(msgs, kcatMessage{key, val})
	}
	return msgs
}

func find(recs []record, typ oms.EventType, shipmentID, orderID string) []record {
	var out []record
	for _, r := range recs {
		if oms.EventType(r.Ev.Type) == typ && (shipmentID == "" || r.Ev.ShipmentID == shipmentID) && (orderID == "" || r.Ev.OrderID == orderID) {
			out = append(out, r)
		}
	}
	return out
}

func shipmentAt(o *oms.Order, node string) *oms.Shipment {
	for i := range o.Shipments {
		if o.Shipments[i].NodeID == node {
			return &o.Shipments[i]
		}
	}
	return nil
}

func TestFulfillmentEndToEnd(t *testing.T) {
	p := newPipeline(t, 3*time.Second)
	// FAST ships 300ms after the request; SLOW takes an hour (it only
	// acknowledges); SHORT short-picks every shipment; ALT, lower in
	// priority, ships fast.
	p.node("FAST", 50)
	p.node("SLOW", 50)
	p.node("SHORT", 100)
	p.node("ALT", 10)
	p.sim("sim-fast", wmssim.Config{Nodes: []string{"FAST", "ALT"}, ShipAfter: 300 * time.Millisecond})
	p.sim("sim-slow", wmssim.Config{Nodes: []string{"SLOW"}, ShipAfter: time.Hour})
	p.sim("sim-short", wmssim.Config{Nodes: []string{"SHORT"}, ShortPickShare: 1, ShipAfter: 300 * time.Millisecond})
	p.startAll()

	var shipped, cancelled, refused, resourced, expired, paidLater *oms.Order
	// The consumer groups take a second or two to join; the first wait is
	// generous.
	t.Run("a paid order ships and its stock is committed in Redis and SQL", func(t *testing.T) {
		p.t = t
		p.setStock("FAST", "SKU-SHIP", 10)
		o := p.submit("SKU-SHIP", 2, oms.PaymentPaid)
		if o.Status != oms.OrderReleased || o.Shipments[0].Status != oms.ShipmentRequested {
			t.Fatalf("got %s %s, want released/requested", o.Status, o.Shipments[0].Status)
		}
		p.wantStock("FAST", "SKU-SHIP", 10, 2)
		shipped = p.waitOrder(o.ID, 30*time.Second, "shipped", func(o *oms.Order) bool { return o.Status == oms.OrderShipped })
		s := shipped.Shipments[0]
		if s.Status != oms.ShipmentShipped || s.TrackingNumber != wmssim.TrackingNumber(s.ID) {
			t.Errorf("got shipment %s tracking %q, want shipped with the simulator's tracking number", s.Status, s.TrackingNumber)
		}
		p.wantStock("FAST", "SKU-SHIP", 8, 0)
	})

	t.Run("a cancel before the warehouse ships intercepts the shipment and the stock comes back", func(t *testing.T) {
		p.t = t
		p.setStock("SLOW", "SKU-CXL", 10)
		o := p.submit("SKU-CXL", 3, oms.PaymentPaid)
		p.waitOrder(o.ID, 20*time.Second, "acknowledged", func(o *oms.Order) bool { return o.Shipments[0].Status == oms.ShipmentAcknowledged })
		got, err := p.f.Cancel(p.ctx, channel, o.ID, "buyer changed their mind")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != oms.OrderCancelRequested {
			t.Fatalf("got %s, want cancel_requested", got.Status)
		}
		cancelled = p.waitOrder(o.ID, 20*time.Second, "cancelled", func(o *oms.Order) bool { return o.Status == oms.OrderCancelled })
		if cancelled.Shipments[0].Status != oms.ShipmentCancelled {
			t.Errorf("got shipment %s, want cancelled", cancelled.Shipments[0].Status)
		}
		p.wantStock("SLOW", "SKU-CXL", 10, 0)
	})

	t.Run("a cancel after the warehouse shipped is refused and flagged, never cancelled", func(t *testing.T) {
		p.t = t
		p.setStock("FAST", "SKU-LATE", 10)
		o := p.submit("SKU-LATE", 1, oms.PaymentPaid)
		sid := o.Shipments[0].ID
		// Hold the ship report at the consumer: the warehouse has shipped,
		// the OMS does not know it yet when the buyer cancels.
		h := p.gate.hold(sid, oms.WMSShipped)
		select {
		case <-h.arrived:
		case <-time.After(20 * time.Second):
			t.Fatal("the simulator never shipped")
		}
		got, err := p.f.Cancel(p.ctx, channel, o.ID, "too late")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != oms.OrderCancelRequested {
			t.Fatalf("got %s, want cancel_requested", got.Status)
		}
		// The simulator answers the cancel with cancel_refused.
		eventually(t, 20*time.Second, "refused by the warehouse", func() bool {
			return len(find(kcat(t, p.brokers, oms.TopicWMSEvents), oms.WMSCancelRefused, sid, "")) > 0
		})
		close(h.open)
		refused = p.waitOrder(o.ID, 20*time.Second, "shipped and flagged", func(o *oms.Order) bool {
			return o.Status == oms.OrderShipped && slices.Contains(o.Flags, oms.FlagCancelFailed)
		})
		if refused.Shipments[0].Status != oms.ShipmentShipped || refused.CancelReason != "too late" {
			t.Errorf("got shipment %s reason %q", refused.Shipments[0].Status, refused.CancelReason)
		}
		p.wantStock("FAST", "SKU-LATE", 9, 0)
	})

	t.Run("a short pick is sourced again at another node and ships there", func(t *testing.T) {
		p.t = t
		p.setStock("SHORT", "SKU-RS", 5)
		p.setStock("ALT", "SKU-RS", 5)
		o := p.submit("SKU-RS", 2, oms.PaymentPaid)
		if o.Shipments[0].NodeID != "SHORT" {
			t.Fatalf("got first node %s, want SHORT (highest priority)", o.Shipments[0].NodeID)
		}
		resourced = p.waitOrder(o.ID, 30*time.Second, "shipped from ALT", func(o *oms.Order) bool { return o.Status == oms.OrderShipped })
		if len(resourced.Shipments) != 2 || resourced.Shipments[0].Status != oms.ShipmentRejected ||
			resourced.Shipments[1].NodeID != "ALT" || resourced.Shipments[1].Status != oms.ShipmentShipped {
			t.Fatalf("got shipments %+v, want SHORT rejected and ALT shipped", resourced.Shipments)
		}
		p.wantStock("SHORT", "SKU-RS", 5, 0)
		p.wantStock("ALT", "SKU-RS", 3, 0)
	})

	t.Run("an unpaid order expires, its stock comes back and order.expired is published", func(t *testing.T) {
		p.t = t
		p.setStock("FAST", "SKU-EXP", 10)
		o := p.submit("SKU-EXP", 4, oms.PaymentPending)
		if o.Status != oms.OrderPendingPayment || o.Shipments[0].Status != oms.ShipmentPending {
			t.Fatalf("got %s %s, want pending_payment/pending", o.Status, o.Shipments[0].Status)
		}
		p.wantStock("FAST", "SKU-EXP", 10, 4)
		expired = p.waitOrder(o.ID, 20*time.Second, "expired", func(o *oms.Order) bool { return o.Status == oms.OrderExpired })
		p.wantStock("FAST", "SKU-EXP", 10, 0)
		_, err := p.f.Pay(p.ctx, channel, o.ID)
		var e *oms.Error
		if !errors.As(err, &e) || e.Slug != oms.SlugPaymentExpired {
			t.Errorf("paying after expiry: got %v, want 409 expired", err)
		}
	})

	t.Run("an unpaid order paid in time is released and ships", func(t *testing.T) {
		p.t = t
		p.setStock("FAST", "SKU-PAY", 10)
		o := p.submit("SKU-PAY", 1, oms.PaymentPending)
		got, err := p.f.Pay(p.ctx, channel, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != oms.OrderReleased || got.Shipments[0].Status != oms.ShipmentRequested {
			t.Fatalf("got %s %s, want released/requested", got.Status, got.Shipments[0].Status)
		}
		paidLater = p.waitOrder(o.ID, 20*time.Second, "shipped", func(o *oms.Order) bool { return o.Status == oms.OrderShipped })
		p.wantStock("FAST", "SKU-PAY", 9, 0)
	})

	t.Run("an independent client (kcat) sees every event on every topic", func(t *testing.T) {
		p.t = t
		if shipped == nil || cancelled == nil || refused == nil || resourced == nil || expired == nil || paidLater == nil {
			t.Fatal("an earlier step failed: the topics cannot be checked")
		}
		ships := kcat(t, p.brokers, oms.TopicShipments)
		for _, o := range []*oms.Order{shipped, cancelled, refused, resourced, paidLater} {
			for _, s := range o.Shipments {
				req := find(ships, "shipment.requested", s.ID, o.ID)
				if len(req) == 0 || req[0].Key != s.NodeID || req[0].Ev.NodeID != s.NodeID {
					t.Errorf("shipment %s: got %+v on oms.shipments, want shipment.requested keyed by node %s", s.ID, req, s.NodeID)
				}
			}
		}
		for _, o := range []*oms.Order{cancelled, refused} {
			if n := len(find(ships, "shipment.cancel_requested", o.Shipments[0].ID, "")); n == 0 {
				t.Errorf("order %s: no shipment.cancel_requested on oms.shipments", o.ID)
			}
		}
		if n := len(find(ships, "shipment.requested", expired.Shipments[0].ID, "")); n != 0 {
			t.Errorf("the unpaid, expired order's shipment was requested from the warehouse")
		}
		wms := kcat(t, p.brokers, oms.TopicWMSEvents)
		for _, c := range []struct {
			typ oms.EventType
			s   string
		}{
			{oms.WMSShipped, shipped.Shipments[0].ID},
			{oms.WMSCancelled, cancelled.Shipments[0].ID},
			{oms.WMSCancelRefused, refused.Shipments[0].ID},
			{oms.WMSRejected, resourced.Shipments[0].ID},
			{oms.WMSShipped, resourced.Shipments[1].ID},
		} {
			if rs := find(wms, c.typ, c.s, ""); len(rs) == 0 || rs[0].Key != c.s {
				t.Errorf("no %s for shipment %s on wms.events (keyed by shipment)", c.typ, c.s)
			}
		}
		orders := kcat(t, p.brokers, oms.TopicOrders)
		for _, c := range []struct {
			typ oms.EventType
			o   *oms.Order
		}{
			{"order.created", shipped}, {"order.shipped", shipped},
			{"order.cancel_requested", cancelled}, {"order.cancelled", cancelled},
			{"order.cancel_failed", refused},
			{"order.expired", expired},
			{"order.paid", paidLater},
		} {
			if rs := find(orders, c.typ, "", c.o.ID); len(rs) != 1 || rs[0].Key != c.o.ID {
				t.Errorf("order %s: got %d %s on oms.orders, want 1 keyed by the order id", c.o.ID, len(rs), c.typ)
			}
		}
		if rs := find(orders, "order.cancelled", "", refused.ID); len(rs) != 0 {
			t.Errorf("the order whose cancel was refused was published as cancelled")
		}
	})
}

// counter sums the samples of a counter family whose labels include want.
func counter(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestExactlyOnceInEffectUnderInjectedFailures kills the relay between
// publishing and marking, kills the consumer between applying an event and
// committing its offset, and delivers a warehouse event twice more: every
// shipment is still requested under exactly one event id, none is lost,
// and no stock moves twice.
func TestExactlyOnceInEffectUnderInjectedFailures(t *testing.T) {
	p := newPipeline(t, time.Minute)
	p.node("N1", 10)
	p.setStock("N1", "SKU-X", 100)
	p.sim("sim", wmssim.Config{Nodes: []string{"N1"}}) // acknowledges and ships at once

	const orders = 5
	var ids []string
	var units int64
	for i := range orders {
		o := p.submit("SKU-X", int64(i+1), oms.PaymentPaid)
		ids = append(ids, o.ID)
		units += int64(i + 1)
	}

	// 1. The relay publishes the batch, then dies before marking it sent.
	var killedBatch []oms.OutboxEvent
	r1 := p.newRelay(relay.Config{BeforeMark: func(_ context.Context, batch []oms.OutboxEvent) error {
		killedBatch = batch
		return errors.New("relay killed after publish")
	}})
	if err := r1.Run(p.ctx); err == nil || len(killedBatch) != 2*orders {
		t.Fatalf("got %v after %d events, want the injected death after publishing all %d", err, len(killedBatch), 2*orders)
	}
	// A new relay publishes the same rows again once the lease ends.
	p.run("relay 2", p.newRelay(relay.Config{}).Run)

	// 2. The consumer applies the first ship report, then dies before the
	// commit; a new member of the group gets the message again.
	var killed atomic.Bool
	var killedEvent atomic.Value
	c1 := p.newConsumer(wmsevents.Config{AfterApply: func(m kafka.Message) error {
		var ev oms.WMSEvent
		_ = json.Unmarshal(m.Value, &ev)
		if ev.Type == oms.WMSShipped && killed.CompareAndSwap(false, true) {
			killedEvent.Store(ev.EventID)
			return errors.New("consumer killed after apply")
		}
		return nil
	}})
	if err := c1.Run(p.ctx); err == nil || !killed.Load() {
		t.Fatalf("got %v, want the injected death after an apply", err)
	}
	killedID := killedEvent.Load().(string)
	reg2 := prometheus.NewRegistry()
	p.run("consumer 2", p.newConsumer(wmsevents.Config{Registerer: reg2}).Run)

	for _, id := range ids {
		p.waitOrder(id, 30*time.Second, "shipped", func(o *oms.Order) bool { return o.Status == oms.OrderShipped })
	}

	// 3. The same warehouse event twice more: through Kafka and over the
	// HTTP door's service call.
	first := p.order(ids[0])
	sid := first.Shipments[0].ID
	dup := oms.WMSEvent{EventID: wmssim.EventID(sid, oms.WMSShipped), Type: oms.WMSShipped, ShipmentID: sid,
		TrackingNumber: wmssim.TrackingNumber(sid), OccurredAt: time.Now().UTC()}
	b, _ := json.Marshal(dup)
	applied := func() float64 {
		return counter(t, reg2, "omsd_wms_events_total", map[string]string{"type": string(oms.WMSShipped), "outcome": "applied"})
	}
	before := applied()
	w := p.writer()
	if err := w.WriteMessages(p.ctx, kafka.Message{Topic: oms.TopicWMSEvents, Key: []byte(sid), Value: b}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the duplicate consumed", func() bool { return applied() > before })
	again, err := p.f.ApplyWMSEvent(p.ctx, dup)
	if err != nil || again.Version != first.Version {
		t.Fatalf("direct duplicate: got %v, %v; want the unchanged order (version %d)", again, err, first.Version)
	}

	// The second relay republished the killed batch (after its lease) and
	// marked it sent.
	eventually(t, 20*time.Second, "the outbox drained", func() bool {
		_, unsent, err := p.store.OldestUnsentOutbox(p.ctx)
		return err == nil && !unsent
	})
	// No shipment lost or duplicated: every order has its one shipment,
	// shipped, requested under exactly one event id.
	ships := kcat(t, p.brokers, oms.TopicShipments)
	republished := false
	for _, id := range ids {
		o := p.order(id)
		if len(o.Shipments) != 1 || o.Shipments[0].Status != oms.ShipmentShipped {
			t.Errorf("order %s: got shipments %+v, want one, shipped", id, o.Shipments)
			continue
		}
		if o.Version != first.Version && id == ids[0] {
			t.Errorf("order %s changed after the duplicates", id)
		}
		reqs := find(ships, "shipment.requested", o.Shipments[0].ID, id)
		eventIDs := map[string]bool{}
		for _, r := range reqs {
			eventIDs[r.Ev.EventID] = true
		}
		if len(eventIDs) != 1 {
			t.Errorf("shipment %s: requested under %d event ids, want 1", o.Shipments[0].ID, len(eventIDs))
		}
		if len(reqs) > 1 {
			republished = true
		}
	}
	if !republished {
		t.Errorf("no shipment.requested was published twice: the relay's death did not happen between publish and mark")
	}
	// No stock moved twice, in Redis or in the SQL ledger.
	p.wantStock("N1", "SKU-X", 100-units, 0)
	var shipRows int
	var shipped int64
	if err := p.store.Pool().QueryRow(p.ctx, `SELECT count(*), coalesce(-sum(qty), 0) FROM stock_ledger WHERE kind = 'ship'`).Scan(&shipRows, &shipped); err != nil {
		t.Fatal(err)
	}
	if shipRows != orders || shipped != units {
		t.Errorf("ledger: got %d ship rows for %d units, want %d rows for %d", shipRows, shipped, orders, units)
	}
	if n := p.gate.deliveries(killedID); n < 2 {
		t.Errorf("the event applied before the consumer's death was delivered %d times, want a redelivery", n)
	}
	dups := counter(t, p.reg, "omsd_fulfillment_operations_total", map[string]string{"result": "duplicate"})
	if dups < 2 {
		t.Errorf("got %v duplicate events recognised, want at least the redelivery and the injected copies", dups)
	}
	var processed int
	if err := p.store.Pool().QueryRow(p.ctx, `SELECT count(*) FROM processed_events`).Scan(&processed); err != nil {
		t.Fatal(err)
	}
	if processed != 2*orders {
		t.Errorf("got %d processed warehouse events, want %d (acknowledged and shipped per shipment)", processed, 2*orders)
	}
}

// TestExpiryOnSeveralInstancesWithTheSweeperReleasesEachHoldOnce runs the
// expiry of two omsd instances and the Redis sweeper (the backstop) at
// once over the same unpaid orders: each order expires once, with one
// order.expired event, and each hold is released once (a paid order's
// hold next to them keeps its units reserved exactly).
func TestExpiryOnSeveralInstancesWithTheSweeperReleasesEachHoldOnce(t *testing.T) {
	p := newPipeline(t, time.Minute)
	p.node("N1", 10)
	p.setStock("N1", "SKU-E", 1000)
	paid := p.submit("SKU-E", 5, oms.PaymentPaid)
	const n = 30
	for range n {
		p.submit("SKU-E", 2, oms.PaymentPending)
	}
	p.wantStock("N1", "SKU-E", 1000, 5+2*n)

	second, err := oms.NewFulfillmentService(oms.FulfillmentConfig{ExpiryBatch: 7}, p.store, p.stock, nil)
	if err != nil {
		t.Fatal(err)
	}
	late := time.Now().Add(time.Hour) // past the payment deadline and the Redis grace
	var expired atomic.Int64
	var swept atomic.Int64
	var wg sync.WaitGroup
	for _, f := range []*oms.FulfillmentService{p.f, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k, err := f.ExpireDue(p.ctx, late, 5)
				if err != nil {
					t.Errorf("expire: %v", err)
					return
				}
				expired.Add(int64(k))
				if k == 0 {
					ids, err := p.store.DueForExpiry(p.ctx, late, 1)
					if err != nil || len(ids) == 0 {
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 10 { // a slow backstop: it takes part of the holds only
			ids, err := p.stock.SweepExpired(p.ctx, late, 1)
			if err != nil {
				t.Errorf("sweep: %v", err)
				return
			}
			swept.Add(int64(len(ids)))
		}
	}()
	wg.Wait()
	if expired.Load() != n {
		t.Errorf("got %d orders expired, want %d", expired.Load(), n)
	}
	var events int
	if err := p.store.Pool().QueryRow(p.ctx, `SELECT count(*) FROM outbox WHERE payload->>'type' = 'order.expired'`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events != n {
		t.Errorf("got %d order.expired events, want %d", events, n)
	}
	// Every unpaid hold released once, by the expiry or by the sweeper;
	// the paid order's 5 units stay reserved.
	p.wantStock("N1", "SKU-E", 1000, 5)
	if o := p.order(paid.ID); o.Status != oms.OrderReleased {
		t.Errorf("the paid order is %s, want released", o.Status)
	}
	if swept.Load() == 0 || swept.Load() == n {
		t.Logf("the sweeper released %d of %d holds: the race was one-sided this time", swept.Load(), n)
	}
}
