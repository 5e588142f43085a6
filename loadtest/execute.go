package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Options is a whole load test: the run, then the audit.
type Options struct {
	Target Target
	Seed   *SeedFile
	Run    RunConfig
	Client ClientConfig
	Audit  AuditConfig
	// Settle is the pause between the last answer and the audit, for the
	// asynchronous parts (outbox relay, warehouse events) to catch up.
	// Default 2s.
	Settle time.Duration
	// QuietTimeout bounds the wait, after Settle, for the stock to stop
	// moving (two identical snapshots a second apart). Default 3 minutes:
	// under heavy load the warehouse events lag behind intake.
	QuietTimeout time.Duration
	// NoAudit runs the load only: no stock snapshot before it, no
	// settling and no audit after it (Report.NotAudited). For a server
	// that keeps no stock, such as a reference HTTP server measuring what
	// the client and the network alone can do. The seed file is still
	// needed, for the SKUs and the channel keys.
	NoAudit bool
	// Log, if not nil, gets a line per phase.
	Log io.Writer
}

// Execute snapshots the stock of the seeded SKUs, runs the load, waits
// Settle, gathers the audit data and audits it. The report is returned
// even when the audit could not run (Report.AuditError). An error means
// the load could not start.
func Execute(ctx context.Context, o Options) (*Report, error) {
	if err := o.Target.Validate(); err != nil {
		return nil, err
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	if o.QuietTimeout <= 0 {
		o.QuietTimeout = 3 * time.Minute
	}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "oms-loadtest: "+format+"\n", a...)
		}
	}
	c := NewClient(o.Target, o.Client)
	defer c.Close()
	ac := o.Client
	ac.Retries = max(ac.Retries, 3)
	auditClient := NewClient(o.Target, ac)
	defer auditClient.Close()

	if o.Seed.APIURL != "" && o.Seed.APIURL != strings.TrimRight(o.Target.APIURL, "/") {
		logf("note: the seed file was made for %s, the target is %s", o.Seed.APIURL, o.Target.APIURL)
	}
	if err := preflight(ctx, auditClient, o.Seed); err != nil {
		return nil, err
	}
	var notes []string
	var initial []StockLevel
	if !o.NoAudit {
		logf("snapshot of %d SKUs before the load", len(o.Seed.SKUs))
		var err error
		initial, err = Snapshot(ctx, auditClient, o.Seed.SKUs, o.Audit.Concurrency)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			logf("snapshot failed (%v): the audit uses the seeded stock", err)
			notes = append(notes, "initial stock from the seed file (snapshot failed: "+err.Error()+")")
			initial = InitialStock(o.Seed)
		}
	}

	if len(o.Run.Faults) > 0 && o.Run.Injector == nil {
		dc, err := NewDevControl(o.Target)
		if err != nil {
			return nil, err
		}
		o.Run.Injector = dc
	}
	if o.Run.Closed {
		logf("run: closed loop, %d clients for %s over %d API URL(s)", o.Run.Workers, o.Run.Duration, len(o.Target.URLs()))
	} else {
		logf("run: %s at %.0f/s for %s over %d API URL(s)", o.Run.Profile, o.Run.Rate, o.Run.Duration, len(o.Target.URLs()))
	}
	for _, f := range o.Run.Faults {
		logf("fault %s at %s", f.Kind, f.Offset)
	}
	res, err := Run(ctx, c, o.Seed, o.Run)
	if err != nil {
		return nil, err
	}
	loadEnd := time.Now()
	if len(res.Faults) > 0 {
		if err := waitFaultsOver(ctx, o.Run.Injector, time.Minute); err != nil {
			notes = append(notes, "fault end times unknown: "+err.Error())
		}
		if err := UpdateFaults(ctx, o.Run.Injector, res); err != nil {
			notes = append(notes, "fault end times unknown: "+err.Error())
		}
		for _, f := range res.Faults {
			logf("fault %s: started at %.1fs, lasted %.1fs %s", f.Kind, f.StartS, f.DurationS, f.Error)
		}
	}
	rep := NewReport(res, strings.Join(o.Target.URLs(), ","))
	if res.Interrupted || ctx.Err() != nil {
		rep.AuditError = "interrupted before the end of the schedule: not audited"
		return rep, nil
	}
	if o.NoAudit {
		rep.NotAudited = true
		rep.AuditError = "not audited (no-audit run: load only)"
		return rep, nil
	}

	logf("settle %s, then audit %d accepted orders", o.Settle, len(res.Accepted))
	t := time.NewTimer(o.Settle)
	select {
	case <-ctx.Done():
		t.Stop()
		rep.AuditError = "interrupted while settling: not audited"
		return rep, nil
	case <-t.C:
	}
	// The server keeps working after the last answer (outbox relay,
	// warehouse events, re-sourcing). Audit a still picture: wait until two
	// stock snapshots a second apart agree, or QuietTimeout passes.
	if quiet, err := waitQuiet(ctx, auditClient, o.Seed.SKUs, o.Audit.Concurrency, o.QuietTimeout); err != nil {
		if ctx.Err() != nil {
			rep.AuditError = "interrupted while settling: not audited"
			return rep, nil
		}
		notes = append(notes, "stock snapshot failed while waiting for the server to settle: "+err.Error())
	} else if !quiet {
		notes = append(notes, "the stock was still moving after "+o.QuietTimeout.String()+": the audit may count work in flight")
	} else {
		rep.QuietS = round3(time.Since(loadEnd).Seconds())
	}
	logf("stock settled; gathering the audit data")
	o.Audit.Brokers = o.Target.Brokers
	in, st, err := Gather(ctx, auditClient, o.Seed, res.Accepted, res.Unknown, initial, o.Audit)
	rep.Recovered, rep.Unresolved = st.Recovered, st.Unresolved
	if err != nil {
		rep.AuditError = err.Error()
		return rep, nil
	}
	if len(res.Returns) > 0 {
		keys := map[string]string{}
		for _, ch := range o.Seed.Channels {
			keys[ch.ID] = ch.APIKey
		}
		in.Returns = GatherReturns(ctx, auditClient, res.Returns, keys)
		if len(o.Target.Brokers) > 0 {
			if in.ReturnEvents, err = ReadReturnEvents(ctx, o.Target.Brokers); err != nil {
				rep.AuditError = "oms.returns could not be read: " + err.Error()
				return rep, nil
			}
			in.ReturnEventsRead = true
		}
	}
	in.Answers = res.Accepted
	a := Audit(in)
	a.Notes = append(notes, a.Notes...)
	rep.Audit = &a
	return rep, nil
}

// waitFaultsOver polls the injector until every fault it carried out has
// ended (the restarted instance ready, the broker back), or timeout.
func waitFaultsOver(ctx context.Context, inj FaultInjector, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		evs, err := inj.Faults(ctx)
		if err != nil {
			return err
		}
		over := true
		for _, e := range evs {
			over = over && e.EndedAt != nil
		}
		if over {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("a fault was still in progress after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// preflight checks that the server accepts every channel key of the seed
// file (a stack restarted since the seed has new keys), by reading an
// order that does not exist: 404 is the healthy answer, 401/403 is not.
func preflight(ctx context.Context, c *Client, s *SeedFile) error {
	for _, ch := range s.Channels {
		r, err := c.Do(ctx, http.MethodGet, "/v1/orders/loadtest-preflight", ch.APIKey, "", nil)
		if err != nil {
			return fmt.Errorf("loadtest: preflight: %w", err)
		}
		if r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden {
			return fmt.Errorf("loadtest: preflight: the API refuses channel %q's key (%d): the seed file is for another stack; run seed again", ch.ID, r.Status)
		}
	}
	return nil
}

// waitQuiet polls the stock of skus until two snapshots a second apart are
// equal (true) or timeout passes (false).
func waitQuiet(ctx context.Context, c *Client, skus []SKU, concurrency int, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	prev, err := Snapshot(ctx, c, skus, concurrency)
	if err != nil {
		return false, err
	}
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Second):
		}
		cur, err := Snapshot(ctx, c, skus, concurrency)
		if err != nil {
			return false, err
		}
		if sameStock(prev, cur) {
			return true, nil
		}
		prev = cur
	}
	return false, nil
}

// sameStock compares two snapshots as sets (a snapshot's order follows
// its concurrent reads).
func sameStock(a, b []StockLevel) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[[2]string]StockLevel, len(a))
	for _, l := range a {
		m[[2]string{l.NodeID, l.SKU}] = l
	}
	for _, l := range b {
		if m[[2]string{l.NodeID, l.SKU}] != l {
			return false
		}
	}
	return true
}
