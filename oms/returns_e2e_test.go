package oms_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/relay"
	"github.com/omsd/omsd/oms/wmsevents"
	"github.com/omsd/omsd/oms/wmssim"
	"github.com/omsd/omsd/sourcing"
)

// The after-sales loop on the local stack: a shipped order is returned,
// approved, received at the node the rules pick (one unit sellable, one
// damaged, through wms.events and delivered twice), its sellable unit is
// back in stock in Redis and SQL, the refund is requested and made; an
// exchange is approved with stock and falls back to a refund without it.
// The receiving node RET has no simulator: the test is its warehouse.

func (p *pipeline) returns() *oms.ReturnService {
	p.t.Helper()
	catalog, err := oms.NewCatalogCache(p.ctx, p.store, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	rs, err := oms.NewReturnService(oms.ReturnsConfig{Store: p.store, Stock: restocker(p), Intake: p.intake, Cancel: p.f, Catalog: catalog, Registry: p.reg})
	if err != nil {
		p.t.Fatal(err)
	}
	return rs
}

// restocker is the stock engine when it restocks (oms.Restocker).
func restocker(p *pipeline) oms.Restocker {
	r, _ := any(p.stock).(oms.Restocker)
	return r
}

func (p *pipeline) returnRules(nodes ...string) {
	p.t.Helper()
	rs := *p.admin.Rules()
	rs.Returns = &sourcing.ReturnRules{To: sourcing.ReturnToNearest, Nodes: nodes}
	doc, err := json.Marshal(&rs)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.admin.ActivateRules(p.ctx, doc); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pipeline) damaged(node, sku string) int64 {
	p.t.Helper()
	var n int64
	if err := p.store.Pool().QueryRow(p.ctx, `SELECT damaged FROM stock WHERE node_id = $1 AND sku = $2`, node, sku).Scan(&n); err != nil {
		p.t.Fatal(err)
	}
	return n
}

func wantKind(t *testing.T, err error, kind oms.Kind, field string) {
	t.Helper()
	var e *oms.Error
	if !errors.As(err, &e) || e.Kind != kind {
		t.Fatalf("got %v, want an error of kind %d", err, kind)
	}
	if field != "" && (len(e.Fields) == 0 || e.Fields[0].Field != field) {
		t.Fatalf("got fields %+v, want %s named", e.Fields, field)
	}
}

func TestReturnsEndToEnd(t *testing.T) {
	p := newPipeline(t, time.Minute)
	p.node("FAST", 50)
	p.node("RET", 1)
	p.sim("sim-fast", wmssim.Config{Nodes: []string{"FAST"}, ShipAfter: 100 * time.Millisecond})
	p.returnRules("RET")
	rs := p.returns()
	p.run("relay", p.newRelay(relay.Config{}).Run)
	c, err := wmsevents.New(wmsevents.Config{Brokers: p.brokers, GroupID: "omsd-test", SessionTimeout: 2 * time.Second},
		oms.WMSRouter{Shipments: p.gate, Returns: rs})
	if err != nil {
		t.Fatal(err)
	}
	p.run("consumer", c.Run)
	w := p.writer()

	p.setStock("FAST", "SKU-RET", 10)
	p.setStock("RET", "SKU-RET", 0)
	o := p.submit("SKU-RET", 3, oms.PaymentPaid)
	o = p.waitOrder(o.ID, 30*time.Second, "shipped", func(o *oms.Order) bool { return o.Status == oms.OrderShipped })
	p.wantStock("FAST", "SKU-RET", 7, 0)

	var ret *oms.Return
	t.Run("a return is refused past what shipped, naming the line, and kept to its channel", func(t *testing.T) {
		_, _, err := rs.Request(p.ctx, channel, o.ID, "", &oms.ReturnRequest{ExternalID: "RMA-BIG", Reason: "changed_mind", Resolution: "refund",
			Lines: []oms.ShipLine{{SKU: "SKU-RET", Qty: 4}}})
		wantKind(t, err, oms.KindInvalid, "lines[0].qty")
		_, _, err = rs.Request(p.ctx, channel, o.ID, "", &oms.ReturnRequest{ExternalID: "RMA-OTHER", Reason: "changed_mind", Resolution: "refund",
			Lines: []oms.ShipLine{{SKU: "SKU-NONE", Qty: 1}}})
		wantKind(t, err, oms.KindInvalid, "lines[0].sku")
		_, _, err = rs.Request(p.ctx, "app", o.ID, "", &oms.ReturnRequest{ExternalID: "RMA-1", Reason: "damaged", Resolution: "refund",
			Lines: []oms.ShipLine{{SKU: "SKU-RET", Qty: 2}}})
		wantKind(t, err, oms.KindNotFound, "")
	})

	t.Run("a return is requested once, repeats answer the same, and another body conflicts", func(t *testing.T) {
		req := &oms.ReturnRequest{ExternalID: "RMA-1", Reason: "damaged", Resolution: "refund", Lines: []oms.ShipLine{{SKU: "SKU-RET", Qty: 2}}}
		var created bool
		ret, created, err = rs.Request(p.ctx, channel, o.ID, "key-1", req)
		if err != nil || !created {
			t.Fatalf("got %v created=%v", err, created)
		}
		if ret.Status != oms.ReturnRequested || ret.NodeID != "RET" || ret.Refund.Amount != 2*1999 || ret.Refund.Status != oms.RefundPending {
			t.Fatalf("got %+v, want requested to RET with 39.98 pending", ret)
		}
		again, created, err := rs.Request(p.ctx, channel, o.ID, "key-1", req)
		if err != nil || created || again.ID != ret.ID {
			t.Fatalf("repeat: got %v created=%v id %s", err, created, again.ID)
		}
		other := *req
		other.Reason = "other"
		_, _, err = rs.Request(p.ctx, channel, o.ID, "", &other)
		wantKind(t, err, oms.KindConflict, "")
		// A second return cannot take more than the unit left.
		_, _, err = rs.Request(p.ctx, channel, o.ID, "", &oms.ReturnRequest{ExternalID: "RMA-2", Reason: "other", Resolution: "refund",
			Lines: []oms.ShipLine{{SKU: "SKU-RET", Qty: 2}}})
		wantKind(t, err, oms.KindInvalid, "lines[0].qty")
		if _, err := rs.Get(p.ctx, "app", ret.ID); oms.KindOf(err) != oms.KindNotFound {
			t.Errorf("another channel reading the return: got %v, want not found", err)
		}
		if _, err := rs.Refund(p.ctx, channel, ret.ID, "PSP-0"); oms.KindOf(err) != oms.KindConflict {
			t.Errorf("refund before receipt: got %v, want a conflict", err)
		}
	})

	t.Run("approved, received once (one sellable, one damaged), stock back by one, refunded", func(t *testing.T) {
		if ret == nil {
			t.Fatal("an earlier step failed")
		}
		got, err := rs.Approve(p.ctx, channel, ret.ID)
		if err != nil || got.Status != oms.ReturnApproved {
			t.Fatalf("approve: %v %+v", err, got)
		}
		ev := oms.WMSEvent{EventID: "rcv-" + ret.ID, Type: oms.WMSReturnReceived, ReturnID: ret.ID, OccurredAt: time.Now().UTC(),
			Lines: []oms.ReceivedLine{{SKU: "SKU-RET", Qty: 1, Condition: oms.ConditionSellable}, {SKU: "SKU-RET", Qty: 1, Condition: oms.ConditionDamaged}}}
		b, _ := json.Marshal(ev)
		msg := kafka.Message{Topic: oms.TopicWMSEvents, Key: []byte(ret.ID), Value: b}
		// Delivered twice: applied once.
		if err := w.WriteMessages(p.ctx, msg, msg); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "received", func() bool {
			r, err := rs.Get(p.ctx, channel, ret.ID)
			return err == nil && r.Status == oms.ReturnReceived
		})
		// A later event on the same key (partition) applied means both
		// copies before it were consumed.
		ack, _ := json.Marshal(oms.WMSEvent{EventID: "ack-" + ret.ID, Type: oms.WMSReturnAcknowledged, ReturnID: ret.ID, OccurredAt: time.Now().UTC()})
		if err := w.WriteMessages(p.ctx, kafka.Message{Topic: oms.TopicWMSEvents, Key: []byte(ret.ID), Value: ack}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the later event applied", func() bool {
			r, err := rs.Get(p.ctx, channel, ret.ID)
			return err == nil && r.AcknowledgedAt != nil
		})
		r, _ := rs.Get(p.ctx, channel, ret.ID)
		if r.Refund.Status != oms.RefundRequested || r.Refund.Amount != 2*1999 {
			t.Errorf("got refund %+v, want 39.98 requested", r.Refund)
		}
		// The HTTP door with the same event id is a duplicate too.
		if _, err := rs.ApplyWMSEvent(p.ctx, ev); err != nil {
			t.Fatal(err)
		}
		if restocker(p) != nil {
			p.wantStock("RET", "SKU-RET", 1, 0)
		} else if n := p.sqlOnHand("RET", "SKU-RET"); n != 1 {
			t.Errorf("SQL RET/SKU-RET: got on hand %d, want 1", n)
		}
		if d := p.damaged("RET", "SKU-RET"); d != 1 {
			t.Errorf("got %d damaged, want 1", d)
		}
		var rows int
		if err := p.store.Pool().QueryRow(p.ctx, `SELECT count(*) FROM stock_ledger WHERE node_id = 'RET' AND kind IN ('return', 'damaged')`).Scan(&rows); err != nil || rows != 2 {
			t.Errorf("got %d ledger rows (%v), want 2", rows, err)
		}
		view, err := p.admin.StockBySKU(p.ctx, "SKU-RET")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range view.Nodes {
			if n.NodeID == "RET" && (n.Damaged == nil || *n.Damaged != 1) {
				t.Errorf("GET /v1/inventory: RET damaged %v, want 1", n.Damaged)
			}
		}
		ord := p.order(o.ID)
		if ord.Status != oms.OrderPartiallyReturned {
			t.Errorf("order: got %s, want partially_returned", ord.Status)
		}
		done, err := rs.Refund(p.ctx, channel, ret.ID, "PSP-1")
		if err != nil || done.Status != oms.ReturnRefunded || done.Refund.Reference != "PSP-1" {
			t.Fatalf("refund: %v %+v", err, done)
		}
		if ord := p.order(o.ID); ord.Refunded != 2*1999 {
			t.Errorf("order refunded %d, want 3998", ord.Refunded)
		}
	})

	t.Run("sixty concurrent return requests for three shipped units: exactly three are opened", func(t *testing.T) {
		p.setStock("FAST", "SKU-RACE", 10)
		src := p.submit("SKU-RACE", 3, oms.PaymentPaid)
		p.waitOrder(src.ID, 30*time.Second, "shipped", func(o *oms.Order) bool { return o.Status == oms.OrderShipped })
		var wg sync.WaitGroup
		var opened, refused, other atomic.Int64
		for i := range 60 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, created, err := rs.Request(p.ctx, channel, src.ID, "", &oms.ReturnRequest{ExternalID: fmt.Sprintf("RMA-RACE-%d", i),
					Reason: "other", Resolution: "refund", Lines: []oms.ShipLine{{SKU: "SKU-RACE", Qty: 1}}})
				switch {
				case err == nil && created:
					opened.Add(1)
				case oms.KindOf(err) == oms.KindInvalid:
					refused.Add(1)
				default:
					other.Add(1)
					t.Errorf("unexpected answer: %v", err)
				}
			}()
		}
		wg.Wait()
		if opened.Load() != 3 || refused.Load() != 57 {
			t.Errorf("got %d opened, %d refused, %d other; want 3 and 57", opened.Load(), refused.Load(), other.Load())
		}
		rets, err := rs.ForOrder(p.ctx, channel, src.ID)
		if err != nil || len(rets) != 3 {
			t.Errorf("stored: %d returns (%v), want 3", len(rets), err)
		}
	})

	var exchanged, fellBack *oms.Return
	t.Run("an exchange with stock places the exchange order; without stock it falls back to a refund", func(t *testing.T) {
		p.setStock("FAST", "SKU-EX", 5)
		p.setStock("FAST", "SKU-EX2", 5)
		p.setStock("FAST", "SKU-EX3", 0)
		src := p.submit("SKU-EX", 2, oms.PaymentPaid)
		p.waitOrder(src.ID, 30*time.Second, "shipped", func(o *oms.Order) bool { return o.Status == oms.OrderShipped })
		r1, _, err := rs.Request(p.ctx, channel, src.ID, "", &oms.ReturnRequest{ExternalID: "RMA-X1", Reason: "wrong_item", Resolution: "exchange",
			Lines: []oms.ShipLine{{SKU: "SKU-EX", Qty: 1}}, ExchangeLines: []oms.ShipLine{{SKU: "SKU-EX2", Qty: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		exchanged, err = rs.Approve(p.ctx, channel, r1.ID)
		if err != nil || exchanged.ExchangeOrderID == "" || exchanged.ExchangeRefused != "" {
			t.Fatalf("approve exchange: %v %+v", err, exchanged)
		}
		xo := p.order(exchanged.ExchangeOrderID)
		if xo.ExternalID != "RMA-X1-X" || xo.Total != 0 || xo.Lines[0].SKU != "SKU-EX2" || xo.Channel != channel || len(xo.Shipments) != 1 {
			t.Errorf("exchange order: %+v", xo)
		}
		if again, err := rs.Approve(p.ctx, channel, r1.ID); err != nil || again.ExchangeOrderID != exchanged.ExchangeOrderID {
			t.Errorf("approving again: %v %+v", err, again)
		}
		r2, _, err := rs.Request(p.ctx, channel, src.ID, "", &oms.ReturnRequest{ExternalID: "RMA-X2", Reason: "wrong_item", Resolution: "exchange",
			Lines: []oms.ShipLine{{SKU: "SKU-EX", Qty: 1}}, ExchangeLines: []oms.ShipLine{{SKU: "SKU-EX3", Qty: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		fellBack, err = rs.Approve(p.ctx, channel, r2.ID)
		if err != nil || fellBack.ExchangeOrderID != "" || fellBack.ExchangeRefused != oms.ExchangeRefusedNoStock ||
			fellBack.Refund.Amount != 1999 || fellBack.Status != oms.ReturnApproved {
			t.Fatalf("approve without stock: %v %+v", err, fellBack)
		}
		// The exchange's goods come back: closed, nothing refunded.
		got, err := rs.ApplyWMSEvent(p.ctx, oms.WMSEvent{EventID: "rcv-x1", Type: oms.WMSReturnReceived, ReturnID: r1.ID,
			Lines: []oms.ReceivedLine{{SKU: "SKU-EX", Qty: 1, Condition: oms.ConditionSellable}}, OccurredAt: time.Now()})
		if err != nil || got.Status != oms.ReturnClosed || got.Refund.Amount != 0 {
			t.Errorf("exchange received: %v %+v", err, got)
		}
	})

	t.Run("oms.returns has every event once, keyed by order; return.expected went to the receiving node", func(t *testing.T) {
		if ret == nil || exchanged == nil || fellBack == nil {
			t.Fatal("an earlier step failed")
		}
		type msg struct {
			EventID  string `json:"event_id"`
			Type     string `json:"type"`
			ReturnID string `json:"return_id"`
			OrderID  string `json:"order_id"`
			NodeID   string `json:"node_id"`
		}
		var types []string
		eventually(t, 20*time.Second, "published", func() bool {
			seen := map[string]bool{}
			types = nil
			for _, m := range kcatMessages(t, p.brokers, oms.TopicReturns) {
				var e msg
				if err := json.Unmarshal([]byte(m.value), &e); err != nil {
					t.Fatal(err)
				}
				if seen[e.EventID] {
					t.Fatalf("event %s published twice", e.EventID)
				}
				seen[e.EventID] = true
				if m.key != e.OrderID {
					t.Fatalf("event %s keyed %s, want its order %s", e.EventID, m.key, e.OrderID)
				}
				if e.ReturnID == ret.ID {
					types = append(types, e.Type)
				}
			}
			return len(types) == 5
		})
		want := []string{"return.requested", "return.approved", "return.received", "return.refund_requested", "return.refunded"}
		for i := range want {
			if types[i] != want[i] {
				t.Fatalf("got %v, want %v", types, want)
			}
		}
		var expected int
		for _, m := range kcatMessages(t, p.brokers, oms.TopicShipments) {
			var e msg
			_ = json.Unmarshal([]byte(m.value), &e)
			if e.Type == string(oms.EventReturnExpected) && e.ReturnID == ret.ID {
				expected++
				if m.key != "RET" || e.NodeID != "RET" {
					t.Errorf("return.expected keyed %s node %s, want RET", m.key, e.NodeID)
				}
			}
		}
		if expected != 1 {
			t.Errorf("got %d return.expected, want 1", expected)
		}
	})
}
