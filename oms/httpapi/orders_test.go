package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi/apitest"
	"github.com/omsd/omsd/sourcing"
)

// recordingOrders accepts every order and records the calls.
type recordingOrders struct {
	mu      sync.Mutex
	submits int
	idemKey string
	stored  map[string]*oms.Order
}

func (o *recordingOrders) Submit(_ context.Context, channel, idemKey string, req *oms.OrderRequest) (oms.Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.submits++
	o.idemKey = idemKey
	id := oms.OrderID(channel, req.ExternalID)
	if prev, ok := o.stored[id]; ok {
		return oms.Result{Order: prev}, nil
	}
	ord := orderOf(channel, req)
	o.stored[id] = ord
	return oms.Result{Order: ord, Created: true}, nil
}

func (o *recordingOrders) GetOrder(_ context.Context, id string) (*oms.Order, []byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ord, ok := o.stored[id]; ok {
		return ord, nil, nil
	}
	return nil, nil, oms.ErrNotFound
}

func (o *recordingOrders) calls() (int, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.submits, o.idemKey
}

const orderJSON = `{"external_id":"TM-1","customer":{"id":"C1"},"lines":[{"sku":"SKU-1","qty":1,"unit_price":100}],"currency":"CNY","payment":{"status":"paid"},"fulfillment":{"type":"ship"}}`

func newOrderServer(t *testing.T, rates RateConfig) (*recordingOrders, *fakeAdmin, *httptest.Server, string) {
	t.Helper()
	s, ts := newTestServer(t, nil)
	orders := &recordingOrders{stored: map[string]*oms.Order{}}
	admin := &fakeAdmin{}
	s.Register(OrderRoutes(orders, admin, rates))
	return orders, admin, ts, createChannel(t, ts, "web")
}

func submit(t *testing.T, ts *httptest.Server, key string, header http.Header, body string) (*http.Response, Problem) {
	t.Helper()
	req, _ := http.NewRequest("POST", ts.URL+"/v1/orders", strings.NewReader(body))
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p Problem
	if resp.StatusCode >= 400 {
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatalf("decode problem: %v", err)
		}
	}
	return resp, p
}

func TestIdempotencyKeyIsCheckedAtTheEdge(t *testing.T) {
	orders, _, ts, key := newOrderServer(t, RateConfig{})
	for _, tc := range []struct {
		scenario string
		values   []string
		wantMsg  string
	}{
		{"a key longer than 255 bytes is 400", []string{strings.Repeat("k", 256)}, "at most 255 bytes"},
		{"a key of 128 two-byte characters (256 bytes) is 400", []string{strings.Repeat("é", 128)}, "at most 255 bytes"},
		{"a key that is not UTF-8 is 400", []string{"key-\xff-1"}, "valid UTF-8"},
		{"a key ending in half a character is 400", []string{strings.Repeat("k", 254) + "\xc3"}, "valid UTF-8"},
		{"a key with a tab is 400", []string{"key\t1"}, "control characters"},
		{"a key with a C1 control character is 400", []string{"key\u00851"}, "control characters"},
		{"a key given twice is 400", []string{"k1", "k2"}, "given once"},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			before, _ := orders.calls()
			resp, p := submit(t, ts, key, http.Header{"Idempotency-Key": tc.values}, orderJSON)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("got %d (%+v), want 400", resp.StatusCode, p)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("got Content-Type %q, want application/problem+json", ct)
			}
			if len(p.Errors) != 1 || p.Errors[0].Field != "Idempotency-Key" || !strings.Contains(p.Errors[0].Message, tc.wantMsg) {
				t.Errorf("got errors %+v, want one naming Idempotency-Key with %q", p.Errors, tc.wantMsg)
			}
			if after, _ := orders.calls(); after != before {
				t.Errorf("got %d calls into oms, want none", after-before)
			}
		})
	}
	t.Run("a key of 255 bytes reaches oms unchanged", func(t *testing.T) {
		k := strings.Repeat("k", 253) + "é" // 255 bytes of UTF-8
		resp, p := submit(t, ts, key, http.Header{"Idempotency-Key": {k}}, orderJSON)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("got %d (%+v), want 201", resp.StatusCode, p)
		}
		if _, got := orders.calls(); got != k {
			t.Errorf("got key %q in oms, want %q", got, k)
		}
	})
	t.Run("a NUL in the key is 400 even where the transport lets it through", func(t *testing.T) {
		// net/http's server refuses NUL in headers itself; a handler behind
		// another front (or a test recorder) must still refuse it.
		s, err := New(Config{AdminKey: adminKey}, &memChannels{byHash: map[string]oms.Channel{}, byID: map[string]bool{}})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recordingOrders{stored: map[string]*oms.Order{}}
		s.Register(OrderRoutes(rec, &fakeAdmin{}, RateConfig{}))
		k, hash := oms.NewAPIKey()
		_ = s.channels.CreateChannel(context.Background(), oms.Channel{ID: "web", Name: "web"}, hash)
		req := httptest.NewRequest("POST", "/v1/orders", strings.NewReader(orderJSON))
		req.Header.Set("Authorization", "Bearer "+k)
		req.Header["Idempotency-Key"] = []string{"key\x001"}
		w := httptest.NewRecorder()
		apitest.Handler(t, s.Handler()).ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"field":"Idempotency-Key"`) {
			t.Fatalf("got %d %s, want 400 naming Idempotency-Key", w.Code, w.Body.String())
		}
		if n, _ := rec.calls(); n != 0 {
			t.Errorf("got %d calls into oms, want none", n)
		}
	})
}

func TestOrderRoutes(t *testing.T) {
	orders, _, ts, key := newOrderServer(t, RateConfig{})
	other := createChannel(t, ts, "app")
	resp, p := submit(t, ts, key, http.Header{"Idempotency-Key": {"k-1"}}, orderJSON)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("got %d (%+v), want 201", resp.StatusCode, p)
	}
	id := oms.OrderID("web", "TM-1")
	if loc := resp.Header.Get("Location"); loc != "/v1/orders/"+id {
		t.Errorf("got Location %q, want /v1/orders/%s", loc, id)
	}
	if _, k := orders.calls(); k != "k-1" {
		t.Errorf("got key %q in oms, want k-1", k)
	}
	resp, _ = submit(t, ts, key, nil, orderJSON)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
		t.Errorf("got %d with Location %q for a repeat, want 200 without one", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, tc := range []struct {
		scenario, path, key string
		want                int
		slug                oms.Slug
	}{
		{"the channel reads its order", "/v1/orders/" + id, key, 200, ""},
		{"the channel finds its order by external id", "/v1/orders?external_id=TM-1", key, 200, ""},
		{"another channel's order is 404", "/v1/orders/" + id, other, 404, oms.SlugNotFound},
		{"another channel's external id is 404", "/v1/orders?external_id=TM-1", other, 404, oms.SlugNotFound},
		{"an id that is not a uuid is 404", "/v1/orders/short", key, 404, oms.SlugNotFound},
		{"a missing external id is 422", "/v1/orders", key, 422, oms.SlugValidation},
		{"the admin key cannot read orders", "/v1/orders/" + id, adminKey, 401, oms.SlugUnauthorized},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			resp, p := do(t, "GET", ts.URL+tc.path, tc.key, nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d (%+v), want %d", resp.StatusCode, p, tc.want)
			}
			if tc.slug != "" && p.Type != TypeURI(tc.slug) {
				t.Errorf("got type %q, want %q", p.Type, TypeURI(tc.slug))
			}
		})
	}
}

func TestChannelRateLimitIs429BeforeDecoding(t *testing.T) {
	orders, _, ts, key := newOrderServer(t, RateConfig{PerSec: 0.001, Burst: 1})
	if resp, p := submit(t, ts, key, nil, orderJSON); resp.StatusCode != http.StatusCreated {
		t.Fatalf("got %d (%+v), want 201", resp.StatusCode, p)
	}
	resp, p := submit(t, ts, key, nil, `{not json`)
	if resp.StatusCode != http.StatusTooManyRequests || p.Type != TypeURI(oms.SlugRateLimited) {
		t.Fatalf("got %d %q, want 429 rate-limited (before the body is read)", resp.StatusCode, p.Type)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("got no Retry-After")
	}
	if n, _ := orders.calls(); n != 1 {
		t.Errorf("got %d submits, want 1", n)
	}
}

// fakeAdmin records what the admin routes pass on.
type fakeAdmin struct {
	mu      sync.Mutex
	nodes   map[string]oms.Node
	rules   []byte
	cleared string
	promo   oms.Promotion
	stock   string
}

func (a *fakeAdmin) PutNode(_ context.Context, n oms.Node) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nodes == nil {
		a.nodes = map[string]oms.Node{}
	}
	_, had := a.nodes[n.ID]
	a.nodes[n.ID] = n
	return !had, nil
}

func (a *fakeAdmin) GetNode(_ context.Context, id string) (oms.Node, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.nodes[id]
	if !ok {
		return n, oms.ErrNotFound
	}
	return n, nil
}

func (a *fakeAdmin) ListNodes(context.Context) ([]oms.Node, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ns []oms.Node
	for _, n := range a.nodes {
		ns = append(ns, n)
	}
	return ns, nil
}

func (a *fakeAdmin) SetStock(_ context.Context, node, sku string, s oms.StockSnapshot) (oms.LevelView, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stock = node + "/" + sku
	if s.OnHand == nil {
		return oms.LevelView{}, oms.Invalid("on_hand is required", oms.FieldError{Field: "on_hand", Message: "is required"})
	}
	return oms.LevelView{NodeID: node, SKU: sku, OnHand: *s.OnHand, Available: *s.OnHand}, nil
}

func (a *fakeAdmin) StockBySKU(_ context.Context, sku string) (oms.SKUStock, error) {
	return oms.SKUStock{SKU: sku, Available: 7, Nodes: []oms.LevelView{{NodeID: "WH-1", OnHand: 7, Available: 7}}}, nil
}

func (a *fakeAdmin) Rules() *sourcing.RuleSet { return sourcing.DefaultRules() }

func (a *fakeAdmin) ActivateRules(_ context.Context, doc []byte) (*sourcing.RuleSet, error) {
	a.mu.Lock()
	a.rules = doc
	a.mu.Unlock()
	rs, err := sourcing.ParseRules(doc)
	if err != nil {
		return nil, rulesError(err)
	}
	return rs, nil
}

func (a *fakeAdmin) Simulate(_ context.Context, channel string, req *oms.OrderRequest, _ *sourcing.RuleSet) (*sourcing.Result, error) {
	if channel != "simulation" || req.ExternalID != "SIM-1" {
		return nil, oms.Invalid("unexpected simulation", oms.FieldError{Field: "channel", Message: channel})
	}
	return &sourcing.Result{Outcome: sourcing.OutcomeFulfilled, Reason: "simulated"}, nil
}

func (a *fakeAdmin) PutPromotion(_ context.Context, p oms.Promotion) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.promo = p
	return nil
}

func (a *fakeAdmin) ClearReview(_ context.Context, id string) (*oms.Order, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cleared = id
	if id == "not-in-review" {
		return nil, oms.Errorf(oms.KindConflict, oms.SlugNotInReview, "the order is not in review")
	}
	return sampleOrder(id, oms.OrderReleased), nil
}

func TestAdminRoutes(t *testing.T) {
	_, admin, ts, key := newOrderServer(t, RateConfig{})
	for _, tc := range []struct {
		scenario, method, path, key, body string
		want                              int
		slug                              oms.Slug
		wantBody                          string
	}{
		{"a new node is 201", "PUT", "/v1/nodes/WH-1", adminKey, `{"name":"Hangzhou DC","type":"warehouse"}`, 201, "", `"id":"WH-1"`},
		{"a replaced node is 200", "PUT", "/v1/nodes/WH-1", adminKey, `{"id":"WH-1","name":"Hangzhou","type":"warehouse"}`, 200, "", `"name":"Hangzhou"`},
		{"a node id other than the path's is 422", "PUT", "/v1/nodes/WH-1", adminKey, `{"id":"WH-2"}`, 422, oms.SlugValidation, ""},
		{"a node with an unknown field is 400", "PUT", "/v1/nodes/WH-1", adminKey, `{"colour":"red"}`, 400, oms.SlugBadJSON, ""},
		{"a node is read back", "GET", "/v1/nodes/WH-1", adminKey, "", 200, "", `"name":"Hangzhou"`},
		{"a missing node is 404", "GET", "/v1/nodes/WH-9", adminKey, "", 404, oms.SlugNotFound, ""},
		{"nodes are listed", "GET", "/v1/nodes", adminKey, "", 200, "", `{"nodes":[`},
		{"a channel key cannot list nodes", "GET", "/v1/nodes", key, "", 401, oms.SlugUnauthorized, ""},
		{"a stock snapshot is set", "PUT", "/v1/inventory/WH-1/SKU-1", adminKey, `{"on_hand":5}`, 200, "", `"available":5`},
		{"a stock snapshot without on_hand is 422", "PUT", "/v1/inventory/WH-1/SKU-1", adminKey, `{}`, 422, oms.SlugValidation, ""},
		{"stock of a SKU", "GET", "/v1/inventory/SKU-1", adminKey, "", 200, "", `"available":7`},
		{"the active rules", "GET", "/v1/sourcing/rules", adminKey, "", 200, "", "{"},
		{"rules that are not JSON are 422 from the rule parser", "PUT", "/v1/sourcing/rules", adminKey, `{nope`, 422, oms.SlugValidation, ""},
		{"a simulation", "POST", "/v1/sourcing/simulate", adminKey, strings.Replace(orderJSON, "TM-1", "SIM-1", 1), 200, "", "{"},
		{"a simulation with a broken draft is 422 naming rules", "POST", "/v1/sourcing/simulate", adminKey, `{"external_id":"SIM-1","rules":{"version":"x"}}`, 422, oms.SlugValidation, `"field":"rules`},
		{"a promotion takes its id from the path", "PUT", "/v1/promotions/P-1", adminKey, `{"id":"ignored","sku":"SKU-1","per_customer_limit":2,"starts_at":"2026-11-11T00:00:00Z","ends_at":"2026-11-12T00:00:00Z"}`, 200, "", `"id":"P-1"`},
		{"a review is cleared", "POST", "/v1/orders/o-1/release", adminKey, "", 200, "", `"id":"o-1"`},
		{"clearing an order not in review is 409", "POST", "/v1/orders/not-in-review/release", adminKey, "", 409, oms.SlugNotInReview, ""},
		{"a channel key cannot clear a review", "POST", "/v1/orders/o-1/release", key, "", 401, oms.SlugUnauthorized, ""},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+tc.key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b strings.Builder
			_, _ = io.Copy(&b, resp.Body)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b.String(), tc.want)
			}
			if tc.slug != "" && !strings.Contains(b.String(), `"type":"`+TypeURI(tc.slug)+`"`) {
				t.Errorf("got %s, want type %s", b.String(), TypeURI(tc.slug))
			}
			if tc.wantBody != "" && !strings.Contains(b.String(), tc.wantBody) {
				t.Errorf("got %s, want it to contain %s", b.String(), tc.wantBody)
			}
		})
	}
	admin.mu.Lock()
	defer admin.mu.Unlock()
	if string(admin.rules) != `{nope` {
		t.Errorf("got rule document %q passed on, want the body verbatim", admin.rules)
	}
	if admin.promo.ID != "P-1" || admin.promo.PerCustomerLimit != 2 {
		t.Errorf("got promotion %+v, want P-1 with limit 2", admin.promo)
	}
	if admin.cleared != "not-in-review" || admin.stock != "WH-1/SKU-1" {
		t.Errorf("got cleared %q and stock %q", admin.cleared, admin.stock)
	}
}

// fullOrders is at its admission limit.
type fullOrders struct{ *recordingOrders }

func (fullOrders) Overloaded() bool { return true }

func TestAnOverloadedIntakeIsAnswered503BeforeTheBodyIsRead(t *testing.T) {
	s, ts := newTestServer(t, nil)
	orders := fullOrders{&recordingOrders{stored: map[string]*oms.Order{}}}
	s.Register(OrderRoutes(orders, &fakeAdmin{}, RateConfig{}))
	key := createChannel(t, ts, "web")
	// Not even JSON: refused as overloaded, never decoded.
	resp, p := submit(t, ts, key, nil, "{not json")
	if resp.StatusCode != http.StatusServiceUnavailable || p.Type != ProblemBase+string(oms.SlugOverloaded) || resp.Header.Get("Retry-After") == "" {
		t.Errorf("got %d %q Retry-After %q, want 503 overloaded with Retry-After", resp.StatusCode, p.Type, resp.Header.Get("Retry-After"))
	}
	if n, _ := orders.calls(); n != 0 {
		t.Errorf("Submit called %d times, want 0", n)
	}
}
