package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/omsd/omsd/bench"
)

// scaleSetup is one stack shape of the scaling stage.
type scaleSetup struct {
	label   string
	devArgs []string
}

// scaleSetups go from one of everything to the scale-out shape, one change
// at a time, so that each step's overhead shows on its own.
var scaleSetups = []scaleSetup{
	{"1 instance, 1 redis-server, 1 broker", nil},
	{"3 instances, 1 redis-server, 1 broker", []string{"--instances", "3"}},
	{"3 instances, 3-master Redis Cluster, 3 brokers", []string{"--instances", "3", "--redis-cluster", "--kafka-brokers", "3"}},
}

// scaling runs the same closed loop (clients connections for d, spread
// over every instance, every order audited) on a fresh stack of each
// setup, with the CPU of every process sampled: on one box, the
// difference is the cost of coordination, not extra capacity.
func scaling(ctx context.Context, bin string, clients int, d time.Duration, logw io.Writer) (*bench.Scaling, error) {
	dir, err := os.MkdirTemp("", "oms-bench-scaling-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sc := &bench.Scaling{Clients: clients, DurationS: d.Seconds()}
	for i, setup := range scaleSetups {
		fmt.Fprintf(logw, "oms-bench: scaling: %s, closed loop of %d clients for %s\n", setup.label, clients, d)
		run, err := scaleRun(ctx, bin, filepath.Join(dir, "stack-"+strconv.Itoa(i)), setup, clients, d, logw)
		if err != nil {
			return sc, fmt.Errorf("%s: %w", setup.label, err)
		}
		sc.Runs = append(sc.Runs, run)
		fmt.Fprintf(logw, "oms-bench: scaling: %s: %.0f orders/s, %.0f server CPU-µs per order, audit %v\n",
			setup.label, run.Rate, run.ServerCPUUsPerOrder, run.AuditClean)
	}
	return sc, nil
}

func scaleRun(ctx context.Context, bin, state string, setup scaleSetup, clients int, d time.Duration, logw io.Writer) (bench.ScaleRun, error) {
	run := bench.ScaleRun{Setup: setup.label, DevArgs: strings.Join(setup.devArgs, " ")}
	st, err := startStack(ctx, bin, state, logw, setup.devArgs...)
	if err != nil {
		return run, err
	}
	defer st.stop()
	js := filepath.Join(state, "closed.json")
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "oms-loadtest"), "run", "--closed", "--workers", strconv.Itoa(clients),
		"--duration", d.String(), "--env", st.env, "--seed", st.seed, "--json", js, "--audit-sample", "-1", "--settle", "2s", "--quiet")
	cmd.Stdout, cmd.Stderr = io.Discard, logw
	meter, runErr := runSampled(ctx, cmd, st.dev.Process.Pid)
	rep, err := readReport(js)
	if err != nil {
		return run, fmt.Errorf("closed loop: %w (run: %v)", err, runErr)
	}
	run.Instances = len(strings.Split(rep.Target, ","))
	run.Rate, run.Accepted, run.Errors = rep.AcceptedRate, rep.Accepted, failures(rep)
	run.P50Ms, run.P99Ms = rep.LatencyMs.P50, rep.LatencyMs.P99
	run.AuditClean, run.AuditError, run.QuietS = rep.Passed(), rep.AuditError, rep.QuietS
	from := rep.StartedAt
	to := from.Add(time.Duration(rep.ElapsedS * float64(time.Second)))
	if run.CPU, run.ServerCPUUsPerOrder, run.CPUWindowS, err = cpuRows(meter, from, to, run.Accepted); err != nil {
		run.CPUError = err.Error()
	}
	return run, nil
}
