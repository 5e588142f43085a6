package httpapi

import (
	"context"
	"sync"
	"testing"

	"github.com/omsd/omsd/oms"
)

// fakeFulfillment records calls and answers with a canned order or error.
type fakeFulfillment struct {
	mu    sync.Mutex
	calls []string
	ev    oms.WMSEvent
	err   error
}

func (f *fakeFulfillment) record(s string) (*oms.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	if f.err != nil {
		return nil, f.err
	}
	return sampleOrder("7f1c2a9e-3b7d-4c41-9e0a-8d2f4b6a1c3f", oms.OrderCancelled), nil
}

func (f *fakeFulfillment) Cancel(_ context.Context, channel, id, reason string) (*oms.Order, error) {
	return f.record("cancel " + channel + " " + id + " " + reason)
}

func (f *fakeFulfillment) Pay(_ context.Context, channel, id string) (*oms.Order, error) {
	return f.record("pay " + channel + " " + id)
}

func (f *fakeFulfillment) ApplyWMSEvent(_ context.Context, ev oms.WMSEvent) (*oms.Order, error) {
	f.mu.Lock()
	f.ev = ev
	f.mu.Unlock()
	return f.record("event " + ev.ShipmentID + " " + string(ev.Type))
}

func (f *fakeFulfillment) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func TestFulfillmentRoutes(t *testing.T) {
	s, ts := newTestServer(t, nil)
	f := &fakeFulfillment{}
	s.Register(FulfillmentRoutes(f))
	key := createChannel(t, ts, "web")
	const sid = "7f1c2a9e-3b7d-4c41-9e0a-8d2f4b6a1c3e"

	for _, tc := range []struct {
		name, method, path, key, body string
		err                           error
		want                          int
		wantCall                      string
		wantType                      oms.Slug
		wantReturnsURL                string
	}{
		{name: "cancel with a reason", method: "POST", path: "/v1/orders/o1/cancel", key: key, body: `{"reason":"changed my mind"}`,
			want: 200, wantCall: "cancel web o1 changed my mind"},
		{name: "cancel without a body", method: "POST", path: "/v1/orders/o1/cancel", key: key,
			want: 200, wantCall: "cancel web o1 "},
		{name: "cancel with an unknown field", method: "POST", path: "/v1/orders/o1/cancel", key: key, body: `{"why":"x"}`,
			want: 400, wantType: oms.SlugBadJSON},
		{name: "cancel too late", method: "POST", path: "/v1/orders/o1/cancel", key: key, body: `{}`,
			err: oms.Errorf(oms.KindConflict, oms.SlugAlreadyShipped, "too late"), want: 409, wantType: oms.SlugAlreadyShipped,
			wantReturnsURL: "/v1/orders/o1/returns"},
		{name: "cancel another channel's order", method: "POST", path: "/v1/orders/o1/cancel", key: key, body: `{}`,
			err: oms.Errorf(oms.KindNotFound, oms.SlugNotFound, "no such order"), want: 404, wantType: oms.SlugNotFound},
		{name: "cancel without a key", method: "POST", path: "/v1/orders/o1/cancel", body: `{}`, want: 401, wantType: oms.SlugUnauthorized},
		{name: "pay", method: "POST", path: "/v1/orders/o1/payment", key: key, body: `{"status":"paid"}`,
			want: 200, wantCall: "pay web o1"},
		{name: "pay with another status", method: "POST", path: "/v1/orders/o1/payment", key: key, body: `{"status":"pending"}`,
			want: 422, wantType: oms.SlugValidation},
		{name: "pay after expiry", method: "POST", path: "/v1/orders/o1/payment", key: key, body: `{"status":"paid"}`,
			err: oms.Errorf(oms.KindConflict, oms.SlugPaymentExpired, "deadline passed"), want: 409, wantType: oms.SlugPaymentExpired},
		{name: "pay with the admin key", method: "POST", path: "/v1/orders/o1/payment", key: adminKey, body: `{"status":"paid"}`,
			want: 401, wantType: oms.SlugUnauthorized},
		{name: "warehouse event", method: "POST", path: "/v1/shipments/" + sid + "/events", key: adminKey,
			body: `{"event_id":"e1","type":"shipment.shipped","tracking_number":"T1"}`, want: 200, wantCall: "event " + sid + " shipment.shipped"},
		{name: "warehouse event for another shipment", method: "POST", path: "/v1/shipments/" + sid + "/events", key: adminKey,
			body: `{"event_id":"e1","type":"shipment.shipped","shipment_id":"x"}`, want: 422, wantType: oms.SlugValidation},
		{name: "warehouse event with a channel key", method: "POST", path: "/v1/shipments/" + sid + "/events", key: key,
			body: `{"event_id":"e1","type":"shipment.shipped"}`, want: 401, wantType: oms.SlugUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.mu.Lock()
			f.err, f.calls = tc.err, nil
			f.mu.Unlock()
			resp, p := do(t, tc.method, ts.URL+tc.path, tc.key, []byte(tc.body))
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d (%+v), want %d", resp.StatusCode, p, tc.want)
			}
			if tc.wantType != "" && p.Type != TypeURI(tc.wantType) {
				t.Errorf("got type %q, want %s", p.Type, TypeURI(tc.wantType))
			}
			if p.ReturnsURL != tc.wantReturnsURL {
				t.Errorf("got returns_url %q, want %q", p.ReturnsURL, tc.wantReturnsURL)
			}
			if tc.wantCall != "" && f.last() != tc.wantCall {
				t.Errorf("got call %q, want %q", f.last(), tc.wantCall)
			}
		})
	}
	if f.ev.TrackingNumber != "T1" || f.ev.EventID != "e1" {
		t.Errorf("got event %+v, want the body's event id and tracking number", f.ev)
	}
}
