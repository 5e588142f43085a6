package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi/apitest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const adminKey = "test-admin-key-0123456789"

// memChannels is an in-memory channel store.
type memChannels struct {
	mu     sync.Mutex
	byHash map[string]oms.Channel
	byID   map[string]bool
}

func (m *memChannels) CreateChannel(_ context.Context, c oms.Channel, hash []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID[c.ID] {
		return oms.Errorf(oms.KindConflict, oms.SlugChannelExists, "exists")
	}
	m.byID[c.ID] = true
	m.byHash[string(hash)] = c
	return nil
}

func (m *memChannels) ChannelByKeyHash(_ context.Context, hash []byte) (oms.Channel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.byHash[string(hash)]
	if !ok {
		return c, oms.ErrNotFound
	}
	return c, nil
}

func newTestServer(t *testing.T, checks map[string]func(context.Context) error) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(Config{AdminKey: adminKey, ReadyChecks: checks}, &memChannels{byHash: map[string]oms.Channel{}, byID: map[string]bool{}})
	if err != nil {
		t.Fatal(err)
	}
	s.Register(func(mux *http.ServeMux, s *Server) {
		mux.HandleFunc("POST /v1/echo", s.ChannelAuth(handleJSON(s, http.StatusOK, func(r *http.Request, _ *map[string]any) (map[string]any, error) {
			c, _ := ChannelOf(r.Context())
			return map[string]any{"channel": c.ID}, nil
		})))
	})
	// /v1/echo is this test's own route, not part of the contract.
	ts := httptest.NewServer(apitest.Handler(t, s.Handler(), apitest.Ignore("/v1/echo")))
	t.Cleanup(ts.Close)
	return s, ts
}

func do(t *testing.T, method, url, key string, body []byte) (*http.Response, Problem) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p Problem
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("got Content-Type %q for status %d, want application/problem+json", ct, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatalf("decode problem: %v", err)
		}
		if p.Status != resp.StatusCode || p.Type == "" || p.Title == "" {
			t.Errorf("got problem %+v, want type, title and status %d", p, resp.StatusCode)
		}
	}
	return resp, p
}

func createChannel(t *testing.T, ts *httptest.Server, id string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", ts.URL+"/v1/channels", strings.NewReader(`{"id":"`+id+`","name":"Shop `+id+`"}`))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create channel: got %d, want 201", resp.StatusCode)
	}
	var out struct {
		APIKey string `json:"api_key"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if !strings.HasPrefix(out.APIKey, "oms_") {
		t.Fatalf("got api key %q", out.APIKey)
	}
	return out.APIKey
}

func TestAuthAndBodyLimits(t *testing.T) {
	_, ts := newTestServer(t, nil)
	key := createChannel(t, ts, "tmall")
	big := bytes.Repeat([]byte("a"), 2<<20)
	big = append(append([]byte(`{"x":"`), big...), '"', '}')
	tests := []struct {
		scenario string
		method   string
		path     string
		key      string
		body     string
		raw      []byte
		status   int
		slug     oms.Slug
	}{
		{"a request with no key is 401", "POST", "/v1/echo", "", `{}`, nil, 401, oms.SlugUnauthorized},
		{"a request with a bad key is 401", "POST", "/v1/echo", "oms_nope", `{}`, nil, 401, oms.SlugUnauthorized},
		{"a channel key cannot call an admin route", "POST", "/v1/channels", key, `{"id":"x","name":"x"}`, nil, 401, oms.SlugUnauthorized},
		{"the admin key cannot submit as a channel", "POST", "/v1/echo", adminKey, `{}`, nil, 401, oms.SlugUnauthorized},
		{"a 2 MiB body is 413", "POST", "/v1/echo", key, "", big, 413, oms.SlugBodyTooLarge},
		{"broken JSON is 400", "POST", "/v1/echo", key, `{"a":`, nil, 400, oms.SlugBadJSON},
		{"two JSON values are 400", "POST", "/v1/echo", key, `{} {}`, nil, 400, oms.SlugBadJSON},
		{"invalid UTF-8 is 400", "POST", "/v1/echo", key, "{\"a\":\"\xff\"}", nil, 400, oms.SlugBadJSON},
		{"an unknown field of a channel is 400 naming it", "POST", "/v1/channels", adminKey, `{"id":"a","name":"b","colour":1}`, nil, 400, oms.SlugBadJSON},
		{"a bad channel id is 422", "POST", "/v1/channels", adminKey, `{"id":"no spaces","name":""}`, nil, 422, oms.SlugValidation},
		{"a duplicate channel is 409", "POST", "/v1/channels", adminKey, `{"id":"tmall","name":"again"}`, nil, 409, oms.SlugChannelExists},
		{"an unknown route is 404", "GET", "/v1/nothing", key, "", nil, 404, oms.SlugNotFound},
		{"a valid key passes", "POST", "/v1/echo", key, `{"a":1}`, nil, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			body := tc.raw
			if body == nil {
				body = []byte(tc.body)
			}
			resp, p := do(t, tc.method, ts.URL+tc.path, tc.key, body)
			if resp.StatusCode != tc.status {
				t.Fatalf("got status %d (%+v), want %d", resp.StatusCode, p, tc.status)
			}
			if tc.slug != "" && p.Type != TypeURI(tc.slug) {
				t.Errorf("got type %q, want %q", p.Type, TypeURI(tc.slug))
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("got no X-Request-Id")
			}
		})
	}
	t.Run("validation names every field at fault", func(t *testing.T) {
		_, p := do(t, "POST", ts.URL+"/v1/channels", adminKey, []byte(`{"id":"no spaces","name":"","burst":-1}`))
		fields := map[string]bool{}
		for _, f := range p.Errors {
			fields[f.Field] = true
		}
		for _, want := range []string{"id", "name", "burst"} {
			if !fields[want] {
				t.Errorf("got fields %v, want %q among them", p.Errors, want)
			}
		}
	})
}

func TestMetricsCountRequestsByRouteAndStatus(t *testing.T) {
	_, ts := newTestServer(t, nil)
	do(t, "POST", ts.URL+"/v1/echo", "", []byte(`{}`))
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	for _, want := range []string{
		`omsd_http_requests_total{route="POST /v1/echo",status="401"} 1`,
		`omsd_http_request_duration_seconds_bucket{route="POST /v1/echo",status="401"`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("got metrics without %q", want)
		}
	}
}

func TestReadyzFailsWhenRedisIsStopped(t *testing.T) {
	r := stacktest.NewRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer rdb.Close()
	_, ts := newTestServer(t, map[string]func(context.Context) error{
		"redis": func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
	})
	resp, err := http.Get(ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("got %d with Redis up, want 200", resp.StatusCode)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("got %d with Redis stopped, want 503", resp.StatusCode)
	}
	checks, _ := body["checks"].(map[string]any)
	if s, _ := checks["redis"].(string); !strings.HasPrefix(s, "failing") {
		t.Errorf("got checks %v, want redis failing", checks)
	}
}
