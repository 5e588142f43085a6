package bench

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is the unit of the CPU times in /proc/PID/stat per second
// (sysconf(_SC_CLK_TCK), 100 on Linux on every architecture omsd runs on).
const ClockTicks = 100

// ProcStat is a process's line of /proc/PID/stat, the fields the CPU
// accounting needs. Times are in clock ticks; UTime and STime are the
// process's own (all its threads, kernel time included), CUTime and
// CSTime those of its children that exited and that it waited for.
type ProcStat struct {
	PID, PPID                    int
	Comm                         string
	State                        byte
	UTime, STime, CUTime, CSTime uint64
	// Start is the start time after boot: with PID it identifies a
	// process (a PID can be reused).
	Start uint64
}

// CPU is the process's own CPU time in ticks.
func (p ProcStat) CPU() uint64 { return p.UTime + p.STime }

// ChildCPU is the CPU time of its exited, waited-for children in ticks.
func (p ProcStat) ChildCPU() uint64 { return p.CUTime + p.CSTime }

// ParseProcStat parses the contents of /proc/PID/stat: "pid (comm) state
// ppid ...", where comm may hold spaces and parentheses (it ends at the
// last ')').
func ParseProcStat(b []byte) (ProcStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return ProcStat{}, errors.New("bench: /proc stat: no (comm)")
	}
	var p ProcStat
	var err error
	if p.PID, err = strconv.Atoi(string(bytes.TrimSpace(b[:open]))); err != nil {
		return ProcStat{}, fmt.Errorf("bench: /proc stat: pid: %w", err)
	}
	p.Comm = string(b[open+1 : end])
	// Fields after comm, numbered from 3 as in proc(5): state (3), ppid
	// (4), utime (14), stime (15), cutime (16), cstime (17), starttime (22).
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 20 {
		return ProcStat{}, fmt.Errorf("bench: /proc stat: %d fields after comm, want at least 20", len(f))
	}
	field := func(n int) uint64 {
		v, e := strconv.ParseUint(f[n-3], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("bench: /proc stat: field %d: %w", n, e)
		}
		return v
	}
	p.State = f[0][0]
	p.PPID = int(field(4))
	p.UTime, p.STime, p.CUTime, p.CSTime = field(14), field(15), field(16), field(17)
	p.Start = field(22)
	return p, err
}

// Descendants returns root and every process whose ancestry leads to it,
// from a listing of all processes.
func Descendants(all []ProcStat, root int) []ProcStat {
	children := map[int][]int{}
	byPID := make(map[int]ProcStat, len(all))
	for _, p := range all {
		byPID[p.PID] = p
		children[p.PPID] = append(children[p.PPID], p.PID)
	}
	var out []ProcStat
	var walk func(int)
	walk = func(pid int) {
		p, ok := byPID[pid]
		if !ok {
			return
		}
		out = append(out, p)
		for _, c := range children[pid] {
			if c != pid {
				walk(c)
			}
		}
	}
	walk(root)
	return out
}

// Classifier names the class a process's CPU is counted in ("" to leave
// it out), given every process of the sample by PID. A reaper is the
// parent of processes of its class that come and go (the postmaster of
// PostgreSQL's backends): the CPU of those that exit between two samples
// is taken from its children's time.
type Classifier func(p ProcStat, byPID map[int]ProcStat) (class string, reaper bool)

// Process classes of an omsd dev stack and its load client.
const (
	ClassServe    = "omsd serve"
	ClassPostgres = "postgres"
	ClassRedis    = "redis-server"
	ClassDev      = "broker + warehouse simulator (omsd dev)"
	ClassOther    = "other stack processes"
	ClassClient   = "load client (oms-loadtest)"
)

// ServerClasses are the classes of the stack's server processes, in the
// order reports list them.
var ServerClasses = []string{ClassServe, ClassPostgres, ClassRedis, ClassDev, ClassOther}

// StackClassifier classifies the processes of an omsd dev stack started
// as devPID, and the load client clientPID: the dev process itself (it
// runs the in-process broker and the warehouse simulator), its omsd
// children (serve instances), every postgres process (the postmaster
// reaps the backends), redis-server, and anything else under devPID.
func StackClassifier(devPID, clientPID int) Classifier {
	return func(p ProcStat, byPID map[int]ProcStat) (string, bool) {
		parent := byPID[p.PPID]
		switch {
		case p.PID == devPID:
			return ClassDev, false
		case p.PID == clientPID:
			return ClassClient, false
		case p.Comm == "postgres":
			return ClassPostgres, parent.Comm != "postgres"
		case strings.HasPrefix(p.Comm, "redis"):
			return ClassRedis, !strings.HasPrefix(parent.Comm, "redis")
		case p.Comm == "omsd" && p.PPID == devPID:
			return ClassServe, false
		default:
			return ClassOther, false
		}
	}
}

// CPUMeter turns successive samples of processes into cumulative CPU time
// per class, so that the CPU spent in any window between two samples can
// be read off (interpolated between the samples around its ends).
//
// Between two samples a class gains, for each of its processes, the
// growth of its CPU time (all of it for a process born since), plus, for
// a reaper, the growth of its children's time minus what had already
// been counted of its children that are gone: an exited backend counts
// in full, once.
type CPUMeter struct {
	classify  Classifier
	prev      map[int]ProcStat
	prevClass map[int]string
	prevReap  map[int]bool
	cum       map[string]int64
	samples   []cpuSample
}

type cpuSample struct {
	at    time.Time
	cum   map[string]int64
	procs map[string]int
}

// NewCPUMeter returns a meter that classifies with c.
func NewCPUMeter(c Classifier) *CPUMeter {
	return &CPUMeter{classify: c, cum: map[string]int64{}}
}

// Add records a sample of processes taken at at (samples in time order).
func (m *CPUMeter) Add(at time.Time, procs []ProcStat) {
	byPID := make(map[int]ProcStat, len(procs))
	for _, p := range procs {
		byPID[p.PID] = p
	}
	class := make(map[int]string, len(procs))
	reap := map[int]bool{}
	count := map[string]int{}
	for _, p := range procs {
		c, r := m.classify(p, byPID)
		if c == "" {
			continue
		}
		class[p.PID], reap[p.PID] = c, r
		count[c]++
		if m.prev == nil {
			continue // the first sample is the baseline
		}
		q, seen := m.prev[p.PID]
		if seen && q.Start == p.Start {
			m.cum[c] += int64(p.CPU()) - int64(q.CPU())
			if r && m.prevReap[p.PID] {
				m.cum[c] += int64(p.ChildCPU()) - int64(q.ChildCPU())
			}
		} else {
			m.cum[c] += int64(p.CPU())
			if r {
				m.cum[c] += int64(p.ChildCPU())
			}
		}
	}
	for pid, q := range m.prev {
		if p, ok := byPID[pid]; ok && p.Start == q.Start {
			continue
		}
		// Gone (reaped): if its reaper is still here, the reaper's child
		// time now holds its whole life; take back what was counted.
		c := m.prevClass[pid]
		r, ok := byPID[q.PPID]
		if c == "" || !ok || !reap[r.PID] || !m.prevReap[r.PID] || class[r.PID] != c || m.prev[r.PID].Start != r.Start {
			continue
		}
		m.cum[c] -= int64(q.CPU())
	}
	m.prev, m.prevClass, m.prevReap = byPID, class, reap
	snap := make(map[string]int64, len(m.cum))
	for c, v := range m.cum {
		snap[c] = v
	}
	m.samples = append(m.samples, cpuSample{at: at, cum: snap, procs: count})
}

// ClassCPU is the CPU one class of processes spent in a window.
type ClassCPU struct {
	Class string
	// Seconds of CPU, user and kernel.
	Seconds float64
	// Processes is the most processes of the class seen in one sample of
	// the window.
	Processes int
}

// Window returns the CPU spent by each class between from and to, which
// must lie within the samples taken, sorted by class name.
func (m *CPUMeter) Window(from, to time.Time) ([]ClassCPU, error) {
	if len(m.samples) < 2 {
		return nil, errors.New("bench: fewer than two CPU samples")
	}
	first, last := m.samples[0].at, m.samples[len(m.samples)-1].at
	if !to.After(from) || from.Before(first) || to.After(last) {
		return nil, fmt.Errorf("bench: CPU window [%s, %s] not within the samples [%s, %s]",
			from.Format(time.StampMilli), to.Format(time.StampMilli), first.Format(time.StampMilli), last.Format(time.StampMilli))
	}
	a, b := m.at(from), m.at(to)
	classes := map[string]bool{}
	for c := range b {
		classes[c] = true
	}
	for c := range a {
		classes[c] = true
	}
	procs := map[string]int{}
	for _, s := range m.samples {
		if s.at.Before(from) || s.at.After(to) {
			continue
		}
		for c, n := range s.procs {
			procs[c] = max(procs[c], n)
			classes[c] = true
		}
	}
	var out []ClassCPU
	for c := range classes {
		out = append(out, ClassCPU{Class: c, Seconds: (b[c] - a[c]) / ClockTicks, Processes: procs[c]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Class < out[j].Class })
	return out, nil
}

// at interpolates the cumulative ticks per class at t.
func (m *CPUMeter) at(t time.Time) map[string]float64 {
	i := sort.Search(len(m.samples), func(i int) bool { return !m.samples[i].at.Before(t) })
	if i == 0 {
		i = 1
	}
	if i >= len(m.samples) {
		i = len(m.samples) - 1
	}
	s0, s1 := m.samples[i-1], m.samples[i]
	frac := 0.0
	if d := s1.at.Sub(s0.at); d > 0 {
		frac = float64(t.Sub(s0.at)) / float64(d)
	}
	out := map[string]float64{}
	for c, v := range s1.cum {
		v0 := s0.cum[c]
		out[c] = float64(v0) + frac*float64(v-v0)
	}
	return out
}
