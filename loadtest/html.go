package loadtest

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strings"
)

// chartSeries is one line of a chart: Y[i] is the value in second i; NaN
// leaves a gap.
type chartSeries struct {
	Name  string
	Color string
	Y     []float64
	Dash  bool // dashed and wider, to stay visible under lines that match it
}

// chartMarker is a vertical marker: a line at X seconds and, when W > 0,
// a shaded band W seconds wide (a fault and its duration).
type chartMarker struct {
	X, W  float64
	Label string
}

const (
	chartW, chartH         = 960, 320
	padL, padR, padT, padB = 64, 16, 36, 40
)

// niceStep rounds a raw tick step to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	default:
		return 10 * p
	}
}

func fmtTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case math.Abs(v) >= 1e4:
		return fmt.Sprintf("%gk", v/1e3)
	default:
		return fmt.Sprintf("%g", math.Round(v*1000)/1000)
	}
}

// lineChart draws the series as an inline SVG: x is seconds since the
// start, y linear from 0 or, with logY, logarithmic (for latencies, whose
// tail would flatten everything else).
func lineChart(title, yLabel string, series []chartSeries, logY bool, markers []chartMarker) template.HTML {
	n := 0
	ymax, ymin := 0.0, math.Inf(1)
	for _, s := range series {
		n = max(n, len(s.Y))
		for _, v := range s.Y {
			if math.IsNaN(v) {
				continue
			}
			ymax = max(ymax, v)
			if v > 0 {
				ymin = min(ymin, v)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="%s">`,
		chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`, padL, html.EscapeString(title))
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	xmax := float64(max(n-1, 1))
	for _, m := range markers {
		xmax = max(xmax, math.Ceil(m.X))
	}
	xpos := func(i int) float64 { return float64(padL) + float64(i)/xmax*pw }

	var ypos func(v float64) float64
	var ticks []float64
	if logY {
		if math.IsInf(ymin, 1) {
			ymin, ymax = 1, 10
		}
		lo, hi := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
		if hi <= lo {
			hi = lo + 1
		}
		ypos = func(v float64) float64 {
			return float64(padT) + ph - (math.Log10(v)-lo)/(hi-lo)*ph
		}
		for e := lo; e <= hi; e++ {
			ticks = append(ticks, math.Pow(10, e))
		}
	} else {
		if ymax <= 0 {
			ymax = 1
		}
		step := niceStep(ymax / 5)
		top := math.Ceil(ymax/step) * step
		ypos = func(v float64) float64 { return float64(padT) + ph - v/top*ph }
		for v := 0.0; v <= top+step/2; v += step {
			ticks = append(ticks, v)
		}
	}
	for _, t := range ticks {
		y := ypos(t)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, padL, chartW-padR, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#555">%s</text>`, padL-6, y+4, fmtTick(t))
	}
	xstep := int(niceStep(xmax / 10))
	for i := 0; i <= int(xmax); i += max(xstep, 1) {
		x := xpos(i)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#f0f0f0"/>`, x, x, padT, chartH-padB)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="#555">%ds</text>`, x, chartH-padB+16, i)
	}
	for _, m := range markers {
		x := float64(padL) + m.X/xmax*pw
		if x < float64(padL) || x > float64(chartW-padR) {
			continue
		}
		if m.W > 0 {
			w := min(m.W/xmax*pw, float64(chartW-padR)-x)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%.0f" fill="#d62728" fill-opacity="0.08"/>`, x, padT, w, ph)
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#d62728" stroke-width="1.5" stroke-dasharray="4 3"><title>%s</title></line>`,
			x, x, padT, chartH-padB, html.EscapeString(m.Label))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" fill="#d62728">%s</text>`, x+3, padT+12, html.EscapeString(m.Label))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, padL, padT, pw, ph)
	fmt.Fprintf(&b, `<text x="14" y="%.0f" font-size="12" fill="#333" transform="rotate(-90 14 %.0f)" text-anchor="middle">%s</text>`,
		float64(padT)+ph/2, float64(padT)+ph/2, html.EscapeString(yLabel))
	for si, s := range series {
		var d strings.Builder
		pen := false
		for i, v := range s.Y {
			if math.IsNaN(v) || (logY && v <= 0) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, xpos(i), ypos(v))
			pen = true
		}
		style := `stroke-width="1.6"`
		if s.Dash {
			style = `stroke-width="3" stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" %s><title>%s</title></path>`,
			strings.TrimSpace(d.String()), s.Color, style, html.EscapeString(s.Name))
		lx := chartW - padR - 150*(len(series)-si)
		fmt.Fprintf(&b, `<rect x="%d" y="10" width="14" height="4" fill="%s"/><text x="%d" y="16" font-size="12">%s</text>`,
			lx, s.Color, lx+18, html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built from numbers and escaped text only
}

// markers are the report's faults as chart markers.
func (r *Report) markers() []chartMarker {
	var ms []chartMarker
	for _, f := range r.Faults {
		if f.StartedAt.IsZero() && f.Error != "" {
			continue
		}
		ms = append(ms, chartMarker{X: f.StartS, W: f.DurationS, Label: f.Kind})
	}
	return ms
}

// statusClass groups a status key for the answers chart.
func statusClass(k string) string {
	switch {
	case len(k) == 3 && k[0] == '2':
		return "2xx"
	case k == "409":
		return "409"
	case k == "503":
		return "503"
	case len(k) == 3 && k[0] == '5', k == "429":
		return "other 5xx/429"
	case k == "error", k == "cancelled":
		return "no answer"
	default:
		return "other"
	}
}

// charts returns the throughput, latency and answers charts of a report.
func (r *Report) charts() (throughput, latency, answers template.HTML) {
	n := len(r.Series)
	sched, sent, ans, acc := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	p50, p99, mx := make([]float64, n), make([]float64, n), make([]float64, n)
	for i, s := range r.Series {
		sched[i], sent[i], ans[i], acc[i] = float64(s.Scheduled), float64(s.Sent), float64(s.Answered), float64(s.Accepted)
		if s.P99ms > 0 {
			p50[i], p99[i], mx[i] = s.P50ms, s.P99ms, s.MaxMs
		} else {
			p50[i], p99[i], mx[i] = math.NaN(), math.NaN(), math.NaN()
		}
	}
	throughput = lineChart("Throughput per second", "requests / s", []chartSeries{
		{"offered (scheduled)", "#aaaaaa", sched, true},
		{"sent", "#1f77b4", sent, false},
		{"answered", "#2ca02c", ans, false},
		{"accepted (2xx)", "#ff7f0e", acc, false},
	}, false, r.markers())
	latency = lineChart("Latency by intended send second (log scale)", "ms", []chartSeries{
		{"p50", "#1f77b4", p50, false},
		{"p99", "#d62728", p99, false},
		{"max", "#bbbbbb", mx, true},
	}, true, r.markers())
	classes := []struct{ name, color string }{
		{"2xx", "#2ca02c"}, {"409", "#1f77b4"}, {"503", "#9467bd"}, {"other 5xx/429", "#d62728"}, {"no answer", "#000000"},
	}
	var ss []chartSeries
	for _, c := range classes {
		y := make([]float64, n)
		for i, s := range r.Series {
			for k, v := range s.Status {
				if statusClass(k) == c.name {
					y[i] += float64(v)
				}
			}
		}
		ss = append(ss, chartSeries{c.name, c.color, y, false})
	}
	answers = lineChart("Final outcomes per second, by completion time", "requests / s", ss, false, r.markers())
	return throughput, latency, answers
}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"keys": sortedKeys,
	"f1":   func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"f2":   func(f float64) string { return fmt.Sprintf("%.2f", f) },
	"pct":  func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>omsd load test {{.R.RunID}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}
th{background:#f6f6f6}td.l,th.l{text-align:left}.pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}
figure{margin:0 0 24px}
</style></head><body>
<h1>omsd load test <small>{{.R.RunID}}</small></h1>
<p>{{if eq .R.Mode "closed"}}<b>Closed loop</b>: {{.R.Workers}} clients, each sending its next order when the previous one is answered (no offered rate; latency = service time), for {{f1 .R.DurationS}}s{{else}}Profile <b>{{.R.Profile}}</b>, peak {{f1 .R.PeakRate}}/s for {{f1 .R.DurationS}}s{{end}}
(elapsed {{f1 .R.ElapsedS}}s), {{.R.Workers}} workers, target {{.R.Target}}, started {{.R.StartedAt.Format "2006-01-02 15:04:05 UTC"}}.
{{if .R.Interrupted}}<b class="fail">Interrupted.</b>{{end}}</p>
{{with .R.Customers}}<p>Customers: {{.Buyers}} buyers, {{.CrossChannel}} through two or more channels, {{.Matched}} matched as one customer, {{.Split}} split;
{{.Attributed}} attributed orders, {{.Inherited}} inherited a binding.</p>{{end}}
<h2>Audit:
{{if not .R.Audit}}<span class="fail">NOT RUN</span> {{.R.AuditError}}
{{else if .R.Passed}}<span class="pass">PASS</span>{{else}}<span class="fail">FAIL</span>{{end}}</h2>
{{with .R.Audit}}
<table><tr><th class="l">check</th><th>count</th></tr>
<tr><td class="l">oversold_units</td><td>{{.OversoldUnits}}</td></tr>
<tr><td class="l">missing_orders</td><td>{{.MissingOrders}}</td></tr>
<tr><td class="l">duplicate_shipments</td><td>{{.DuplicateShipments}}</td></tr>
<tr><td class="l">leaked_units</td><td>{{.LeakedUnits}}</td></tr>
<tr><td class="l">unpaid_shipments</td><td>{{.UnpaidShipments}}</td></tr>
{{if .Returns}}<tr><td class="l">returns / units back / oms.returns events</td><td>{{.Returns}} / {{.ReturnedUnits}} / {{.ReturnEvents}}</td></tr>
<tr><td class="l">refunds_without_receipt</td><td>{{.RefundsWithoutReceipt}}</td></tr>
<tr><td class="l">returns_past_shipped</td><td>{{.ReturnsPastShipped}}</td></tr>
<tr><td class="l">duplicate_return_events</td><td>{{.DuplicateReturnEvents}}</td></tr>{{end}}
<tr><td class="l">bindings_missing (of orders due a binding)</td><td>{{.BindingsMissing}} ({{.BindingsChecked}})</td></tr>
<tr><td class="l">orders accepted / read back / unreadable</td><td>{{.OrdersAccepted}} / {{.OrdersChecked}}{{if .Sampled}} (sample){{end}} / {{.OrdersUnreadable}}</td></tr>
<tr><td class="l">SKUs / shipment events</td><td>{{.SKUsChecked}} / {{if .ShipmentsChecked}}{{.ShipmentEvents}}{{else}}not read{{end}}</td></tr>
</table>
{{range .Notes}}<p>Note: {{.}}</p>{{end}}
{{if .Findings}}<table><tr><th class="l">check</th><th class="l">key</th><th>units</th><th class="l">detail</th></tr>
{{range .Findings}}<tr><td class="l">{{.Check}}</td><td class="l">{{.Key}}</td><td>{{.Units}}</td><td class="l">{{.Detail}}</td></tr>{{end}}
</table>{{end}}
{{end}}
<h2>Rates and requests</h2>
<table><tr><th>offered /s</th><th>achieved /s</th><th>accepted /s</th><th>scheduled</th><th>sent</th><th>answered</th><th>errors</th><th>unsent</th><th>retries</th></tr>
<tr><td>{{f1 .R.OfferedRate}}</td><td>{{f1 .R.AchievedRate}}</td><td>{{f1 .R.AcceptedRate}}</td><td>{{.R.Scheduled}}</td><td>{{.R.Sent}}</td><td>{{.R.Answered}}</td><td>{{.R.Errors}}</td><td>{{.R.Unsent}}</td><td>{{.R.Retries}}</td></tr></table>
<h2>Overload</h2>
<table><tr><th>accepted /s</th><th>p99 of 2xx (ms)</th><th>answered 503</th><th>attempts answered 503</th><th>gave up</th></tr>
<tr><td>{{f1 .R.AcceptedRate}}</td><td>{{f2 .R.AcceptedLatencyMs.P99}}</td><td>{{pct .R.Share503}} ({{.R.Final503}})</td><td>{{.R.Attempts503}}</td><td>{{.R.GaveUp}}</td></tr></table>
{{if .R.Faults}}<h2>Faults</h2>
<table><tr><th class="l">kind</th><th>intended</th><th>started</th><th>duration</th><th class="l">answers in [start, end + 5 s]</th><th>retries</th><th>gave up</th><th class="l">detail</th></tr>
{{range $f := .R.Faults}}<tr><td class="l">{{.Kind}}</td><td>{{f1 .OffsetS}}s</td><td>{{f1 .StartS}}s</td><td>{{f1 .DurationS}}s{{if not .Ended}} (planned){{end}}</td>
<td class="l">{{if .Error}}<span class="fail">{{.Error}}</span>{{else}}{{range $k := keys $f.Window}}{{$k}}: {{index $f.Window $k}} {{end}}{{end}}</td><td>{{.Retries}}</td><td>{{.GaveUp}}</td><td class="l">{{.Target}} {{.Detail}}</td></tr>{{end}}
</table>{{end}}
<h2>Latency (ms)</h2>
<table><tr><th class="l"></th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
{{range .Lat}}<tr><td class="l">{{.Name}}</td><td>{{f2 .P.P50}}</td><td>{{f2 .P.P90}}</td><td>{{f2 .P.P99}}</td><td>{{f2 .P.P999}}</td><td>{{f2 .P.Max}}</td></tr>{{end}}
</table>
<h2>Answers</h2>
<table><tr><th class="l">status</th><th>count</th></tr>
{{range $k := keys .R.StatusCounts}}<tr><td class="l">{{$k}}</td><td>{{index $.R.StatusCounts $k}}</td></tr>{{end}}
{{range $k := keys .R.ProblemTypes}}<tr><td class="l">{{$k}}</td><td>{{index $.R.ProblemTypes $k}}</td></tr>{{end}}
</table>
<figure>{{.Throughput}}</figure>
<figure>{{.Latency}}</figure>
<figure>{{.Answers}}</figure>
<p><small>Latency is measured from each request's intended send time in the open-model schedule, so
time spent waiting for a free worker counts (no coordinated omission). Per-second latency is grouped
by intended send second.</small></p>
</body></html>
`))

// WriteHTML writes a self-contained HTML report (inline SVG, no scripts).
func (r *Report) WriteHTML(w io.Writer) error {
	tp, lat, ans := r.charts()
	type row struct {
		Name string
		P    Percentiles
	}
	return htmlTmpl.Execute(w, map[string]any{
		"R": r, "Throughput": tp, "Latency": lat, "Answers": ans,
		"Lat": []row{
			{"from intended send time", r.LatencyMs},
			{"of 2xx answers only", r.AcceptedLatencyMs},
			{"service time (from actual send)", r.ServiceTimeMs},
			{"send lag", r.SendLagMs},
		},
	})
}

// WriteHTMLFile writes the HTML report to path.
func (r *Report) WriteHTMLFile(path string) error {
	var b strings.Builder
	if err := r.WriteHTML(&b); err != nil {
		return fmt.Errorf("loadtest: html report: %w", err)
	}
	return writeFile(path, []byte(b.String()))
}
