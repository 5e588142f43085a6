//go:build linux

package bench

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user + system CPU time from getrusage.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestReadProcStatOfThisProcessSeesItsCPU(t *testing.T) {
	before, err := ReadProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.PID != os.Getpid() || before.PPID != os.Getppid() || before.Start == 0 {
		t.Errorf("got %+v, want this process", before)
	}
	if exe, err := os.Executable(); err == nil {
		if want := filepath.Base(exe); len(want) <= 15 && before.Comm != want {
			t.Errorf("got comm %q, want %q", before.Comm, want)
		}
	}
	// Burn 300 ms of CPU as the kernel's own accounting (getrusage) counts
	// it, not 300 ms of wall time (a busy machine would give less CPU):
	// at 100 ticks per second, about 30 ticks.
	x := 0
	for start := cpuTime(t); cpuTime(t)-start < 300*time.Millisecond; {
		for range 10000 {
			x++
		}
	}
	after, err := ReadProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got := after.CPU() - before.CPU(); got < 15 || got > 200 {
		t.Errorf("got %d ticks for 300 ms of work (x=%d), want about 30", got, x)
	}
	all, err := ReadAllProcStats()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range all {
		found = found || p.PID == os.Getpid()
	}
	if !found || len(all) < 2 {
		t.Errorf("got %d processes, this one found: %v", len(all), found)
	}
}
