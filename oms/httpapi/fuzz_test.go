package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi/apitest"
	"github.com/omsd/omsd/sourcing"
)

// checkingOrders runs the real decoder-side checks and accepts what passes.
type checkingOrders struct{}

func (checkingOrders) Submit(_ context.Context, channel, _ string, req *oms.OrderRequest) (oms.Result, error) {
	in := &oms.CheckInput{Channel: channel, Req: req, Now: time.Now(), Node: func(id string) (oms.Node, bool) {
		if id == "ST-1" {
			return oms.Node{ID: id, Type: oms.NodeStore, Active: true}, true
		}
		return oms.Node{}, false
	}}
	if err := oms.RunChecks(oms.DefaultChecks(), in); err != nil {
		return oms.Result{}, err
	}
	return oms.Result{Order: orderOf(channel, req), Created: true}, nil
}

func (checkingOrders) GetOrder(context.Context, string) (*oms.Order, []byte, error) {
	return nil, nil, oms.ErrNotFound
}

type noAdmin struct{ AdminAPI }

func (noAdmin) Rules() *sourcing.RuleSet { return sourcing.DefaultRules() }

// FuzzOrderIntake feeds arbitrary bodies to POST /v1/orders through the
// real decoder and checks: no panic, and every rejection is a 4xx problem
// document whose status matches the response.
func FuzzOrderIntake(f *testing.F) {
	valid := `{"external_id":"TM-1","customer":{"id":"C1","email":"a@example.com"},"ship_to":{"name":"Li","line1":"1 Rd","city":"Hangzhou","region":"CN-ZJ","postal_code":"310000","country":"CN","lat":30.2,"lon":120.1},"lines":[{"sku":"SKU-1","qty":2,"unit_price":1999}],"currency":"CNY","payment":{"status":"paid"},"fulfillment":{"type":"ship"}}`
	for _, seed := range []string{
		valid,
		`{"external_id":"TM-2","customer":{"id":"C"},"lines":[{"sku":"S","qty":1,"unit_price":0}],"currency":"CNY","payment":{"status":"pending"},"fulfillment":{"type":"pickup","pickup_node":"ST-1"}}`,
		`{"lines":[{"qty":-1}]}`, `{"lines":[{"qty":1e30}]}`, `{"total":-9223372036854775808}`, `[]`, `null`, `{`, ``, `{"external_id":"\u0000"}`,
		`{"lines":[{"sku":"A","qty":100000,"unit_price":1099511627776},{"sku":"B","qty":100000,"unit_price":1099511627776}],"total":1}`,
	} {
		f.Add([]byte(seed))
	}
	mem := &memChannels{byHash: map[string]oms.Channel{}, byID: map[string]bool{}}
	key, hash := oms.NewAPIKey()
	_ = mem.CreateChannel(context.Background(), oms.Channel{ID: "fuzz", Name: "fuzz"}, hash)
	s, err := New(Config{AdminKey: "fuzz-admin-key-0123456789"}, mem)
	if err != nil {
		f.Fatal(err)
	}
	s.Register(OrderRoutes(checkingOrders{}, noAdmin{}, RateConfig{}))
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/v1/orders", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		apitest.Handler(t, h).ServeHTTP(w, req)
		switch {
		case w.Code == http.StatusCreated:
		case w.Code >= 400 && w.Code < 500:
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("status %d with Content-Type %q", w.Code, ct)
			}
			var p Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code || p.Type == "" {
				t.Fatalf("status %d with body %q", w.Code, w.Body.String())
			}
		default:
			t.Fatalf("got status %d for body %q: %s", w.Code, body, w.Body.String())
		}
	})
}
