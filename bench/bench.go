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
	return b.String()
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
