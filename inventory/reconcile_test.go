package inventory_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/memstock"
	"github.com/omsd/omsd/inventory/stocktest"
)

// TestReconcilerRunRebuildsLostNodes: Run notices that the store lost its
// data, rebuilds it from the ledger and reconciles, with metrics.
func TestReconcilerRunRebuildsLostNodes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := memstock.New(memstock.Config{})
	ledger := stocktest.NewLedger()
	ledger.SetStock("n1", "a", 10, 1)
	ledger.PutHold(inventory.Hold{ID: "h1", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 3}}})
	reg := prometheus.NewRegistry()
	r, err := inventory.NewReconciler(ledger, s, inventory.ReconcilerConfig{
		Interval: 5 * time.Millisecond, Settle: -1, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	waitFor(t, "the first build", func() bool { ok, _ := s.Ready(ctx, "n1"); return ok })
	s.Lose()
	if err := s.Reserve(ctx, inventory.Hold{ID: "h2", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 1}}}); !errors.Is(err, inventory.ErrNotReady) {
		t.Fatalf("reserve after the loss: got %v, want ErrNotReady", err)
	}
	waitFor(t, "the rebuild after the loss", func() bool { ok, _ := s.Ready(ctx, "n1"); return ok })
	ls, err := s.Levels(ctx, []inventory.Key{{Node: "n1", SKU: "a"}})
	if err != nil || ls[0] != inventory.NewLevel("n1", "a", 10, 3, 1) {
		t.Errorf("after the rebuild: got %+v, %v", ls, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if got := sample(t, reg, "omsd_inventory_rebuilds_total", "ok"); got < 2 {
		t.Errorf("rebuilds: got %v, want at least 2", got)
	}
}

func TestReconcilerMetrics(t *testing.T) {
	ctx := context.Background()
	s := memstock.New(memstock.Config{AutoReady: true})
	ledger := stocktest.NewLedger()
	ledger.SetStock("n1", "a", 10, 0)
	ledger.SetStock("n1", "b", 10, 0)
	if _, err := s.SetStock(ctx, "n1", "a", 12, 0); err != nil { // drifted
		t.Fatal(err)
	}
	if _, err := s.SetStock(ctx, "n1", "b", 10, 0); err != nil {
		t.Fatal(err)
	}
	ledger.PutHold(inventory.Hold{ID: "lost", Node: "n1", Lines: []inventory.Line{{SKU: "b", Qty: 1}}})
	reg := prometheus.NewRegistry()
	r, err := inventory.NewReconciler(ledger, s, inventory.ReconcilerConfig{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, label string
		want        float64
	}{
		{"omsd_inventory_drift_found_total", "missing_hold", 1},
		{"omsd_inventory_drift_found_total", "on_hand", 1},
		{"omsd_inventory_drift_repaired_total", "missing_hold", 1},
		{"omsd_inventory_drift_repaired_total", "on_hand", 1}, // in the same pass
		{"omsd_inventory_drift_units_total", "on_hand", 2},
		{"omsd_inventory_drift_keys", "", 1},
	} {
		if got := sample(t, reg, c.name, c.label); got != c.want {
			t.Errorf("%s{%s}: got %v, want %v", c.name, c.label, got, c.want)
		}
	}
	rep, err := r.Reconcile(ctx)
	if err != nil || len(rep.Drifts) != 0 {
		t.Errorf("second pass: got %+v, %v; want no drift", rep.Drifts, err)
	}
	if got := sample(t, reg, "omsd_inventory_drift_keys", ""); got != 0 {
		t.Errorf("drift keys after the repair: got %v, want 0", got)
	}
}

// TestReconcilerUnfitHoldHookAndMetric: a ledger hold the store lost that
// no longer fits is counted once, and OnUnfitHold is retried until it
// accepts the hold, then not called again while it stays unfit.
func TestReconcilerUnfitHoldHookAndMetric(t *testing.T) {
	ctx := context.Background()
	s := memstock.New(memstock.Config{AutoReady: true})
	ledger := stocktest.NewLedger()
	m := stocktest.Mirror{Store: s, Ledger: ledger}
	if _, err := m.SetStock(ctx, "n1", "a", 5, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Reserve(ctx, inventory.Hold{ID: "buyer", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 4}}}); err != nil {
		t.Fatal(err)
	}
	ledger.PutHold(inventory.Hold{ID: "lost", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 3}}})
	calls := 0
	reg := prometheus.NewRegistry()
	r, err := inventory.NewReconciler(ledger, s, inventory.ReconcilerConfig{Registerer: reg,
		OnUnfitHold: func(_ context.Context, node, id string) error {
			calls++
			if node != "n1" || id != "lost" {
				t.Errorf("OnUnfitHold(%s, %s), want (n1, lost)", node, id)
			}
			if calls == 1 {
				return errors.New("order store unavailable")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx); err == nil {
		t.Errorf("first pass: got nil, want the hook's error")
	}
	for pass := 2; pass <= 3; pass++ {
		if _, err := r.Reconcile(ctx); err != nil {
			t.Errorf("pass %d: %v", pass, err)
		}
	}
	if calls != 2 {
		t.Errorf("OnUnfitHold calls: got %d, want 2 (one failed, one accepted)", calls)
	}
	if got := sample(t, reg, "omsd_inventory_unfit_holds_total", ""); got != 1 {
		t.Errorf("unfit holds: got %v, want 1", got)
	}
	if got := sample(t, reg, "omsd_inventory_drift_found_total", "unfit_hold"); got != 3 {
		t.Errorf("unfit drifts found: got %v, want 3 (one per pass)", got)
	}
	if got := sample(t, reg, "omsd_inventory_oversell_guard_total", ""); got != 0 {
		t.Errorf("oversell guard: got %v, want 0", got)
	}
	ls, err := s.Levels(ctx, []inventory.Key{{Node: "n1", SKU: "a"}})
	if err != nil || ls[0] != inventory.NewLevel("n1", "a", 5, 4, 0) {
		t.Errorf("level: got %+v, %v; want nothing reserved past on hand", ls, err)
	}
}

func TestRebuildRejectsBadNodes(t *testing.T) {
	err := inventory.Rebuild(context.Background(), stocktest.NewLedger(), memstock.New(memstock.Config{}), "a{b}")
	if !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("got %v, want ErrInvalid", err)
	}
}

func TestReconcilerConfig(t *testing.T) {
	_, err := inventory.NewReconciler(stocktest.NewLedger(), memstock.New(memstock.Config{}), inventory.ReconcilerConfig{Grace: -time.Second})
	if !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("negative grace: got %v, want ErrInvalid", err)
	}
	// Two reconcilers cannot share a registry's metric names silently.
	reg := prometheus.NewRegistry()
	if _, err := inventory.NewReconciler(stocktest.NewLedger(), memstock.New(memstock.Config{}), inventory.ReconcilerConfig{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := inventory.NewReconciler(stocktest.NewLedger(), memstock.New(memstock.Config{}), inventory.ReconcilerConfig{Registerer: reg}); err == nil {
		t.Error("second reconciler on one registry: got nil, want a registration error")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sample returns the value of the counter or gauge name whose (only)
// label has the value label ("" for none).
func sample(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetValue() == label }) {
				continue
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

// TestReconcilerRestockMetrics: an owed restock is counted as a drift of
// its own kind, found and repaired, with its units, and no on-hand drift
// on top.
func TestReconcilerRestockMetrics(t *testing.T) {
	ctx := context.Background()
	s := memstock.New(memstock.Config{AutoReady: true})
	ledger := stocktest.NewLedger()
	ledger.SetStock("n1", "a", 10, 0)
	if _, err := s.SetStock(ctx, "n1", "a", 10, 0); err != nil {
		t.Fatal(err)
	}
	ledger.Restock("n1", "r1", "a", 4) // booked in SQL; the store was never told
	reg := prometheus.NewRegistry()
	r, err := inventory.NewReconciler(ledger, s, inventory.ReconcilerConfig{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Reconcile(ctx)
	if err != nil || len(rep.Drifts) != 1 || rep.Drifts[0] != (inventory.Drift{Kind: inventory.DriftRestock, Node: "n1", SKU: "a",
		RestockID: "r1", Ledger: 4, Repaired: true}) {
		t.Fatalf("reconcile: got %+v, %v; want one repaired restock drift", rep.Drifts, err)
	}
	for _, c := range []struct {
		name, label string
		want        float64
	}{
		{"omsd_inventory_drift_found_total", "restock", 1},
		{"omsd_inventory_drift_repaired_total", "restock", 1},
		{"omsd_inventory_drift_units_total", "restock", 4},
		{"omsd_inventory_drift_keys", "", 1},
	} {
		if got := sample(t, reg, c.name, c.label); got != c.want {
			t.Errorf("%s{%s}: got %v, want %v", c.name, c.label, got, c.want)
		}
	}
	ls, err := s.Levels(ctx, []inventory.Key{{Node: "n1", SKU: "a"}})
	if err != nil || ls[0].OnHand != 14 {
		t.Errorf("on hand: got %+v, %v; want 14", ls, err)
	}
	if rep, err := r.Reconcile(ctx); err != nil || len(rep.Drifts) != 0 {
		t.Errorf("second pass: got %+v, %v; want no drift", rep.Drifts, err)
	}
}
