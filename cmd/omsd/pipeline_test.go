package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/wmssim"
)

// TestFulfillmentPipelineThroughHTTP runs omsd (serve, in-process) with
// the warehouse simulator on the shared broker and drives the pipeline
// through the public API: payment, shipping, a cancel too late, a cancel
// before release, a repeated warehouse event over HTTP, and the metrics.
func TestFulfillmentPipelineThroughHTTP(t *testing.T) {
	s := newTestServer(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	sfx := hex.EncodeToString(b)
	node, sku := "PIPE-"+sfx, "SKU-P-"+sfx
	s.node(node, "warehouse", 30.27, 120.15, nil, 50)
	s.stock(node, sku, 10)
	key := s.channel("web-"+sfx, nil)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := wmssim.Run(ctx, wmssim.Config{Brokers: strings.Split(s.cfg.Brokers, ","), Nodes: []string{node},
			Group: "sim-" + sfx, ShipAfter: 200 * time.Millisecond})
		if err != nil {
			t.Errorf("wms-sim: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	type order struct {
		ID        string   `json:"id"`
		Status    string   `json:"status"`
		Version   int      `json:"version"`
		Flags     []string `json:"flags"`
		Shipments []struct {
			ID             string `json:"id"`
			Status         string `json:"status"`
			TrackingNumber string `json:"tracking_number"`
		} `json:"shipments"`
	}
	get := func(id string) order {
		var o order
		s.mustCall("GET", "/v1/orders/"+id, key, nil, 200, &o)
		return o
	}

	// An unpaid order, paid, ships.
	body := orderBody("PAY-"+sfx, line(sku, 2))
	body["payment"] = map[string]any{"status": "pending"}
	var o order
	s.mustCall("POST", "/v1/orders", key, body, 201, &o)
	if o.Status != string(oms.OrderPendingPayment) {
		t.Fatalf("got %s, want pending_payment", o.Status)
	}
	var paid order
	s.mustCall("POST", "/v1/orders/"+o.ID+"/payment", key, map[string]any{"status": "paid"}, 200, &paid)
	if paid.Status != string(oms.OrderReleased) || paid.Shipments[0].Status != string(oms.ShipmentRequested) {
		t.Fatalf("got %s/%s after payment, want released/requested", paid.Status, paid.Shipments[0].Status)
	}
	s.mustCall("POST", "/v1/orders/"+o.ID+"/payment", key, map[string]any{"status": "paid"}, 200, nil) // twice: same order
	var shipped order
	waitFor(t, "the order shipped", 30*time.Second, func() bool {
		shipped = get(o.ID)
		return shipped.Status == string(oms.OrderShipped)
	})
	sid := shipped.Shipments[0].ID
	if shipped.Shipments[0].TrackingNumber != wmssim.TrackingNumber(sid) {
		t.Errorf("got tracking %q, want the simulator's", shipped.Shipments[0].TrackingNumber)
	}
	// SQL is written before Redis: the stock follows the shipped order a
	// moment later.
	lv := s.levels(sku)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !(len(lv.Nodes) == 1 && lv.Nodes[0].OnHand == 8 && lv.Nodes[0].Reserved == 0); {
		time.Sleep(20 * time.Millisecond)
		lv = s.levels(sku)
	}
	if len(lv.Nodes) != 1 || lv.Nodes[0].OnHand != 8 || lv.Nodes[0].Reserved != 0 {
		t.Errorf("got levels %+v, want on hand 8, reserved 0", lv.Nodes)
	}

	// Too late to cancel.
	var p problem
	if got := s.call("POST", "/v1/orders/"+o.ID+"/cancel", key, map[string]any{"reason": "late"}, nil, &p); got != 409 || !strings.HasSuffix(p.Type, "/already-shipped") {
		t.Errorf("cancel after shipping: got %d %s, want 409 already-shipped", got, p.Type)
	}
	// The warehouse repeats its ship report over HTTP: nothing changes.
	ev := map[string]any{"event_id": wmssim.EventID(sid, oms.WMSShipped), "type": oms.WMSShipped, "tracking_number": "OTHER"}
	var again order
	s.mustCall("POST", "/v1/shipments/"+sid+"/events", s.Admin, ev, 200, &again)
	if again.Version != shipped.Version || again.Shipments[0].TrackingNumber != shipped.Shipments[0].TrackingNumber {
		t.Errorf("a repeated warehouse event changed the order: version %d -> %d", shipped.Version, again.Version)
	}

	// An unpaid order cancelled before release: cancelled at once, stock back.
	body = orderBody("CXL-"+sfx, line(sku, 3))
	body["payment"] = map[string]any{"status": "pending"}
	s.mustCall("POST", "/v1/orders", key, body, 201, &o)
	var c order
	s.mustCall("POST", "/v1/orders/"+o.ID+"/cancel", key, map[string]any{"reason": "changed my mind"}, 200, &c)
	if c.Status != string(oms.OrderCancelled) || c.Shipments[0].Status != string(oms.ShipmentCancelled) {
		t.Errorf("got %s/%s, want cancelled/cancelled", c.Status, c.Shipments[0].Status)
	}
	if lv := s.levels(sku); lv.Nodes[0].OnHand != 8 || lv.Nodes[0].Reserved != 0 {
		t.Errorf("got levels %+v after the cancel, want on hand 8, reserved 0", lv.Nodes)
	}
	// Another channel cannot touch it.
	other := s.channel("other-"+sfx, nil)
	if got := s.call("POST", "/v1/orders/"+o.ID+"/cancel", other, map[string]any{}, nil, &p); got != 404 {
		t.Errorf("another channel's cancel: got %d, want 404", got)
	}

	resp, err := s.client.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	for _, name := range []string{"omsd_outbox_published_total", "omsd_outbox_lag_seconds", "omsd_wms_events_total",
		"omsd_consumer_lag_messages", "omsd_fulfillment_operations_total"} {
		if !strings.Contains(string(m), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
