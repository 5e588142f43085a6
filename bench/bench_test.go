package bench

import (
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/omsd/omsd/inventory/redisstock
BenchmarkReserve/impl=redis-lua/skus=1/clients=64-2         	  200000	      9000 ns/op	  111111 reservations/s	     500 B/op	      10 allocs/op
BenchmarkReserve/impl=pg-update/skus=1/clients=64-2         	    4000	    250000 ns/op	    4000 reservations/s	    1000 B/op	      20 allocs/op
BenchmarkPlan/nodes=50-2   	  120000	      9500 ns/op	   10344 B/op	       5 allocs/op
PASS
ok  	github.com/omsd/omsd/inventory/redisstock	10.2s
`

func TestParseReadsNamesIterationsAndMetrics(t *testing.T) {
	rs, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("got %d results, want 3", len(rs))
	}
	if rs[0].Name != "BenchmarkReserve/impl=redis-lua/skus=1/clients=64" {
		t.Errorf("got name %q, want the GOMAXPROCS suffix stripped", rs[0].Name)
	}
	if rs[0].Iterations != 200000 || rs[0].Metrics["reservations/s"] != 111111 || rs[0].Metrics["allocs/op"] != 10 {
		t.Errorf("got %+v", rs[0])
	}
}

func TestCompareComputesRatiosAndSkipsMissingSides(t *testing.T) {
	rs, _ := Parse(strings.NewReader(sample))
	cs := Compare(rs, []Pair{
		{"hot SKU", "reservations/s", "BenchmarkReserve/impl=redis-lua/skus=1/clients=64", "BenchmarkReserve/impl=pg-update/skus=1/clients=64"},
		{"missing", "ns/op", "BenchmarkNope", "BenchmarkPlan/nodes=50"},
	})
	if len(cs) != 1 {
		t.Fatalf("got %d comparisons, want 1", len(cs))
	}
	if got := cs[0].Ratio; got < 27.7 || got > 27.8 {
		t.Errorf("got ratio %.3f, want 111111/4000 = 27.78", got)
	}
	md := (&Report{Machine: "test", Results: rs, Comparisons: cs}).Markdown()
	if !strings.Contains(md, "| hot SKU | reservations/s |") || !strings.Contains(md, "27.78") {
		t.Errorf("markdown lacks the comparison:\n%s", md)
	}
}

func TestMaxUnderBoundStopsAtTheFirstFailingStep(t *testing.T) {
	steps := []RampStep{
		{OfferedRate: 1000, P99Ms: 10, AuditClean: true},
		{OfferedRate: 2000, P99Ms: 40, AuditClean: true},
		{OfferedRate: 3000, P99Ms: 150, AuditClean: true},
		{OfferedRate: 4000, P99Ms: 50, AuditClean: true},
	}
	if got := MaxUnderBound(steps, 100); got != 2000 {
		t.Errorf("got %v, want 2000", got)
	}
	steps[1].AuditClean = false
	if got := MaxUnderBound(steps, 100); got != 1000 {
		t.Errorf("with a dirty audit at 2000: got %v, want 1000", got)
	}
}

func TestMarkdownShowsTheCapacityStage(t *testing.T) {
	rep := &Report{Machine: "test", Capacity: &Capacity{
		Clients: 64, DurationS: 20, CeilingRate: 20000, Rate: 3000, Accepted: 60000, Ratio: 0.15, AuditClean: true, QuietS: 3.5,
		CPUWindowS: 20.1,
		CPU: []ProcessCPU{
			{Process: ClassServe, Processes: 1, CPUS: 15, Cores: 0.75, UsPerOrder: 250, Server: true},
			{Process: ClassPostgres, Processes: 20, CPUS: 9, Cores: 0.45, UsPerOrder: 150, Server: true},
			{Process: ClassClient, Processes: 1, CPUS: 6, Cores: 0.3, UsPerOrder: 100},
		},
		ServerCPUUsPerOrder: 400,
		Open:                &OpenLoad{Share: 0.2, DurationS: 60, OfferedRate: 4000, AchievedRate: 3990, P99Ms: 42.5, AuditClean: true},
	}}
	md := rep.Markdown()
	for _, want := range []string{"| HTTP ceiling", "| 20000 |", "| omsd (orders accepted) | 3000 |", "omsd / ceiling: **0.15**",
		"| omsd serve | 1 | 15.00 | 0.75 | 250 |", "| **server processes** | | | | **400** |", "| load client (oms-loadtest) | 1 |",
		"Open model at 20 % of the ceiling (4000 orders/s offered for 60 s", "**42.5**", "stock quiet 3.5 s"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if i, j := strings.Index(md, "| **server processes**"), strings.Index(md, "| load client"); i > j {
		t.Errorf("the load client comes before the server total:\n%s", md)
	}
}

func TestMarkdownShowsTheScalingStageWithRatiosToTheFirstRun(t *testing.T) {
	cpu := func(serve, pg float64) []ProcessCPU {
		return []ProcessCPU{{Process: ClassServe, UsPerOrder: serve, Server: true}, {Process: ClassPostgres, UsPerOrder: pg, Server: true}}
	}
	r := &Report{Machine: "test", Scaling: &Scaling{Clients: 64, DurationS: 20, Runs: []ScaleRun{
		{Setup: "one", Instances: 1, Rate: 1000, ServerCPUUsPerOrder: 1600, CPU: cpu(600, 700), AuditClean: true},
		{Setup: "three", Instances: 3, Rate: 900, ServerCPUUsPerOrder: 1800, CPU: cpu(750, 720), AuditClean: false},
	}}}
	md := r.Markdown()
	for _, want := range []string{
		"Scaling on one box (closed loop, 64 connections",
		"| one | 1000 | 1.00 | 0.0 | 0.0 | 600 | 700 | 0 | 0 | **1600** | 1.00 | clean |",
		"| three | 900 | 0.90 | 0.0 | 0.0 | 750 | 720 | 0 | 0 | **1800** | 1.12 | FAULT |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
