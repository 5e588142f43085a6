package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omsd/omsd/oms/httpapi/apitest"
)

// seedBasic creates a channel, two warehouses and stock of SKU-1 and SKU-2.
func seedBasic(t *testing.T, s *testServer) string {
	t.Helper()
	key := s.channel("tmall", nil)
	s.node("WH-HZ", "warehouse", 30.27, 120.15, nil, 10)
	s.node("WH-SH", "warehouse", 31.23, 121.47, nil, 5)
	s.node("ST-HZ1", "store", 30.26, 120.17, []string{"CN-ZJ"}, 1)
	s.stock("WH-HZ", "SKU-1", 10)
	s.stock("WH-SH", "SKU-1", 10)
	s.stock("WH-HZ", "SKU-2", 3)
	return key
}

func TestIntakeStatusCodes(t *testing.T) {
	s := newTestServer(t)
	key := seedBasic(t, s)
	other := s.channel("jd", nil)
	slow := s.channel("slowshop", map[string]any{"rate_per_sec": 0.001, "burst": 1})

	var first orderView
	if got := s.call("POST", "/v1/orders", key, orderBody("TM-1"), nil, &first); got != 201 {
		t.Fatalf("first submission: got %d, want 201", got)
	}
	if first.Status != "released" || len(first.Shipments) != 1 || first.Shipments[0].Status != "requested" {
		t.Errorf("got order %+v, want released with one requested shipment", first)
	}

	tests := []struct {
		scenario string
		key      string
		body     any
		hdr      map[string]string
		status   int
		slug     string
		fields   []string
	}{
		{"a repeat of the same order is 200 with the original", key, orderBody("TM-1"), nil, 200, "", nil},
		{"the same external_id with another body is 409", key, orderBody("TM-1", line("SKU-1", 2)), nil, 409, "idempotency-conflict", nil},
		{"more than the stock is 409 insufficient-stock", key, orderBody("TM-2", line("SKU-2", 4)), nil, 409, "insufficient-stock", nil},
		{"an unknown SKU is 409 insufficient-stock", key, orderBody("TM-3", line("SKU-404", 1)), nil, 409, "insufficient-stock", nil},
		{"every field at fault is a 422", key, map[string]any{
			"external_id": "TM 4", "customer": map[string]any{"id": ""}, "lines": []any{
				map[string]any{"sku": "bad sku!", "qty": 0, "unit_price": -1},
				map[string]any{"sku": "SKU-1", "qty": 100001, "unit_price": 1}},
			"currency": "XXX", "payment": map[string]any{"status": "maybe"}, "fulfillment": map[string]any{"type": "ship"},
			"total": 5,
		}, nil, 422, "validation", []string{"external_id", "customer.id", "lines[0].sku", "lines[0].qty", "lines[0].unit_price",
			"lines[1].qty", "currency", "payment.status", "ship_to"}},
		{"an incomplete address is 422", key, func() map[string]any {
			b := orderBody("TM-5")
			b["ship_to"] = map[string]any{"name": "x", "region": "ZJ", "country": "CN"}
			return b
		}(), nil, 422, "validation", []string{"ship_to.line1", "ship_to.city", "ship_to.postal_code", "ship_to.region"}},
		{"a total that does not add up is 422", key, func() map[string]any {
			b := orderBody("TM-6")
			b["total"] = 1
			return b
		}(), nil, 422, "validation", []string{"total"}},
		{"a pickup order at an unknown node is 422", key, func() map[string]any {
			b := orderBody("TM-7")
			b["fulfillment"] = map[string]any{"type": "pickup", "pickup_node": "NOPE"}
			return b
		}(), nil, 422, "validation", []string{"fulfillment.pickup_node"}},
		{"an attribution to a store that is not a store is 422", key, func() map[string]any {
			b := orderBody("TM-8")
			b["attribution"] = map[string]any{"store": "WH-HZ"}
			return b
		}(), nil, 422, "validation", []string{"attribution.store"}},
		{"501 lines are 422", key, func() map[string]any {
			var ls []map[string]any
			for range 501 {
				ls = append(ls, line("SKU-1", 1))
			}
			return orderBody("TM-9", ls...)
		}(), nil, 422, "validation", []string{"lines"}},
		{"an unknown field is 400", key, func() map[string]any {
			b := orderBody("TM-10")
			b["coupon"] = "X"
			return b
		}(), nil, 400, "bad-json", nil},
		{"broken JSON is 400", key, `{"external_id":`, nil, 400, "bad-json", nil},
		{"a 2 MiB body is 413", key, `{"external_id":"` + strings.Repeat("x", 2<<20) + `"}`, nil, 413, "body-too-large", nil},
		{"no key is 401", "", orderBody("TM-11"), nil, 401, "unauthorized", nil},
		{"a bad key is 401", "oms_wrong", orderBody("TM-11"), nil, 401, "unauthorized", nil},
		{"the Idempotency-Key of another order is 409", key, orderBody("TM-12"), map[string]string{"Idempotency-Key": "K1"}, 201, "", nil},
		{"the same Idempotency-Key with another body is 409", key, orderBody("TM-13"), map[string]string{"Idempotency-Key": "K1"}, 409, "idempotency-conflict", nil},
		{"the same Idempotency-Key with the same body is 200", key, orderBody("TM-12"), map[string]string{"Idempotency-Key": "K1"}, 200, "", nil},
		{"a channel over its rate is 429 (first passes)", slow, orderBody("S-1"), nil, 201, "", nil},
		{"a channel over its rate is 429", slow, orderBody("S-2"), nil, 429, "rate-limited", nil},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			var raw json.RawMessage
			got := s.call("POST", "/v1/orders", tc.key, tc.body, tc.hdr, &raw)
			if got != tc.status {
				t.Fatalf("got %d (%.300s), want %d", got, raw, tc.status)
			}
			if tc.slug != "" {
				var p problem
				_ = json.Unmarshal(raw, &p)
				if !strings.HasSuffix(p.Type, "/"+tc.slug) {
					t.Errorf("got type %q, want .../%s", p.Type, tc.slug)
				}
				fs := p.fields()
				for _, f := range tc.fields {
					if !fs[f] {
						t.Errorf("got fields %v, want %q among them", p.Errors, f)
					}
				}
			}
			if tc.scenario == "a repeat of the same order is 200 with the original" {
				var o orderView
				_ = json.Unmarshal(raw, &o)
				if o.ID != first.ID || len(o.Shipments) != 1 || o.Shipments[0].ID != first.Shipments[0].ID {
					t.Errorf("got %+v, want the original order %+v", o, first)
				}
			}
		})
	}
	t.Run("429 carries Retry-After", func(t *testing.T) {
		req, _ := http.NewRequest("POST", s.URL+"/v1/orders", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+slow)
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("got %d Retry-After=%q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})
	t.Run("reads are scoped to the channel", func(t *testing.T) {
		var o orderView
		s.mustCall("GET", "/v1/orders/"+first.ID, key, nil, 200, &o)
		if o.ID != first.ID {
			t.Errorf("got %s, want %s", o.ID, first.ID)
		}
		s.mustCall("GET", "/v1/orders?external_id=TM-1", key, nil, 200, &o)
		if o.ID != first.ID {
			t.Errorf("by external id: got %s, want %s", o.ID, first.ID)
		}
		s.mustCall("GET", "/v1/orders/"+first.ID, other, nil, 404, nil)
		s.mustCall("GET", "/v1/orders/00000000-0000-0000-0000-000000000000", key, nil, 404, nil)
	})
	t.Run("nothing is kept by failed orders", func(t *testing.T) {
		// TM-1, TM-12 and S-1 (1 unit each) hold SKU-1; nothing else.
		if got := s.levels("SKU-1").reserved(); got != 3 {
			t.Errorf("got %d units of SKU-1 reserved, want 3", got)
		}
		if got := s.levels("SKU-2").reserved(); got != 0 {
			t.Errorf("got %d units of SKU-2 reserved, want 0", got)
		}
	})
	t.Run("a Redis that lost its data answers 503 until rebuilt", func(t *testing.T) {
		if err := s.Redis.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
		var p problem
		if got := s.call("POST", "/v1/orders", key, orderBody("TM-20"), nil, &p); got != 503 {
			t.Fatalf("got %d (%+v), want 503 while Redis is empty", got, p)
		}
	})
}

// TestConcurrentIdenticalSubmissions sends 50 copies of one order at the
// same moment, over separate connections, to two omsd instances sharing
// the database and Redis: one order, one reservation.
func TestConcurrentIdenticalSubmissions(t *testing.T) {
	cfg, r := newTestConfig(t)
	a := startServer(t, cfg, r)
	cfg2 := cfg
	b := startServer(t, cfg2, r)
	key := seedBasic(t, a)
	waitFor(t, "the second instance to see the nodes", 5*time.Second, func() bool { return len(b.app.catalog.Candidates()) == 3 })
	body, _ := json.Marshal(orderBody("TM-RACE", line("SKU-1", 3)))

	var wg sync.WaitGroup
	start := make(chan struct{})
	codes := make([]int, 50)
	ids := make([]string, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv := a
			if i%2 == 1 {
				srv = b
			}
			client := &http.Client{Transport: apitest.Transport(t, &http.Transport{DisableKeepAlives: true})}
			req, _ := http.NewRequest("POST", srv.URL+"/v1/orders", strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+key)
			<-start
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var raw json.RawMessage
			_ = json.NewDecoder(resp.Body).Decode(&raw)
			var o orderView
			_ = json.Unmarshal(raw, &o)
			if resp.StatusCode >= 300 {
				t.Logf("copy %d: %s", i, raw)
			}
			codes[i], ids[i] = resp.StatusCode, o.ID
		}()
	}
	close(start)
	wg.Wait()
	created, repeated := 0, 0
	for i, c := range codes {
		switch c {
		case 201:
			created++
		case 200:
			repeated++
		default:
			t.Errorf("copy %d: got %d", i, c)
		}
		if ids[i] != ids[0] {
			t.Errorf("copy %d: got order %s, want %s", i, ids[i], ids[0])
		}
	}
	if created != 1 || repeated != 49 {
		t.Errorf("got %d created and %d repeats, want 1 and 49", created, repeated)
	}
	// Losers release their reservations after the winner commits.
	waitFor(t, "one reservation of 3 units", 5*time.Second, func() bool { return a.levels("SKU-1").reserved() == 3 })
	var n int
	if err := a.app.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM shipments`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("got %d shipments stored, want 1", n)
	}
}

// TestFailedCommitReleasesEveryReservationOfTheBatch poisons one order of
// a batch with a trigger: the whole transaction fails, every order of the
// batch is answered 503, and no reservation leaks.
func TestFailedCommitReleasesEveryReservationOfTheBatch(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.IntakeShards = 1; c.BatchWindow = 200 * time.Millisecond; c.BatchMax = 64 })
	key := seedBasic(t, s)
	ctx := context.Background()
	if _, err := s.app.store.Pool().Exec(ctx, `
		CREATE FUNCTION poison() RETURNS trigger AS $$
		BEGIN IF NEW.external_id LIKE 'POISON%' THEN RAISE EXCEPTION 'poisoned order'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql;
		CREATE TRIGGER poison BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION poison();`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	codes := map[string]int{}
	var mu sync.Mutex
	for i := range 6 {
		ext := fmt.Sprintf("B-%d", i)
		if i == 3 {
			ext = "POISON-1"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := s.call("POST", "/v1/orders", key, orderBody(ext, line("SKU-1", 1)), nil, nil)
			mu.Lock()
			codes[ext] = c
			mu.Unlock()
		}()
	}
	wg.Wait()
	for ext, c := range codes {
		if c != 503 {
			t.Errorf("%s: got %d, want 503 (its batch failed)", ext, c)
		}
	}
	if got := s.levels("SKU-1").reserved(); got != 0 {
		t.Errorf("got %d units reserved after the failed batch, want 0", got)
	}
	var n int
	if err := s.app.store.Pool().QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("got %d orders stored, want 0", n)
	}
	// The channel retries and succeeds once the fault is gone.
	if _, err := s.app.store.Pool().Exec(ctx, `DROP TRIGGER poison ON orders`); err != nil {
		t.Fatal(err)
	}
	if c := s.call("POST", "/v1/orders", key, orderBody("B-0", line("SKU-1", 1)), nil, nil); c != 201 {
		t.Errorf("retry: got %d, want 201", c)
	}
	if got := s.levels("SKU-1").reserved(); got != 1 {
		t.Errorf("got %d reserved after the retry, want 1", got)
	}
}

func TestHoldsAndRelease(t *testing.T) {
	s := newTestServer(t)
	key := seedBasic(t, s)
	s.stock("WH-HZ", "SKU-BIG", 100)

	var held orderView
	b := orderBody("H-1", line("SKU-BIG", 25))
	s.mustCall("POST", "/v1/orders", key, b, 201, &held)
	if held.Status != "on_hold" || held.Shipments[0].Status != "pending" {
		t.Fatalf("a new customer ordering 25 units: got %s/%s, want on_hold/pending", held.Status, held.Shipments[0].Status)
	}
	if got := s.levels("SKU-BIG").reserved(); got != 25 {
		t.Errorf("a held order keeps its reservation: got %d reserved, want 25", got)
	}
	// The same customer and lines again under another external id.
	b2 := orderBody("H-2", line("SKU-1", 1))
	b3 := orderBody("H-3", line("SKU-1", 1))
	b3["customer"] = b2["customer"]
	var o2, o3 orderView
	s.mustCall("POST", "/v1/orders", key, b2, 201, &o2)
	s.mustCall("POST", "/v1/orders", key, b3, 201, &o3)
	if o2.Status != "released" || o3.Status != "on_hold" {
		t.Errorf("repeat order: got %s then %s, want released then on_hold", o2.Status, o3.Status)
	}
	var n int
	ctx := context.Background()
	if err := s.app.store.Pool().QueryRow(ctx, `SELECT count(*) FROM outbox WHERE topic = 'oms.shipments' AND payload->>'order_id' = $1`, held.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a held order has %d shipment requests, want 0", n)
	}
	var rel orderView
	s.mustCall("POST", "/v1/orders/"+held.ID+"/release", s.Admin, nil, 200, &rel)
	if rel.Status != "released" || rel.Shipments[0].Status != "requested" {
		t.Errorf("after release: got %s/%s, want released/requested", rel.Status, rel.Shipments[0].Status)
	}
	if err := s.app.store.Pool().QueryRow(ctx, `SELECT count(*) FROM outbox WHERE topic = 'oms.shipments' AND payload->>'type' = 'shipment.requested' AND payload->>'order_id' = $1`, held.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("after release: %d shipment requests, want 1", n)
	}
	s.mustCall("POST", "/v1/orders/"+held.ID+"/release", s.Admin, nil, 409, nil)
	s.mustCall("POST", "/v1/orders/"+held.ID+"/release", key, nil, 401, nil)
}

func TestPendingPaymentAttributionAndLimits(t *testing.T) {
	s := newTestServer(t)
	key := seedBasic(t, s)
	b := orderBody("P-1", line("SKU-1", 2))
	b["payment"] = map[string]any{"status": "pending"}
	b["attribution"] = map[string]any{"distributor": "D1", "store": "ST-HZ1", "associate": "A7"}
	var o orderView
	s.mustCall("POST", "/v1/orders", key, b, 201, &o)
	if o.Status != "pending_payment" || o.ReservedUntil == nil || o.Shipments[0].Status != "pending" {
		t.Errorf("got %s until %v shipment %s, want pending_payment with a deadline and a pending shipment", o.Status, o.ReservedUntil, o.Shipments[0].Status)
	}
	if o.Attribution["store"] != "ST-HZ1" || o.Attribution["associate"] != "A7" {
		t.Errorf("got attribution %v", o.Attribution)
	}
	var payload []byte
	if err := s.app.store.Pool().QueryRow(context.Background(), `SELECT payload FROM outbox WHERE topic = 'oms.orders' AND msg_key = $1`, o.ID).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Order struct {
			Attribution map[string]string `json:"attribution"`
		} `json:"order"`
	}
	_ = json.Unmarshal(payload, &ev)
	if ev.Order.Attribution["associate"] != "A7" || ev.Order.Attribution["store"] != "ST-HZ1" {
		t.Errorf("the oms.orders event does not carry the attribution: %s", payload)
	}

	// A promotion allows 2 units per customer.
	now := time.Now().UTC()
	s.mustCall("PUT", "/v1/promotions/DOUBLE11", s.Admin, map[string]any{"sku": "SKU-1", "per_customer_limit": 2,
		"starts_at": now.Add(-time.Hour), "ends_at": now.Add(time.Hour)}, 200, nil)
	c1 := orderBody("L-1", line("SKU-1", 2))
	s.mustCall("POST", "/v1/orders", key, c1, 201, nil)
	c2 := orderBody("L-2", line("SKU-1", 1))
	c2["customer"] = c1["customer"]
	var p problem
	if got := s.call("POST", "/v1/orders", key, c2, nil, &p); got != 422 || !p.fields()["lines[0].qty"] {
		t.Errorf("over the limit: got %d %+v, want 422 naming lines[0].qty", got, p)
	}
	before := s.levels("SKU-1").reserved()
	if got := s.levels("SKU-1").reserved(); got != before {
		t.Errorf("a refused order reserved stock")
	}
}
