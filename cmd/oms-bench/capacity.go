package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/omsd/omsd/bench"
	"github.com/omsd/omsd/loadtest"
)

// capacityConfig shapes the capacity stage.
type capacityConfig struct {
	Clients      int
	Duration     time.Duration // each closed-loop run
	OpenShare    float64       // open-model rate as a share of the ceiling
	OpenDuration time.Duration
}

// cpuEvery is the CPU sampling period of the capacity stage.
const cpuEvery = 250 * time.Millisecond

// capacity measures the HTTP ceiling (bench/refserver) and omsd's
// closed-loop capacity with the same client, the CPU per order of every
// process during omsd's load window, then the open model at a share of
// the ceiling on a fresh stack.
func capacity(ctx context.Context, bin string, cfg capacityConfig, logw io.Writer) (*bench.Capacity, error) {
	dir, err := os.MkdirTemp("", "oms-bench-capacity-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	lt := filepath.Join(bin, "oms-loadtest")
	c := &bench.Capacity{Clients: cfg.Clients, DurationS: cfg.Duration.Seconds()}
	workers := strconv.Itoa(cfg.Clients)

	st, err := startStack(ctx, bin, filepath.Join(dir, "stack-closed"), logw)
	if err != nil {
		return nil, err
	}
	defer st.stop()

	// 1. The ceiling: the reference server, with the stack's seed file for
	// the SKUs and channel keys.
	fmt.Fprintf(logw, "oms-bench: capacity: HTTP ceiling, closed loop of %d clients for %s\n", cfg.Clients, cfg.Duration)
	refURL, stopRef, err := startRefServer(ctx, filepath.Join(bin, "refserver"), logw)
	if err != nil {
		return nil, err
	}
	ceilJSON := filepath.Join(dir, "ceiling.json")
	cmd := exec.CommandContext(ctx, lt, "run", "--closed", "--workers", workers, "--duration", cfg.Duration.String(), "--no-audit",
		"--api", refURL, "--env", st.env, "--seed", st.seed, "--json", ceilJSON, "--quiet")
	cmd.Stdout, cmd.Stderr = io.Discard, logw
	runErr := cmd.Run()
	stopRef()
	ceil, err := readReport(ceilJSON)
	if err != nil {
		return nil, fmt.Errorf("ceiling: %w (run: %v)", err, runErr)
	}
	c.CeilingRate, c.CeilingErrors = ceil.AcceptedRate, failures(ceil)
	fmt.Fprintf(logw, "oms-bench: capacity: ceiling %.0f requests/s (%d not 2xx)\n", c.CeilingRate, c.CeilingErrors)

	// 2. omsd in the same closed loop, every order audited, with the CPU of
	// every process sampled meanwhile.
	fmt.Fprintf(logw, "oms-bench: capacity: omsd, closed loop of %d clients for %s\n", cfg.Clients, cfg.Duration)
	closedJSON := filepath.Join(dir, "closed.json")
	cmd = exec.CommandContext(ctx, lt, "run", "--closed", "--workers", workers, "--duration", cfg.Duration.String(),
		"--env", st.env, "--seed", st.seed, "--json", closedJSON, "--audit-sample", "-1", "--settle", "2s", "--quiet")
	cmd.Stdout, cmd.Stderr = io.Discard, logw
	meter, runErr := runSampled(ctx, cmd, st.dev.Process.Pid)
	closed, err := readReport(closedJSON)
	if err != nil {
		return nil, fmt.Errorf("omsd closed loop: %w (run: %v)", err, runErr)
	}
	c.Rate, c.Accepted, c.Errors = closed.AcceptedRate, closed.Accepted, failures(closed)
	c.P50Ms, c.P99Ms = closed.LatencyMs.P50, closed.LatencyMs.P99
	c.AuditClean, c.AuditError, c.QuietS = closed.Passed(), closed.AuditError, closed.QuietS
	if c.CeilingRate > 0 {
		c.Ratio = round(c.Rate/c.CeilingRate, 3)
	}
	from := closed.StartedAt
	to := from.Add(time.Duration(closed.ElapsedS * float64(time.Second)))
	if err := cpuTable(c, meter, from, to); err != nil {
		c.CPUError = err.Error()
	}
	fmt.Fprintf(logw, "oms-bench: capacity: omsd %.0f orders/s (%.2f of the ceiling), %.0f server CPU-µs per order, audit %v\n",
		c.Rate, c.Ratio, c.ServerCPUUsPerOrder, c.AuditClean)
	st.stop()

	// 3. The open model at a share of the ceiling, on a fresh stack: the
	// closed loop's backlog must not weigh on its latency.
	rate := math.Round(cfg.OpenShare * c.CeilingRate)
	if rate < 1 {
		return c, errors.New("the ceiling run answered nothing: no rate for the open model")
	}
	fmt.Fprintf(logw, "oms-bench: capacity: open model at %.0f/s (%.0f %% of the ceiling) for %s\n", rate, cfg.OpenShare*100, cfg.OpenDuration)
	st2, err := startStack(ctx, bin, filepath.Join(dir, "stack-open"), logw)
	if err != nil {
		return c, err
	}
	defer st2.stop()
	openJSON := filepath.Join(dir, "open.json")
	cmd = exec.CommandContext(ctx, lt, "run", "--env", st2.env, "--seed", st2.seed, "--rate", strconv.FormatFloat(rate, 'f', 0, 64),
		"--duration", cfg.OpenDuration.String(), "--profile", "steady", "--json", openJSON, "--audit-sample", "-1", "--settle", "2s", "--quiet")
	cmd.Stdout, cmd.Stderr = io.Discard, logw
	runErr = cmd.Run()
	open, err := readReport(openJSON)
	if err != nil {
		return c, fmt.Errorf("open model: %w (run: %v)", err, runErr)
	}
	c.Open = &bench.OpenLoad{
		Share: cfg.OpenShare, DurationS: open.DurationS, OfferedRate: open.OfferedRate, AchievedRate: open.AchievedRate,
		AcceptedRate: open.AcceptedRate, P50Ms: open.LatencyMs.P50, P99Ms: open.LatencyMs.P99, P999Ms: open.LatencyMs.P999,
		Errors: failures(open), AuditClean: open.Passed(), AuditError: open.AuditError, QuietS: open.QuietS,
	}
	fmt.Fprintf(logw, "oms-bench: capacity: open model offered %.0f/s achieved %.0f/s p99 %.1f ms audit %v\n",
		open.OfferedRate, open.AchievedRate, open.LatencyMs.P99, c.Open.AuditClean)
	return c, nil
}

// startRefServer starts the reference server and reads its URL from the
// first line it prints; stop interrupts it and waits.
func startRefServer(ctx context.Context, exe string, logw io.Writer) (string, func(), error) {
	cmd := exec.Command(exe)
	cmd.Stderr = logw
	cmd.SysProcAttr = childProcAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-lines:
		if u, found := strings.CutPrefix(l, "listening on "); ok && found {
			return strings.TrimSpace(u), stop, nil
		}
		stop()
		return "", nil, fmt.Errorf("refserver printed %q, want \"listening on URL\"", l)
	case <-time.After(10 * time.Second):
		stop()
		return "", nil, errors.New("refserver printed no URL within 10 s")
	case <-ctx.Done():
		stop()
		return "", nil, ctx.Err()
	}
}

// runSampled runs cmd (the load client) while sampling, every cpuEvery,
// the CPU of the stack under devPID and of the client itself; the
// samples start before the client and end after it exited.
func runSampled(ctx context.Context, cmd *exec.Cmd, devPID int) (*bench.CPUMeter, error) {
	var clientPID atomic.Int64
	stack := bench.StackClassifier(devPID, -1)
	meter := bench.NewCPUMeter(func(p bench.ProcStat, byPID map[int]bench.ProcStat) (string, bool) {
		if int64(p.PID) == clientPID.Load() {
			return bench.ClassClient, false
		}
		return stack(p, byPID)
	})
	sample := func() {
		t0 := time.Now()
		all, err := bench.ReadAllProcStats()
		if err != nil {
			return
		}
		procs := bench.Descendants(all, devPID)
		if pid := int(clientPID.Load()); pid > 0 {
			for _, p := range all {
				if p.PID == pid {
					procs = append(procs, p)
				}
			}
		}
		meter.Add(t0.Add(time.Since(t0)/2), procs)
	}
	sample()
	if err := cmd.Start(); err != nil {
		return meter, err
	}
	clientPID.Store(int64(cmd.Process.Pid))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cpuEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				sample()
			}
		}
	}()
	err := cmd.Wait()
	close(stop)
	wg.Wait()
	sample()
	return meter, err
}

// cpuTable fills c's CPU rows from the meter over [from, to].
func cpuTable(c *bench.Capacity, meter *bench.CPUMeter, from, to time.Time) error {
	rows, server, window, err := cpuRows(meter, from, to, c.Accepted)
	if err != nil {
		return err
	}
	c.CPU, c.ServerCPUUsPerOrder, c.CPUWindowS = rows, server, window
	return nil
}

// cpuRows divides each class's CPU over [from, to] by the accepted orders:
// a row per class (the load client last and not a server), the servers'
// sum per order, and the window in seconds.
func cpuRows(meter *bench.CPUMeter, from, to time.Time, accepted int64) (rows []bench.ProcessCPU, serverUs, windowS float64, err error) {
	if meter == nil {
		return nil, 0, 0, errors.New("no CPU samples")
	}
	classes, err := meter.Window(from, to)
	if err != nil {
		return nil, 0, 0, err
	}
	if accepted == 0 {
		return nil, 0, 0, errors.New("no order accepted")
	}
	window := to.Sub(from).Seconds()
	by := map[string]bench.ClassCPU{}
	for _, cl := range classes {
		by[cl.Class] = cl
	}
	perOrder := func(s float64) float64 { return round(s*1e6/float64(accepted), 1) }
	var server float64
	for _, name := range append(append([]string(nil), bench.ServerClasses...), bench.ClassClient) {
		cl, ok := by[name]
		if !ok && (name == bench.ClassOther || name == bench.ClassClient) {
			continue
		}
		isServer := name != bench.ClassClient
		if isServer {
			server += cl.Seconds
		}
		rows = append(rows, bench.ProcessCPU{Process: name, Processes: cl.Processes, CPUS: round(cl.Seconds, 3),
			Cores: round(cl.Seconds/window, 3), UsPerOrder: perOrder(cl.Seconds), Server: isServer})
	}
	return rows, perOrder(server), round(window, 3), nil
}

// readReport reads an oms-loadtest JSON report.
func readReport(path string) (*loadtest.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r loadtest.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// failures counts the requests whose final answer was not 2xx, and those
// without an answer.
func failures(r *loadtest.Report) int64 {
	var n int64
	for code, k := range r.StatusCounts {
		if c, err := strconv.Atoi(code); err != nil || c < 200 || c > 299 {
			n += k
		}
	}
	return n
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
