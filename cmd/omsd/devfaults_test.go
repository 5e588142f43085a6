package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omsd/omsd/loadtest"
)

func controlPost(t *testing.T, d *devStack, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.env["OMS_DEV_CONTROL_URL"]+"/faults", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// faultRun is one load test with one fault, and what it found.
type faultRun struct {
	kind   string
	offset time.Duration
}

// TestFaultsUnderLoadLeaveACleanAudit starts `omsd dev --instances 2`,
// checks its control endpoint, then runs a small load test per fault
// kind (50 orders/s for 15 s, the fault 4 s in) and fails on any audit
// finding, naming the fault that produced it. The subtests share one
// stack, in an order where a lingering effect touches the fewest others.
func TestFaultsUnderLoadLeaveACleanAudit(t *testing.T) {
	d := startDev(t, "--instances", "2")
	token := d.env["OMS_DEV_CONTROL_TOKEN"]

	// The control endpoint: token required, kinds checked, one fault of
	// a kind at a time; and a fault starts when asked.
	if st, _ := controlPost(t, d, "wrong", `{"kind":"redis-flush"}`); st != http.StatusUnauthorized {
		t.Errorf("got %d with a wrong token, want 401", st)
	}
	if st, out := controlPost(t, d, token, `{"kind":"disk-full"}`); st != http.StatusBadRequest {
		t.Errorf("got %d %v for an unknown kind, want 400", st, out)
	}
	if st, out := controlPost(t, d, token, `{"kind":"redis-flush","extra":1}`); st != http.StatusBadRequest {
		t.Errorf("got %d %v for an unknown field, want 400", st, out)
	}
	before := time.Now()
	st, out := controlPost(t, d, token, `{"kind":"pg-stall"}`)
	if st != http.StatusAccepted {
		t.Fatalf("got %d %v for pg-stall, want 202", st, out)
	}
	started, _ := time.Parse(time.RFC3339Nano, out["started_at"].(string))
	if started.Before(before.Add(-time.Second)) || out["duration_ms"].(float64) != 5000 {
		t.Errorf("got started_at %v duration_ms %v, want now and 5000", out["started_at"], out["duration_ms"])
	}
	if st, _ := controlPost(t, d, token, `{"kind":"pg-stall"}`); st != http.StatusConflict {
		t.Errorf("got %d for a second pg-stall during the first, want 409", st)
	}
	ctl := &loadtest.DevControl{URL: d.env["OMS_DEV_CONTROL_URL"], Token: token}
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 30*time.Second)
	for {
		evs, err := ctl.Faults(waitCtx)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 1 && evs[0].EndedAt != nil {
			if lasted := evs[0].EndedAt.Sub(evs[0].StartedAt); lasted < 5*time.Second || lasted > 8*time.Second {
				t.Errorf("pg-stall lasted %s, want about 5 s", lasted)
			}
			break
		}
		if waitCtx.Err() != nil {
			t.Fatal("the pg-stall never ended")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancelWait()
	if got := getStatus(t, d.env["OMS_API_URL"]+"/readyz"); got != 200 {
		t.Errorf("got /readyz %d after the stall, want 200", got)
	}

	tg := loadtest.TargetFromEnv(func(k string) string { return d.env[k] })
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	sc := loadtest.NewClient(tg, loadtest.ClientConfig{Retries: 3})
	seed, err := loadtest.Seed(ctx, sc, loadtest.SeedConfig{SKUs: 200, Nodes: 6, Stock: 300, Prefix: "ft"})
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}

	for _, fr := range []faultRun{
		{loadtest.FaultRedisFlush, 4 * time.Second},
		{loadtest.FaultOMSDKill, 4 * time.Second},
		{loadtest.FaultPGStall, 4 * time.Second},
		{loadtest.FaultBrokerRestart, 4 * time.Second},
		{loadtest.FaultWMSPoison, 4 * time.Second},
	} {
		t.Run(fr.kind, func(t *testing.T) {
			var log bytes.Buffer
			rep, err := loadtest.Execute(ctx, loadtest.Options{
				Target: tg, Seed: seed,
				Run: loadtest.RunConfig{Rate: 50, Duration: 15 * time.Second, Workers: 64,
					Faults: []loadtest.FaultSpec{{Kind: fr.kind, Offset: fr.offset}}},
				Client:       loadtest.ClientConfig{Timeout: 5 * time.Second, Retries: 6, Backoff: 100 * time.Millisecond},
				Settle:       3 * time.Second,
				QuietTimeout: 60 * time.Second,
				Log:          &log,
			})
			if err != nil {
				t.Fatalf("%s: %v\n%s", fr.kind, err, log.String())
			}
			var tbl bytes.Buffer
			_ = rep.WriteTable(&tbl)
			_ = rep.WriteJSON(filepath.Join(d.dir, "fault-"+fr.kind+".json"))
			t.Logf("%s:\n%s", fr.kind, tbl.String())
			if len(rep.Faults) != 1 || rep.Faults[0].Error != "" || !rep.Faults[0].Ended {
				t.Errorf("%s: the fault was not carried out completely: %+v", fr.kind, rep.Faults)
			}
			if rep.Accepted == 0 {
				t.Errorf("%s: no order accepted", fr.kind)
			}
			if !rep.Passed() {
				if rep.Audit == nil {
					t.Fatalf("%s: the audit could not run: %s", fr.kind, rep.AuditError)
				}
				a := rep.Audit
				t.Errorf("%s: audit FAILED: oversold_units=%d missing_orders=%d duplicate_shipments=%d leaked_units=%d unpaid_shipments=%d gave_up_unheld=%d unreadable=%d unresolved=%d",
					fr.kind, a.OversoldUnits, a.MissingOrders, a.DuplicateShipments, a.LeakedUnits, a.UnpaidShipments, a.GaveUpUnheld, a.OrdersUnreadable, rep.Unresolved)
				for i, f := range a.Findings {
					if i == 10 {
						break
					}
					t.Errorf("%s: finding %s %s: %s", fr.kind, f.Check, f.Key, f.Detail)
				}
			}
		})
	}

	// Race-enabled children report data races in their logs.
	logs, _ := filepath.Glob(filepath.Join(d.dir, "omsd-*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil && bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("%s reports a data race:\n%s", l, tail(l, 60))
		}
	}
	if err := d.stop(t); err != nil {
		t.Errorf("omsd dev: %v", err)
	}
}
