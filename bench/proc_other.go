//go:build !linux

package bench

import "errors"

var errNoProc = errors.New("bench: per-process CPU accounting reads /proc: Linux only")

// ReadProcStat reads /proc/PID/stat (Linux only).
func ReadProcStat(int) (ProcStat, error) { return ProcStat{}, errNoProc }

// ReadAllProcStats reads /proc/PID/stat of every process (Linux only).
func ReadAllProcStats() ([]ProcStat, error) { return nil, errNoProc }
