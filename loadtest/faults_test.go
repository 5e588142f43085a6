package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omsd/omsd/loadtest/fakeoms"
)

func TestParseFaultSpec(t *testing.T) {
	f, err := ParseFaultSpec("pg-stall@30s")
	if err != nil || f.Kind != FaultPGStall || f.Offset != 30*time.Second {
		t.Errorf("got %+v, %v; want pg-stall at 30s", f, err)
	}
	for _, bad := range []string{"pg-stall", "nope@1s", "redis-flush@soon", "omsd-kill@-1s", "@1s"} {
		if _, err := ParseFaultSpec(bad); err == nil {
			t.Errorf("%q: got no error", bad)
		}
	}
}

// fakeInjector makes the fake API answer 503 with Retry-After for the
// length of each fault, and records the faults.
type fakeInjector struct {
	f   *fakeoms.Server
	d   time.Duration
	mu  sync.Mutex
	evs []FaultEvent
}

func (fi *fakeInjector) Inject(_ context.Context, kind string) (FaultEvent, error) {
	if kind == FaultBrokerRestart {
		return FaultEvent{}, errors.New("the broker is not run by omsd dev")
	}
	start := time.Now().UTC()
	fi.f.SetIntercept(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.Method != http.MethodPost {
			return false
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	fi.mu.Lock()
	ev := FaultEvent{ID: len(fi.evs) + 1, Kind: kind, StartedAt: start, Duration: fi.d.Milliseconds()}
	fi.evs = append(fi.evs, ev)
	fi.mu.Unlock()
	time.AfterFunc(fi.d, func() {
		fi.f.SetIntercept(nil)
		end := time.Now().UTC()
		fi.mu.Lock()
		fi.evs[ev.ID-1].EndedAt = &end
		fi.mu.Unlock()
	})
	return ev, nil
}

func (fi *fakeInjector) Faults(context.Context) ([]FaultEvent, error) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	return append([]FaultEvent(nil), fi.evs...), nil
}

func TestRunInjectsFaultsAtTheirOffsetsAndReportsWhatClientsSaw(t *testing.T) {
	f, tg := startFake(t)
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 20, Nodes: 3, Stock: 1000})
	inj := &fakeInjector{f: f, d: 300 * time.Millisecond}
	rep, err := Execute(testContext(t, 60*time.Second), Options{
		Target: tg, Seed: sf,
		Run: RunConfig{Rate: 50, Duration: 2 * time.Second, Workers: 16, Injector: inj,
			Faults: []FaultSpec{{FaultRedisFlush, 1200 * time.Millisecond}, {FaultPGStall, 400 * time.Millisecond}, {FaultBrokerRestart, time.Second}}},
		Client: ClientConfig{Retries: 3, NoRetry503: true}, Settle: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Faults) != 3 {
		t.Fatalf("got %d faults in the report, want 3: %+v", len(rep.Faults), rep.Faults)
	}
	pg, broker, flush := rep.Faults[0], rep.Faults[1], rep.Faults[2]
	if pg.Kind != FaultPGStall || broker.Kind != FaultBrokerRestart || flush.Kind != FaultRedisFlush {
		t.Fatalf("got faults %s, %s, %s, want them by offset", pg.Kind, broker.Kind, flush.Kind)
	}
	if pg.OffsetS != 0.4 || pg.StartS < 0.4 || pg.StartS > 0.9 {
		t.Errorf("pg-stall: got intended %.3fs, actual %.3fs; want 0.4 and shortly after", pg.OffsetS, pg.StartS)
	}
	if !pg.Ended || pg.DurationS < 0.3 || pg.DurationS > 1 {
		t.Errorf("pg-stall: got ended %v duration %.3fs, want the injector's end (about 0.3s)", pg.Ended, pg.DurationS)
	}
	if pg.Window["503"] == 0 || pg.Window["201"] == 0 {
		t.Errorf("pg-stall window: got %v, want the 503s of the fault and the 201s after it", pg.Window)
	}
	if pg.WindowS[1]-pg.WindowS[0] < FaultWindowTail.Seconds() {
		t.Errorf("pg-stall window %v is shorter than the fault plus %s", pg.WindowS, FaultWindowTail)
	}
	if broker.Error == "" || !strings.Contains(broker.Error, "not run by omsd dev") {
		t.Errorf("broker-restart: got error %q, want the injector's refusal", broker.Error)
	}
	// With --no-retry-503 the 503s are the answer: counted, not retried,
	// and their orders looked up (the fake stored none of them).
	if rep.Final503 == 0 || rep.Share503 <= 0 || rep.Retries != 0 {
		t.Errorf("got %d final 503s (share %.3f), %d retries; want 503s counted, none retried", rep.Final503, rep.Share503, rep.Retries)
	}
	if rep.AcceptedLatencyMs.P99 <= 0 || rep.AcceptedLatencyMs.P99 > rep.LatencyMs.Max {
		t.Errorf("got p99 of 2xx %.2f ms (max of all %.2f), want a positive figure within the run's", rep.AcceptedLatencyMs.P99, rep.LatencyMs.Max)
	}
	if !rep.Passed() || rep.Audit.GaveUpOrders != int(rep.Final503) || rep.Audit.GaveUpNotStored != int(rep.Final503) {
		t.Errorf("got audit %+v, want a pass with every 503 looked up and not stored", rep.Audit)
	}
	var seen503 bool
	for _, s := range rep.Series {
		seen503 = seen503 || s.Status["503"] > 0
	}
	if !seen503 {
		t.Errorf("no second of the series counts a 503")
	}

	var tbl bytes.Buffer
	if err := rep.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fault", "pg-stall", "intended 0.4s", "503: ", "broker-restart", "ERROR", "p99 of 2xx", "answered 503"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
	var h strings.Builder
	if err := rep.WriteHTML(&h); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(h.String(), `stroke="#d62728" stroke-width="1.5" stroke-dasharray="4 3"`); n != 2*3 {
		t.Errorf("got %d fault markers in the HTML charts, want 2 injected faults on 3 charts: %+v series %d", n, rep.Faults, len(rep.Series))
	}
	b, _ := json.Marshal(rep)
	for _, want := range []string{`"faults":[`, `"window_status_counts":{`, `"share_503":`, `"accepted_latency_ms":{`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON report lacks %s", want)
		}
	}
}

func TestRunRefusesFaultsWithoutAnInjectorOrOutsideTheRun(t *testing.T) {
	_, tg := startFake(t)
	sf, c := mustSeed(t, tg, SeedConfig{SKUs: 3, Nodes: 1, Stock: 10})
	if _, err := Run(testContext(t, 5*time.Second), c, sf, RunConfig{Rate: 1, Duration: time.Second,
		Faults: []FaultSpec{{FaultPGStall, 0}}}); err == nil {
		t.Error("got no error for faults without an injector")
	}
	if _, err := Run(testContext(t, 5*time.Second), c, sf, RunConfig{Rate: 1, Duration: time.Second,
		Injector: &fakeInjector{}, Faults: []FaultSpec{{FaultPGStall, time.Second}}}); err == nil {
		t.Error("got no error for a fault at the end of the run")
	}
	if _, err := Execute(testContext(t, 5*time.Second), Options{Target: tg, Seed: sf,
		Run: RunConfig{Rate: 1, Duration: time.Second, Faults: []FaultSpec{{FaultPGStall, 0}}}}); err == nil || !strings.Contains(err.Error(), "omsd dev") {
		t.Errorf("got %v, want an error saying faults need omsd dev", err)
	}
}

func TestGaveUpOrderStoredWithoutItsStockIsAFinding(t *testing.T) {
	// The server stores every order but answers 500, and drops the
	// shipments (and reservation) of every third: a client that gave up
	// leaves an order without its stock, which the audit must name.
	f := fakeoms.New()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/orders" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			rec := httptest.NewRecorder()
			f.ServeHTTP(rec, r)
			var o struct{ ID string }
			if json.Unmarshal(rec.Body.Bytes(), &o) == nil && o.ID != "" && n.Add(1)%3 == 0 {
				f.StripShipments(o.ID)
			}
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()
	tg := Target{APIURL: srv.URL, AdminKey: f.AdminKey}
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 10, Nodes: 3, Stock: 100})
	rep, err := Execute(testContext(t, 30*time.Second), Options{
		Target: tg, Seed: sf, Run: RunConfig{Rate: 50, Duration: 600 * time.Millisecond, Workers: 4},
		Client: ClientConfig{Retries: 0}, Settle: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	a := rep.Audit
	if a == nil || a.GaveUpOrders != 30 || a.GaveUpStored != 30 || a.GaveUpUnheld != 10 {
		t.Fatalf("got audit %+v, want 30 gave up, all stored, 10 without stock", a)
	}
	if rep.Passed() {
		t.Error("the audit passed although 10 stored orders hold no stock")
	}
	var named int
	for _, fd := range a.Findings {
		if fd.Check == "gave_up_unheld" {
			named++
		}
	}
	if named != 10 {
		t.Errorf("got %d gave_up_unheld findings, want 10", named)
	}
}

func TestClientSpreadsRequestsAndRetriesOnTheNextURL(t *testing.T) {
	f, tg := startFake(t)
	var hitsA, hitsB atomic.Int64
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hitsA.Add(1); f.ServeHTTP(w, r) }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hitsB.Add(1); f.ServeHTTP(w, r) }))
	defer b.Close()
	// A third instance that is down: connection refused.
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	tg.APIURLs = []string{a.URL, downURL, b.URL}
	c := NewClient(tg, ClientConfig{Retries: 2, Backoff: time.Millisecond})
	defer c.Close()
	ctx := testContext(t, 10*time.Second)
	for range 30 {
		r, err := c.Do(ctx, http.MethodGet, "/v1/inventory/none", tg.AdminKey, "", nil)
		if err != nil || r.Status != http.StatusNotFound {
			t.Fatalf("got %d, %v; want every request answered by a live instance", r.Status, err)
		}
	}
	if hitsA.Load() < 10 || hitsB.Load() < 10 {
		t.Errorf("got %d and %d requests on the live instances, want each at least its share", hitsA.Load(), hitsB.Load())
	}
}
