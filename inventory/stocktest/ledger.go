package stocktest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/omsd/omsd/inventory"
)

// Ledger is an in-memory inventory.Ledger for tests: what the SQL ledger
// would hold after the writes a Mirror passed on. Safe for concurrent use.
type Ledger struct {
	mu    sync.Mutex
	nodes map[string]bool
	stock map[inventory.Key]inventory.StockRow
	holds map[inventory.Key]inventory.Hold // Key{Node, hold id}
	fates map[inventory.HoldRef]inventory.HoldState
	// restocks are every restock booked, in order.
	restocks []inventory.Restock
	// Now is the ledger's clock (restock times and State's restock
	// window); nil means time.Now. Set it before use.
	Now func() time.Time
	// BeforeState, when set, runs at the start of each State read, before
	// it takes its snapshot (outside the ledger's lock): a test commits
	// there what reaches SQL between a reconciliation's store snapshot and
	// its ledger read.
	BeforeState func()
	// AfterState, when set, runs after each State read has taken its
	// snapshot and before it returns (outside the ledger's lock): a test
	// commits there what reaches SQL just after a rebuild's or a
	// reconciliation's read.
	AfterState func()
}

var _ inventory.Ledger = (*Ledger)(nil)

// NewLedger returns an empty Ledger.
func NewLedger() *Ledger {
	return &Ledger{nodes: map[string]bool{}, stock: map[inventory.Key]inventory.StockRow{}, holds: map[inventory.Key]inventory.Hold{},
		fates: map[inventory.HoldRef]inventory.HoldState{}}
}

// AddNode records a node.
func (l *Ledger) AddNode(nodes ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range nodes {
		l.nodes[n] = true
	}
}

// SetStock records a snapshot of on hand and safety.
func (l *Ledger) SetStock(node, sku string, onHand, safety int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[node] = true
	l.stock[inventory.Key{Node: node, SKU: sku}] = inventory.StockRow{Node: node, SKU: sku, OnHand: onHand, Safety: safety}
}

// PutHold records an open hold (a committed order's shipment).
func (l *Ledger) PutHold(h inventory.Hold) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[h.Node] = true
	h.Lines = append([]inventory.Line(nil), h.Lines...)
	l.holds[inventory.Key{Node: h.Node, SKU: h.ID}] = h
	l.fates[inventory.HoldRef{Node: h.Node, ID: h.ID}] = inventory.HoldOpen
}

// CloseHold records a hold released or expired.
func (l *Ledger) CloseHold(node, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeLocked(node, id)
}

func (l *Ledger) closeLocked(node, id string) {
	k := inventory.Key{Node: node, SKU: id}
	if _, ok := l.holds[k]; ok {
		delete(l.holds, k)
		l.fates[inventory.HoldRef{Node: node, ID: id}] = inventory.HoldReleased
	}
}

// CommitHold records a hold shipped: it closes, and on hand drops.
func (l *Ledger) CommitHold(node, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := inventory.Key{Node: node, SKU: id}
	h, ok := l.holds[k]
	if !ok {
		return
	}
	delete(l.holds, k)
	l.fates[inventory.HoldRef{Node: node, ID: id}] = inventory.HoldCommitted
	for _, line := range h.Lines {
		sk := inventory.Key{Node: node, SKU: line.SKU}
		row := l.stock[sk]
		row.Node, row.SKU = node, line.SKU
		row.OnHand -= line.Qty
		l.stock[sk] = row
	}
}

// Restock records a restock as the return's SQL transaction books it: on
// hand of (node, sku) up by qty and a restock row with the ledger's time.
// An id already booked is ignored (ids are single-use; the SQL ref is
// written once per restock).
func (l *Ledger) Restock(node, id, sku string, qty int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.restocks {
		if r.ID == id {
			return
		}
	}
	l.nodes[node] = true
	k := inventory.Key{Node: node, SKU: sku}
	row := l.stock[k]
	row.Node, row.SKU = node, sku
	row.OnHand += qty
	l.stock[k] = row
	l.restocks = append(l.restocks, inventory.Restock{ID: id, Node: node, SKU: sku, Qty: qty, At: l.now()})
}

func (l *Ledger) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// restocksLocked are the restocks of the last RestockWindow, as
// pgstore's State reads them.
func (l *Ledger) restocksLocked() []inventory.Restock {
	cutoff := l.now().Add(-inventory.RestockWindow)
	var out []inventory.Restock
	for _, r := range l.restocks {
		if r.At.After(cutoff) {
			out = append(out, r)
		}
	}
	return out
}

// ConfirmHold records a hold paid: its deadline goes.
func (l *Ledger) ConfirmHold(node, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := inventory.Key{Node: node, SKU: id}
	if h, ok := l.holds[k]; ok {
		h.Deadline = time.Time{}
		l.holds[k] = h
	}
}

// Nodes implements inventory.Ledger.
func (l *Ledger) Nodes(context.Context) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.nodes))
	for n := range l.nodes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// State implements inventory.Ledger.
func (l *Ledger) State(ctx context.Context) (inventory.LedgerState, error) {
	l.mu.Lock()
	before := l.BeforeState
	l.mu.Unlock()
	if before != nil {
		before()
	}
	l.mu.Lock()
	st := inventory.LedgerState{Stock: l.stockLocked(), Holds: l.openLocked(), Restocks: l.restocksLocked()}
	after := l.AfterState
	l.mu.Unlock()
	if after != nil {
		after()
	}
	return st, nil
}

// HoldStates implements inventory.Ledger.
func (l *Ledger) HoldStates(_ context.Context, holds []inventory.HoldRef) (map[inventory.HoldRef]inventory.HoldState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[inventory.HoldRef]inventory.HoldState{}
	for _, r := range holds {
		if st, ok := l.fates[r]; ok {
			out[r] = st
		}
	}
	return out, nil
}

// Stock returns on hand and safety of every (node, SKU).
func (l *Ledger) Stock(context.Context) ([]inventory.StockRow, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stockLocked(), nil
}

func (l *Ledger) stockLocked() []inventory.StockRow {
	out := make([]inventory.StockRow, 0, len(l.stock))
	for _, r := range l.stock {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].SKU < out[j].SKU
	})
	return out
}

// OpenHolds returns the open holds.
func (l *Ledger) OpenHolds(context.Context) ([]inventory.Hold, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.openLocked(), nil
}

func (l *Ledger) openLocked() []inventory.Hold {
	out := make([]inventory.Hold, 0, len(l.holds))
	for _, h := range l.holds {
		h.Lines = append([]inventory.Line(nil), h.Lines...)
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Mirror is a Store that passes every successful write on to a Ledger, as
// omsd records it in SQL: stock snapshots first (the ledger is the truth),
// holds after the store accepted them (intake reserves before it commits).
type Mirror struct {
	inventory.Store
	Ledger *Ledger
}

// SetStock records the snapshot in the ledger, then in the store.
func (m Mirror) SetStock(ctx context.Context, node, sku string, onHand, safety int64) (inventory.Level, error) {
	if err := inventory.ValidateStock(node, sku, onHand, safety); err != nil {
		return inventory.Level{}, err
	}
	m.Ledger.SetStock(node, sku, onHand, safety)
	return m.Store.SetStock(ctx, node, sku, onHand, safety)
}

// Reserve records the hold once the store accepted it.
func (m Mirror) Reserve(ctx context.Context, h inventory.Hold) error {
	if err := m.Store.Reserve(ctx, h); err != nil {
		return err
	}
	nh, err := inventory.NormalizeHold(h)
	if err != nil {
		return err
	}
	m.Ledger.PutHold(nh)
	return nil
}

// Release records the release.
func (m Mirror) Release(ctx context.Context, node, id string) (bool, error) {
	ok, err := m.Store.Release(ctx, node, id)
	if ok {
		m.Ledger.CloseHold(node, id)
	}
	return ok, err
}

// Commit records the shipment.
func (m Mirror) Commit(ctx context.Context, node, id string) (bool, error) {
	ok, err := m.Store.Commit(ctx, node, id)
	if ok {
		m.Ledger.CommitHold(node, id)
	}
	return ok, err
}

// Confirm records the payment.
func (m Mirror) Confirm(ctx context.Context, node, id string) error {
	err := m.Store.Confirm(ctx, node, id)
	if err == nil {
		m.Ledger.ConfirmHold(node, id)
	}
	return err
}

// Restock books the restock in the ledger, then applies it to the store
// (which must implement inventory.Restocker), as the return's transaction
// commits before omsd tells the store.
func (m Mirror) Restock(ctx context.Context, node, id, sku string, qty int64) (bool, error) {
	if err := inventory.ValidateRestock(node, id, sku, qty); err != nil {
		return false, err
	}
	m.Ledger.Restock(node, id, sku, qty)
	return m.Store.(inventory.Restocker).Restock(ctx, node, id, sku, qty)
}

// SweepExpired records the expiries.
func (m Mirror) SweepExpired(ctx context.Context, now time.Time, limit int) ([]string, error) {
	ids, err := m.Store.SweepExpired(ctx, now, limit)
	m.Ledger.mu.Lock()
	for _, id := range ids {
		for k := range m.Ledger.holds {
			if k.SKU == id {
				m.Ledger.closeLocked(k.Node, k.SKU)
			}
		}
	}
	m.Ledger.mu.Unlock()
	return ids, err
}
