package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"
)

// StockRow is the ledger's stock of one (node, SKU).
type StockRow struct {
	Node, SKU string
	// OnHand is the ledger's current on hand: the last WMS/ERP snapshot less
	// what shipped since.
	OnHand int64
	Safety int64
}

// LedgerState is one consistent read of the ledger: the stock rows and the
// open holds as of the same moment, so that a shipment booked in between
// (on hand lowered, hold closed) is seen on both sides or on neither.
type LedgerState struct {
	Stock []StockRow
	// Holds are the holds of every open shipment (reserved, not yet
	// shipped, released or expired), with their lines and their SQL
	// deadlines (zero once paid).
	Holds []Hold
	// Restocks are the ledger's restocks (returned units put back into on
	// hand, see Restocker) booked within the last RestockWindow, read in
	// the same transaction: their units are in Stock.
	Restocks []Restock
}

// Restock is one restock of the ledger: Qty units of SKU put back into on
// hand at Node by a return, under its single-use ID, booked at At (the
// database's clock).
type Restock struct {
	ID, Node, SKU string
	Qty           int64
	At            time.Time
}

// RestockWindow is how far back Ledger.State lists restocks. A restock
// reaches the store within seconds of its SQL commit (Restock right after
// it, else the reconciler's next pass), so the window only has to cover a
// few passes; it must stay well below the store's memory of applied ids
// (RestockMemory), so that every restock the ledger lists and the store
// applied is still known to the store as applied.
const RestockWindow = 10 * time.Minute

// HoldRef names one hold: hold ids are scoped by node.
type HoldRef struct {
	Node, ID string
}

// Ledger is what the rebuild and the reconciliation read from the SQL
// ledger, the source of truth (oms/pgstore implements it).
type Ledger interface {
	// Nodes returns every known node id.
	Nodes(ctx context.Context) ([]string, error)
	// State returns on hand and safety stock of every (node, SKU), the
	// open holds and the restocks of the last RestockWindow, in one
	// consistent read.
	State(ctx context.Context) (LedgerState, error)
	// HoldStates tells, for each of the given holds that the ledger knows,
	// whether its shipment is open (HoldOpen), shipped (HoldCommitted: on
	// hand already lowered in the ledger) or closed without shipping
	// (HoldReleased: cancelled, rejected, expired). Holds the ledger does
	// not know are absent from the answer.
	HoldStates(ctx context.Context, holds []HoldRef) (map[HoldRef]HoldState, error)
}

// StoredHold is an open hold as a store keeps it.
type StoredHold struct {
	Hold
	// Created is when the store first saw the hold (its Reserve, or the
	// restore that brought it back). The reconciliation treats a hold that
	// the ledger lacks as in flight until Created is older than its grace
	// period, because intake reserves before it commits to SQL.
	Created time.Time
}

// NodeSnapshot is one atomic read of everything a store keeps for a node.
type NodeSnapshot struct {
	Node  string
	Ready bool
	// Epoch names the rebuild that made the node ready ("" when not
	// ready); it changes with every rebuild. Repairs computed from this
	// snapshot carry it, so that they do nothing to a node rebuilt since.
	Epoch  string
	Levels []Level      // sorted by SKU
	Holds  []StoredHold // open holds, sorted by ID
	// Versions counts the absolute writes of on hand and safety per SKU
	// (SetStock, RepairStock); shipments and restocks do not change it.
	// Missing is 0.
	Versions map[string]int64
	// Restocks are the restock ids the store remembers as applied (see
	// Restocker), with when they were applied (or restored) by the store's
	// clock: at least those of the last RestockMemory.
	Restocks map[string]time.Time
}

// Rebuildable is a Store that can be rebuilt and reconciled from the
// ledger. redisstock and memstock implement it.
//
// A rebuild of a node runs under a lease: BeginRebuild fences the node and
// takes the lease, RestoreNode and FinishRebuild work only for the lease's
// holder. So two processes never rebuild one node at once, and one whose
// lease expired (it stalled) cannot overwrite what another restored since.
type Rebuildable interface {
	Store
	Restocker
	// Nodes returns the nodes the store knows (restored or marked ready).
	Nodes(ctx context.Context) ([]string, error)
	// Ready reports whether the node's counters are loaded.
	Ready(ctx context.Context, node string) (bool, error)
	// BeginRebuild takes the node's rebuild lease for ttl and fences the
	// node (every write returns ErrNotReady from now on). It returns the
	// lease, or ok false, changing nothing, when another lease is held or,
	// with ifNotReady, when the node is ready (rebuilt meanwhile by someone
	// else: a stale observation must not fence it again). Errors:
	// ErrInvalid.
	BeginRebuild(ctx context.Context, node string, ifNotReady bool, ttl time.Duration) (lease string, ok bool, err error)
	// FinishRebuild marks the node ready under a new epoch and returns the
	// lease. ErrLeaseLost when the lease is no longer held by this caller
	// (it expired); nothing changes then.
	FinishRebuild(ctx context.Context, node, lease string) error
	// MarkReady declares the node's counters loaded, unconditionally, under
	// a new epoch (tests and tools; the rebuild uses FinishRebuild).
	MarkReady(ctx context.Context, node string) error
	// MarkNotReady fences the node unconditionally: every write returns
	// ErrNotReady until the node is made ready again.
	MarkNotReady(ctx context.Context, node string) error
	// Snapshot reads the node's levels, open holds, epoch, stock versions
	// and remembered restock ids atomically. It works on nodes that are not ready (Ready says
	// so).
	Snapshot(ctx context.Context, node string) (NodeSnapshot, error)
	// RestoreNode replaces every counter and hold of the node, atomically:
	// on hand and safety from rows, reserved as the sum of the holds' lines,
	// the holds with their deadlines and creation times (zero: now), and
	// the remembered restock ids with restocks (id to when applied; zero:
	// now): their units are in rows, so a later Restock of one of them is
	// a no-op. Rows and holds of other nodes are ignored. It refuses a node
	// that is ready, and, given a lease, one whose lease is not that one
	// (without a lease, one that is leased). It does not mark the node
	// ready. Errors: ErrInvalid, ErrLeaseLost.
	RestoreNode(ctx context.Context, node, lease string, rows []StockRow, holds []StoredHold, restocks map[string]time.Time) error
	// RestoreHold adds a hold that the ledger has and the store lost. It
	// reserves its lines only if every line fits under on hand (reserved
	// plus the line at most on hand; safety stock may be used, the order
	// exists), else it reserves nothing and returns a *ShortError whose
	// Have is on hand less reserved: restoring never takes reserved above
	// on hand. It does nothing and returns false if the store has the hold
	// open, and returns a *HoldClosedError if the store remembers it
	// closed. Errors also: ErrNotReady, ErrInvalid.
	RestoreHold(ctx context.Context, h Hold) (restored bool, err error)
	// AdjustReserved adds delta to the reserved counter of (node, sku),
	// never going below zero, if the node is still at epoch (else it
	// returns false and changes nothing). The reconciliation uses it when
	// the counter and the sum of the open holds disagree. Errors:
	// ErrNotReady.
	AdjustReserved(ctx context.Context, node, sku, epoch string, delta int64) (applied bool, err error)
	// RepairStock adds onHandDelta to on hand and sets safety of (node,
	// sku), if the node is still at epoch and the SKU's stock version is
	// still version (no SetStock or repair since the snapshot the repair
	// was computed from); shipments in between do not matter, they move on
	// hand by the same amount on both sides. On success the version moves
	// on, so a second reconciler's repair computed from the same snapshot
	// does nothing. A repeat after a lost reply answers as the first call.
	// Errors: ErrNotReady, ErrInvalid.
	RepairStock(ctx context.Context, node, sku, epoch string, version, onHandDelta, safety int64) (applied bool, err error)
}

// ErrLeaseLost: the rebuild lease of the node is no longer held by the
// caller (it expired, another process may be rebuilding); nothing changed.
var ErrLeaseLost = errors.New("inventory: rebuild lease lost")

// DefaultHoldGrace is added to the ledger's deadline of an unpaid hold when
// a rebuild or the reconciliation writes it to the store, as intake does
// (oms.IntakeConfig.HoldGrace): the SQL expiry runs first, the store's
// sweeper is a backstop.
const DefaultHoldGrace = 5 * time.Minute

// DefaultRebuildLease is how long a rebuild holds a node's lease at most.
const DefaultRebuildLease = 2 * time.Minute

// rebuildOpts are the knobs of one rebuild.
type rebuildOpts struct {
	settle     time.Duration // wait between the fence and the ledger read
	holdGrace  time.Duration // added to unpaid ledger deadlines
	lease      time.Duration
	ifNotReady bool // skip nodes that are ready (a ready check's rebuild)
	log        *slog.Logger
}

// Rebuild recomputes every counter of the given nodes (every ledger node
// when none is given) from the ledger and marks them ready, even nodes that
// are ready. Per node: take the lease and fence, read the ledger, restore
// atomically, mark ready. Nodes another process is rebuilding are left to
// it. It does not wait for in-flight intakes to settle; Reconciler.Rebuild
// does. Unpaid holds get DefaultHoldGrace.
func Rebuild(ctx context.Context, ledger Ledger, store Rebuildable, nodes ...string) error {
	_, err := rebuild(ctx, ledger, store, defaultRebuildOpts(), nodes)
	return err
}

// RebuildNotReady rebuilds the nodes that are not ready (see NotReadyNodes)
// and returns those it rebuilt. A node found ready again by the time its
// fence would go up (another process rebuilt it) is not fenced, and one
// another process is rebuilding is left to it, so several processes
// running it at once do not undo each other's work.
func RebuildNotReady(ctx context.Context, ledger Ledger, store Rebuildable) ([]string, error) {
	nodes, err := NotReadyNodes(ctx, ledger, store)
	if err != nil || len(nodes) == 0 {
		return nil, err
	}
	o := defaultRebuildOpts()
	o.ifNotReady = true
	return rebuild(ctx, ledger, store, o, nodes)
}

func defaultRebuildOpts() rebuildOpts {
	return rebuildOpts{holdGrace: DefaultHoldGrace, lease: DefaultRebuildLease, log: slog.New(slog.DiscardHandler)}
}

// rebuild returns the nodes it rebuilt.
func rebuild(ctx context.Context, ledger Ledger, store Rebuildable, o rebuildOpts, nodes []string) ([]string, error) {
	if len(nodes) == 0 {
		var err error
		if nodes, err = ledger.Nodes(ctx); err != nil {
			return nil, fmt.Errorf("inventory: rebuild: ledger nodes: %w", err)
		}
	}
	for _, n := range nodes {
		if err := ValidateNode(n); err != nil {
			return nil, fmt.Errorf("inventory: rebuild: %w", err)
		}
	}
	leases := map[string]string{}
	var fenced []string
	var errs []error
	for _, n := range nodes {
		// Fence first: whatever the counters hold now is about to be
		// replaced, so nothing may be written to them until the restore.
		lease, ok, err := store.BeginRebuild(ctx, n, o.ifNotReady, o.lease)
		if err != nil {
			errs = append(errs, fmt.Errorf("inventory: rebuild %s: fence: %w", n, err))
			continue
		}
		if !ok {
			o.log.Info("inventory: rebuild skipped: ready again or being rebuilt elsewhere", "node", n)
			continue
		}
		leases[n] = lease
		fenced = append(fenced, n)
	}
	if len(fenced) == 0 {
		return nil, errors.Join(errs...)
	}
	// An intake that reserved just before a loss commits to SQL a few
	// milliseconds later; reading the ledger after it did keeps its hold.
	// (Without a loss, the store's own holds are kept anyway, see below.)
	if o.settle > 0 {
		t := time.NewTimer(o.settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("inventory: rebuild: %w", ctx.Err())
		case <-t.C:
		}
	}
	// The store's holds as the fence froze them: a hold reserved before
	// the fence whose SQL commit comes after the ledger read below is in
	// no ledger read yet, and must not be lost.
	snaps := map[string]NodeSnapshot{}
	for _, n := range fenced {
		snap, err := store.Snapshot(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("inventory: rebuild %s: snapshot: %w", n, err)
		}
		snaps[n] = snap
	}
	state, err := ledger.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("inventory: rebuild: ledger: %w", err)
	}
	rowsBy := make(map[string][]StockRow)
	for _, r := range state.Stock {
		rowsBy[r.Node] = append(rowsBy[r.Node], r)
	}
	open := make(map[HoldRef]Hold)
	for _, h := range state.Holds {
		open[HoldRef{h.Node, h.ID}] = h
	}
	var unknown []HoldRef
	for _, n := range fenced {
		for _, sh := range snaps[n].Holds {
			if _, ok := open[HoldRef{n, sh.ID}]; !ok {
				unknown = append(unknown, HoldRef{n, sh.ID})
			}
		}
	}
	fates := map[HoldRef]HoldState{}
	if len(unknown) > 0 {
		if fates, err = ledger.HoldStates(ctx, unknown); err != nil {
			return nil, fmt.Errorf("inventory: rebuild: ledger hold states: %w", err)
		}
	}
	var done []string
	for _, n := range fenced {
		start := time.Now()
		holds := restoredHolds(n, snaps[n], state.Holds, fates, o.holdGrace)
		restocks := restoredRestocks(n, snaps[n], state.Restocks)
		if err := store.RestoreNode(ctx, n, leases[n], rowsBy[n], holds, restocks); err != nil {
			errs = append(errs, fmt.Errorf("inventory: rebuild %s: %w", n, err))
			continue
		}
		if err := store.FinishRebuild(ctx, n, leases[n]); err != nil {
			errs = append(errs, fmt.Errorf("inventory: rebuild %s: mark ready: %w", n, err))
			continue
		}
		done = append(done, n)
		o.log.Info("inventory: node rebuilt", "node", n, "skus", len(rowsBy[n]), "holds", len(holds),
			"restocks", len(restocks), "took", time.Since(start))
	}
	return done, errors.Join(errs...)
}

// restoredHolds are the holds a rebuild writes for node: every open ledger
// hold, with the ledger's lines and a deadline no shorter than the ledger's
// plus grace (none once paid, or when the store had it confirmed already),
// and every store hold the ledger does not know yet (in flight: reserved
// before the fence, committed to SQL after the ledger read), as the store
// had it. Store holds the ledger has shipped or closed are dropped: the
// ledger's on hand already counts a shipment.
func restoredHolds(node string, snap NodeSnapshot, ledgerHolds []Hold, fates map[HoldRef]HoldState, grace time.Duration) []StoredHold {
	had := make(map[string]StoredHold, len(snap.Holds))
	for _, sh := range snap.Holds {
		had[sh.ID] = sh
	}
	var out []StoredHold
	seen := map[string]bool{}
	for _, h := range ledgerHolds {
		if h.Node != node {
			continue
		}
		seen[h.ID] = true
		sh := StoredHold{Hold: h}
		old, ok := had[h.ID]
		if ok {
			sh.Created = old.Created
		}
		sh.Deadline = storeDeadline(h.Deadline, grace)
		if ok && later(old.Deadline, sh.Deadline) {
			sh.Deadline = old.Deadline
		}
		out = append(out, sh)
	}
	for _, sh := range snap.Holds {
		if seen[sh.ID] {
			continue
		}
		switch fates[HoldRef{node, sh.ID}] {
		case HoldCommitted, HoldReleased, HoldExpired:
			continue
		}
		out = append(out, sh)
	}
	return out
}

// restoredRestocks are the restock ids a rebuild restores as applied for
// node: the ledger window's restocks of the node (booked in SQL before the
// ledger read, so their units are in its on hand; restored with time zero,
// that is the store's now) and the ids the store remembered at the fence
// (a store applies a restock only after its SQL commit, so these too were
// booked before the read), with the time the store had. The node is fenced
// from the snapshot on: no Restock applies in between.
func restoredRestocks(node string, snap NodeSnapshot, ledger []Restock) map[string]time.Time {
	out := make(map[string]time.Time, len(snap.Restocks))
	for id, at := range snap.Restocks {
		out[id] = at
	}
	for _, r := range ledger {
		if r.Node != node {
			continue
		}
		if _, ok := out[r.ID]; !ok {
			out[r.ID] = time.Time{}
		}
	}
	return out
}

// storeDeadline is the store's deadline of a hold whose ledger deadline is
// d: none when paid, else d plus grace.
func storeDeadline(d time.Time, grace time.Duration) time.Time {
	if d.IsZero() {
		return d
	}
	return d.Add(grace)
}

// later reports whether deadline a is later than b, where zero (none) is
// the latest of all.
func later(a, b time.Time) bool {
	switch {
	case b.IsZero():
		return false
	case a.IsZero():
		return true
	}
	return a.After(b)
}

// NotReadyNodes returns the nodes, known to the ledger or to the store,
// whose counters are not loaded (Redis lost them, or they were never
// built). omsd runs it periodically and rebuilds what it returns.
func NotReadyNodes(ctx context.Context, ledger Ledger, store Rebuildable) ([]string, error) {
	nodes, err := allNodes(ctx, ledger, store)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes {
		ok, err := store.Ready(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("inventory: ready %s: %w", n, err)
		}
		if !ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// allNodes is the sorted union of the ledger's and the store's nodes.
func allNodes(ctx context.Context, ledger Ledger, store Rebuildable) ([]string, error) {
	ln, err := ledger.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("inventory: ledger nodes: %w", err)
	}
	sn, err := store.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("inventory: store nodes: %w", err)
	}
	set := make(map[string]bool, len(ln)+len(sn))
	for _, n := range append(ln, sn...) {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
