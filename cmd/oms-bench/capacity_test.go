package main

import (
	"math"
	"testing"
	"time"

	"github.com/omsd/omsd/bench"
	"github.com/omsd/omsd/loadtest"
)

func TestCPUTableDividesTheWindowByTheAcceptedOrders(t *testing.T) {
	const dev, client = 10, 20
	m := bench.NewCPUMeter(bench.StackClassifier(dev, client))
	t0 := time.Unix(100, 0)
	procs := func(ticks uint64) []bench.ProcStat {
		return []bench.ProcStat{
			{PID: dev, PPID: 1, Comm: "omsd", UTime: ticks, Start: 1},
			{PID: 11, PPID: dev, Comm: "omsd", UTime: 3 * ticks, Start: 2},
			{PID: 12, PPID: dev, Comm: "postgres", STime: 2 * ticks, Start: 3},
			{PID: 13, PPID: dev, Comm: "redis-server", UTime: ticks, Start: 4},
			{PID: client, PPID: 1, Comm: "oms-loadtest", UTime: ticks, Start: 5},
		}
	}
	for i := range 5 {
		m.Add(t0.Add(time.Duration(i)*time.Second), procs(uint64(i*100)))
	}
	// [1s, 3s]: 2 s of one core per tick unit; 1000 orders.
	c := &bench.Capacity{Accepted: 1000}
	if err := cpuTable(c, m, t0.Add(time.Second), t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{bench.ClassServe: 6000, bench.ClassPostgres: 4000, bench.ClassRedis: 2000, bench.ClassDev: 2000, bench.ClassClient: 2000}
	if len(c.CPU) != len(want) {
		t.Fatalf("got rows %+v, want %d", c.CPU, len(want))
	}
	for i, row := range c.CPU {
		if math.Abs(row.UsPerOrder-want[row.Process]) > 0.1 {
			t.Errorf("%s: got %.1f µs per order, want %.0f", row.Process, row.UsPerOrder, want[row.Process])
		}
		if row.Server != (row.Process != bench.ClassClient) || (i == len(c.CPU)-1) != (row.Process == bench.ClassClient) {
			t.Errorf("row %d %+v: the load client must be last and the only non-server row", i, row)
		}
	}
	if c.ServerCPUUsPerOrder != 14000 || c.CPUWindowS != 2 {
		t.Errorf("got server total %.1f over %.1f s, want 14000 over 2", c.ServerCPUUsPerOrder, c.CPUWindowS)
	}
}

func TestFailuresCountsEveryAnswerThatIsNot2xx(t *testing.T) {
	r := &loadtest.Report{StatusCounts: map[string]int64{"201": 10, "200": 2, "409": 3, "503": 4, "error": 1, "2xx-without-id": 1}}
	if got := failures(r); got != 9 {
		t.Errorf("got %d, want 9", got)
	}
}
