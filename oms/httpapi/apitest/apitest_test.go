package apitest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestTheDocumentLoadsAndValidates(t *testing.T) {
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("got openapi %q, want 3.1", doc.OpenAPI)
	}
}

const (
	orderReq = `{"external_id":"TM-1","customer":{"id":"C1"},"lines":[{"sku":"SKU-1","qty":1,"unit_price":100}],"currency":"CNY","payment":{"status":"paid"},"fulfillment":{"type":"ship"}}`
	order    = `{"id":"7f1c2a9e-3b7d-4c41-9e0a-8d2f4b6a1c3e","external_id":"TM-1","channel":"web","status":"released","payment_status":"paid","reserved_until":null,"customer":{"id":"C1"},"lines":[{"sku":"SKU-1","qty":1,"unit_price":100}],"currency":"CNY","total":100,"fulfillment":{"type":"ship"},"shipments":[],"version":1,"created_at":"2026-01-02T03:00:00Z","updated_at":"2026-01-02T03:00:00Z"}`
	problem  = `{"type":"https://omsd.dev/problems/bad-json","title":"Bad Request","status":400,"detail":"unknown field \"x\""}`
)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// TestTheCheckerCatchesDrift proves the checker fails what a drifting
// handler would answer, and passes the same exchanges when they keep to the
// document.
func TestTheCheckerCatchesDrift(t *testing.T) {
	c, err := New(Ignore("/v1/echo"))
	if err != nil {
		t.Fatal(err)
	}
	jsonCT := header("Content-Type", "application/json", "Location", "/v1/orders/7f1c2a9e-3b7d-4c41-9e0a-8d2f4b6a1c3e")
	problemCT := header("Content-Type", "application/problem+json")
	for _, tc := range []struct {
		name, method, path, reqBody string
		key                         string
		status                      int
		header                      http.Header
		body                        string
		want                        string // "" = no violation; else a part of the message
		side                        string
	}{
		{name: "a valid submission", method: "POST", path: "/v1/orders", reqBody: orderReq, key: "k", status: 201, header: jsonCT, body: order},
		{name: "a response missing a required field", method: "POST", path: "/v1/orders", reqBody: orderReq, key: "k", status: 201, header: jsonCT,
			body: strings.Replace(order, `"currency":"CNY",`, "", 1), want: `property "currency" is missing`, side: "response"},
		{name: "an extra property where additionalProperties is false", method: "POST", path: "/v1/orders", reqBody: orderReq, key: "k", status: 201, header: jsonCT,
			body: strings.Replace(order, `"version":1`, `"version":1,"colour":"red"`, 1), want: "colour", side: "response"},
		{name: "an undocumented status", method: "POST", path: "/v1/orders", reqBody: orderReq, key: "k", status: 418, header: problemCT,
			body: problem, want: "status is not supported", side: "response"},
		{name: "a 201 without its required Location", method: "POST", path: "/v1/orders", reqBody: orderReq, key: "k", status: 201,
			header: header("Content-Type", "application/json"), body: order, want: "Location", side: "response"},
		{name: "a problem that is not a Problem", method: "POST", path: "/v1/orders", reqBody: `{"x":1}`, key: "k", status: 400, header: problemCT,
			body: `{"error":"bad"}`, want: "Problem", side: "response"},
		{name: "an error answered as plain JSON", method: "POST", path: "/v1/orders", reqBody: `{"x":1}`, key: "k", status: 400, header: jsonCT,
			body: problem, want: "application/json", side: "response"},
		{name: "a refused broken request is not held to the document", method: "POST", path: "/v1/orders", reqBody: `{"x":1`, key: "k", status: 400,
			header: problemCT, body: problem},
		{name: "a broken request that was accepted", method: "POST", path: "/v1/orders", reqBody: `{"external_id":"TM-1","colour":"red"}`, key: "k", status: 201,
			header: jsonCT, body: order, want: "colour", side: "request"},
		{name: "an accepted request without a key", method: "POST", path: "/v1/orders", reqBody: orderReq, status: 201,
			header: jsonCT, body: order, want: "security", side: "request"},
		{name: "an undocumented operation that succeeded", method: "DELETE", path: "/v1/orders", key: "k", status: 200,
			header: jsonCT, body: `{}`, want: "document does not have", side: "request"},
		{name: "an undocumented path answered with a problem", method: "GET", path: "/v1/nope", key: "k", status: 404,
			header: problemCT, body: `{"type":"https://omsd.dev/problems/not-found","title":"Not Found","status":404}`},
		{name: "an ignored test route", method: "POST", path: "/v1/echo", status: 200, header: jsonCT, body: `{"anything":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.reqBody))
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			err := c.Check(req, []byte(tc.reqBody), tc.status, tc.header, []byte(tc.body))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want no violation", err)
				}
				return
			}
			var v *Violation
			if !errors.As(err, &v) {
				t.Fatalf("got %v, want a violation", err)
			}
			if !strings.HasPrefix(v.Side, tc.side) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %s violation %q, want %s naming %q", v.Side, err, tc.side, tc.want)
			}
			if !strings.Contains(err.Error(), tc.method+" "+tc.path) {
				t.Errorf("got %q, want the method and path named", err)
			}
		})
	}
}

// TestHandlerAndTransportFailTheTest: both hooks report a violation as a
// test failure and still pass the answer on.
func TestHandlerAndTransportFailTheTest(t *testing.T) {
	drifting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"fine"}`)) // /healthz answers {"status":"ok"}
	})
	for _, hook := range []string{"handler", "transport"} {
		t.Run(hook, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			var resp *http.Response
			var err error
			if hook == "handler" {
				ts := httptest.NewServer(Handler(rec, drifting))
				defer ts.Close()
				resp, err = http.Get(ts.URL + "/healthz")
			} else {
				ts := httptest.NewServer(drifting)
				defer ts.Close()
				resp, err = Client(rec).Get(ts.URL + "/healthz")
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("got %d, want the handler's 200 passed on", resp.StatusCode)
			}
			if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "GET /healthz -> 200: response") {
				t.Errorf("got errors %q, want one naming GET /healthz -> 200", rec.errors)
			}
		})
	}
}

// recordingTB records Error calls instead of failing.
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Error(args ...any) {
	for _, a := range args {
		if e, ok := a.(error); ok {
			r.errors = append(r.errors, e.Error())
		}
	}
}
