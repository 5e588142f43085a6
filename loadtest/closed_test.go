package loadtest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omsd/omsd/loadtest/fakeoms"
)

// startCountingFake serves a fake API that counts the order POSTs in
// flight and remembers the most seen at once, and every request by
// method and path.
func startCountingFake(tb testing.TB) (*fakeoms.Server, Target, *atomic.Int64, *atomic.Int64) {
	tb.Helper()
	f := fakeoms.New()
	var inFlight, maxInFlight, inventoryReads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/orders" {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
			}
		}
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/inventory") {
			inventoryReads.Add(1)
		}
		f.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	return f, Target{APIURL: srv.URL, AdminKey: f.AdminKey}, &maxInFlight, &inventoryReads
}

func TestClosedLoopSendsAsFastAsItIsAnsweredAndNoFaster(t *testing.T) {
	f, tg, maxInFlight, _ := startCountingFake(t)
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 20, Nodes: 6, Stock: 100000})
	// 8 clients against 50ms per request: 160 requests/s, never more
	// than 8 in flight, and each latency is the 50ms of service.
	f.SetDelay(50 * time.Millisecond)
	c := NewClient(tg, ClientConfig{})
	defer c.Close()
	res, err := Run(testContext(t, 20*time.Second), c, sf, RunConfig{Closed: true, Duration: time.Second, Workers: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Closed || res.OfferedRate != 0 || res.Profile != "" {
		t.Errorf("got closed %v offered %v profile %q, want a closed run with no offered rate or profile", res.Closed, res.OfferedRate, res.Profile)
	}
	if got := maxInFlight.Load(); got > 8 || got < 6 {
		t.Errorf("got at most %d requests in flight, want 8 (never more than the clients)", got)
	}
	if got := f.OrderPosts.Load(); got < 120 || got > 168 {
		t.Errorf("server got %d orders in 1s, want about 8 / 50ms = 160", got)
	}
	if res.Sent != res.Scheduled || res.Unsent != 0 || res.StatusCounts["201"] != res.Sent {
		t.Errorf("got scheduled %d sent %d unsent %d status %v, want every job sent and accepted", res.Scheduled, res.Sent, res.Unsent, res.StatusCounts)
	}
	if lat, svc := res.Latency.Quantile(0.99), res.ServiceTime.Quantile(0.99); lat != svc || lat > 150*time.Millisecond {
		t.Errorf("got p99 latency %v and service time %v, want them equal and about 50ms (no queueing in a closed loop)", lat, svc)
	}
	if res.SendLag.Max() > time.Millisecond {
		t.Errorf("got send lag up to %v, want none: a closed loop sends on receipt", res.SendLag.Max())
	}
	if res.Elapsed < time.Second || res.Elapsed > 1300*time.Millisecond {
		t.Errorf("got elapsed %v, want the 1s plus the last answers", res.Elapsed)
	}
	rep := NewReport(res, tg.APIURL)
	if rep.Mode != "closed" || rep.OfferedRate != 0 || rep.AchievedRate < 110 || rep.AchievedRate > 168 {
		t.Errorf("got mode %q offered %.1f achieved %.1f, want closed, 0 and about 160/s", rep.Mode, rep.OfferedRate, rep.AchievedRate)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "closed loop  8 clients") || !strings.Contains(table.String(), "offered: none") {
		t.Errorf("the table does not say it is a closed loop:\n%s", table.String())
	}
}

func TestClosedLoopNeedsADurationButNoRate(t *testing.T) {
	_, tg := startFake(t)
	sf, c := mustSeed(t, tg, SeedConfig{SKUs: 5, Nodes: 1, Stock: 10})
	if _, err := Run(testContext(t, 5*time.Second), c, sf, RunConfig{Closed: true, Workers: 2}); err == nil {
		t.Error("a closed loop without a duration: got no error")
	}
	res, err := Run(testContext(t, 5*time.Second), c, sf, RunConfig{Closed: true, Duration: 100 * time.Millisecond, Workers: 2})
	if err != nil || res.Sent == 0 {
		t.Errorf("a closed loop without a rate: got %v with %d sent, want a run", err, res.Sent)
	}
}

func TestClosedLoopInjectsFaults(t *testing.T) {
	f, tg := startFake(t)
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 20, Nodes: 3, Stock: 100000})
	f.SetDelay(5 * time.Millisecond)
	inj := &fakeInjector{f: f, d: 300 * time.Millisecond}
	rep, err := Execute(testContext(t, 60*time.Second), Options{
		Target: tg, Seed: sf,
		Run:    RunConfig{Closed: true, Duration: 1500 * time.Millisecond, Workers: 4, Injector: inj, Faults: []FaultSpec{{Kind: FaultPGStall, Offset: 500 * time.Millisecond}}},
		Client: ClientConfig{Backoff: 20 * time.Millisecond},
		Settle: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Faults) != 1 || rep.Faults[0].Error != "" || rep.Faults[0].StartS < 0.45 || rep.Faults[0].StartS > 0.7 {
		t.Fatalf("got faults %+v, want one pg-stall at about 0.5s", rep.Faults)
	}
	if rep.Attempts503 == 0 || rep.Faults[0].Window["201"] == 0 {
		t.Errorf("got %d attempts answered 503 and window %v, want the clients to see the fault and recover", rep.Attempts503, rep.Faults[0].Window)
	}
	if !rep.Passed() {
		t.Errorf("audit: %+v %s", rep.Audit, rep.AuditError)
	}
}

func TestExecuteWithoutAuditOnlyRunsTheLoad(t *testing.T) {
	f, tg, _, inventoryReads := startCountingFake(t)
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 20, Nodes: 3, Stock: 1000})
	before := inventoryReads.Load()
	var log bytes.Buffer
	start := time.Now()
	rep, err := Execute(testContext(t, 30*time.Second), Options{
		Target: tg, Seed: sf, NoAudit: true, Log: &log,
		Run:    RunConfig{Closed: true, Duration: 300 * time.Millisecond, Workers: 4},
		Settle: 5 * time.Second, // not waited for
	})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("took %v, want no settling", time.Since(start))
	}
	if got := inventoryReads.Load() - before; got != 0 {
		t.Errorf("got %d stock reads, want none without an audit", got)
	}
	if !rep.NotAudited || rep.Audit != nil || !strings.Contains(rep.AuditError, "not audited") || rep.Passed() {
		t.Errorf("got not audited %v audit %v error %q, want a report that says it was not audited", rep.NotAudited, rep.Audit, rep.AuditError)
	}
	if rep.Accepted == 0 || rep.Accepted != int64(len(f.OrderIDs())) {
		t.Errorf("got %d accepted, server has %d", rep.Accepted, len(f.OrderIDs()))
	}
	var table bytes.Buffer
	_ = rep.WriteTable(&table)
	if !strings.Contains(table.String(), "NOT RUN") || !strings.Contains(table.String(), "not audited") {
		t.Errorf("table does not say the run was not audited:\n%s", table.String())
	}
	if strings.Contains(log.String(), "snapshot") || strings.Contains(log.String(), "settle") {
		t.Errorf("log mentions a snapshot or settling:\n%s", log.String())
	}
}
