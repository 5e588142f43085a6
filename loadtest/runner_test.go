package loadtest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunKeepsItsScheduleWhenTheServerIsSlow(t *testing.T) {
	f, tg := startFake(t)
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 20, Nodes: 6, Stock: 1000})
	// 5 workers against 200ms per request serve 25/s; 50/s are offered
	// for one second. A closed-loop client would send 25 and report 200ms;
	// the open model sends all 50 intended in the first second, and the
	// ones that waited for a worker report the wait.
	f.SetDelay(200 * time.Millisecond)
	c := NewClient(tg, ClientConfig{})
	defer c.Close()
	res, err := Run(testContext(t, 20*time.Second), c, sf, RunConfig{Rate: 50, Duration: time.Second, Workers: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != 50 || res.Series[0].Scheduled != 50 {
		t.Errorf("got %d scheduled (%d intended in the first second), want 50 and 50", res.Scheduled, res.Series[0].Scheduled)
	}
	if got := f.OrderPosts.Load(); got != 50 {
		t.Errorf("server got %d orders, want all 50 despite being slow", got)
	}
	if res.StatusCounts["201"] != 50 {
		t.Errorf("got status counts %v, want 50 × 201", res.StatusCounts)
	}
	if res.Series[0].Sent >= 50 {
		t.Errorf("got %d sent in the first second, want fewer than 50: the workers were busy", res.Series[0].Sent)
	}
	// The last arrival is intended at 0.98s and can start only after
	// 45 others took 9 rounds of 200ms: about 1.8s + 0.2s - 0.98s ≈ 1s.
	if max := res.Latency.Max(); max < 800*time.Millisecond {
		t.Errorf("got max latency %v, want ≥ 800ms: the queueing delay must count", max)
	}
	if p50, svc := res.Latency.Quantile(0.5), res.ServiceTime.Quantile(0.5); p50 < 350*time.Millisecond || svc > 300*time.Millisecond {
		t.Errorf("got p50 latency %v and service time %v, want latency ≥ 350ms with service time ≈ 200ms", p50, svc)
	}
	if res.SendLag.Max() < 600*time.Millisecond {
		t.Errorf("got max send lag %v, want ≥ 600ms", res.SendLag.Max())
	}
	if res.Elapsed < 1800*time.Millisecond {
		t.Errorf("got elapsed %v, want ≥ 1.8s", res.Elapsed)
	}
	rep := NewReport(res, tg.APIURL)
	if rep.AchievedRate >= rep.OfferedRate {
		t.Errorf("got achieved %.1f/s ≥ offered %.1f/s, want less: the server could not keep up", rep.AchievedRate, rep.OfferedRate)
	}
}

func TestRunPrintsProgressAndRecordsTheSeries(t *testing.T) {
	_, tg := startFake(t)
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 50, Nodes: 8, Stock: 100})
	c := NewClient(tg, ClientConfig{})
	defer c.Close()
	var progress bytes.Buffer
	res, err := Run(testContext(t, 20*time.Second), c, sf, RunConfig{
		Profile: ProfileRamp, Rate: 100, Duration: 2 * time.Second, Workers: 16,
		Progress: &progress, ProgressEvery: 300 * time.Millisecond,
		Mix: MixConfig{PendingShare: 0.5},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "answered") || !strings.Contains(progress.String(), "p99") {
		t.Errorf("got progress %q, want lines with rates and p99", progress.String())
	}
	// Ramp 10/s → 100/s over 2s: 32.5 arrivals in the first second,
	// 77.5 in the second.
	if res.Scheduled < 109 || res.Scheduled > 111 {
		t.Errorf("got %d scheduled, want 110 ± 1", res.Scheduled)
	}
	if len(res.Series) < 2 || res.Series[0].Scheduled < 32 || res.Series[0].Scheduled > 34 || res.Series[1].Scheduled < 76 {
		t.Errorf("got series %+v, want 32.5 then 77.5 scheduled", res.Series)
	}
	var pending int
	for _, a := range res.Accepted {
		if a.Pending {
			pending++
			if a.Status != "pending_payment" || a.ReservedUntil.IsZero() {
				t.Errorf("pending order %s: got status %q reserved_until %v", a.ID, a.Status, a.ReservedUntil)
			}
		}
	}
	if pending < 25 || pending > 85 {
		t.Errorf("got %d pending of %d accepted, want about half", pending, len(res.Accepted))
	}
	if int64(len(res.Accepted)) != res.StatusCounts["201"] {
		t.Errorf("got %d accepted, want one per 201 (%d)", len(res.Accepted), res.StatusCounts["201"])
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	_, tg := startFake(t)
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 10, Nodes: 2, Stock: 1000})
	c := NewClient(tg, ClientConfig{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, c, sf, RunConfig{Rate: 50, Duration: time.Minute, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second || !res.Interrupted || res.Scheduled > 30 {
		t.Errorf("got interrupted %v after %v with %d scheduled, want a prompt stop", res.Interrupted, time.Since(start), res.Scheduled)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	_, tg := startFake(t)
	sf, c := mustSeed(t, tg, SeedConfig{SKUs: 5, Nodes: 1, Stock: 1})
	for _, cfg := range []RunConfig{
		{Rate: 0, Duration: time.Second},
		{Rate: 1, Duration: time.Second, Profile: "sawtooth"},
		{Rate: 1, Duration: time.Second, Mix: MixConfig{ZipfS: 1}},
		{Rate: 1, Duration: time.Second, Mix: MixConfig{PendingShare: 2}},
	} {
		if _, err := Run(context.Background(), c, sf, cfg); err == nil {
			t.Errorf("config %+v: got no error", cfg)
		}
	}
}
