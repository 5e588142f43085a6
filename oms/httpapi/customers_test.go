package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi/apitest"
)

// fakeCustomers knows one customer, C1, with one order, and one
// attribution row.
type fakeCustomers struct {
	mu   sync.Mutex
	last string
	err  error // answered by every method when set
}

func (f *fakeCustomers) record(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = s
	return f.err
}

func (f *fakeCustomers) GetCustomer(_ context.Context, id string) (*oms.CustomerView, error) {
	if err := f.record("get " + id); err != nil {
		return nil, err
	}
	if id != "C1" {
		return nil, oms.ErrNotFound
	}
	first := fixtureTime
	return &oms.CustomerView{ID: "C1", Channels: []string{"web", "app"}, Orders: 1, GMV: 100, Currency: "CNY",
		FirstOrderAt: &first, LastOrderAt: &first,
		Binding: &oms.Binding{Associate: "A1", Store: "ST-1", BoundAt: fixtureTime, ExpiresAt: fixtureTime.AddDate(1, 0, 0)}}, nil
}

func (f *fakeCustomers) CustomerOrders(_ context.Context, id string, limit int, after string) ([]oms.CustomerOrder, string, error) {
	if err := f.record("orders " + id + " " + after); err != nil {
		return nil, "", err
	}
	if id != "C1" {
		return nil, "", oms.ErrNotFound
	}
	if after != "" {
		return nil, "", nil
	}
	return []oms.CustomerOrder{{ID: oms.OrderID("web", "TM-1"), Channel: "web", ExternalID: "TM-1", Status: "released",
		Total: 100, Currency: "CNY", CreatedAt: fixtureTime}}, "cursor-1", nil
}

func (f *fakeCustomers) AttributionSummary(_ context.Context, groupBy string, from, to time.Time) ([]oms.AttributionRow, error) {
	if err := f.record("summary " + groupBy); err != nil {
		return nil, err
	}
	return []oms.AttributionRow{{Key: "A1", Currency: "CNY", Orders: 1, GMV: 100, Refunded: 10, Net: 90}}, nil
}

func TestCustomerRoutes(t *testing.T) {
	s, ts := newTestServer(t, nil)
	f := &fakeCustomers{}
	s.Register(CustomerRoutes(f))
	key := createChannel(t, ts, "web")
	const span = "from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z"
	for _, tc := range []struct {
		name, path, key string
		want            int
		wantBody        string
		wantField       string
	}{
		{name: "a customer", path: "/v1/customers/C1", want: 200, wantBody: `"binding":{"associate":"A1"`},
		{name: "an unknown customer is 404", path: "/v1/customers/C9", want: 404},
		{name: "a channel key cannot read customers", path: "/v1/customers/C1", key: key, want: 401},
		{name: "a customer's orders", path: "/v1/customers/C1/orders?limit=10", want: 200, wantBody: `"next":"cursor-1"`},
		{name: "the last page", path: "/v1/customers/C1/orders?after=cursor-1", want: 200, wantBody: `{"orders":[]}`},
		{name: "an unknown customer's orders are 404", path: "/v1/customers/C9/orders", want: 404},
		{name: "a page size past the limit is 422", path: "/v1/customers/C1/orders?limit=501", want: 422, wantField: "limit"},
		{name: "a page size that is not a number is 422", path: "/v1/customers/C1/orders?limit=ten", want: 422, wantField: "limit"},
		{name: "a cursor that is too long is 422", path: "/v1/customers/C1/orders?after=" + strings.Repeat("x", 257), want: 422, wantField: "after"},
		{name: "a summary", path: "/v1/attribution/summary?group_by=associate&" + span, want: 200, wantBody: `"net":90`},
		{name: "a summary without from is 422", path: "/v1/attribution/summary?group_by=store&to=2026-12-02T00:00:00Z", want: 422, wantField: "from"},
		{name: "a summary by an unknown key is 422", path: "/v1/attribution/summary?group_by=city&" + span, want: 422, wantField: "group_by"},
		{name: "a summary from a half hour is 422", path: "/v1/attribution/summary?group_by=store&from=2026-12-01T00:30:00Z&to=2026-12-02T00:00:00Z", want: 422, wantField: "from"},
		{name: "a summary backwards is 422", path: "/v1/attribution/summary?group_by=store&from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", want: 422, wantField: "to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.key
			if k == "" {
				k = adminKey
			}
			req, _ := http.NewRequest("GET", ts.URL+tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+k)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tc.want)
			}
			var p Problem
			if tc.want >= 400 {
				if err := json.Unmarshal(body, &p); err != nil || p.Status != tc.want {
					t.Fatalf("got problem %s (%v), want status %d", body, err, tc.want)
				}
			}
			if tc.wantField != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.wantField) {
				t.Errorf("got errors %+v, want %s named", p.Errors, tc.wantField)
			}
			if !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("got %s, want it to contain %s", body, tc.wantBody)
			}
		})
	}
}

// TestTheCheckerCatchesAnUndocumentedStatus: a handler whose service
// answers a status the operation does not document fails the checker. GET
// /v1/customers/{id} answers 200, 401, 404, 429, 500 and 503; a 422 from it
// would be drift.
func TestTheCheckerCatchesAnUndocumentedStatus(t *testing.T) {
	s, err := New(Config{AdminKey: adminKey}, &memChannels{byHash: map[string]oms.Channel{}, byID: map[string]bool{}})
	if err != nil {
		t.Fatal(err)
	}
	s.Register(CustomerRoutes(&fakeCustomers{err: oms.Invalid("no", oms.FieldError{Field: "id", Message: "bad"})}))
	c, err := apitest.New()
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v1/customers/C1", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req)
	if w.Code != 422 {
		t.Fatalf("got %d, want the fake's 422", w.Code)
	}
	err = c.Check(req, nil, w.Code, w.Header(), w.Body.Bytes())
	var v *apitest.Violation
	if !errors.As(err, &v) || v.Status != 422 || v.Side != "response" || !strings.Contains(err.Error(), "status is not supported") {
		t.Fatalf("got %v, want a response violation for the undocumented 422", err)
	}
	if !strings.Contains(err.Error(), "GET /v1/customers/C1 -> 422") {
		t.Errorf("got %q, want the method, path and status named", err)
	}
}
