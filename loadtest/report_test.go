package loadtest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	res := &Result{
		RunID: "r1", Profile: ProfileFlashSale, Rate: 100, Duration: 3 * time.Second, Workers: 4,
		Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Elapsed: 3 * time.Second, OfferedRate: 40,
		Scheduled: 120, Sent: 120, Answered: 119, Errors: 1,
		StatusCounts: map[string]int64{"201": 100, "409": 19, "error": 1},
		ProblemTypes: map[string]int64{"https://omsd.dev/problems/insufficient-stock": 19},
		Latency:      NewHistogram(), ServiceTime: NewHistogram(), SendLag: NewHistogram(),
	}
	for i := range 120 {
		res.Latency.Record(time.Duration(i+1) * time.Millisecond)
		res.ServiceTime.Record(time.Millisecond)
		res.SendLag.Record(time.Microsecond)
	}
	res.Series = []Second{
		{T: 0, Scheduled: 10, Sent: 10, Answered: 10, Accepted: 10, P50ms: 1, P99ms: 2, MaxMs: 3},
		{T: 1, Scheduled: 100, Sent: 100, Answered: 99, Accepted: 80, Errors: 1, P50ms: 5, P99ms: 90, MaxMs: 120},
		{T: 2, Scheduled: 10, Sent: 10, Answered: 10, Accepted: 10, P50ms: 1, P99ms: 2, MaxMs: 2},
	}
	rep := NewReport(res, "http://127.0.0.1:1")
	rep.Audit = &AuditResult{LeakedUnits: 2, OrdersAccepted: 100, OrdersChecked: 100, SKUsChecked: 10,
		Findings: []Finding{{Check: "leaked_units", Key: "SKU-<1>&", Units: 2, Detail: "x"}}}
	return rep
}

func TestReportJSONHasTheDocumentedShape(t *testing.T) {
	rep := sampleReport()
	path := filepath.Join(t.TempDir(), "out", "report.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"offered_rate", "achieved_rate", "latency_ms", "status_counts", "audit", "profile", "duration_s", "errors", "series"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report has no %q", k)
		}
	}
	lat := m["latency_ms"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency_ms has no %q", k)
		}
	}
	if lat["p50"].(float64) < 59 || lat["p50"].(float64) > 61 || lat["max"].(float64) < 119 {
		t.Errorf("got latency %v, want p50 ≈ 60 and max ≈ 120", lat)
	}
	audit := m["audit"].(map[string]any)
	for _, k := range []string{"oversold_units", "missing_orders", "duplicate_shipments", "leaked_units"} {
		if _, ok := audit[k]; !ok {
			t.Errorf("audit has no %q", k)
		}
	}
	if m["status_counts"].(map[string]any)["201"].(float64) != 100 {
		t.Errorf("got status counts %v", m["status_counts"])
	}
	if got := m["achieved_rate"].(float64); got < 39.6 || got > 39.7 {
		t.Errorf("got achieved rate %v, want 119/3", got)
	}
	if m["accepted"].(float64) != 100 {
		t.Errorf("got accepted %v, want the sum of the series' accepted", m["accepted"])
	}
}

func TestReportTableAndVerdict(t *testing.T) {
	rep := sampleReport()
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"FAIL", "leaked_units 2", "p99.9", "201: 100", "insufficient-stock", "offered 40.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if rep.Passed() {
		t.Error("got Passed() for a leak")
	}
	rep.Audit = &AuditResult{}
	if !rep.Passed() {
		t.Error("got !Passed() for a clean audit")
	}
	rep.Unresolved = 1
	if rep.Passed() {
		t.Error("got Passed() with unresolved orders")
	}
	rep.Audit = nil
	rep.AuditError = "boom"
	b.Reset()
	_ = rep.WriteTable(&b)
	if rep.Passed() || !strings.Contains(b.String(), "NOT RUN") {
		t.Errorf("got passed %v and table %q for a missing audit", rep.Passed(), b.String())
	}
}

func TestHTMLReportIsSelfContained(t *testing.T) {
	rep := sampleReport()
	path := filepath.Join(t.TempDir(), "report.html")
	if err := rep.WriteHTMLFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	if n := strings.Count(out, "<svg"); n != 3 {
		t.Errorf("got %d charts, want 3 (throughput, latency, outcomes)", n)
	}
	for _, bad := range []string{"<script", "src=", "href=", "@import"} {
		if strings.Contains(out, bad) {
			t.Errorf("report contains %q: it must not load anything", bad)
		}
	}
	for _, want := range []string{"Throughput per second", "Latency by intended send second", "accepted (2xx)", "p99", "SKU-&lt;1&gt;&amp;", "FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "NaN") {
		t.Error("report contains NaN coordinates")
	}
}

func TestLineChartCopesWithEdgeCases(t *testing.T) {
	for _, s := range [][]chartSeries{
		nil,
		{{Name: "empty", Color: "#000"}},
		{{Name: "one", Color: "#000", Y: []float64{5}}},
		{{Name: "zeros", Color: "#000", Y: []float64{0, 0, 0}}},
	} {
		for _, logY := range []bool{false, true} {
			out := string(lineChart("t", "y", s, logY, []chartMarker{{X: 0.5, W: 2, Label: "pg-stall"}}))
			if !strings.HasPrefix(out, "<svg") || strings.Contains(out, "NaN") || strings.Contains(out, "Inf") {
				t.Errorf("series %v log %v: got %q", s, logY, out)
			}
		}
	}
}
