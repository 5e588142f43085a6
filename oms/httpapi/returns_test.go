package httpapi

import (
	"context"
	"sync"
	"testing"

	"github.com/omsd/omsd/oms"
)

// fakeReturns records each call with the channel it was made for.
type fakeReturns struct {
	mu      sync.Mutex
	calls   []string
	err     error
	created bool
}

func (f *fakeReturns) record(s string) (*oms.Return, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	if f.err != nil {
		return nil, f.err
	}
	return sampleReturn("r1", "o1"), nil
}

func (f *fakeReturns) Request(_ context.Context, channel, orderID, idemKey string, req *oms.ReturnRequest) (*oms.Return, bool, error) {
	r, err := f.record("request " + channel + " " + orderID + " " + idemKey + " " + req.ExternalID)
	return r, f.created, err
}
func (f *fakeReturns) Get(_ context.Context, channel, id string) (*oms.Return, error) {
	return f.record("get " + channel + " " + id)
}
func (f *fakeReturns) ForOrder(_ context.Context, channel, orderID string) ([]*oms.Return, error) {
	r, err := f.record("list " + channel + " " + orderID)
	return []*oms.Return{r}, err
}
func (f *fakeReturns) Approve(_ context.Context, channel, id string) (*oms.Return, error) {
	return f.record("approve " + channel + " " + id)
}
func (f *fakeReturns) Reject(_ context.Context, channel, id, reason string) (*oms.Return, error) {
	return f.record("reject " + channel + " " + id + " " + reason)
}
func (f *fakeReturns) Refund(_ context.Context, channel, id, reference string) (*oms.Return, error) {
	return f.record("refund " + channel + " " + id + " " + reference)
}
func (f *fakeReturns) ApplyWMSEvent(_ context.Context, ev oms.WMSEvent) (*oms.Return, error) {
	return f.record("event " + ev.ReturnID + " " + string(ev.Type))
}

func (f *fakeReturns) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func TestReturnRoutes(t *testing.T) {
	s, ts := newTestServer(t, nil)
	f := &fakeReturns{}
	s.Register(ReturnRoutes(f))
	key := createChannel(t, ts, "web")
	const rid = "7f1c2a9e-3b7d-4c41-9e0a-8d2f4b6a1c3e"
	body := `{"external_id":"RMA-1","reason":"damaged","resolution":"refund","lines":[{"sku":"S","qty":1}]}`
	tooMany := oms.Invalid("more than shipped", oms.FieldError{Field: "lines[0].qty", Message: "at most 1"})
	for _, tc := range []struct {
		name, method, path, key, body string
		created                       bool
		err                           error
		want                          int
		wantCall, wantField           string
		wantType                      oms.Slug
	}{
		{name: "request with a channel key", method: "POST", path: "/v1/orders/o1/returns", key: key, body: body, created: true,
			want: 201, wantCall: "request web o1  RMA-1"},
		{name: "a repeat is 200", method: "POST", path: "/v1/orders/o1/returns", key: key, body: body, want: 200},
		{name: "request with the admin key", method: "POST", path: "/v1/orders/o1/returns", key: adminKey, body: body, created: true,
			want: 201, wantCall: "request  o1  RMA-1"},
		{name: "request past what shipped", method: "POST", path: "/v1/orders/o1/returns", key: key, body: body, err: tooMany,
			want: 422, wantType: oms.SlugValidation, wantField: "lines[0].qty"},
		{name: "request with an unknown field", method: "POST", path: "/v1/orders/o1/returns", key: key, body: `{"external_id":"R","x":1}`,
			want: 400, wantType: oms.SlugBadJSON},
		{name: "request without a key", method: "POST", path: "/v1/orders/o1/returns", body: body, want: 401, wantType: oms.SlugUnauthorized},
		{name: "request with a bad key", method: "POST", path: "/v1/orders/o1/returns", key: "nope", body: body, want: 401, wantType: oms.SlugUnauthorized},
		{name: "list", method: "GET", path: "/v1/orders/o1/returns", key: key, want: 200, wantCall: "list web o1"},
		{name: "get another channel's", method: "GET", path: "/v1/returns/" + rid, key: key,
			err: oms.Errorf(oms.KindNotFound, oms.SlugNotFound, "no such return"), want: 404, wantType: oms.SlugNotFound},
		{name: "approve without a body", method: "POST", path: "/v1/returns/" + rid + "/approve", key: key, want: 200, wantCall: "approve web " + rid},
		{name: "approve with {}", method: "POST", path: "/v1/returns/" + rid + "/approve", key: key, body: `{}`, want: 200},
		{name: "approve with a field", method: "POST", path: "/v1/returns/" + rid + "/approve", key: key, body: `{"x":1}`, want: 400, wantType: oms.SlugBadJSON},
		{name: "reject", method: "POST", path: "/v1/returns/" + rid + "/reject", key: key, body: `{"reason":"worn"}`, want: 200, wantCall: "reject web " + rid + " worn"},
		{name: "refund", method: "POST", path: "/v1/returns/" + rid + "/refund", key: key, body: `{"status":"refunded","reference":"P1"}`,
			want: 200, wantCall: "refund web " + rid + " P1"},
		{name: "refund with another status", method: "POST", path: "/v1/returns/" + rid + "/refund", key: key, body: `{"status":"pending"}`,
			want: 422, wantType: oms.SlugValidation, wantField: "status"},
		{name: "refund before the receipt", method: "POST", path: "/v1/returns/" + rid + "/refund", key: key, body: `{"status":"refunded"}`,
			err: oms.Errorf(oms.KindConflict, oms.SlugInvalidTransition, "not received"), want: 409, wantType: oms.SlugInvalidTransition},
		{name: "warehouse receipt", method: "POST", path: "/v1/returns/" + rid + "/events", key: adminKey,
			body: `{"event_id":"e1","type":"return.received","lines":[{"sku":"S","qty":1,"condition":"sellable"}]}`, want: 200, wantCall: "event " + rid + " return.received"},
		{name: "warehouse receipt for another return", method: "POST", path: "/v1/returns/" + rid + "/events", key: adminKey,
			body: `{"event_id":"e1","type":"return.received","return_id":"x"}`, want: 422, wantType: oms.SlugValidation, wantField: "return_id"},
		{name: "a shipment event at the return door", method: "POST", path: "/v1/returns/" + rid + "/events", key: adminKey,
			body: `{"event_id":"e1","type":"shipment.shipped"}`, want: 422, wantType: oms.SlugValidation, wantField: "type"},
		{name: "warehouse receipt with a channel key", method: "POST", path: "/v1/returns/" + rid + "/events", key: key,
			body: `{"event_id":"e1","type":"return.received"}`, want: 401, wantType: oms.SlugUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.mu.Lock()
			f.err, f.calls, f.created = tc.err, nil, tc.created
			f.mu.Unlock()
			resp, p := do(t, tc.method, ts.URL+tc.path, tc.key, []byte(tc.body))
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d (%+v), want %d", resp.StatusCode, p, tc.want)
			}
			if tc.want == 201 && resp.Header.Get("Location") != "/v1/returns/r1" {
				t.Errorf("got Location %q", resp.Header.Get("Location"))
			}
			if tc.wantType != "" && p.Type != TypeURI(tc.wantType) {
				t.Errorf("got type %q, want %s", p.Type, TypeURI(tc.wantType))
			}
			if tc.wantField != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.wantField) {
				t.Errorf("got errors %+v, want %s named", p.Errors, tc.wantField)
			}
			if tc.wantCall != "" && f.last() != tc.wantCall {
				t.Errorf("got call %q, want %q", f.last(), tc.wantCall)
			}
		})
	}
}
