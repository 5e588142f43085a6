package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DriftKind names a difference between the store and the ledger.
type DriftKind string

// The kinds of drift Reconcile finds. The comment says how it repairs each.
const (
	// DriftOnHand: on hand differs from the ledger. Set to the ledger's
	// value when the same difference is seen in two consecutive passes (a
	// shipment recorded on one side only a moment ago is not drift).
	DriftOnHand DriftKind = "on_hand"
	// DriftSafety: safety stock differs; repaired like on hand.
	DriftSafety DriftKind = "safety"
	// DriftReserved: the reserved counter differs from the sum of the
	// store's own open holds (a partial loss). Adjusted at once: the
	// snapshot is atomic, so this is never a transient.
	DriftReserved DriftKind = "reserved"
	// DriftOrphanHold: a hold open in the store that the ledger lacks, older
	// than the grace period: its order never committed. Released (the
	// stock-leak repair). Younger ones are in flight and left alone.
	DriftOrphanHold DriftKind = "orphan_hold"
	// DriftMissingHold: a hold the ledger has open and the store lost.
	// Re-added, reserving its lines.
	DriftMissingHold DriftKind = "missing_hold"
	// DriftClosedHold: a hold the ledger has open and the store has closed
	// (released, committed or expired). Reported only: which side is right
	// is the order's business, and the store's answer already reached it.
	DriftClosedHold DriftKind = "closed_hold"
	// DriftHoldLines: the same hold with other lines on each side. Reported
	// only.
	DriftHoldLines DriftKind = "hold_lines"
	// DriftDeadline: the ledger says paid (no deadline) and the store still
	// has a deadline, so the sweeper would expire a paid order. Confirmed.
	DriftDeadline DriftKind = "deadline"
)

// Drift is one difference found by Reconcile.
type Drift struct {
	Kind      DriftKind
	Node, SKU string // SKU is empty for hold drifts
	HoldID    string // empty for counter drifts
	Store     int64  // the store's value (units of the hold for hold drifts)
	Ledger    int64  // the ledger's value (for DriftReserved: the sum of the store's open holds)
	Repaired  bool
}

// ReconcileReport is the outcome of one pass.
type ReconcileReport struct {
	Nodes    int      // nodes compared
	NotReady []string // nodes skipped because they are not ready
	Drifts   []Drift
}

// ReconcilerConfig configures a Reconciler. The zero value means defaults.
type ReconcilerConfig struct {
	// Grace is how old a store hold missing from the ledger must be before
	// it is released as an orphan; default 5 minutes. Intake reserves before
	// its SQL commit, so it must exceed the longest intake (with retries).
	Grace time.Duration
	// Settle is how long Rebuild waits between fencing the nodes and reading
	// the ledger, so that intakes that reserved just before the loss finish
	// their SQL commit; default 2 s; negative means no wait.
	Settle time.Duration
	// Interval is the period of Run's full comparison; default 30 s.
	Interval time.Duration
	// ReadyEvery is the period of Run's ready check; default 2 s.
	ReadyEvery time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger gets one line per drift and per rebuild (ids only, no customer
	// data); default discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means no metrics.
	Registerer prometheus.Registerer
}

func (c *ReconcilerConfig) setDefaults() {
	if c.Grace == 0 {
		c.Grace = 5 * time.Minute
	}
	if c.Settle == 0 {
		c.Settle = 2 * time.Second
	}
	if c.Interval == 0 {
		c.Interval = 30 * time.Second
	}
	if c.ReadyEvery <= 0 {
		c.ReadyEvery = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the configuration after defaults.
func (c ReconcilerConfig) Validate() error {
	if c.Grace < 0 || c.Interval < 0 {
		return fmt.Errorf("%w: negative grace %v or interval %v", ErrInvalid, c.Grace, c.Interval)
	}
	return nil
}

// Reconciler compares the store with the ledger and repairs the drift, and
// rebuilds nodes that are not ready. It remembers the counter drift of the
// previous pass (on hand is repaired only when seen twice), so keep one
// Reconciler per process and call Reconcile from one goroutine at a time.
type Reconciler struct {
	ledger Ledger
	store  Rebuildable
	cfg    ReconcilerConfig
	m      *reconcileMetrics

	mu sync.Mutex
	// prev is what the last pass saw of each drifting key: the store's on
	// hand and safety and the ledger's. A drift is repaired only when the
	// next pass sees exactly the same four numbers: nothing moved on either
	// side in between, so no write in flight (a shipment booked in SQL
	// whose Redis commit is on its way) can explain it.
	prev map[Key][4]int64
}

// NewReconciler returns a Reconciler. Errors: ErrInvalid for a bad config,
// or the Registerer's error.
func NewReconciler(ledger Ledger, store Rebuildable, cfg ReconcilerConfig) (*Reconciler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newReconcileMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Reconciler{ledger: ledger, store: store, cfg: cfg, m: m, prev: map[Key][4]int64{}}, nil
}

// Reconcile runs one pass with the default configuration. With no memory of
// a previous pass it reports on-hand and safety drift without repairing it;
// use a long-lived Reconciler for that.
func Reconcile(ctx context.Context, ledger Ledger, store Rebuildable) (ReconcileReport, error) {
	r, err := NewReconciler(ledger, store, ReconcilerConfig{})
	if err != nil {
		return ReconcileReport{}, err
	}
	return r.Reconcile(ctx)
}

// Rebuild rebuilds the given nodes (all ledger nodes when none), waiting
// Settle between fencing and reading the ledger. See the package function.
func (r *Reconciler) Rebuild(ctx context.Context, nodes ...string) error {
	settle := r.cfg.Settle
	if settle < 0 {
		settle = 0
	}
	err := rebuild(ctx, r.ledger, r.store, settle, r.cfg.Logger, nodes)
	if err != nil {
		r.m.rebuilds.WithLabelValues("error").Inc()
		return err
	}
	r.m.rebuilds.WithLabelValues("ok").Inc()
	r.mu.Lock()
	r.prev = map[Key][4]int64{} // the rebuilt counters start afresh
	r.mu.Unlock()
	return nil
}

// NotReadyNodes returns the nodes that need a rebuild and updates the
// not-ready gauge.
func (r *Reconciler) NotReadyNodes(ctx context.Context) ([]string, error) {
	nodes, err := NotReadyNodes(ctx, r.ledger, r.store)
	if err != nil {
		return nil, err
	}
	r.m.notReady.Set(float64(len(nodes)))
	return nodes, nil
}

// Run rebuilds not-ready nodes and reconciles every Interval until ctx
// ends; errors are logged and retried at the next tick. It returns nil when
// ctx is cancelled.
//
// The ready check (a Redis that lost its data) runs every ReadyEvery, so
// that intake is back within seconds after a restart; the full comparison
// with the ledger runs every Interval.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	ready := time.NewTicker(r.cfg.ReadyEvery)
	defer ready.Stop()
	r.tick(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.tick(ctx)
		case <-ready.C:
			r.readyCheck(ctx)
		}
	}
}

// readyCheck rebuilds the nodes that are not ready.
func (r *Reconciler) readyCheck(ctx context.Context) bool {
	log := r.cfg.Logger
	nodes, err := r.NotReadyNodes(ctx)
	if err != nil {
		log.Error("inventory: ready check failed", "err", err)
		return false
	}
	if len(nodes) > 0 {
		log.Warn("inventory: nodes not ready, rebuilding from the ledger", "nodes", nodes)
		if err := r.Rebuild(ctx, nodes...); err != nil {
			log.Error("inventory: rebuild failed", "err", err)
		}
	}
	return true
}

func (r *Reconciler) tick(ctx context.Context) {
	log := r.cfg.Logger
	if !r.readyCheck(ctx) {
		return
	}
	if _, err := r.Reconcile(ctx); err != nil {
		log.Error("inventory: reconcile failed", "err", err)
	}
}

// Reconcile compares every ready node with the ledger, repairs what it may
// (see DriftKind) and reports every drift found. Nodes that are not ready
// are skipped and listed: they need a rebuild, not a repair.
func (r *Reconciler) Reconcile(ctx context.Context) (ReconcileReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep ReconcileReport
	// The ledger is read before the store: a hold committed to SQL after
	// this read is in the store already (intake reserves first), and one
	// reserved after it is younger than start, hence inside the grace.
	start := r.cfg.Now()
	nodes, err := allNodes(ctx, r.ledger, r.store)
	if err != nil {
		return rep, err
	}
	rows, err := r.ledger.Stock(ctx)
	if err != nil {
		return rep, fmt.Errorf("inventory: reconcile: ledger stock: %w", err)
	}
	holds, err := r.ledger.OpenHolds(ctx)
	if err != nil {
		return rep, fmt.Errorf("inventory: reconcile: ledger holds: %w", err)
	}
	rowsBy := make(map[string]map[string]StockRow)
	for _, row := range rows {
		if rowsBy[row.Node] == nil {
			rowsBy[row.Node] = map[string]StockRow{}
		}
		rowsBy[row.Node][row.SKU] = row
	}
	holdsBy := make(map[string]map[string]Hold)
	for _, h := range holds {
		nh, err := NormalizeHold(h)
		if err != nil {
			return rep, fmt.Errorf("inventory: reconcile: ledger hold %q: %w", h.ID, err)
		}
		if holdsBy[h.Node] == nil {
			holdsBy[h.Node] = map[string]Hold{}
		}
		holdsBy[h.Node][h.ID] = nh
	}
	next := map[Key][4]int64{}
	drifting := map[Key]bool{}
	var errs []error
	for _, node := range nodes {
		snap, err := r.store.Snapshot(ctx, node)
		if err != nil {
			errs = append(errs, fmt.Errorf("inventory: reconcile %s: snapshot: %w", node, err))
			continue
		}
		if !snap.Ready {
			rep.NotReady = append(rep.NotReady, node)
			continue
		}
		rep.Nodes++
		ds, err := r.reconcileNode(ctx, snap, rowsBy[node], holdsBy[node], start, next, drifting)
		rep.Drifts = append(rep.Drifts, ds...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	r.prev = next
	for _, d := range rep.Drifts {
		r.m.found.WithLabelValues(string(d.Kind)).Inc()
		if diff := d.Store - d.Ledger; diff != 0 {
			r.m.units.WithLabelValues(string(d.Kind)).Add(float64(max(diff, -diff)))
		}
		if d.Repaired {
			r.m.repaired.WithLabelValues(string(d.Kind)).Inc()
		}
		r.cfg.Logger.Warn("inventory: drift", "kind", d.Kind, "node", d.Node, "sku", d.SKU, "hold", d.HoldID,
			"store", d.Store, "ledger", d.Ledger, "repaired", d.Repaired)
	}
	r.m.keys.Set(float64(len(drifting)))
	return rep, errors.Join(errs...)
}

func (r *Reconciler) reconcileNode(ctx context.Context, snap NodeSnapshot, rows map[string]StockRow,
	lholds map[string]Hold, start time.Time, next map[Key][4]int64, drifting map[Key]bool) ([]Drift, error) {
	node := snap.Node
	var out []Drift
	var errs []error

	// The reserved counter against the store's own open holds, from the
	// same atomic snapshot. Every later operation moves both by the same
	// amount, so adding the difference stays right whatever runs meanwhile.
	sum := map[string]int64{}
	for _, h := range snap.Holds {
		for _, l := range h.Lines {
			sum[l.SKU] += l.Qty
		}
	}
	// The no-oversell guard: units reserved beyond on hand should never
	// be seen; count them so that an alert fires if they ever are.
	for _, l := range snap.Levels {
		if l.Reserved > l.OnHand {
			r.m.oversell.Add(float64(l.Reserved - l.OnHand))
			r.cfg.Logger.Error("inventory: reserved beyond on hand", "node", node, "sku", l.SKU, "on_hand", l.OnHand, "reserved", l.Reserved)
		}
	}
	levels := map[string]Level{}
	for _, l := range snap.Levels {
		levels[l.SKU] = l
	}
	for sku := range sum {
		if _, ok := levels[sku]; !ok {
			levels[sku] = NewLevel(node, sku, 0, 0, 0)
		}
	}
	for _, sku := range sortedKeys(levels) {
		got := levels[sku].Reserved
		if got == sum[sku] {
			continue
		}
		d := Drift{Kind: DriftReserved, Node: node, SKU: sku, Store: got, Ledger: sum[sku]}
		if err := r.store.AdjustReserved(ctx, node, sku, sum[sku]-got); err != nil {
			errs = append(errs, fmt.Errorf("inventory: reconcile %s/%s: adjust reserved: %w", node, sku, err))
		} else {
			d.Repaired = true
		}
		drifting[Key{node, sku}] = true
		out = append(out, d)
	}

	// Holds in the store that the ledger lacks.
	shold := map[string]StoredHold{}
	cutoff := start.Add(-r.cfg.Grace)
	for _, h := range snap.Holds {
		shold[h.ID] = h
		if _, ok := lholds[h.ID]; ok {
			continue
		}
		if h.Created.After(cutoff) {
			continue // in flight: intake has not committed it to SQL yet
		}
		d := Drift{Kind: DriftOrphanHold, Node: node, HoldID: h.ID, Store: Units(h.Lines)}
		released, err := r.store.Release(ctx, node, h.ID)
		switch {
		case err == nil:
			d.Repaired = released
		case errors.Is(err, ErrHoldClosed) || errors.Is(err, ErrUnknownHold):
			// Closed meanwhile by its owner: nothing left to repair.
		default:
			errs = append(errs, fmt.Errorf("inventory: reconcile %s: release orphan %q: %w", node, h.ID, err))
		}
		out = append(out, d)
	}

	// Holds in the ledger: missing, different or still carrying a deadline.
	for _, id := range sortedKeys(lholds) {
		lh := lholds[id]
		sh, ok := shold[id]
		if !ok {
			d := Drift{Kind: DriftMissingHold, Node: node, HoldID: id, Ledger: Units(lh.Lines)}
			restored, err := r.store.RestoreHold(ctx, lh)
			var closed *HoldClosedError
			switch {
			case errors.As(err, &closed):
				d.Kind = DriftClosedHold
			case err != nil:
				errs = append(errs, fmt.Errorf("inventory: reconcile %s: restore hold %q: %w", node, id, err))
			default:
				d.Repaired = restored
				if !restored {
					continue // reserved meanwhile (a retried intake): no drift
				}
			}
			out = append(out, d)
			continue
		}
		if !SameLines(sh.Lines, lh.Lines) {
			out = append(out, Drift{Kind: DriftHoldLines, Node: node, HoldID: id, Store: Units(sh.Lines), Ledger: Units(lh.Lines)})
		}
		if lh.Deadline.IsZero() && !sh.Deadline.IsZero() {
			d := Drift{Kind: DriftDeadline, Node: node, HoldID: id}
			err := r.store.Confirm(ctx, node, id)
			switch {
			case err == nil:
				d.Repaired = true
			case errors.Is(err, ErrHoldClosed) || errors.Is(err, ErrUnknownHold):
			default:
				errs = append(errs, fmt.Errorf("inventory: reconcile %s: confirm %q: %w", node, id, err))
			}
			out = append(out, d)
		}
	}

	// On hand and safety against the ledger, repaired when seen twice.
	skus := map[string]bool{}
	for sku := range rows {
		skus[sku] = true
	}
	for sku, l := range levels {
		if l.OnHand != 0 || l.Safety != 0 {
			skus[sku] = true
		}
	}
	for _, sku := range sortedKeys(skus) {
		l := levels[sku]
		row := rows[sku]
		diff := [2]int64{l.OnHand - row.OnHand, l.Safety - row.Safety}
		if diff == [2]int64{} {
			continue
		}
		key := Key{node, sku}
		drifting[key] = true
		seen := [4]int64{l.OnHand, l.Safety, row.OnHand, row.Safety}
		prevSeen, had := r.prev[key]
		seenTwice := had && prevSeen == seen
		repaired := false
		if seenTwice {
			if _, err := r.store.SetStock(ctx, node, sku, row.OnHand, row.Safety); err != nil {
				errs = append(errs, fmt.Errorf("inventory: reconcile %s/%s: set stock: %w", node, sku, err))
			} else {
				repaired = true
			}
		} else {
			next[key] = seen
		}
		if diff[0] != 0 {
			out = append(out, Drift{Kind: DriftOnHand, Node: node, SKU: sku, Store: l.OnHand, Ledger: row.OnHand, Repaired: repaired})
		}
		if diff[1] != 0 {
			out = append(out, Drift{Kind: DriftSafety, Node: node, SKU: sku, Store: l.Safety, Ledger: row.Safety, Repaired: repaired})
		}
	}
	return out, errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type reconcileMetrics struct {
	units    *prometheus.CounterVec
	oversell prometheus.Counter
	found    *prometheus.CounterVec
	repaired *prometheus.CounterVec
	keys     prometheus.Gauge
	notReady prometheus.Gauge
	rebuilds *prometheus.CounterVec
}

func newReconcileMetrics(reg prometheus.Registerer) (*reconcileMetrics, error) {
	m := &reconcileMetrics{
		units: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_inventory_drift_units_total",
			Help: "Units of difference between the stock store and the SQL ledger found by reconciliation, by kind.",
		}, []string{"kind"}),
		oversell: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omsd_inventory_oversell_guard_total",
			Help: "Units reserved beyond on hand seen by reconciliation (must stay 0: a trip means the no-oversell guard failed).",
		}),
		found: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_inventory_drift_found_total",
			Help: "Differences between the stock store and the SQL ledger found by reconciliation, by kind.",
		}, []string{"kind"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_inventory_drift_repaired_total",
			Help: "Differences repaired by reconciliation, by kind.",
		}, []string{"kind"}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "omsd_inventory_drift_keys",
			Help: "(node, SKU) pairs whose counters drifted from the ledger in the last reconciliation pass.",
		}),
		notReady: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "omsd_inventory_not_ready_nodes",
			Help: "Nodes whose stock counters are not loaded (intake answers 503 for them) at the last check.",
		}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omsd_inventory_rebuilds_total",
			Help: "Rebuilds of stock counters from the SQL ledger, by outcome.",
		}, []string{"outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.units, m.oversell, m.found, m.repaired, m.keys, m.notReady, m.rebuilds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("inventory: register metrics: %w", err)
		}
	}
	return m, nil
}
