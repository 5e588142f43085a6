package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/omsd/omsd/deploy/localstack"
	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/oms/httpapi/apitest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// testServer is one omsd instance run in-process against the local stack.
type testServer struct {
	t     testing.TB
	app   *app
	URL   string
	Admin string
	Redis *localstack.Redis
	cfg   config
	// client checks every exchange against the OpenAPI document (apitest).
	client *http.Client
}

type serverOpt func(*config)

// newTestConfig returns a config on a fresh database, a private
// redis-server and the shared broker.
func newTestConfig(t testing.TB) (config, *localstack.Redis) {
	t.Helper()
	var cfg config
	declareSettings(&cfg) // the defaults
	r := stacktest.NewRedis(t)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DatabaseURL = stacktest.Database(t)
	cfg.RedisURL = r.URL()
	cfg.Brokers = strings.Join(stacktest.Brokers(t), ",")
	cfg.AdminKey = "test-admin-key-0123456789"
	cfg.CustomerHashKeys = "k1:test-customer-hash-secret"
	cfg.LogLevel = "warn"
	return cfg, r
}

// startServer runs an omsd instance until the test ends.
func startServer(t testing.TB, cfg config, r *localstack.Redis) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = newLogger(os.Stderr, "warn")
	}
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("start omsd: %v", err)
	}
	urlc := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, func(u string) { urlc <- u }) }()
	var url string
	select {
	case url = <-urlc:
	case err := <-done:
		cancel()
		t.Fatalf("omsd stopped at start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("omsd run: %v", err)
		}
		a.close()
	})
	return &testServer{t: t, app: a, URL: url, Admin: cfg.AdminKey, Redis: r, cfg: cfg, client: apitest.Client(t)}
}

func newTestServer(t testing.TB, opts ...serverOpt) *testServer {
	t.Helper()
	cfg, r := newTestConfig(t)
	for _, o := range opts {
		o(&cfg)
	}
	return startServer(t, cfg, r)
}

// call sends a JSON request and decodes the answer into out (if not nil).
func (s *testServer) call(method, path, key string, body any, hdr map[string]string, out any) int {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, s.URL+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

func (s *testServer) mustCall(method, path, key string, body any, want int, out any) {
	s.t.Helper()
	var raw json.RawMessage
	got := s.call(method, path, key, body, nil, &raw)
	if got != want {
		s.t.Fatalf("%s %s: got %d (%s), want %d", method, path, got, raw, want)
	}
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
}

// channel creates a channel and returns its key.
func (s *testServer) channel(id string, extra map[string]any) string {
	s.t.Helper()
	body := map[string]any{"id": id, "name": "Shop " + id}
	for k, v := range extra {
		body[k] = v
	}
	var out struct {
		APIKey string `json:"api_key"`
	}
	s.mustCall("POST", "/v1/channels", s.Admin, body, 201, &out)
	return out.APIKey
}

// node creates a node.
func (s *testServer) node(id, typ string, lat, lon float64, regions []string, priority int) {
	s.t.Helper()
	if regions == nil {
		regions = []string{}
	}
	s.mustCall("PUT", "/v1/nodes/"+id, s.Admin, map[string]any{
		"name": id, "type": typ, "location": map[string]float64{"lat": lat, "lon": lon},
		"regions": regions, "priority": priority, "daily_capacity": 0, "channels": []string{}, "active": true,
	}, 201, nil)
}

func (s *testServer) stock(node, sku string, onHand int64) {
	s.t.Helper()
	s.mustCall("PUT", "/v1/inventory/"+node+"/"+sku, s.Admin, map[string]any{"on_hand": onHand}, 200, nil)
}

type levelsView struct {
	SKU       string `json:"sku"`
	Available int64  `json:"available"`
	Nodes     []struct {
		NodeID    string `json:"node_id"`
		OnHand    int64  `json:"on_hand"`
		Reserved  int64  `json:"reserved"`
		Available int64  `json:"available"`
	} `json:"nodes"`
}

func (s *testServer) levels(sku string) levelsView {
	s.t.Helper()
	var v levelsView
	s.mustCall("GET", "/v1/inventory/"+sku, s.Admin, nil, 200, &v)
	return v
}

func (v levelsView) reserved() int64 {
	var n int64
	for _, l := range v.Nodes {
		n += l.Reserved
	}
	return n
}

// orderBody is a valid paid ship order for Hangzhou.
func orderBody(ext string, lines ...map[string]any) map[string]any {
	if len(lines) == 0 {
		lines = []map[string]any{{"sku": "SKU-1", "qty": 1, "unit_price": 1999}}
	}
	return map[string]any{
		"external_id": ext,
		"customer":    map[string]any{"id": "C-" + ext, "email": "buyer-" + ext + "@example.com", "phone": phoneOf(ext)},
		"ship_to": map[string]any{"name": "Li Lei", "line1": "1 West Lake Road", "city": "Hangzhou", "region": "CN-ZJ",
			"postal_code": "310000", "country": "CN", "lat": 30.25, "lon": 120.16},
		"lines":       lines,
		"currency":    "CNY",
		"payment":     map[string]any{"status": "paid"},
		"fulfillment": map[string]any{"type": "ship"},
	}
}

// phoneOf is a mobile number of its own for each external id (orders of
// different external ids are different buyers unless a test says so).
func phoneOf(ext string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(ext))
	return fmt.Sprintf("+86139%08d", h.Sum32()%100_000_000)
}

func line(sku string, qty int) map[string]any {
	return map[string]any{"sku": sku, "qty": qty, "unit_price": 1000}
}

type orderView struct {
	ID            string            `json:"id"`
	ExternalID    string            `json:"external_id"`
	Channel       string            `json:"channel"`
	Status        string            `json:"status"`
	PaymentStatus string            `json:"payment_status"`
	ReservedUntil *string           `json:"reserved_until"`
	ReviewReasons []string          `json:"hold_reasons"`
	Attribution   map[string]string `json:"attribution"`
	Shipments     []struct {
		ID     string `json:"id"`
		NodeID string `json:"node_id"`
		Status string `json:"status"`
		Lines  []struct {
			SKU string `json:"sku"`
			Qty int64  `json:"qty"`
		} `json:"lines"`
	} `json:"shipments"`
}

type problem struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

func (p problem) fields() map[string]bool {
	m := map[string]bool{}
	for _, e := range p.Errors {
		m[e.Field] = true
	}
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = fmt.Sprintf
