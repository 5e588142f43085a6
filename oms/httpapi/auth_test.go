package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi/apitest"
)

// countingChannels is a channel store that counts key lookups.
type countingChannels struct {
	memChannels
	lookups atomic.Int64
}

func newCountingChannels() *countingChannels {
	return &countingChannels{memChannels: memChannels{byHash: map[string]oms.Channel{}, byID: map[string]bool{}}}
}

func (c *countingChannels) ChannelByKeyHash(ctx context.Context, hash []byte) (oms.Channel, error) {
	c.lookups.Add(1)
	return c.memChannels.ChannelByKeyHash(ctx, hash)
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type authFixture struct {
	s     *Server
	h     http.Handler
	store *countingChannels
	clock *clock
	reg   *prometheus.Registry
}

// newAuthFixture builds a server with a counting store, a fixed clock and
// one channel route, served in-process so that each request can come from
// its own address.
func newAuthFixture(t *testing.T, cfg AuthConfig) *authFixture {
	t.Helper()
	f := &authFixture{store: newCountingChannels(), clock: &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}, reg: prometheus.NewRegistry()}
	s, err := New(Config{AdminKey: adminKey, Auth: cfg, Now: f.clock.now, Registerer: f.reg}, f.store)
	if err != nil {
		t.Fatal(err)
	}
	s.Register(func(mux *http.ServeMux, s *Server) {
		mux.HandleFunc("GET /v1/whoami", s.ChannelAuth(func(w http.ResponseWriter, r *http.Request) {
			c, _ := ChannelOf(r.Context())
			writeJSON(w, http.StatusOK, map[string]string{"channel": c.ID})
		}))
	})
	// /v1/whoami is this test's own route, not part of the contract.
	f.s, f.h = s, apitest.Handler(t, s.Handler(), apitest.Ignore("/v1/whoami"))
	return f
}

// call sends method path with key from addr and returns the recorder.
func (f *authFixture) call(method, path, key, addr, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = addr
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w
}

func (f *authFixture) whoami(key, addr string) int {
	return f.call("GET", "/v1/whoami", key, addr, "").Code
}

// storeChannel creates a channel in the store directly, as another
// instance would.
func (f *authFixture) storeChannel(t *testing.T, id string) string {
	t.Helper()
	key, hash := oms.NewAPIKey()
	if err := f.store.CreateChannel(context.Background(), oms.Channel{ID: id, Name: id}, hash); err != nil {
		t.Fatal(err)
	}
	return key
}

func (f *authFixture) failures(reason string) float64 {
	return counterValue(f.s.auth.failed.WithLabelValues(reason))
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

const peer = "192.0.2.10:40000"

func TestAnUnknownKeyIsLookedUpOnce(t *testing.T) {
	f := newAuthFixture(t, AuthConfig{})
	for i := range 3 {
		if got := f.whoami("oms_unknown", peer); got != http.StatusUnauthorized {
			t.Fatalf("request %d: got %d, want 401", i+1, got)
		}
	}
	if got := f.store.lookups.Load(); got != 1 {
		t.Errorf("got %d store lookups for three uses of one unknown key, want 1", got)
	}
	if got := counterValue(f.s.auth.negHits); got != 2 {
		t.Errorf("got %v unknown-key cache hits, want 2", got)
	}
	if got := f.failures(failUnknown); got != 3 {
		t.Errorf("got %v unknown_key failures, want 3", got)
	}
	if got := f.whoami("oms_other", peer); got != http.StatusUnauthorized || f.store.lookups.Load() != 2 {
		t.Errorf("got %d and %d lookups for another unknown key, want 401 and 2", got, f.store.lookups.Load())
	}
}

func TestAKeyCreatedHereWorksAtOnce(t *testing.T) {
	f := newAuthFixture(t, AuthConfig{})
	// The server will hand out this key, which a caller tried before it
	// existed: it is remembered as unknown.
	key, hash := oms.NewAPIKey()
	f.s.newKey = func() (string, []byte) { return key, hash }
	if got := f.whoami(key, peer); got != http.StatusUnauthorized {
		t.Fatalf("got %d before the channel exists, want 401", got)
	}
	w := f.call("POST", "/v1/channels", adminKey, peer, `{"id":"web","name":"Web shop"}`)
	if w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), key) {
		t.Fatalf("got %d %s, want 201 with the key", w.Code, w.Body.String())
	}
	if got := f.whoami(key, peer); got != http.StatusOK {
		t.Errorf("got %d right after the channel was created here, want 200", got)
	}
}

func TestAKeyCreatedElsewhereWorksWithinTheTTL(t *testing.T) {
	f := newAuthFixture(t, AuthConfig{UnknownKeyTTL: 10 * time.Second})
	key, hash := oms.NewAPIKey()
	if got := f.whoami(key, peer); got != http.StatusUnauthorized {
		t.Fatalf("got %d, want 401", got)
	}
	if err := f.store.CreateChannel(context.Background(), oms.Channel{ID: "app", Name: "app"}, hash); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(9 * time.Second)
	if got := f.whoami(key, peer); got != http.StatusUnauthorized {
		t.Errorf("got %d within the TTL, want 401 from memory", got)
	}
	f.clock.advance(time.Second)
	if got := f.whoami(key, peer); got != http.StatusOK {
		t.Errorf("got %d once the TTL passed, want 200", got)
	}
	if got := f.store.lookups.Load(); got != 2 {
		t.Errorf("got %d store lookups, want 2", got)
	}
}

func TestANegativeTTLRemembersNothing(t *testing.T) {
	f := newAuthFixture(t, AuthConfig{UnknownKeyTTL: -1})
	f.whoami("oms_unknown", peer)
	f.whoami("oms_unknown", peer)
	if got := f.store.lookups.Load(); got != 2 {
		t.Errorf("got %d lookups, want 2", got)
	}
}

func TestFailedAuthenticationsPerSourceAre429(t *testing.T) {
	f := newAuthFixture(t, AuthConfig{FailuresPerSec: 1, FailureBurst: 3})
	good := f.storeChannel(t, "web")
	if got := f.whoami(good, peer); got != http.StatusOK {
		t.Fatalf("got %d for a valid key, want 200", got)
	}
	fresh := f.storeChannel(t, "app") // valid, but not yet seen by this server
	for i := range 3 {
		if got := f.whoami(fmt.Sprintf("oms_guess_%d", i), peer); got != http.StatusUnauthorized {
			t.Fatalf("failure %d: got %d, want 401", i+1, got)
		}
	}
	lookups := f.store.lookups.Load()

	w := f.call("GET", "/v1/whoami", "oms_guess_next", peer, "")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("got %d past the budget, want 429", w.Code)
	}
	if ra := w.Header().Get("Retry-After"); ra != "1" {
		t.Errorf("got Retry-After %q, want 1", ra)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" || !strings.Contains(w.Body.String(), TypeURI(oms.SlugRateLimited)) {
		t.Errorf("got %s %s, want a rate-limited problem", ct, w.Body.String())
	}
	for _, tc := range []struct {
		scenario string
		key      string
		method   string
		path     string
		want     int
	}{
		{"no key", "", "GET", "/v1/whoami", 429},
		{"a valid key not yet verified here", fresh, "GET", "/v1/whoami", 429},
		{"a wrong admin key", "oms_guess_admin", "POST", "/v1/channels", 429},
		{"a key already verified passes", good, "GET", "/v1/whoami", 200},
		{"the admin key passes", adminKey, "POST", "/v1/channels", 400},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			if got := f.call(tc.method, tc.path, tc.key, peer, "").Code; got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
	if got := f.store.lookups.Load(); got != lookups {
		t.Errorf("got %d store lookups while throttled, want none", got-lookups)
	}
	if got := f.whoami("oms_guess_0", "198.51.100.7:1"); got != http.StatusUnauthorized {
		t.Errorf("got %d from another address, want 401", got)
	}
	f.clock.advance(time.Second)
	if got := f.whoami(fresh, peer); got != http.StatusOK {
		t.Errorf("got %d for a valid key a second later, want 200", got)
	}
	if got := f.whoami("oms_guess_4", peer); got != http.StatusUnauthorized {
		t.Errorf("got %d for one more failure a second later, want 401", got)
	}
	if got := f.whoami("oms_guess_5", peer); got != http.StatusTooManyRequests {
		t.Errorf("got %d for the failure after it, want 429", got)
	}
	if got := f.failures(failThrottled); got != 5 {
		t.Errorf("got %v throttled failures, want 5", got)
	}
}

func TestAuthMetricsAreExported(t *testing.T) {
	f := newAuthFixture(t, AuthConfig{})
	f.whoami("", peer)
	f.whoami(strings.Repeat("k", maxKeyLen+1), peer)
	f.whoami("oms_unknown", peer)
	f.whoami("oms_unknown", peer)
	f.call("POST", "/v1/channels", "oms_unknown", peer, "")
	metrics := f.call("GET", "/metrics", "", peer, "").Body.String()
	for _, want := range []string{
		`omsd_http_auth_failures_total{reason="malformed_key"} 1`,
		`omsd_http_auth_failures_total{reason="missing_key"} 1`,
		`omsd_http_auth_failures_total{reason="not_admin_key"} 1`,
		`omsd_http_auth_failures_total{reason="throttled"} 0`,
		`omsd_http_auth_failures_total{reason="unknown_key"} 2`,
		`omsd_http_auth_unknown_key_cache_hits_total 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("got metrics without %q", want)
		}
	}
}

func TestAuthMemoryIsBounded(t *testing.T) {
	f := newAuthFixture(t, AuthConfig{UnknownKeys: 2, Sources: 2, FailureBurst: 100})
	for i := range 3 {
		f.whoami(fmt.Sprintf("oms_unknown_%d", i), fmt.Sprintf("192.0.2.%d:1", i+1))
	}
	if got := f.s.auth.unknown.len(); got != 2 {
		t.Errorf("got %d unknown keys remembered, want the cap of 2", got)
	}
	if got := f.s.auth.failures.len(); got != 2 {
		t.Errorf("got %d sources tracked, want the cap of 2", got)
	}
	f.whoami("oms_unknown_0", peer) // the oldest was forgotten: asked again
	f.whoami("oms_unknown_2", peer) // the newest is remembered
	if got := f.store.lookups.Load(); got != 4 {
		t.Errorf("got %d lookups, want 4", got)
	}
}

func TestALookupThatStartedBeforeACreationIsNotRemembered(t *testing.T) {
	u := &unknownKeys{ttl: time.Minute, m: newLRU[string, time.Time](10)}
	now := time.Now()
	gen := u.generation()
	u.created("h") // the key is created while its lookup is in flight
	u.add("h", gen, now)
	if u.has("h", now) {
		t.Errorf("got the key remembered as unknown after its creation, want it forgotten")
	}
	u.add("h", u.generation(), now)
	if !u.has("h", now) || u.has("h", now.Add(time.Minute)) {
		t.Errorf("got a later lookup not remembered for exactly the TTL")
	}
}

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:1234", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:1234", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9]:1", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:1", "fe80::/64"},
		{"not an address", "not an address"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.addr
		if got := sourceOf(r); got != tc.want {
			t.Errorf("sourceOf(%q): got %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestConcurrentAuthentication runs known, new and unknown keys from many
// goroutines (for the race detector) while a channel is created: every
// known key passes and every unknown one is refused. Each key is looked up
// at most once per goroutine before it is remembered, and once more after
// the creation voids the lookups in flight.
func TestConcurrentAuthentication(t *testing.T) {
	f := newAuthFixture(t, AuthConfig{FailuresPerSec: -1})
	known := []string{f.storeChannel(t, "a"), f.storeChannel(t, "b")}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if got := f.whoami(known[i%2], peer); got != http.StatusOK {
					errs <- fmt.Sprintf("known key: got %d", got)
				}
				if got := f.whoami(fmt.Sprintf("oms_unknown_%d", i%5), peer); got != http.StatusUnauthorized {
					errs <- fmt.Sprintf("unknown key: got %d", got)
				}
				if i == 25 && g == 0 {
					w := f.call("POST", "/v1/channels", adminKey, peer, `{"id":"c","name":"c"}`)
					if w.Code != http.StatusCreated {
						errs <- fmt.Sprintf("create: got %d", w.Code)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got, most := f.store.lookups.Load(), int64(2*8+5*8*2); got > most {
		t.Errorf("got %d lookups for 800 requests, want at most %d", got, most)
	}
}
