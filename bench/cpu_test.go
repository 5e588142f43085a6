package bench

import (
	"math"
	"testing"
	"time"
)

func TestParseProcStatTakesCommUpToTheLastParenthesis(t *testing.T) {
	line := "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 30 12 20 0 4 0 987654 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	p, err := ParseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := ProcStat{PID: 4242, PPID: 17, Comm: "a (weird) name", State: 'S', UTime: 250, STime: 75, CUTime: 30, CSTime: 12, Start: 987654}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}
	if p.CPU() != 325 || p.ChildCPU() != 42 {
		t.Errorf("got CPU %d child %d", p.CPU(), p.ChildCPU())
	}
	for _, bad := range []string{"", "12 no comm", "12 (x) S 1 2 3", "x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"} {
		if _, err := ParseProcStat([]byte(bad)); err == nil {
			t.Errorf("%q: got no error", bad)
		}
	}
}

func TestDescendantsFollowsTheTree(t *testing.T) {
	all := []ProcStat{{PID: 1}, {PID: 10, PPID: 1}, {PID: 11, PPID: 10}, {PID: 12, PPID: 11}, {PID: 13, PPID: 1}, {PID: 14, PPID: 10}}
	got := map[int]bool{}
	for _, p := range Descendants(all, 10) {
		got[p.PID] = true
	}
	if len(got) != 4 || !got[10] || !got[11] || !got[12] || !got[14] {
		t.Errorf("got %v, want 10, 11, 12 and 14", got)
	}
}

func secondsOf(t *testing.T, cs []ClassCPU, class string) float64 {
	t.Helper()
	for _, c := range cs {
		if c.Class == class {
			return c.Seconds
		}
	}
	return 0
}

func TestCPUMeterCountsExitedChildrenOnceAndInterpolates(t *testing.T) {
	const dev, client = 100, 200
	m := NewCPUMeter(StackClassifier(dev, client))
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	proc := func(pid, ppid int, comm string, cpu, child uint64) ProcStat {
		return ProcStat{PID: pid, PPID: ppid, Comm: comm, UTime: cpu, CUTime: child, Start: uint64(pid)}
	}
	// t=0: baseline. postmaster 110 with backend 111 (at 50 ticks), a
	// serve instance, redis, the dev process, the client.
	m.Add(at(0), []ProcStat{
		proc(dev, 1, "omsd", 1000, 0), proc(101, dev, "omsd", 500, 0), proc(110, dev, "postgres", 10, 0),
		proc(111, 110, "postgres", 50, 0), proc(120, dev, "redis-server", 20, 0), proc(client, 1, "oms-loadtest", 5, 0),
	})
	// t=1: everyone used 100 ticks; backend 112 was born and used 40.
	m.Add(at(1), []ProcStat{
		proc(dev, 1, "omsd", 1100, 0), proc(101, dev, "omsd", 600, 0), proc(110, dev, "postgres", 110, 0),
		proc(111, 110, "postgres", 150, 0), proc(112, 110, "postgres", 40, 0), proc(120, dev, "redis-server", 120, 0),
		proc(client, 1, "oms-loadtest", 105, 0),
	})
	// t=2: backend 111 exited at 180 ticks (reaped: the postmaster's
	// child time holds all 180); 113 was born and exited within the
	// second (70 ticks, reaped too); 112 went on to 90.
	m.Add(at(2), []ProcStat{
		proc(dev, 1, "omsd", 1200, 0), proc(101, dev, "omsd", 700, 0), proc(110, dev, "postgres", 210, 180+70),
		proc(112, 110, "postgres", 90, 0), proc(120, dev, "redis-server", 220, 0), proc(client, 1, "oms-loadtest", 205, 0),
	})
	cs, err := m.Window(at(0), at(2))
	if err != nil {
		t.Fatal(err)
	}
	// postgres: postmaster 200 + backend 111 (180-50 = 130) + 112 (90) + 113 (70) = 490 ticks.
	for class, want := range map[string]float64{ClassDev: 2, ClassServe: 2, ClassRedis: 2, ClassClient: 2, ClassPostgres: 4.9} {
		if got := secondsOf(t, cs, class); math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: got %.3f s, want %.3f", class, got, want)
		}
	}
	// Half of the first second and half of the second: 0.5 + 0.5 for the
	// dev process.
	cs, err = m.Window(at(0.5), at(1.5))
	if err != nil {
		t.Fatal(err)
	}
	if got := secondsOf(t, cs, ClassDev); math.Abs(got-1) > 1e-9 {
		t.Errorf("interpolated: got %.3f s, want 1", got)
	}
	for _, c := range cs {
		if c.Class == ClassPostgres && c.Processes != 3 {
			t.Errorf("got %d postgres processes at most, want 3", c.Processes)
		}
	}
	if _, err := m.Window(at(-1), at(1)); err == nil {
		t.Error("a window before the first sample: got no error")
	}
}
