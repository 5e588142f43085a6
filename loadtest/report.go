package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func percentiles(h *Histogram) Percentiles {
	if h == nil {
		return Percentiles{}
	}
	return Percentiles{
		P50: ms(h.Quantile(0.50)), P90: ms(h.Quantile(0.90)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max()), Mean: ms(h.Mean()),
	}
}

// Report is the outcome of a run and its audit: what --json writes.
type Report struct {
	RunID  string `json:"run_id"`
	Target string `json:"target"`
	// Mode is "open" (arrivals on a schedule, latency from the intended
	// send time) or "closed" (Workers clients, each sending its next order
	// when the previous one is answered: no profile, no offered rate,
	// latency from the actual send).
	Mode        string    `json:"mode"`
	Profile     Profile   `json:"profile"`
	PeakRate    float64   `json:"peak_rate"`
	DurationS   float64   `json:"duration_s"`
	ElapsedS    float64   `json:"elapsed_s"`
	Workers     int       `json:"workers"`
	Seed        uint64    `json:"seed"`
	StartedAt   time.Time `json:"started_at"`
	Interrupted bool      `json:"interrupted,omitempty"`

	// OfferedRate is the schedule's mean arrival rate (0 in a closed
	// loop); AchievedRate the answers (any status) per second of
	// ElapsedS; AcceptedRate the 2xx.
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	AcceptedRate float64 `json:"accepted_rate"`

	Scheduled int64 `json:"scheduled"`
	Sent      int64 `json:"sent"`
	Answered  int64 `json:"answered"`
	Accepted  int64 `json:"accepted"`
	Errors    int64 `json:"errors"`
	Unsent    int64 `json:"unsent"`
	Retries   int64 `json:"retries"`
	// GaveUp counts requests whose every attempt failed.
	GaveUp int64 `json:"gave_up"`

	// For overload analysis: AcceptedLatencyMs is the latency of the
	// requests answered 2xx only (shed ones excluded), Share503 the share
	// of sent requests whose final answer was 503, Attempts503 every
	// attempt answered 503 (retried ones included).
	AcceptedLatencyMs Percentiles `json:"accepted_latency_ms"`
	Final503          int64       `json:"final_503"`
	Share503          float64     `json:"share_503"`
	Attempts503       int64       `json:"attempts_503"`

	// Faults are the faults injected during the run.
	Faults []FaultReport `json:"faults,omitempty"`
	// Returns counts the returns mixed into the run (--return-share).
	Returns *ReturnStats `json:"returns,omitempty"`
	// Customers says how the OMS matched the run's buyers across channels.
	Customers *CustomerStats `json:"customers,omitempty"`

	// LatencyMs is measured from the intended send time (queueing in the
	// client included); ServiceTimeMs from the actual send; SendLagMs is
	// how late requests went out.
	LatencyMs     Percentiles `json:"latency_ms"`
	ServiceTimeMs Percentiles `json:"service_time_ms"`
	SendLagMs     Percentiles `json:"send_lag_ms"`

	StatusCounts map[string]int64 `json:"status_counts"`
	ProblemTypes map[string]int64 `json:"problem_types,omitempty"`
	ErrorSamples []string         `json:"error_samples,omitempty"`

	// Audit is null when it could not run (AuditError says why) or was
	// not asked for (NotAudited: no stock snapshot, no settling, no audit).
	Audit      *AuditResult `json:"audit"`
	AuditError string       `json:"audit_error,omitempty"`
	NotAudited bool         `json:"not_audited,omitempty"`
	// QuietS is how long after the last answer the stock stopped moving
	// (two equal snapshots a second apart; the settle pause included): how
	// far the asynchronous side (outbox relay, warehouse events) lagged
	// behind intake. 0 when not measured.
	QuietS float64 `json:"quiet_s,omitempty"`
	// UnknownOrders got no definite answer; Recovered of them were found
	// by external id and audited, Unresolved could not be looked up.
	UnknownOrders int `json:"unknown_orders"`
	Recovered     int `json:"recovered_orders"`
	Unresolved    int `json:"unresolved_orders,omitempty"`

	Series []Second `json:"series"`
}

// NewReport summarises a run (audit filled in by the caller).
func NewReport(res *Result, target string) *Report {
	el := res.Elapsed.Seconds()
	if el <= 0 {
		el = res.Duration.Seconds()
	}
	mode := "open"
	if res.Closed {
		mode = "closed"
	}
	rep := &Report{
		RunID: res.RunID, Target: target, Mode: mode, Profile: res.Profile, PeakRate: res.Rate,
		DurationS: res.Duration.Seconds(), ElapsedS: round3(el), Workers: res.Workers, Seed: res.Seed,
		StartedAt: res.Start.UTC(), Interrupted: res.Interrupted,
		OfferedRate:  round3(res.OfferedRate),
		AchievedRate: round3(float64(res.Answered) / el),
		Scheduled:    res.Scheduled, Sent: res.Sent, Answered: res.Answered, Errors: res.Errors,
		Unsent: res.Unsent, Retries: res.Retries,
		LatencyMs: percentiles(res.Latency), ServiceTimeMs: percentiles(res.ServiceTime), SendLagMs: percentiles(res.SendLag),
		StatusCounts: res.StatusCounts, ProblemTypes: res.ProblemTypes, ErrorSamples: res.ErrorSamples,
		UnknownOrders: len(res.Unknown),
		Series:        res.Series,
		GaveUp:        res.GaveUp, AcceptedLatencyMs: percentiles(res.AcceptedLatency),
		Final503: res.Final503, Attempts503: res.Attempts503, Faults: res.Faults,
	}
	if res.ReturnStats.Selected > 0 {
		st := res.ReturnStats
		rep.Returns = &st
	}
	if len(res.Accepted) > 0 {
		cs := customerStats(res.Accepted)
		rep.Customers = &cs
	}
	if res.Sent > 0 {
		rep.Share503 = round3(float64(res.Final503) / float64(res.Sent))
	}
	for _, s := range res.Series {
		rep.Accepted += s.Accepted
	}
	rep.AcceptedRate = round3(float64(rep.Accepted) / el)
	if rep.Series == nil {
		rep.Series = []Second{}
	}
	return rep
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// Passed says whether the audit ran completely and found nothing.
func (r *Report) Passed() bool {
	return r.Audit != nil && r.Audit.Clean() && r.Audit.OrdersUnreadable == 0 && r.Unresolved == 0
}

// WriteJSON writes the report, indented, to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("loadtest: report: %w", err)
	}
	return writeFile(path, append(b, '\n'))
}

func writeFile(path string, b []byte) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("loadtest: %w", err)
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	return nil
}

func sortedKeys(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	// Label column aligned; values joined by two spaces.
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(label string, values ...string) { fmt.Fprintf(tw, "%s\t%s\n", label, strings.Join(values, "  ")) }
	f := fmt.Sprintf
	dur := time.Duration(r.DurationS * float64(time.Second))
	if r.Mode == "closed" {
		fmt.Fprintf(w, "omsd load test  run %s  closed loop  %d clients  duration %s  elapsed %.1fs\n\n", r.RunID, r.Workers, dur, r.ElapsedS)
	} else {
		fmt.Fprintf(w, "omsd load test  run %s  profile %s  peak %.0f/s  duration %s  elapsed %.1fs\n\n", r.RunID, r.Profile, r.PeakRate, dur, r.ElapsedS)
	}
	if r.Interrupted {
		line("INTERRUPTED", "the schedule was cut short")
	}
	if r.Mode == "closed" {
		line("rate /s", "offered: none (closed loop, each client waits for its answer)", f("achieved %.1f", r.AchievedRate), f("accepted %.1f", r.AcceptedRate))
	} else {
		line("rate /s", f("offered %.1f", r.OfferedRate), f("achieved %.1f", r.AchievedRate), f("accepted %.1f", r.AcceptedRate))
	}
	line("requests", f("scheduled %d", r.Scheduled), f("sent %d", r.Sent), f("answered %d", r.Answered),
		f("errors %d", r.Errors), f("unsent %d", r.Unsent), f("retries %d", r.Retries), f("gave up %d", r.GaveUp))
	line("overload", f("accepted %.1f/s", r.AcceptedRate), f("p99 of 2xx %.2f ms", r.AcceptedLatencyMs.P99),
		f("answered 503 %.1f%% (%d)", r.Share503*100, r.Final503), f("attempts answered 503 %d", r.Attempts503))
	var sc []string
	for _, k := range sortedKeys(r.StatusCounts) {
		sc = append(sc, f("%s: %d", k, r.StatusCounts[k]))
	}
	line("status", sc...)
	for _, k := range sortedKeys(r.ProblemTypes) {
		line("problem", f("%s: %d", k, r.ProblemTypes[k]))
	}
	for _, e := range r.ErrorSamples {
		line("error sample", e)
	}
	if r.UnknownOrders > 0 {
		line("unknown outcome", f("%d orders", r.UnknownOrders), f("recovered %d", r.Recovered), f("unresolved %d", r.Unresolved))
	}
	for _, fr := range r.Faults {
		dur := f("lasted %.1fs", fr.DurationS)
		if !fr.Ended {
			dur = f("planned %.1fs (end unknown)", fr.DurationS)
		}
		vals := []string{fr.Kind, f("at %.1fs (intended %.1fs)", fr.StartS, fr.OffsetS), dur}
		if fr.Error != "" {
			vals = append(vals, "ERROR "+fr.Error)
		} else {
			var wc []string
			for _, k := range sortedKeys(fr.Window) {
				wc = append(wc, f("%s: %d", k, fr.Window[k]))
			}
			vals = append(vals, f("answers in [%.1fs, %.1fs]: %s", fr.WindowS[0], fr.WindowS[1], strings.Join(wc, " ")),
				f("retries %d", fr.Retries), f("gave up %d", fr.GaveUp))
		}
		line("fault", vals...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if r.Mode == "closed" {
		fmt.Fprintln(w, "closed loop: every request is sent the moment a client is free, so latency = service time")
	}
	fmt.Fprintf(w, "%-33s %9s %9s %9s %9s %9s\n", "latency ms", "p50", "p90", "p99", "p99.9", "max")
	for _, row := range []struct {
		name string
		q    Percentiles
	}{{"from intended send time", r.LatencyMs}, {"  of 2xx answers only", r.AcceptedLatencyMs},
		{"service time (from actual send)", r.ServiceTimeMs}, {"send lag", r.SendLagMs}} {
		fmt.Fprintf(w, "%-33s %9.2f %9.2f %9.2f %9.2f %9.2f\n", row.name, row.q.P50, row.q.P90, row.q.P99, row.q.P999, row.q.Max)
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if cs := r.Customers; cs != nil {
		line("customers", f("buyers %d", cs.Buyers), f("through 2+ channels %d", cs.CrossChannel), f("matched as one %d", cs.Matched),
			f("split %d", cs.Split), f("attributed orders %d", cs.Attributed), f("inherited a binding %d", cs.Inherited))
	}
	if rs := r.Returns; rs != nil {
		line("returns", f("selected %d", rs.Selected), f("requested %d", rs.Requested), f("approved %d", rs.Approved),
			f("received %d", rs.Received), f("refunded %d", rs.Refunded), f("not shipped %d", rs.NotShipped), f("failed %d", rs.Failed))
		for _, e := range rs.Errors {
			line("return error", e)
		}
	}
	if r.Audit == nil {
		line("audit", "NOT RUN", r.AuditError)
		return tw.Flush()
	}
	if r.QuietS > 0 {
		line("settled", f("stock quiet %.1fs after the last answer", r.QuietS))
	}
	a := r.Audit
	verdict := "PASS"
	if !r.Passed() {
		verdict = "FAIL"
	}
	line("audit", verdict, f("oversold_units %d", a.OversoldUnits), f("missing_orders %d", a.MissingOrders),
		f("duplicate_shipments %d", a.DuplicateShipments), f("leaked_units %d", a.LeakedUnits), f("unpaid_shipments %d", a.UnpaidShipments),
		f("gave_up_unheld %d", a.GaveUpUnheld))
	if a.Returns > 0 {
		line("returns audit", f("returns %d", a.Returns), f("units back %d", a.ReturnedUnits), f("oms.returns events %d", a.ReturnEvents),
			f("refunds_without_receipt %d", a.RefundsWithoutReceipt), f("returns_past_shipped %d", a.ReturnsPastShipped),
			f("duplicate_return_events %d", a.DuplicateReturnEvents))
	}
	if a.BindingsChecked > 0 || a.BindingsMissing > 0 {
		line("customers audit", f("orders due a binding %d", a.BindingsChecked), f("bindings_missing %d", a.BindingsMissing))
	}
	if a.GaveUpOrders > 0 {
		line("gave up", f("orders %d", a.GaveUpOrders), f("stored with shipments %d", a.GaveUpStored-a.GaveUpUnheld),
			f("stored without stock %d", a.GaveUpUnheld), f("not stored %d", a.GaveUpNotStored))
	}
	checked := "all"
	if a.Sampled {
		checked = "a random sample"
	}
	shipments := "not read"
	if a.ShipmentsChecked {
		shipments = f("%d", a.ShipmentEvents)
	}
	line("audited", f("orders accepted %d", a.OrdersAccepted), f("read back %d (%s)", a.OrdersChecked, checked),
		f("unreadable %d", a.OrdersUnreadable), f("SKUs %d", a.SKUsChecked), f("shipment events %s", shipments))
	for _, n := range a.Notes {
		line("note", n)
	}
	if r.AuditError != "" {
		line("audit error", r.AuditError)
	}
	for i, fd := range a.Findings {
		if i == 20 {
			line("finding", f("... %d more in the JSON report", len(a.Findings)-20+a.FindingsTruncated))
			break
		}
		line("finding", fd.Check, fd.Key, fd.Detail)
	}
	return tw.Flush()
}
