//go:build linux

package bench

import (
	"os"
	"path/filepath"
	"strconv"
)

// ReadProcStat reads /proc/PID/stat.
func ReadProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ProcStat{}, err
	}
	return ParseProcStat(b)
}

// ReadAllProcStats reads /proc/PID/stat of every process (those that
// exit while it reads are skipped).
func ReadAllProcStats() ([]ProcStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make([]ProcStat, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := ReadProcStat(pid); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}
