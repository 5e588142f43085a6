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
	// DriftOnHand: on hand differs from the ledger once the store's holds
	// that the ledger has shipped are counted as committed. Repaired in the
	// same pass by the difference (RepairStock), which stays right however
	// many shipments run meanwhile; an absolute snapshot (SetStock) in
	// between makes the repair wait for the next pass.
	DriftOnHand DriftKind = "on_hand"
	// DriftSafety: safety stock differs; repaired like on hand.
	DriftSafety DriftKind = "safety"
	// DriftReserved: the reserved counter differs from the sum of the
	// store's own open holds (a partial loss). Adjusted at once: the
	// snapshot is atomic, so this is never a transient.
	DriftReserved DriftKind = "reserved"
	// DriftOrphanHold: a hold open in the store that no open shipment of
	// the ledger owns and that did not ship. Released: at once when the
	// ledger has its shipment closed (cancelled, rejected, expired); after
	// the grace period when the ledger does not know it (its order never
	// committed; younger ones are in flight and left alone).
	DriftOrphanHold DriftKind = "orphan_hold"
	// DriftDeadOwnerHold: a hold open in the store that the ledger does
	// not know, whose owner (Hold.Owner) stopped beating at least
	// OwnerSettle ago: its process died or lost its lease before its SQL
	// commit, and the lease's end stopped any commit still running.
	// Released at once, without waiting for the grace period.
	DriftDeadOwnerHold DriftKind = "dead_owner_hold"
	// DriftShippedHold: a hold open in the store whose shipment the ledger
	// has shipped (the store's Commit failed or is on its way). Committed
	// at once: reserved and on hand both drop, as the ledger's did.
	DriftShippedHold DriftKind = "shipped_hold"
	// DriftMissingHold: a hold the ledger has open and the store lost.
	// Re-added, reserving its lines, if they fit under on hand.
	DriftMissingHold DriftKind = "missing_hold"
	// DriftUnfitHold: a hold the ledger has open and the store lost, whose
	// lines no longer fit under on hand (the stock was sold again while it
	// was missing). Nothing is reserved, so reserved never passes on hand;
	// ReconcilerConfig.OnUnfitHold is told so that the order owning the
	// hold goes on review. Each pass tries the restore again.
	DriftUnfitHold DriftKind = "unfit_hold"
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
	// DriftRestock: a restock of the ledger's window (returned units put
	// back into on hand in SQL, see Restocker) whose id is not among the
	// ids the store's snapshot remembers as applied: the store owes it.
	// Its units count into the on-hand comparison as the store's (as the
	// commits owed do), and it is applied with Restock, which is a no-op
	// for an id applied since; only an application by this pass is
	// reported.
	//
	// Why nothing is counted twice. The snapshot is read before the
	// ledger, atomically with on hand, and a store applies a restock only
	// after its SQL commit. So for each restock x:
	//   - x applied before the snapshot: its id is in the snapshot and its
	//     units in the snapshot's on hand; it was committed before the
	//     ledger read, so its units are in the ledger's on hand too. Not
	//     owed, both sides count it. The ledger window may or may not list
	//     it (committed more than RestockWindow ago): the comparison does
	//     not depend on the list then.
	//   - x committed before the ledger read, not applied at the snapshot
	//     (applied after it, or not yet): the ledger's on hand has it, the
	//     snapshot's does not, the window lists it and the snapshot lacks
	//     its id: owed, counted once, and the Restock of this pass applies
	//     it or finds it applied. That includes a restock committed between
	//     the snapshot and the ledger read and applied after the snapshot.
	//   - x committed after the ledger read: applied after the snapshot, so
	//     neither side's on hand nor the window has it, and the snapshot
	//     cannot have its id. Not seen at all.
	// So the on-hand delta never includes a restock's units by mistake, and
	// RepairStock adds that delta relative to the current on hand, which a
	// restock applied meanwhile moved by the same amount on both sides. A
	// restock therefore does not move the SKU's stock version, exactly like
	// a shipment: the version guard is for absolute writes (SetStock), whose
	// value a stale delta would spoil. A rebuild in between changes the
	// epoch (repairs wait), and it restores the window's ids as applied
	// (their units are in the rebuilt on hand). The window (RestockWindow,
	// 10 minutes) is far below the store's memory (RestockMemory, 1 hour),
	// so a listed restock the store applied is still remembered; a restock
	// missed for longer than the window shows as an on_hand drift instead.
	DriftRestock DriftKind = "restock"
)

// Drift is one difference found by Reconcile.
type Drift struct {
	Kind      DriftKind
	Node, SKU string // SKU is empty for hold drifts
	HoldID    string // empty for counter drifts
	RestockID string // the restock of a DriftRestock
	Owner     string // the dead owner of a DriftDeadOwnerHold
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
	// Grace is how old a store hold unknown to the ledger must be before
	// it is released as an orphan; default 5 minutes. Intake reserves before
	// its SQL commit, so it must exceed the longest intake (with retries).
	Grace time.Duration
	// HoldGrace is added to the ledger's deadline of an unpaid hold when a
	// rebuild or a re-add writes it to the store; default DefaultHoldGrace.
	// Use the intake's (oms.IntakeConfig.HoldGrace): a restored hold then
	// expires no sooner than the one intake wrote.
	HoldGrace time.Duration
	// OwnerSettle is how long an owner must have been seen dead (its
	// heartbeat expired; see Liveness) before a pass releases the holds it
	// took that the ledger does not know; default 3 s; negative: never
	// (they wait for Grace). The owner's lease cancels its commits when it
	// lapses by its own clock, no later than the store expires the
	// heartbeat: OwnerSettle covers that cancellation reaching the
	// database. A frozen process cannot cancel: the database's
	// idle-in-transaction timeout must end its transaction within
	// OwnerSettle plus the heartbeat TTL.
	OwnerSettle time.Duration
	// Settle is how long Rebuild waits between fencing the nodes and reading
	// the ledger, so that intakes that reserved just before a loss finish
	// their SQL commit; default 2 s; negative means no wait.
	Settle time.Duration
	// RebuildLease bounds how long one rebuild holds a node (another
	// process takes over a node whose rebuild died after that); default
	// DefaultRebuildLease. It must exceed Settle plus the ledger read.
	RebuildLease time.Duration
	// Interval is the period of Run's full comparison; default 30 s.
	Interval time.Duration
	// ReadyEvery is the period of Run's ready check; default 2 s.
	ReadyEvery time.Duration
	// OnUnfitHold is called when a hold that the ledger has open was lost
	// by the store and cannot be restored because its lines no longer fit
	// under on hand (DriftUnfitHold): nothing was reserved for it, so the
	// order owning the hold (holdID is its shipment id) must be put on
	// review by the order domain. It is called once per hold for as long as
	// the hold stays unfit, until it returns nil; an error is logged and
	// the call repeated at the next pass. It must be idempotent (several
	// processes reconcile) and should return quickly. Nil: the drift is
	// only reported, logged and counted.
	OnUnfitHold func(ctx context.Context, node, holdID string) error
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
	if c.HoldGrace == 0 {
		c.HoldGrace = DefaultHoldGrace
	}
	if c.Settle == 0 {
		c.Settle = 2 * time.Second
	}
	if c.OwnerSettle == 0 {
		c.OwnerSettle = 3 * time.Second
	}
	if c.RebuildLease == 0 {
		c.RebuildLease = DefaultRebuildLease
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
	if c.Grace < 0 || c.Interval < 0 || c.HoldGrace < 0 {
		return fmt.Errorf("%w: negative grace %v, hold grace %v or interval %v", ErrInvalid, c.Grace, c.HoldGrace, c.Interval)
	}
	if c.RebuildLease <= max(c.Settle, 0) {
		return fmt.Errorf("%w: rebuild lease %v not above settle %v", ErrInvalid, c.RebuildLease, c.Settle)
	}
	return nil
}

// Reconciler compares the store with the ledger and repairs the drift, and
// rebuilds nodes that are not ready. Several processes may each run one on
// the same store and ledger: every repair is conditional or exactly once,
// and rebuilds take a lease. Call Reconcile from one goroutine at a time.
type Reconciler struct {
	ledger Ledger
	store  Rebuildable
	cfg    ReconcilerConfig
	m      *reconcileMetrics

	mu sync.Mutex
	// unfit are the unfit holds already counted, true once OnUnfitHold
	// accepted them; forgotten once the hold fits or leaves the ledger.
	unfit map[HoldRef]bool
	// deadSince is when each dead owner was first seen dead (when the store
	// keeps Liveness). An owner id never comes back to life.
	deadSince map[string]time.Time
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
	return &Reconciler{ledger: ledger, store: store, cfg: cfg, m: m, unfit: map[HoldRef]bool{},
		deadSince: map[string]time.Time{}}, nil
}

// Reconcile runs one pass with the default configuration.
func Reconcile(ctx context.Context, ledger Ledger, store Rebuildable) (ReconcileReport, error) {
	r, err := NewReconciler(ledger, store, ReconcilerConfig{})
	if err != nil {
		return ReconcileReport{}, err
	}
	return r.Reconcile(ctx)
}

func (r *Reconciler) opts(ifNotReady bool) rebuildOpts {
	return rebuildOpts{settle: max(r.cfg.Settle, 0), holdGrace: r.cfg.HoldGrace, lease: r.cfg.RebuildLease,
		ifNotReady: ifNotReady, log: r.cfg.Logger}
}

// Rebuild rebuilds the given nodes (all ledger nodes when none), ready or
// not, waiting Settle between fencing and reading the ledger. See the
// package function.
func (r *Reconciler) Rebuild(ctx context.Context, nodes ...string) error {
	_, err := r.rebuild(ctx, false, nodes)
	return err
}

func (r *Reconciler) rebuild(ctx context.Context, ifNotReady bool, nodes []string) ([]string, error) {
	done, err := rebuild(ctx, r.ledger, r.store, r.opts(ifNotReady), nodes)
	if len(done) > 0 {
		r.m.rebuilds.WithLabelValues("ok").Add(float64(len(done)))
	}
	if err != nil {
		r.m.rebuilds.WithLabelValues("error").Inc()
	}
	return done, err
}

// RebuildNotReady rebuilds the nodes that are not ready and returns those
// it rebuilt; see the package function: nodes another process is
// rebuilding, or rebuilt since they were seen not ready, are left alone.
func (r *Reconciler) RebuildNotReady(ctx context.Context) ([]string, error) {
	nodes, err := r.NotReadyNodes(ctx)
	if err != nil || len(nodes) == 0 {
		return nil, err
	}
	r.cfg.Logger.Warn("inventory: nodes not ready, rebuilding from the ledger", "nodes", nodes)
	return r.rebuild(ctx, true, nodes)
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
// that intake is back within seconds after a restart, and so does the
// owner check: a pass runs as soon as a dead owner is past OwnerSettle, so
// that the holds of an instance that died are back on sale within
// seconds. The full comparison with the ledger runs every Interval.
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
			if r.readyCheck(ctx) && r.ownerDue(ctx) {
				if _, err := r.Reconcile(ctx); err != nil {
					r.cfg.Logger.Error("inventory: reconcile after an owner died failed", "err", err)
				}
			}
		}
	}
}

// readyCheck rebuilds the nodes that are not ready.
func (r *Reconciler) readyCheck(ctx context.Context) bool {
	if _, err := r.RebuildNotReady(ctx); err != nil {
		r.cfg.Logger.Error("inventory: rebuild of not-ready nodes failed", "err", err)
		return false
	}
	return true
}

// ownerDue observes the owners and reports whether one is dead past
// OwnerSettle (a pass then releases its holds and forgets it).
func (r *Reconciler) ownerDue(ctx context.Context) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.observeOwners(ctx, r.cfg.Now())) > 0
}

// observeOwners records when each dead owner was first seen dead and
// returns those dead for OwnerSettle by now. Call with r.mu held. An error
// is logged: the pass then releases no hold by owner.
func (r *Reconciler) observeOwners(ctx context.Context, now time.Time) map[string]bool {
	lv, ok := r.store.(Liveness)
	if !ok || r.cfg.OwnerSettle < 0 {
		return nil
	}
	_, dead, err := lv.Owners(ctx)
	if err != nil {
		r.cfg.Logger.Error("inventory: reading owner heartbeats failed", "err", err)
		return nil
	}
	settled := map[string]bool{}
	seen := map[string]bool{}
	for _, o := range dead {
		seen[o] = true
		since, ok := r.deadSince[o]
		if !ok {
			since = now
			r.deadSince[o] = now
			r.cfg.Logger.Warn("inventory: owner stopped beating", "owner", o)
		}
		if !since.After(now.Add(-r.cfg.OwnerSettle)) {
			settled[o] = true
		}
	}
	for o := range r.deadSince {
		if !seen[o] {
			delete(r.deadSince, o) // forgotten (by another process too)
		}
	}
	return settled
}

// forgetOwners unregisters the settled dead owners that no hold of the
// pass still names (their holds are released or in the ledger).
func (r *Reconciler) forgetOwners(ctx context.Context, dead map[string]bool, left map[string]bool) error {
	var done []string
	for o := range dead {
		if !left[o] {
			done = append(done, o)
		}
	}
	if len(done) == 0 {
		return nil
	}
	sort.Strings(done)
	if err := r.store.(Liveness).ForgetOwners(ctx, done); err != nil {
		return fmt.Errorf("inventory: reconcile: forget owners: %w", err)
	}
	for _, o := range done {
		delete(r.deadSince, o)
	}
	r.cfg.Logger.Info("inventory: dead owners forgotten", "owners", done)
	return nil
}

func (r *Reconciler) tick(ctx context.Context) {
	if !r.readyCheck(ctx) {
		return
	}
	if _, err := r.Reconcile(ctx); err != nil {
		r.cfg.Logger.Error("inventory: reconcile failed", "err", err)
	}
}

// Reconcile compares every ready node with the ledger, repairs what it may
// (see DriftKind) and reports every drift found. Nodes that are not ready
// are skipped and listed: they need a rebuild, not a repair.
//
// The store is read before the ledger. Every write but a reservation
// reaches SQL before the store, so whatever the snapshot shows done is in
// the ledger read that follows; what the snapshot shows open and the
// ledger shows shipped is a commit the store still owes, and the pass
// makes it. A reservation reaches the store first: a store hold the
// ledger does not know is in flight until it is older than Grace.
func (r *Reconciler) Reconcile(ctx context.Context) (ReconcileReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep ReconcileReport
	start := r.cfg.Now()
	// Owners dead for OwnerSettle before the ledger is read: whatever they
	// committed is in that read.
	dead := r.observeOwners(ctx, start)
	nodes, err := allNodes(ctx, r.ledger, r.store)
	if err != nil {
		return rep, err
	}
	var errs []error
	var snaps []NodeSnapshot
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
		snaps = append(snaps, snap)
	}
	state, err := r.ledger.State(ctx)
	if err != nil {
		return rep, errors.Join(append(errs, fmt.Errorf("inventory: reconcile: ledger: %w", err))...)
	}
	rowsBy := make(map[string]map[string]StockRow)
	for _, row := range state.Stock {
		if rowsBy[row.Node] == nil {
			rowsBy[row.Node] = map[string]StockRow{}
		}
		rowsBy[row.Node][row.SKU] = row
	}
	restocksBy := make(map[string][]Restock)
	for _, rs := range state.Restocks {
		restocksBy[rs.Node] = append(restocksBy[rs.Node], rs)
	}
	holdsBy := make(map[string]map[string]Hold)
	open := map[HoldRef]bool{}
	for _, h := range state.Holds {
		nh, err := NormalizeHold(h)
		if err != nil {
			return rep, fmt.Errorf("inventory: reconcile: ledger hold %q: %w", h.ID, err)
		}
		if holdsBy[h.Node] == nil {
			holdsBy[h.Node] = map[string]Hold{}
		}
		holdsBy[h.Node][h.ID] = nh
		open[HoldRef{h.Node, h.ID}] = true
	}
	// What the ledger knows of the store holds no open shipment owns.
	var ask []HoldRef
	for _, snap := range snaps {
		for _, h := range snap.Holds {
			if ref := (HoldRef{snap.Node, h.ID}); !open[ref] {
				ask = append(ask, ref)
			}
		}
	}
	fates := map[HoldRef]HoldState{}
	if len(ask) > 0 {
		if fates, err = r.ledger.HoldStates(ctx, ask); err != nil {
			return rep, errors.Join(append(errs, fmt.Errorf("inventory: reconcile: ledger hold states: %w", err))...)
		}
	}
	drifting := map[Key]bool{}
	stillUnfit := map[HoldRef]bool{}
	left := map[string]bool{} // dead owners with a hold left open
	for _, snap := range snaps {
		rep.Nodes++
		ds, err := r.reconcileNode(ctx, snap, rowsBy[snap.Node], holdsBy[snap.Node], restocksBy[snap.Node], fates, start, dead,
			drifting, stillUnfit)
		rep.Drifts = append(rep.Drifts, ds...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for ref := range r.unfit {
		if !stillUnfit[ref] {
			delete(r.unfit, ref)
		}
	}
	if len(dead) > 0 && len(errs) == 0 && len(rep.NotReady) == 0 {
		for _, d := range rep.Drifts {
			if d.Kind == DriftDeadOwnerHold && !d.Repaired {
				left[d.Owner] = true
			}
		}
		if err := r.forgetOwners(ctx, dead, left); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range rep.Drifts {
		r.m.found.WithLabelValues(string(d.Kind)).Inc()
		if diff := d.Store - d.Ledger; diff != 0 {
			r.m.units.WithLabelValues(string(d.Kind)).Add(float64(max(diff, -diff)))
		}
		if d.Repaired {
			r.m.repaired.WithLabelValues(string(d.Kind)).Inc()
		}
		r.cfg.Logger.Warn("inventory: drift", "kind", d.Kind, "node", d.Node, "sku", d.SKU, "hold", d.HoldID,
			"restock", d.RestockID, "store", d.Store, "ledger", d.Ledger, "repaired", d.Repaired)
	}
	r.m.keys.Set(float64(len(drifting)))
	return rep, errors.Join(errs...)
}

func (r *Reconciler) reconcileNode(ctx context.Context, snap NodeSnapshot, rows map[string]StockRow,
	lholds map[string]Hold, restocks []Restock, fates map[HoldRef]HoldState, start time.Time, dead map[string]bool,
	drifting map[Key]bool, stillUnfit map[HoldRef]bool) ([]Drift, error) {
	node := snap.Node
	var out []Drift
	var errs []error

	// The reserved counter against the store's own open holds, from the
	// same atomic snapshot. Every later operation moves both by the same
	// amount, so adding the difference stays right whatever runs meanwhile
	// (unless a rebuild replaced the counters: the epoch says so).
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
		applied, err := r.store.AdjustReserved(ctx, node, sku, snap.Epoch, sum[sku]-got)
		if err != nil {
			errs = append(errs, fmt.Errorf("inventory: reconcile %s/%s: adjust reserved: %w", node, sku, err))
		}
		d.Repaired = applied
		drifting[Key{node, sku}] = true
		out = append(out, d)
	}

	// Holds in the store that no open shipment owns: shipped ones are
	// committed, the others released (unknown ones after the grace).
	// shipped counts, per SKU, the units of holds that were open in the
	// snapshot and are committed since (by this pass or by their owner):
	// on hand in the store has dropped by them after the snapshot.
	shipped := map[string]int64{}
	shold := map[string]StoredHold{}
	cutoff := start.Add(-r.cfg.Grace)
	for _, h := range snap.Holds {
		shold[h.ID] = h
		if _, ok := lholds[h.ID]; ok {
			continue
		}
		fate, known := fates[HoldRef{node, h.ID}]
		switch {
		case known && fate == HoldOpen:
			continue // committed to SQL after the ledger's open holds were read
		case known && fate == HoldCommitted:
			d := Drift{Kind: DriftShippedHold, Node: node, HoldID: h.ID, Store: Units(h.Lines)}
			committed, err := r.store.Commit(ctx, node, h.ID)
			switch {
			case err == nil:
				d.Repaired = committed
				for _, l := range h.Lines {
					shipped[l.SKU] += l.Qty
				}
			case errors.Is(err, ErrHoldClosed) || errors.Is(err, ErrUnknownHold):
				// Released meanwhile: on hand did not drop; the on-hand
				// repair below books the shipment.
			default:
				errs = append(errs, fmt.Errorf("inventory: reconcile %s: commit shipped %q: %w", node, h.ID, err))
			}
			out = append(out, d)
			continue
		case !known && h.Owner != "" && dead[h.Owner]:
			// Its owner is gone: it will never commit it.
		case !known && h.Created.After(cutoff):
			continue // in flight: intake has not committed it to SQL yet
		}
		d := Drift{Kind: DriftOrphanHold, Node: node, HoldID: h.ID, Store: Units(h.Lines)}
		if !known && h.Owner != "" && dead[h.Owner] {
			d.Kind, d.Owner = DriftDeadOwnerHold, h.Owner
		}
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

	// Restocks the ledger booked that the snapshot does not show applied
	// (see DriftRestock): owed counts their units per SKU, which the
	// snapshot's on hand lacks and the ledger's has. Applied before the
	// ledger holds are re-added, so that those fit under on hand.
	owed := map[string]int64{}
	seenRestock := map[string]bool{}
	for _, rs := range restocks {
		if _, ok := snap.Restocks[rs.ID]; ok || seenRestock[rs.ID] {
			continue
		}
		seenRestock[rs.ID] = true
		if err := ValidateRestock(node, rs.ID, rs.SKU, rs.Qty); err != nil {
			// Not counted: the on-hand repair books its units instead.
			errs = append(errs, fmt.Errorf("inventory: reconcile %s: ledger restock %q: %w", node, rs.ID, err))
			continue
		}
		owed[rs.SKU] += rs.Qty
		applied, err := r.store.Restock(ctx, node, rs.ID, rs.SKU, rs.Qty)
		if err != nil {
			errs = append(errs, fmt.Errorf("inventory: reconcile %s: restock %q: %w", node, rs.ID, err))
			continue
		}
		if !applied {
			continue // applied since the snapshot by its caller: no drift
		}
		drifting[Key{node, rs.SKU}] = true
		out = append(out, Drift{Kind: DriftRestock, Node: node, SKU: rs.SKU, RestockID: rs.ID, Ledger: rs.Qty, Repaired: true})
	}

	// Holds in the ledger: missing, different or still carrying a deadline.
	for _, id := range sortedKeys(lholds) {
		lh := lholds[id]
		sh, ok := shold[id]
		if !ok {
			d := Drift{Kind: DriftMissingHold, Node: node, HoldID: id, Ledger: Units(lh.Lines)}
			add := lh
			add.Deadline = storeDeadline(lh.Deadline, r.cfg.HoldGrace)
			restored, err := r.store.RestoreHold(ctx, add)
			var closed *HoldClosedError
			switch {
			case errors.As(err, &closed):
				d.Kind = DriftClosedHold
			case errors.Is(err, ErrInsufficient):
				d.Kind = DriftUnfitHold
				errs = append(errs, r.reportUnfit(ctx, HoldRef{node, id}, stillUnfit))
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

	// On hand and safety against the ledger, by the difference that is
	// left once the commits the store owed are counted.
	skus := map[string]bool{}
	for sku := range rows {
		skus[sku] = true
	}
	for sku, l := range levels {
		if l.OnHand != 0 || l.Safety != 0 {
			skus[sku] = true
		}
	}
	for sku := range owed {
		skus[sku] = true
	}
	for _, sku := range sortedKeys(skus) {
		l := levels[sku]
		row := rows[sku]
		storeOnHand := l.OnHand - shipped[sku] + owed[sku]
		if storeOnHand == row.OnHand && l.Safety == row.Safety {
			continue
		}
		drifting[Key{node, sku}] = true
		delta := row.OnHand - storeOnHand
		applied, err := r.store.RepairStock(ctx, node, sku, snap.Epoch, snap.Versions[sku], delta, row.Safety)
		if err != nil {
			errs = append(errs, fmt.Errorf("inventory: reconcile %s/%s: repair stock: %w", node, sku, err))
		}
		if storeOnHand != row.OnHand {
			out = append(out, Drift{Kind: DriftOnHand, Node: node, SKU: sku, Store: storeOnHand, Ledger: row.OnHand, Repaired: applied})
		}
		if l.Safety != row.Safety {
			out = append(out, Drift{Kind: DriftSafety, Node: node, SKU: sku, Store: l.Safety, Ledger: row.Safety, Repaired: applied})
		}
	}
	return out, errors.Join(errs...)
}

// reportUnfit counts an unfit hold and tells OnUnfitHold, once per hold
// while it stays unfit (again after an error).
func (r *Reconciler) reportUnfit(ctx context.Context, ref HoldRef, stillUnfit map[HoldRef]bool) error {
	stillUnfit[ref] = true
	told, seen := r.unfit[ref]
	if !seen {
		r.m.unfit.Inc()
		r.cfg.Logger.Error("inventory: ledger hold does not fit under on hand; its order needs review", "node", ref.Node, "hold", ref.ID)
		r.unfit[ref] = false
	}
	if told || r.cfg.OnUnfitHold == nil {
		return nil
	}
	if err := r.cfg.OnUnfitHold(ctx, ref.Node, ref.ID); err != nil {
		return fmt.Errorf("inventory: reconcile %s: report unfit hold %q: %w", ref.Node, ref.ID, err)
	}
	r.unfit[ref] = true
	return nil
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
	unfit    prometheus.Counter
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
		unfit: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omsd_inventory_unfit_holds_total",
			Help: "Open ledger holds lost by the stock store that could not be restored within on hand (each counted once; its order must go on review).",
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
	for _, c := range []prometheus.Collector{m.units, m.oversell, m.unfit, m.found, m.repaired, m.keys, m.notReady, m.rebuilds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("inventory: register metrics: %w", err)
		}
	}
	return m, nil
}
