package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/omsd/omsd/loadtest"
)

const order = `{"external_id":"TM-1","customer":{"id":"C1","email":"c1@example.com","phone":"+8613000000000"},
"ship_to":{"name":"Li Wei","line1":"1 Nanjing Rd","city":"Shanghai","region":"CN-SH","postal_code":"200000","country":"CN","lat":31.2,"lon":121.4},
"lines":[{"sku":"SKU-000001","qty":2,"unit_price":990}],"currency":"CNY","payment":{"status":"paid"},"fulfillment":{"type":"ship"}}`

func do(t *testing.T, method, path, auth, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, req)
	return w
}

func TestAcceptsAnOrderWithAnOrderView(t *testing.T) {
	w := do(t, http.MethodPost, "/v1/orders", "Bearer k1", order)
	if w.Code != http.StatusCreated || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %s: %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var v struct {
		ID            string    `json:"id"`
		Status        string    `json:"status"`
		ReservedUntil time.Time `json:"reserved_until"`
		Lines         []struct {
			SKU string `json:"sku"`
			Qty int64  `json:"qty"`
		} `json:"lines"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(v.ID); err != nil || v.Status != "reserved" || v.ReservedUntil.Before(time.Now()) ||
		len(v.Lines) != 1 || v.Lines[0].SKU != "SKU-000001" || v.Lines[0].Qty != 2 {
		t.Errorf("got %+v", v)
	}
	if w.Header().Get("Location") != "/v1/orders/"+v.ID {
		t.Errorf("got Location %q", w.Header().Get("Location"))
	}
	if w2 := do(t, http.MethodPost, "/v1/orders", "Bearer k1", order); strings.Contains(w2.Body.String(), v.ID) {
		t.Error("two orders got the same id")
	}
}

func TestRefusesWhatOmsdRefusesBeforeItsBusinessLogic(t *testing.T) {
	for _, tt := range []struct {
		name, auth, body string
		status           int
	}{
		{"no key", "", order, http.StatusUnauthorized},
		{"empty bearer", "Bearer ", order, http.StatusUnauthorized},
		{"basic auth", "Basic a2V5", order, http.StatusUnauthorized},
		{"unknown field", "Bearer k", strings.Replace(order, `"currency"`, `"colour":"red","currency"`, 1), http.StatusBadRequest},
		{"malformed", "Bearer k", `{"lines":`, http.StatusBadRequest},
		{"two values", "Bearer k", order + order, http.StatusBadRequest},
		{"no lines", "Bearer k", `{"external_id":"x","lines":[]}`, http.StatusUnprocessableEntity},
		{"zero quantity", "Bearer k", `{"external_id":"x","lines":[{"sku":"A","qty":0}]}`, http.StatusUnprocessableEntity},
		{"over 1 MiB", "Bearer k", `{"external_id":"` + strings.Repeat("x", maxBody) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		w := do(t, http.MethodPost, "/v1/orders", tt.auth, tt.body)
		if w.Code != tt.status || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: got %d %s, want %d problem+json", tt.name, w.Code, w.Header().Get("Content-Type"), tt.status)
		}
	}
}

func TestStoresNothingAndServesNothingElse(t *testing.T) {
	for _, tt := range []struct {
		method, path, auth string
		status             int
	}{
		{http.MethodGet, "/v1/orders/loadtest-preflight", "Bearer k", http.StatusNotFound},
		{http.MethodGet, "/v1/orders/" + uuid.NewString(), "Bearer k", http.StatusNotFound},
		{http.MethodGet, "/v1/orders/x", "", http.StatusUnauthorized},
		{http.MethodGet, "/v1/inventory/SKU-000001", "Bearer k", http.StatusNotFound},
		{http.MethodPost, "/v1/channels", "Bearer k", http.StatusNotFound},
	} {
		w := do(t, tt.method, tt.path, tt.auth, "")
		if w.Code != tt.status || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: got %d %s, want %d problem+json", tt.method, tt.path, w.Code, w.Header().Get("Content-Type"), tt.status)
		}
	}
}

func TestTheLoadClientCountsItsAnswersAccepted(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	tg := loadtest.Target{APIURL: srv.URL, AdminKey: "admin"}
	sf := &loadtest.SeedFile{
		Channels: []loadtest.Channel{{ID: "lt-tmall", APIKey: "k1"}, {ID: "lt-jd", APIKey: "k2"}},
		SKUs:     loadtest.BuildSKUs(50),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := loadtest.Execute(ctx, loadtest.Options{Target: tg, Seed: sf, NoAudit: true,
		Run: loadtest.RunConfig{Closed: true, Duration: 300 * time.Millisecond, Workers: 4, Mix: loadtest.MixConfig{PendingShare: 0.2}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted == 0 || rep.StatusCounts["201"] != rep.Accepted || rep.Accepted != rep.Sent || rep.Errors != 0 {
		t.Errorf("got sent %d accepted %d errors %d status %v problems %v, want every order accepted", rep.Sent, rep.Accepted, rep.Errors, rep.StatusCounts, rep.ProblemTypes)
	}
}
