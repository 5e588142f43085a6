package loadtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/omsd/omsd/loadtest/fakeoms"
)

func TestExecuteAgainstAConsistentServerPasses(t *testing.T) {
	tests := []struct {
		scenario string
		seed     SeedConfig
		run      RunConfig
		want409  bool
	}{
		{"plenty of stock: every order is accepted",
			SeedConfig{SKUs: 40, Nodes: 8, Stock: 1000},
			RunConfig{Rate: 120, Duration: time.Second, Workers: 16, Mix: MixConfig{PendingShare: 0.3}}, false},
		{"a flash sale sells hot SKUs out: refusals, but no oversell",
			SeedConfig{SKUs: 10, Nodes: 2, Stock: 5},
			RunConfig{Profile: ProfileFlashSale, Rate: 200, Duration: 1500 * time.Millisecond, Workers: 16, Mix: MixConfig{HotSKUs: 3, HotShare: 0.9}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			f, tg := startFake(t)
			tg.Brokers = startBroker(t)
			sf, _ := mustSeed(t, tg, tt.seed)
			var log bytes.Buffer
			rep, err := Execute(testContext(t, 30*time.Second), Options{
				Target: tg, Seed: sf, Run: tt.run, Settle: 10 * time.Millisecond, Log: &log,
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Audit == nil {
				t.Fatalf("audit did not run: %s", rep.AuditError)
			}
			if !rep.Passed() {
				t.Fatalf("got audit %+v, want a pass", rep.Audit)
			}
			if got := int64(len(f.OrderIDs())); got != rep.Accepted || got != int64(rep.Audit.OrdersAccepted) || got != int64(rep.Audit.OrdersChecked) {
				t.Errorf("server has %d orders; report accepted %d, audit accepted %d checked %d", got, rep.Accepted, rep.Audit.OrdersAccepted, rep.Audit.OrdersChecked)
			}
			if !rep.Audit.ShipmentsChecked {
				t.Error("the topic was not read")
			}
			if got := rep.StatusCounts["409"] > 0; got != tt.want409 {
				t.Errorf("got status counts %v, want 409s: %v", rep.StatusCounts, tt.want409)
			}
			if tt.want409 && rep.ProblemTypes[fakeoms.ProblemBase+"insufficient-stock"] == 0 {
				t.Errorf("got problem types %v, want insufficient-stock", rep.ProblemTypes)
			}
			if !strings.Contains(log.String(), "settle") {
				t.Errorf("got log %q, want the phases", log.String())
			}
		})
	}
}

// runOnFake runs a short load on the fake and returns what the audit needs.
func runOnFake(t *testing.T, f *fakeoms.Server, tg Target, pending float64) (*SeedFile, *Client, *Result, []StockLevel) {
	t.Helper()
	sf, c := mustSeed(t, tg, SeedConfig{SKUs: 20, Nodes: 6, Stock: 100})
	initial, err := Snapshot(testContext(t, 5*time.Second), c, sf.SKUs, 8)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(testContext(t, 20*time.Second), c, sf, RunConfig{Rate: 100, Duration: 500 * time.Millisecond, Workers: 8, Mix: MixConfig{PendingShare: pending}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Accepted) < 40 {
		t.Fatalf("got %d accepted orders, want about 50", len(res.Accepted))
	}
	return sf, c, res, initial
}

func TestGatherAndAuditFindServerFaults(t *testing.T) {
	tests := []struct {
		scenario string
		fault    func(f *fakeoms.Server, res *Result)
		check    func(t *testing.T, a AuditResult)
	}{
		{"shipping released orders keeps the ledger balanced",
			func(f *fakeoms.Server, _ *Result) { f.ShipReleased(); f.ExpirePending(true) },
			func(t *testing.T, a AuditResult) {
				if !a.Clean() {
					t.Errorf("got %+v, want clean", a)
				}
			}},
		{"expired orders that keep their reservation leak",
			func(f *fakeoms.Server, _ *Result) { f.ExpirePending(false) },
			func(t *testing.T, a AuditResult) {
				if a.LeakedUnits == 0 || a.OversoldUnits != 0 || a.MissingOrders != 0 {
					t.Errorf("got %+v, want only leaked units", a)
				}
			}},
		{"an order the server forgot is missing",
			func(f *fakeoms.Server, res *Result) {
				f.DeleteOrder(res.Accepted[3].ID)
				f.DeleteOrder(res.Accepted[7].ID)
			},
			func(t *testing.T, a AuditResult) {
				if a.MissingOrders != 2 {
					t.Errorf("got %d missing orders, want 2", a.MissingOrders)
				}
			}},
		{"an extra reservation on a node leaks, and past on-hand oversells",
			func(f *fakeoms.Server, _ *Result) {
				f.AdjustReserved("WH-HZ", "SKU-000015", 1)
				f.AdjustReserved("WH-BJ", "SKU-000016", 150)
			},
			func(t *testing.T, a AuditResult) {
				if a.LeakedUnits != 151 || a.OversoldUnits < 50 {
					t.Errorf("got leaked %d oversold %d, want 151 and ≥ 50", a.LeakedUnits, a.OversoldUnits)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			f, tg := startFake(t)
			sf, c, res, initial := runOnFake(t, f, tg, 0.4)
			tt.fault(f, res)
			in, st, err := Gather(testContext(t, 10*time.Second), c, sf, res.Accepted, res.Unknown, initial, AuditConfig{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Recovered != 0 || in.ShipmentsRead {
				t.Errorf("got %+v, shipments read %v; want nothing recovered and no topic", st, in.ShipmentsRead)
			}
			tt.check(t, Audit(in))
		})
	}
}

func TestGatherSamplesLargeRuns(t *testing.T) {
	f, tg := startFake(t)
	sf, c, res, initial := runOnFake(t, f, tg, 0)
	in, _, err := Gather(testContext(t, 10*time.Second), c, sf, res.Accepted, nil, initial, AuditConfig{SampleMax: 10})
	if err != nil {
		t.Fatal(err)
	}
	a := Audit(in)
	if !a.Sampled || a.OrdersChecked != 10 || !a.Clean() {
		t.Errorf("got sampled %v checked %d clean %v, want true, 10, true", a.Sampled, a.OrdersChecked, a.Clean())
	}
}

func TestOrdersWithoutADefiniteAnswerAreLookedUp(t *testing.T) {
	// The server creates every order but answers 500: the client cannot
	// know. The audit finds them by external id, so the stock they hold
	// is accounted for.
	f := fakeoms.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/orders" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			f.ServeHTTP(httptest.NewRecorder(), r)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()
	tg := Target{APIURL: srv.URL, AdminKey: f.AdminKey}
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 10, Nodes: 3, Stock: 100})
	rep, err := Execute(testContext(t, 30*time.Second), Options{
		Target: tg, Seed: sf, Run: RunConfig{Rate: 50, Duration: 400 * time.Millisecond, Workers: 4},
		Client: ClientConfig{Retries: 0}, Settle: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.StatusCounts["500"] != 20 || rep.UnknownOrders != 20 || rep.Recovered != 20 {
		t.Errorf("got status counts %v, %d unknown, %d recovered; want 20 × 500, all recovered", rep.StatusCounts, rep.UnknownOrders, rep.Recovered)
	}
	if !rep.Passed() || rep.Audit.OrdersAccepted != 20 {
		t.Errorf("got audit %+v, want a pass over the 20 recovered orders", rep.Audit)
	}
	b, _ := json.Marshal(rep)
	if !bytes.Contains(b, []byte(`"recovered_orders":20`)) {
		t.Errorf("report JSON lacks recovered_orders: %s", b[:200])
	}
}

func TestExecuteRefusesAStaleSeedFile(t *testing.T) {
	_, tg := startFake(t)
	sf, _ := mustSeed(t, tg, SeedConfig{SKUs: 3, Nodes: 1, Stock: 1})
	sf.Channels[2].APIKey = "from-another-stack"
	_, err := Execute(testContext(t, 10*time.Second), Options{Target: tg, Seed: sf, Run: RunConfig{Rate: 1, Duration: time.Second}})
	if err == nil || !strings.Contains(err.Error(), "run seed again") {
		t.Errorf("got %v, want a preflight error", err)
	}
}

func TestOrderViewDecodesLeniently(t *testing.T) {
	for _, body := range []string{
		`{"id":"o1","status":"released","reserved_until":null,"lines":[{"sku":"A","qty":"1"}]}`,
		`{"id":"o1","status":"released","reserved_until":""}`,
		`{"id":"o1","status":"released","reserved_until":12}`,
	} {
		var v OrderView
		if err := json.Unmarshal([]byte(body), &v); err != nil || v.ID != "o1" || !v.ReservedUntil.IsZero() {
			t.Errorf("%s: got %+v, %v", body, v, err)
		}
	}
	var v OrderView
	if err := json.Unmarshal([]byte(`{"id":"o2","reserved_until":"2026-01-02T03:04:05.5Z"}`), &v); err != nil || v.ReservedUntil.Nanosecond() != 5e8 {
		t.Errorf("got %+v, %v", v, err)
	}
}
