// Command oms-bench runs omsd's side-by-side benchmarks, the capacity
// stage (the HTTP ceiling, omsd's closed-loop capacity with the CPU per
// order of each process, the open-model p99 at a share of the ceiling), the
// scaling stage (the same closed loop on 1 and 3 instances) and the
// end-to-end ramp, and writes bench/results/bench.json and bench.md
// (make bench).
//
//	oms-bench [-out DIR] [-quick] [-ramp RATES] [-step D] [-p99 D] [-skip-ramp]
//	          [-capacity-duration D] [-open-share F] [-open-duration D] [-skip-capacity]
//	          [-scaling-duration D] [-skip-scaling] [-skip-benchmarks]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/omsd/omsd/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "oms-bench:", err)
		os.Exit(1)
	}
}

// suite is what one run measures: go benchmarks with their alternatives as
// sub-benchmarks, and the pairs to compare.
type suite struct {
	pkg, pattern, benchtime string
}

var suites = []suite{
	{"./sourcing/", "^BenchmarkPlan$", "1s"},
	{"./inventory/redisstock/", "^BenchmarkReserve$", "2s"},
	{"./cmd/omsd/", "^BenchmarkIntake$", "5s"},
}

var pairs = []bench.Pair{
	{Title: "reserve one hot SKU, 64 clients: Redis Lua vs SQL UPDATE", Metric: "reservations/s",
		A: "BenchmarkReserve/impl=redis-lua/skus=1/clients=64", B: "BenchmarkReserve/impl=pg-update/skus=1/clients=64"},
	{Title: "reserve over 10,000 SKUs, 64 clients: Redis Lua vs SQL UPDATE", Metric: "reservations/s",
		A: "BenchmarkReserve/impl=redis-lua/skus=10000/clients=64", B: "BenchmarkReserve/impl=pg-update/skus=10000/clients=64"},
	{Title: "reserve one hot SKU, 1 client: Redis Lua vs SQL UPDATE", Metric: "reservations/s",
		A: "BenchmarkReserve/impl=redis-lua/skus=1/clients=1", B: "BenchmarkReserve/impl=pg-update/skus=1/clients=1"},
	{Title: "intake through HTTP: group commit vs one transaction per order", Metric: "orders/s",
		A: "BenchmarkIntake/commit=group/clients=64", B: "BenchmarkIntake/commit=per-order/clients=64"},
	{Title: "sourcing plan time: 50 vs 10 nodes", Metric: "ns/op",
		A: "BenchmarkPlan/nodes=50", B: "BenchmarkPlan/nodes=10"},
	{Title: "sourcing plan time: 200 vs 50 nodes", Metric: "ns/op",
		A: "BenchmarkPlan/nodes=200", B: "BenchmarkPlan/nodes=50"},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("oms-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "bench/results", "directory for bench.json and bench.md")
	quick := fs.Bool("quick", false, "shorter benchtimes (a smoke run)")
	rates := fs.String("ramp", "200,300,400,500,600,800,1000,1500,2000", "offered rates of the end-to-end ramp, orders/s")
	step := fs.Duration("step", 30*time.Second, "duration of each ramp step")
	p99 := fs.Duration("p99", 100*time.Millisecond, "p99 latency bound of the ramp")
	skipRamp := fs.Bool("skip-ramp", false, "skip the end-to-end ramp")
	capDuration := fs.Duration("capacity-duration", 20*time.Second, "length of each closed-loop run of the capacity stage (the ceiling, then omsd)")
	openShare := fs.Float64("open-share", 0.2, "offered rate of the capacity stage's open-model run, as a share of the HTTP ceiling")
	openDuration := fs.Duration("open-duration", 60*time.Second, "length of the capacity stage's open-model run")
	skipCapacity := fs.Bool("skip-capacity", false, "skip the capacity stage")
	skipGo := fs.Bool("skip-benchmarks", false, "skip the go test benchmarks (run only the stages on the local stack)")
	skipScaling := fs.Bool("skip-scaling", false, "skip the scaling stage (1 against 3 instances, Redis Cluster and 3 brokers, on this box)")
	scaleDuration := fs.Duration("scaling-duration", 20*time.Second, "length of each closed-loop run of the scaling stage")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *openShare <= 0 || *openShare > 1 {
		return errors.New("-open-share must be in (0, 1]")
	}
	rep := &bench.Report{Machine: fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU()), P99BoundMs: float64(p99.Milliseconds())}
	for _, s := range suites {
		if *skipGo {
			break
		}
		bt := s.benchtime
		if *quick {
			bt = "200ms"
		}
		fmt.Fprintf(stderr, "oms-bench: go test -bench %s %s (benchtime %s)\n", s.pattern, s.pkg, bt)
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", s.pattern, "-benchtime", bt, s.pkg)
		var buf bytes.Buffer
		cmd.Stdout = io.MultiWriter(&buf, stderr)
		cmd.Stderr = stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("benchmarks of %s: %w", s.pkg, err)
		}
		rs, err := bench.Parse(&buf)
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, rs...)
	}
	rep.Comparisons = bench.Compare(rep.Results, pairs)
	var bin string
	if !*skipCapacity || !*skipRamp || !*skipScaling {
		dir, err := os.MkdirTemp("", "oms-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "bin")
		if err := buildBinaries(ctx, bin); err != nil {
			return err
		}
	}
	if !*skipCapacity {
		c, err := capacity(ctx, bin, capacityConfig{Clients: 64, Duration: *capDuration, OpenShare: *openShare, OpenDuration: *openDuration}, stderr)
		if err != nil {
			return fmt.Errorf("capacity: %w", err)
		}
		rep.Capacity = c
	}
	if !*skipScaling {
		sc, err := scaling(ctx, bin, 64, *scaleDuration, stderr)
		if err != nil {
			return fmt.Errorf("scaling: %w", err)
		}
		rep.Scaling = sc
	}
	if !*skipRamp {
		steps, err := ramp(ctx, bin, *rates, *step, rep.P99BoundMs, stderr)
		if err != nil {
			return fmt.Errorf("ramp: %w", err)
		}
		rep.Ramp = steps
		rep.MaxRateUnderBound = bench.MaxUnderBound(steps, rep.P99BoundMs)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	j, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "bench.json"), j, 0o644); err != nil {
		return err
	}
	md := rep.Markdown()
	if err := os.WriteFile(filepath.Join(*out, "bench.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout, md)
	fmt.Fprintf(stdout, "written: %s, %s\n", filepath.Join(*out, "bench.json"), filepath.Join(*out, "bench.md"))
	return nil
}

// buildBinaries builds what the capacity stage and the ramp run into bin.
func buildBinaries(ctx context.Context, bin string) error {
	for _, pkg := range []string{"./cmd/omsd", "./cmd/oms-loadtest", "./bench/refserver"} {
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, filepath.Base(pkg)), pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w: %s", pkg, err, out)
		}
	}
	return nil
}

// ramp starts the local stack (omsd dev), seeds it, and offers rising
// steady load with oms-loadtest until p99 passes the bound.
func ramp(ctx context.Context, bin, rates string, step time.Duration, p99Bound float64, logw io.Writer) ([]bench.RampStep, error) {
	dir, err := os.MkdirTemp("", "oms-bench-ramp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	lt := filepath.Join(bin, "oms-loadtest")
	var steps []bench.RampStep
	for i, r := range strings.Split(rates, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil {
			return nil, fmt.Errorf("bad rate %q", r)
		}
		// A fresh stack per step: the backlog of one step (warehouse events
		// still being applied) must not weigh on the next one's latency or
		// audit.
		s, err := rampStep(ctx, bin, lt, filepath.Join(dir, fmt.Sprintf("stack-%d", i)), rate, step, logw)
		if err != nil {
			return steps, fmt.Errorf("step %v: %w", rate, err)
		}
		steps = append(steps, s)
		fmt.Fprintf(logw, "oms-bench: offered %.0f/s achieved %.0f/s p99 %.1f ms errors %d audit clean %v\n",
			s.OfferedRate, s.AchievedRate, s.P99Ms, s.Errors, s.AuditClean)
		if s.P99Ms >= p99Bound || !s.AuditClean {
			break
		}
	}
	return steps, nil
}

// rampStep starts omsd dev (with the warehouse simulator) on a fresh state
// directory, seeds it, offers steady load at rate for d, audits every
// accepted order (no sampling) and stops the stack.
func rampStep(ctx context.Context, bin, lt, state string, rate float64, d time.Duration, logw io.Writer) (bench.RampStep, error) {
	st, err := startStack(ctx, bin, state, logw)
	if err != nil {
		return bench.RampStep{}, err
	}
	defer st.stop()
	env := st.env
	js := filepath.Join(state, "report.json")
	cmd := exec.CommandContext(ctx, lt, "run", "--env", env, "--rate", strconv.FormatFloat(rate, 'f', 0, 64),
		"--duration", d.String(), "--profile", "steady", "--json", js, "--audit-sample", "-1", "--settle", "10s", "--quiet")
	cmd.Stdout, cmd.Stderr = io.Discard, logw
	runErr := cmd.Run() // non-zero when the audit finds something: the report says what
	s, err := readStep(js)
	if err != nil {
		return s, fmt.Errorf("%w (run: %v)", err, runErr)
	}
	return s, nil
}

// devStack is an omsd dev stack started for a measurement, seeded.
type devStack struct {
	dev     *exec.Cmd
	done    chan struct{} // closed when dev has exited
	waitErr error         // dev's exit, once done is closed
	env     string        // its stack.env
	seed    string        // the seed file oms-loadtest seed wrote
}

// startStack starts omsd dev (with the warehouse simulator) on a fresh
// state directory, waits for its stack.env and seeds it: 2000 SKUs on 12
// nodes, 100,000 units per warehouse and SKU (no run of the bench comes
// near selling a SKU out: refusals for stock would flatter the rates).
func startStack(ctx context.Context, bin, state string, logw io.Writer, devArgs ...string) (*devStack, error) {
	dev := exec.Command(filepath.Join(bin, "omsd"), append([]string{"dev", "--state-dir", state, "--log.level", "warn"}, devArgs...)...)
	dev.Stdout, dev.Stderr = io.Discard, logw
	dev.SysProcAttr = childProcAttr()
	if err := dev.Start(); err != nil {
		return nil, err
	}
	st := &devStack{dev: dev, done: make(chan struct{}), env: filepath.Join(state, "stack.env"), seed: filepath.Join(state, "loadtest-seed.json")}
	go func() { st.waitErr = dev.Wait(); close(st.done) }()
	deadline := time.After(90 * time.Second)
	for {
		if _, err := os.Stat(st.env); err == nil {
			break
		}
		select {
		case <-st.done:
			st.dev = nil
			return nil, fmt.Errorf("omsd dev exited before it wrote stack.env: %v", st.waitErr)
		case <-deadline:
			st.stop()
			return nil, errors.New("omsd dev wrote no stack.env within 90 s")
		case <-time.After(100 * time.Millisecond):
		}
	}
	seed := exec.CommandContext(ctx, filepath.Join(bin, "oms-loadtest"), "seed", "--env", st.env, "--seed", st.seed,
		"--skus", "2000", "--nodes", "12", "--stock", "100000")
	seed.Stdout, seed.Stderr = io.Discard, logw
	if err := seed.Run(); err != nil {
		st.stop()
		return nil, fmt.Errorf("seed: %w", err)
	}
	return st, nil
}

// stop interrupts omsd dev (it stops its children) and waits for it.
func (s *devStack) stop() {
	if s.dev == nil {
		return
	}
	dev := s.dev
	s.dev = nil
	_ = dev.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = dev.Process.Kill()
		<-s.done
	}
}

// readStep reads the fields of an oms-loadtest JSON report the ramp needs.
func readStep(path string) (bench.RampStep, error) {
	f, err := os.Open(path)
	if err != nil {
		return bench.RampStep{}, err
	}
	defer f.Close()
	var r struct {
		OfferedRate  float64 `json:"offered_rate"`
		AchievedRate float64 `json:"achieved_rate"`
		LatencyMs    struct {
			P50 float64 `json:"p50"`
			P99 float64 `json:"p99"`
		} `json:"latency_ms"`
		StatusCounts map[string]int64 `json:"status_counts"`
		Audit        struct {
			Oversold   int64 `json:"oversold_units"`
			Missing    int64 `json:"missing_orders"`
			Duplicates int64 `json:"duplicate_shipments"`
			Leaked     int64 `json:"leaked_units"`
		} `json:"audit"`
	}
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&r); err != nil {
		return bench.RampStep{}, err
	}
	var errs int64
	for code, n := range r.StatusCounts {
		if c, _ := strconv.Atoi(code); c >= 500 || c == 0 {
			errs += n
		}
	}
	return bench.RampStep{
		OfferedRate: r.OfferedRate, AchievedRate: r.AchievedRate, P50Ms: r.LatencyMs.P50, P99Ms: r.LatencyMs.P99, Errors: errs,
		AuditClean: r.Audit.Oversold == 0 && r.Audit.Missing == 0 && r.Audit.Duplicates == 0 && r.Audit.Leaked == 0,
	}, nil
}
