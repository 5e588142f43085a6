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

// Ledger is what the rebuild and the reconciliation read from the SQL
// ledger, the source of truth (oms/pgstore implements it). Each call reads
// one consistent snapshot.
type Ledger interface {
	// Nodes returns every known node id.
	Nodes(ctx context.Context) ([]string, error)
	// Stock returns on hand and safety stock of every (node, SKU).
	Stock(ctx context.Context) ([]StockRow, error)
	// OpenHolds returns the holds of every open shipment (reserved, not yet
	// shipped, released or expired), with their lines and deadlines (zero
	// once paid).
	OpenHolds(ctx context.Context) ([]Hold, error)
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
	Node   string
	Ready  bool
	Levels []Level      // sorted by SKU
	Holds  []StoredHold // open holds, sorted by ID
}

// Rebuildable is a Store that can be rebuilt and reconciled from the
// ledger. redisstock and memstock implement it.
type Rebuildable interface {
	Store
	// Nodes returns the nodes the store knows (restored or marked ready).
	Nodes(ctx context.Context) ([]string, error)
	// Ready reports whether the node's counters are loaded.
	Ready(ctx context.Context, node string) (bool, error)
	// MarkReady declares the node's counters loaded: writes are accepted
	// from now on. Only the rebuild calls it.
	MarkReady(ctx context.Context, node string) error
	// MarkNotReady fences the node: from now on every write returns
	// ErrNotReady until MarkReady. The rebuild calls it before it reads the
	// ledger, so that nothing written in between is lost by the restore.
	MarkNotReady(ctx context.Context, node string) error
	// Snapshot reads the node's levels and open holds atomically. It works on
	// nodes that are not ready (Ready says so).
	Snapshot(ctx context.Context, node string) (NodeSnapshot, error)
	// RestoreNode replaces every counter and hold of the node, atomically:
	// on hand and safety from rows, reserved as the sum of the holds' lines,
	// the holds with their deadlines (rows and holds of other nodes are
	// ignored). It refuses a node that is ready (fence it first) and does not
	// mark the node ready. Errors: ErrInvalid.
	RestoreNode(ctx context.Context, node string, rows []StockRow, holds []Hold) error
	// RestoreHold adds a hold that the ledger has and the store lost,
	// reserving its lines even past available (the order exists: the stock
	// was promised). It does nothing and returns false if the store has the
	// hold open, and returns a *HoldClosedError if the store remembers it
	// closed. Errors also: ErrNotReady, ErrInvalid.
	RestoreHold(ctx context.Context, h Hold) (restored bool, err error)
	// AdjustReserved adds delta to the reserved counter of (node, sku),
	// never going below zero. The reconciliation uses it when the counter
	// and the sum of the open holds disagree. Errors: ErrNotReady.
	AdjustReserved(ctx context.Context, node, sku string, delta int64) error
}

// Rebuild recomputes every counter of the given nodes (every ledger node
// when none is given) from the ledger and marks them ready. Per node: fence
// (MarkNotReady), read the ledger, restore atomically, mark ready. It does
// not wait for in-flight intakes to settle; Reconciler.Rebuild does.
func Rebuild(ctx context.Context, ledger Ledger, store Rebuildable, nodes ...string) error {
	return rebuild(ctx, ledger, store, 0, slog.New(slog.DiscardHandler), nodes)
}

func rebuild(ctx context.Context, ledger Ledger, store Rebuildable, settle time.Duration, log *slog.Logger, nodes []string) error {
	if len(nodes) == 0 {
		var err error
		if nodes, err = ledger.Nodes(ctx); err != nil {
			return fmt.Errorf("inventory: rebuild: ledger nodes: %w", err)
		}
	}
	for _, n := range nodes {
		if err := ValidateNode(n); err != nil {
			return fmt.Errorf("inventory: rebuild: %w", err)
		}
		// Fence first: whatever the counters hold now is about to be
		// replaced, so nothing may be written to them until the restore.
		if err := store.MarkNotReady(ctx, n); err != nil {
			return fmt.Errorf("inventory: rebuild %s: fence: %w", n, err)
		}
	}
	// An intake that reserved just before the loss commits to SQL a few
	// milliseconds later; reading the ledger after it did keeps its hold.
	// (One that commits later still is re-added by the reconciliation.)
	if settle > 0 {
		t := time.NewTimer(settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("inventory: rebuild: %w", ctx.Err())
		case <-t.C:
		}
	}
	rows, err := ledger.Stock(ctx)
	if err != nil {
		return fmt.Errorf("inventory: rebuild: ledger stock: %w", err)
	}
	holds, err := ledger.OpenHolds(ctx)
	if err != nil {
		return fmt.Errorf("inventory: rebuild: ledger holds: %w", err)
	}
	rowsBy := make(map[string][]StockRow)
	for _, r := range rows {
		rowsBy[r.Node] = append(rowsBy[r.Node], r)
	}
	holdsBy := make(map[string][]Hold)
	for _, h := range holds {
		holdsBy[h.Node] = append(holdsBy[h.Node], h)
	}
	var errs []error
	for _, n := range nodes {
		start := time.Now()
		if err := store.RestoreNode(ctx, n, rowsBy[n], holdsBy[n]); err != nil {
			errs = append(errs, fmt.Errorf("inventory: rebuild %s: %w", n, err))
			continue
		}
		if err := store.MarkReady(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("inventory: rebuild %s: mark ready: %w", n, err))
			continue
		}
		log.Info("inventory: node rebuilt", "node", n, "skus", len(rowsBy[n]), "holds", len(holdsBy[n]),
			"took", time.Since(start))
	}
	return errors.Join(errs...)
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
