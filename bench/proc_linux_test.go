//go:build linux

package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

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
	// Burn 300 ms of CPU: at 100 ticks per second, about 30 ticks.
	x := 0
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		x++
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
