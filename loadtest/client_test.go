package loadtest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

type seenRequest struct {
	key, auth string
	body      []byte
}

// flakyServer fails the first `failures` attempts of every Idempotency-Key
// (with status, or by dropping the connection when status is 0) and
// answers 201 afterwards, remembering every attempt.
func flakyServer(t *testing.T, failures, status int) (*httptest.Server, func() []seenRequest) {
	t.Helper()
	var (
		mu   sync.Mutex
		seen []seenRequest
		per  = map[string]int{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		seen = append(seen, seenRequest{key: key, auth: r.Header.Get("Authorization"), body: body})
		per[key]++
		n := per[key]
		mu.Unlock()
		if n <= failures {
			if status == 0 {
				hj, _ := w.(http.Hijacker)
				conn, _, _ := hj.Hijack()
				conn.Close()
				return
			}
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"ord-` + key + `","status":"released"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []seenRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]seenRequest(nil), seen...)
	}
}

func TestRetriesReuseTheIdempotencyKeyAndBody(t *testing.T) {
	tests := []struct {
		scenario     string
		failures     int
		status       int
		retries      int
		wantStatus   int
		wantAttempts int
		wantErr      bool
	}{
		{"a 503 is retried with the same key and body", 2, http.StatusServiceUnavailable, 2, http.StatusCreated, 3, false},
		{"a 429 is retried", 1, http.StatusTooManyRequests, 2, http.StatusCreated, 2, false},
		{"a dropped connection is retried", 2, 0, 3, http.StatusCreated, 3, false},
		{"retries run out and the last 500 is returned", 5, http.StatusInternalServerError, 2, http.StatusInternalServerError, 3, false},
		{"retries run out on dropped connections with an error", 5, 0, 1, 0, 2, true},
		{"a 409 is final", 5, http.StatusConflict, 3, http.StatusConflict, 1, false},
		{"a 422 is final", 5, http.StatusUnprocessableEntity, 3, http.StatusUnprocessableEntity, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			srv, seen := flakyServer(t, tt.failures, tt.status)
			c := NewClient(Target{APIURL: srv.URL, AdminKey: "adm"}, ClientConfig{Retries: tt.retries, Backoff: time.Millisecond, Timeout: 2 * time.Second})
			defer c.Close()
			body := []byte(`{"external_id":"TM-1","lines":[{"sku":"SKU-000001","qty":1,"unit_price":990}]}`)
			resp, err := c.Do(testContext(t, 10*time.Second), http.MethodPost, "/v1/orders", "ch-key", "idem-123", body)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if resp.Status != tt.wantStatus || resp.Attempts != tt.wantAttempts {
				t.Errorf("got status %d after %d attempts, want %d after %d", resp.Status, resp.Attempts, tt.wantStatus, tt.wantAttempts)
			}
			reqs := seen()
			if len(reqs) != tt.wantAttempts {
				t.Fatalf("server saw %d attempts, want %d", len(reqs), tt.wantAttempts)
			}
			for i, r := range reqs {
				if r.key != "idem-123" || !bytes.Equal(r.body, body) || r.auth != "Bearer ch-key" {
					t.Errorf("attempt %d: got key %q auth %q body %s, want the same key, key and body every time", i+1, r.key, r.auth, r.body)
				}
			}
		})
	}
}

func TestRunRetriesOrdersWithTheirOwnKeyAndBody(t *testing.T) {
	f, tg := startFake(t)
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 30, Nodes: 6, Stock: 1000})
	var (
		mu    sync.Mutex
		tries = map[string][][]byte{}
	)
	f.SetIntercept(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/orders" {
			return false
		}
		k := r.Header.Get("Idempotency-Key")
		mu.Lock()
		tries[k] = append(tries[k], body)
		first := len(tries[k]) == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusBadGateway) // every order fails once
			return true
		}
		return false
	})
	c := NewClient(tg, ClientConfig{Retries: 2, Backoff: time.Millisecond})
	defer c.Close()
	res, err := Run(testContext(t, 20*time.Second), c, sf, RunConfig{Rate: 100, Duration: 300 * time.Millisecond, Workers: 8})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != 30 || res.StatusCounts["201"] != 30 || res.Retries != 30 {
		t.Errorf("got %d scheduled, status counts %v, %d retries; want 30 answered 201 after 30 retries", res.Scheduled, res.StatusCounts, res.Retries)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tries) != 30 {
		t.Fatalf("got %d distinct idempotency keys, want 30", len(tries))
	}
	for k, bodies := range tries {
		if len(bodies) != 2 || !bytes.Equal(bodies[0], bodies[1]) {
			t.Errorf("key %s: got %d attempts with equal bodies %v, want 2 identical", k, len(bodies), len(bodies) == 2 && bytes.Equal(bodies[0], bodies[1]))
		}
	}
}
