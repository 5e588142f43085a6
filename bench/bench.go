// Package bench runs omsd's alternatives side by side, in one run each,
// and reports their figures and ratios as JSON and a markdown table, so
// that the numbers quoted in README come from a command anyone can run
// (`make bench`).
//
// Each comparison is a Go benchmark whose sub-benchmarks are the
// alternatives (so both run in the same process, minutes apart at most,
// under the same machine noise): Redis Lua reservation vs a conditional SQL
// UPDATE, group commit vs one transaction per order, sourcing at 10, 50 and
// 200 nodes. The end-to-end figure (orders per second at rising offered
// load until p99 passes a bound) comes from the open-model load generator
// against a running local stack.
//
// The capacity stage puts omsd next to a ceiling in one run. The ceiling
// is bench/refserver, a trivial net/http JSON server that decodes the v1
// order strictly and answers 201 without doing anything else, driven by
// the same load client (oms-loadtest) in a closed loop with 64
// connections: what the client, net/http and the machine can do at all.
// omsd then takes the same closed loop on a fresh `omsd dev` stack (every
// order audited), and the ratio of the two rates is the share of the HTTP
// ceiling omsd reaches. During omsd's load window (cut from the report's
// start and elapsed time, so the audit after it is not counted) the CPU
// of every process is read from /proc every 250 ms, user and kernel
// time: the omsd serve instances, PostgreSQL (postmaster and backends,
// exited ones included through the postmaster's child time), redis-server,
// the omsd dev process (the in-process broker and the warehouse
// simulator) and the load client, each divided by the accepted orders.
// Last, on another fresh stack, the open model at a share of the ceiling
// (20 % by default) gives p99 latency from the intended send time, with
// its audit.
package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Result is one benchmark line: its name (without the -GOMAXPROCS
// suffix), iterations and every metric by unit ("ns/op", "orders/s" ...).
type Result struct {
	Name       string             `json:"name"`
	Iterations int64              `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"`
}

// Parse reads `go test -bench` output and returns its benchmark lines.
func Parse(r io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		res := Result{Name: name, Iterations: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			res.Metrics[f[i+1]] = v
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// Comparison is a ratio between two alternatives measured in one run.
type Comparison struct {
	Title  string  `json:"title"`
	Metric string  `json:"metric"`
	A      string  `json:"a"`
	B      string  `json:"b"`
	ValueA float64 `json:"value_a"`
	ValueB float64 `json:"value_b"`
	// Ratio is ValueA / ValueB.
	Ratio float64 `json:"ratio"`
}

// Pair names two results to compare on a metric.
type Pair struct {
	Title, Metric, A, B string
}

// Compare finds the pairs in results; pairs with a missing side are
// skipped.
func Compare(results []Result, pairs []Pair) []Comparison {
	byName := map[string]Result{}
	for _, r := range results {
		byName[r.Name] = r
	}
	var out []Comparison
	for _, p := range pairs {
		a, okA := byName[p.A]
		b, okB := byName[p.B]
		if !okA || !okB {
			continue
		}
		va, vb := a.Metrics[p.Metric], b.Metrics[p.Metric]
		c := Comparison{Title: p.Title, Metric: p.Metric, A: p.A, B: p.B, ValueA: va, ValueB: vb}
		if vb != 0 {
			c.Ratio = va / vb
		}
		out = append(out, c)
	}
	return out
}

// RampStep is one offered rate of the end-to-end ramp.
type RampStep struct {
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	Errors       int64   `json:"errors"`
	AuditClean   bool    `json:"audit_clean"`
}

// Report is everything one bench run measured.
type Report struct {
	Machine     string       `json:"machine"`
	Results     []Result     `json:"results"`
	Comparisons []Comparison `json:"comparisons"`
	Ramp        []RampStep   `json:"ramp,omitempty"`
	// MaxRateUnderBound is the highest offered rate whose p99 stayed under
	// P99BoundMs with no errors and a clean audit.
	MaxRateUnderBound float64 `json:"max_rate_under_bound"`
	P99BoundMs        float64 `json:"p99_bound_ms"`
	// Capacity is the capacity stage, nil when skipped.
	Capacity *Capacity `json:"capacity,omitempty"`
	// Scaling is the scaling stage, nil when skipped.
	Scaling *Scaling `json:"scaling,omitempty"`
}

// Scaling is the same closed loop on stacks of one and of several
// instances (and a Redis Cluster and several brokers) on the same box:
// the box does not grow, so what changes is the cost of coordination.
type Scaling struct {
	Clients   int        `json:"clients"`
	DurationS float64    `json:"duration_s"`
	Runs      []ScaleRun `json:"runs"`
}

// ScaleRun is one stack shape's closed-loop run; the fields mean what
// Capacity's omsd fields mean.
type ScaleRun struct {
	Setup     string `json:"setup"`
	DevArgs   string `json:"dev_args"`
	Instances int    `json:"instances"`

	Rate                float64      `json:"rate"`
	Accepted            int64        `json:"accepted"`
	Errors              int64        `json:"errors"`
	P50Ms               float64      `json:"p50_ms"`
	P99Ms               float64      `json:"p99_ms"`
	AuditClean          bool         `json:"audit_clean"`
	AuditError          string       `json:"audit_error,omitempty"`
	QuietS              float64      `json:"quiet_s"`
	CPUWindowS          float64      `json:"cpu_window_s"`
	CPU                 []ProcessCPU `json:"cpu"`
	ServerCPUUsPerOrder float64      `json:"server_cpu_us_per_order"`
	CPUError            string       `json:"cpu_error,omitempty"`
}

// UsPerOrder is the class's CPU-µs per order in the run (0 when absent).
func (r ScaleRun) UsPerOrder(class string) float64 {
	for _, p := range r.CPU {
		if p.Process == class {
			return p.UsPerOrder
		}
	}
	return 0
}

func (s *Scaling) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "Scaling on one box (closed loop, %d connections spread over every instance, %.0f s each, fresh stack each; CPU-µs per order by process):\n\n", s.Clients, s.DurationS)
	b.WriteString("| setup | orders/s | vs first | p50 ms | p99 ms | omsd serve | postgres | redis | broker + sim | **servers** | vs first | audit |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range s.Runs {
		rate, cpu := "", ""
		if first := s.Runs[0]; first.Rate > 0 && first.ServerCPUUsPerOrder > 0 {
			rate = fmt.Sprintf("%.2f", r.Rate/first.Rate)
			if r.ServerCPUUsPerOrder > 0 {
				cpu = fmt.Sprintf("%.2f", r.ServerCPUUsPerOrder/first.ServerCPUUsPerOrder)
			}
		}
		fmt.Fprintf(b, "| %s | %.0f | %s | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f | **%.0f** | %s | %s |\n", r.Setup, r.Rate, rate, r.P50Ms, r.P99Ms,
			r.UsPerOrder(ClassServe), r.UsPerOrder(ClassPostgres), r.UsPerOrder(ClassRedis), r.UsPerOrder(ClassDev), r.ServerCPUUsPerOrder, cpu,
			auditWord(r.AuditClean, r.AuditError))
	}
	for _, r := range s.Runs {
		if r.CPUError != "" {
			fmt.Fprintf(b, "\n%s: CPU not measured: %s.\n", r.Setup, r.CPUError)
		}
	}
}

// Capacity is omsd's closed-loop capacity next to the HTTP ceiling, the
// CPU per order of each process, and the open-model latency at a share
// of the ceiling.
type Capacity struct {
	// Clients is the closed loop's concurrency (connections), DurationS
	// the length of each closed-loop run.
	Clients   int     `json:"clients"`
	DurationS float64 `json:"duration_s"`
	// CeilingRate is the reference server's 2xx answers per second;
	// CeilingErrors its answers that were not 2xx, and failed requests.
	CeilingRate   float64 `json:"ceiling_rate"`
	CeilingErrors int64   `json:"ceiling_errors"`
	// Rate is omsd's accepted orders per second in the same closed loop;
	// Accepted the orders, Errors the answers that were not 2xx and the
	// failed requests; P50Ms and P99Ms its latency (= service time).
	Rate     float64 `json:"omsd_rate"`
	Accepted int64   `json:"omsd_accepted"`
	Errors   int64   `json:"omsd_errors"`
	P50Ms    float64 `json:"omsd_p50_ms"`
	P99Ms    float64 `json:"omsd_p99_ms"`
	// Ratio is Rate / CeilingRate.
	Ratio float64 `json:"ratio"`
	// AuditClean says every accepted order was audited and nothing was
	// found; AuditError says why the audit did not run.
	AuditClean bool   `json:"audit_clean"`
	AuditError string `json:"audit_error,omitempty"`
	// QuietS is how long after the last answer the stock stopped moving
	// (how far the asynchronous side lagged behind intake; the load
	// client's settle pause included). 0: not measured.
	QuietS float64 `json:"quiet_s"`
	// CPUWindowS is the load window the CPU was measured over; CPU has a
	// row per class of process; ServerCPUUsPerOrder sums the server
	// processes (the load client not included).
	CPUWindowS          float64      `json:"cpu_window_s"`
	CPU                 []ProcessCPU `json:"cpu"`
	ServerCPUUsPerOrder float64      `json:"server_cpu_us_per_order"`
	CPUError            string       `json:"cpu_error,omitempty"`
	// Open is the open-model run at a share of the ceiling.
	Open *OpenLoad `json:"open,omitempty"`
}

// ProcessCPU is one class of processes' CPU (user + kernel) during the
// load window.
type ProcessCPU struct {
	Process string `json:"process"`
	// Processes is the most processes of the class seen at once.
	Processes int     `json:"processes"`
	CPUS      float64 `json:"cpu_s"`
	// Cores is CPUS over the window: how many cores it kept busy.
	Cores      float64 `json:"cores"`
	UsPerOrder float64 `json:"us_per_order"`
	// Server is false for the load client.
	Server bool `json:"server"`
}

// OpenLoad is an open-model run at Share of the ceiling.
type OpenLoad struct {
	Share        float64 `json:"share"`
	DurationS    float64 `json:"duration_s"`
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	AcceptedRate float64 `json:"accepted_rate"`
	// Latency from the intended send time.
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	P999Ms     float64 `json:"p999_ms"`
	Errors     int64   `json:"errors"`
	AuditClean bool    `json:"audit_clean"`
	AuditError string  `json:"audit_error,omitempty"`
	QuietS     float64 `json:"quiet_s"`
}

// Markdown renders the report as short tables.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## omsd benchmarks (%s)\n\n", r.Machine)
	if len(r.Comparisons) > 0 {
		b.WriteString("| comparison | metric | A | B | A / B |\n|---|---|---|---|---|\n")
		for _, c := range r.Comparisons {
			fmt.Fprintf(&b, "| %s | %s | %s: %s | %s: %s | %.2f |\n", c.Title, c.Metric,
				short(c.A), human(c.ValueA), short(c.B), human(c.ValueB), c.Ratio)
		}
		b.WriteString("\n")
	}
	if len(r.Results) > 0 {
		b.WriteString("| benchmark | figures |\n|---|---|\n")
		rs := append([]Result(nil), r.Results...)
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
		for _, res := range rs {
			var units []string
			for u := range res.Metrics {
				units = append(units, u)
			}
			sort.Strings(units)
			var parts []string
			for _, u := range units {
				parts = append(parts, human(res.Metrics[u])+" "+u)
			}
			fmt.Fprintf(&b, "| %s | %s |\n", res.Name, strings.Join(parts, ", "))
		}
		b.WriteString("\n")
	}
	if len(r.Ramp) > 0 {
		fmt.Fprintf(&b, "End to end (open model, p99 bound %.0f ms):\n\n| offered/s | achieved/s | p50 ms | p99 ms | errors | audit |\n|---|---|---|---|---|---|\n", r.P99BoundMs)
		for _, s := range r.Ramp {
			audit := "clean"
			if !s.AuditClean {
				audit = "FAULT"
			}
			fmt.Fprintf(&b, "| %.0f | %.0f | %.1f | %.1f | %d | %s |\n", s.OfferedRate, s.AchievedRate, s.P50Ms, s.P99Ms, s.Errors, audit)
		}
		fmt.Fprintf(&b, "\nHighest offered rate under the bound: **%.0f orders/s**.\n", r.MaxRateUnderBound)
	}
	if r.Capacity != nil {
		if len(r.Ramp) > 0 {
			b.WriteString("\n")
		}
		r.Capacity.markdown(&b)
	}
	if r.Scaling != nil && len(r.Scaling.Runs) > 0 {
		b.WriteString("\n")
		r.Scaling.markdown(&b)
	}
	return b.String()
}

func auditWord(clean bool, why string) string {
	switch {
	case clean:
		return "clean"
	case why != "":
		return "NOT RUN (" + why + ")"
	default:
		return "FAULT"
	}
}

func (c *Capacity) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "Capacity (closed loop, %d connections, %.0f s each, same load client):\n\n", c.Clients, c.DurationS)
	b.WriteString("| server | rate/s | errors | p50 ms | p99 ms | audit |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(b, "| HTTP ceiling (bench/refserver: strict decode, 201, nothing stored) | %.0f | %d | | | not audited |\n", c.CeilingRate, c.CeilingErrors)
	fmt.Fprintf(b, "| omsd (orders accepted) | %.0f | %d | %.1f | %.1f | %s |\n", c.Rate, c.Errors, c.P50Ms, c.P99Ms, auditWord(c.AuditClean, c.AuditError))
	fmt.Fprintf(b, "\nomsd / ceiling: **%.2f**", c.Ratio)
	if c.QuietS > 0 {
		fmt.Fprintf(b, "; stock quiet %.1f s after the last answer", c.QuietS)
	}
	b.WriteString(".\n")
	if c.CPUError != "" {
		fmt.Fprintf(b, "\nCPU per order not measured: %s.\n", c.CPUError)
	} else if len(c.CPU) > 0 {
		fmt.Fprintf(b, "\nCPU during omsd's load window (%.1f s, user + kernel, %d orders accepted):\n\n", c.CPUWindowS, c.Accepted)
		b.WriteString("| process | processes | CPU s | cores | CPU-µs per order |\n|---|---|---|---|---|\n")
		var client *ProcessCPU
		for i, p := range c.CPU {
			if !p.Server {
				client = &c.CPU[i]
				continue
			}
			fmt.Fprintf(b, "| %s | %d | %.2f | %.2f | %.0f |\n", p.Process, p.Processes, p.CPUS, p.Cores, p.UsPerOrder)
		}
		fmt.Fprintf(b, "| **server processes** | | | | **%.0f** |\n", c.ServerCPUUsPerOrder)
		if client != nil {
			fmt.Fprintf(b, "| %s | %d | %.2f | %.2f | %.0f |\n", client.Process, client.Processes, client.CPUS, client.Cores, client.UsPerOrder)
		}
	}
	if o := c.Open; o != nil {
		fmt.Fprintf(b, "\nOpen model at %.0f %% of the ceiling (%.0f orders/s offered for %.0f s, latency from the intended send time):\n\n", o.Share*100, o.OfferedRate, o.DurationS)
		b.WriteString("| offered/s | achieved/s | accepted/s | p50 ms | p99 ms | p99.9 ms | errors | audit |\n|---|---|---|---|---|---|---|---|\n")
		fmt.Fprintf(b, "| %.0f | %.0f | %.0f | %.1f | **%.1f** | %.1f | %d | %s |\n", o.OfferedRate, o.AchievedRate, o.AcceptedRate, o.P50Ms, o.P99Ms, o.P999Ms, o.Errors, auditWord(o.AuditClean, o.AuditError))
	}
}

// MaxUnderBound returns the highest offered rate of steps whose p99 is
// under bound with no errors and a clean audit, stopping at the first
// step that fails (higher steps are not trusted after a failure).
func MaxUnderBound(steps []RampStep, boundMs float64) float64 {
	best := 0.0
	for _, s := range steps {
		if s.P99Ms >= boundMs || s.Errors > 0 || !s.AuditClean {
			break
		}
		best = math.Max(best, s.OfferedRate)
	}
	return best
}

func short(name string) string {
	if i := strings.IndexByte(name, '/'); i > 0 {
		return name[i+1:]
	}
	return name
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
