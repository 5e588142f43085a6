package stocktest

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omsd/omsd/inventory"
)

// restock calls Restock and checks that it answers applied as want.
func (h *harness) restock(node, id, sku string, qty int64, want bool) {
	h.t.Helper()
	ok, err := h.rb.Restock(h.ctx, node, id, sku, qty)
	if err != nil || ok != want {
		h.t.Errorf("Restock(%s, %s, %s, %d): got %v, %v; want %v, nil", node, id, sku, qty, ok, err, want)
	}
}

func restockIDs(snap inventory.NodeSnapshot) []string {
	out := make([]string, 0, len(snap.Restocks))
	for id := range snap.Restocks {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func testRestockOnce(h *harness) {
	n := h.nodes[0]
	h.ready(n)
	h.set(n, "a", 10, 1)
	h.mustReserve("h1", n, time.Time{}, line("a", 3))
	version := h.snapshot(n).Versions["a"]
	h.restock(n, "r1", "a", 4, true)
	h.want(n, "a", 14, 3, 1)
	h.restock(n, "r1", "a", 4, false)
	h.restock(n, "r1", "b", 9, false) // an id is single-use, whatever it carries
	h.want(n, "a", 14, 3, 1)
	h.want(n, "b", 0, 0, 0)
	h.restock(n, "r2", "new", 2, true) // a SKU the store never saw
	h.want(n, "new", 2, 0, 0)
	snap := h.snapshot(n)
	if got := snap.Versions["a"]; got != version {
		h.t.Errorf("stock version after a restock: got %d, want %d (a restock is relative, as a shipment)", got, version)
	}
	if ids := restockIDs(snap); !slices.Equal(ids, []string{"r1", "r2"}) {
		h.t.Errorf("snapshot restock ids: got %v, want [r1 r2]", ids)
	}
	for id, at := range snap.Restocks {
		if at.IsZero() || time.Since(at) > time.Minute {
			h.t.Errorf("restock %s applied at %v, want about now", id, at)
		}
	}
	// The restocked units sell.
	h.mustReserve("h2", n, time.Time{}, line("a", 10))
	h.want(n, "a", 14, 13, 1)

	cases := []struct {
		name, node, id, sku string
		qty                 int64
	}{
		{"zero quantity", n, "x", "a", 0},
		{"negative quantity", n, "x", "a", -1},
		{"huge quantity", n, "x", "a", inventory.MaxQty + 1},
		{"empty id", n, "", "a", 1},
		{"empty sku", n, "x", "", 1},
		{"invalid UTF-8 id", n, "\xff", "a", 1},
		{"empty node", "", "x", "a", 1},
		{"brace in node", "a{b", "x", "a", 1},
	}
	for _, c := range cases {
		ok, err := h.rb.Restock(h.ctx, c.node, c.id, c.sku, c.qty)
		if ok {
			h.t.Errorf("restock with %s: applied", c.name)
		}
		wantErr(h.t, "restock with "+c.name, err, inventory.ErrInvalid)
	}
	h.want(n, "a", 14, 13, 1)
	// A refused call left no trace: its id is still free.
	h.restock(n, "x", "a", 1, true)
	h.want(n, "a", 15, 13, 1)
}

func testConcurrentRestocks(h *harness) {
	n := h.nodes[0]
	h.ready(n)
	h.set(n, "a", 10, 0)
	var wg sync.WaitGroup
	var applied atomic.Int64
	for range 100 {
		wg.Go(func() {
			ok, err := h.rb.Restock(h.ctx, n, "same", "a", 7)
			if err != nil {
				h.t.Errorf("concurrent restock: %v", err)
			}
			if ok {
				applied.Add(1)
			}
		})
	}
	wg.Wait()
	if applied.Load() != 1 {
		h.t.Errorf("100 concurrent restocks of one id: %d applied, want 1", applied.Load())
	}
	h.want(n, "a", 17, 0, 0)
}

func testRestockNotReady(h *harness) {
	n, cold := h.nodes[0], h.nodes[1]
	h.ready(n)
	h.set(n, "a", 10, 0)
	ok, err := h.rb.Restock(h.ctx, cold, "r1", "a", 1)
	var nr *inventory.NotReadyError
	if ok || !errors.As(err, &nr) || !slices.Equal(nr.Nodes, []string{cold}) {
		h.t.Errorf("restock on a cold node: got %v, %v; want *NotReadyError{[%s]}", ok, err, cold)
	}
	if err := h.rb.MarkNotReady(h.ctx, n); err != nil {
		h.t.Fatal(err)
	}
	ok, err = h.rb.Restock(h.ctx, n, "r1", "a", 2)
	if ok {
		h.t.Errorf("restock on a fenced node: applied")
	}
	wantErr(h.t, "restock on a fenced node", err, inventory.ErrNotReady)
	h.ready(n)
	h.want(n, "a", 10, 0, 0)
	if ids := restockIDs(h.snapshot(n)); len(ids) != 0 {
		h.t.Errorf("restock ids after a refused restock: got %v, want none", ids)
	}
	// During a rebuild the node refuses too; the refused id stays free.
	lease, ok, err := h.rb.BeginRebuild(h.ctx, n, false, time.Minute)
	if !ok || err != nil {
		h.t.Fatalf("BeginRebuild: %v, %v", ok, err)
	}
	ok, err = h.rb.Restock(h.ctx, n, "r2", "a", 3)
	if ok {
		h.t.Errorf("restock during a rebuild: applied")
	}
	wantErr(h.t, "restock during a rebuild", err, inventory.ErrNotReady)
	if err := h.rb.RestoreNode(h.ctx, n, lease, []inventory.StockRow{{Node: n, SKU: "a", OnHand: 10}}, nil, nil); err != nil {
		h.t.Fatal(err)
	}
	if err := h.rb.FinishRebuild(h.ctx, n, lease); err != nil {
		h.t.Fatal(err)
	}
	h.want(n, "a", 10, 0, 0)
	h.restock(n, "r1", "a", 2, true)
	h.restock(n, "r2", "a", 3, true)
	h.want(n, "a", 15, 0, 0)
}

// testRestockRaceWithReserves: returned units come back one at a time
// while buyers race for them; a watcher reading levels throughout never
// sees reserved above on hand (or into safety stock), and in the end every
// sellable unit is sold exactly once.
func testRestockRaceWithReserves(h *harness) {
	const restocks, buyers = 60, 40
	n := h.nodes[0]
	h.ready(n)
	h.set(n, "a", 5, 1)
	key := []inventory.Key{{Node: n, SKU: "a"}}
	start := make(chan struct{})
	var restocked atomic.Bool
	var won atomic.Int64
	stop := make(chan struct{})
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			ls, err := h.s.Levels(h.ctx, key)
			if err != nil {
				h.t.Errorf("Levels during the race: %v", err)
				return
			}
			if l := ls[0]; l.Reserved > l.OnHand || l.Available < 0 {
				h.t.Errorf("during the race: %+v", l)
			}
		}
	}()
	var rwg, bwg sync.WaitGroup
	for i := range restocks {
		rwg.Go(func() {
			<-start
			id := fmt.Sprint("r-", i)
			for range 2 { // the second call is a repeat: a no-op
				if _, err := h.rb.Restock(h.ctx, n, id, "a", 1); err != nil {
					h.t.Errorf("restock %s: %v", id, err)
				}
			}
		})
	}
	for b := range buyers {
		bwg.Go(func() {
			<-start
			for try := 0; ; try++ {
				// Whether the restocks were done is read before the attempt: a
				// short answer after they were all done means sold out for good.
				final := restocked.Load()
				err := h.reserve(fmt.Sprintf("b-%d-%d", b, try), n, time.Time{}, line("a", 1))
				switch {
				case err == nil:
					won.Add(1)
				case !errors.Is(err, inventory.ErrInsufficient):
					h.t.Errorf("buyer %d: %v", b, err)
					return
				case final:
					return
				default:
					time.Sleep(100 * time.Microsecond)
				}
			}
		})
	}
	close(start)
	rwg.Wait()
	restocked.Store(true)
	bwg.Wait()
	close(stop)
	<-watcherDone
	if want := int64(5 + restocks - 1); won.Load() != want {
		h.t.Errorf("units sold: got %d, want %d (on hand less safety)", won.Load(), want)
	}
	h.want(n, "a", 5+restocks, 5+restocks-1, 1)
}

// testRebuildRemembersRestocks: a rebuild takes on hand from the ledger,
// which already counts the restocks booked in SQL; the rebuilt node must
// know their ids as applied, or the late Restock of one of them (its call
// failed while the store had lost its data) would count its units twice.
// A restock booked after the rebuild's ledger read is not in the rebuilt
// on hand: the reconciler applies it, once.
func testRebuildRemembersRestocks(h *harness) {
	n := h.nodes[0]
	h.ready(n)
	m := Mirror{Store: h.s, Ledger: NewLedger()}
	if _, err := m.SetStock(h.ctx, n, "a", 10, 0); err != nil {
		h.t.Fatal(err)
	}
	if ok, err := m.Restock(h.ctx, n, "r-applied", "a", 2); !ok || err != nil {
		h.t.Fatal(ok, err)
	}
	m.Ledger.Restock(n, "r-booked", "a", 3) // committed in SQL; the store is lost before its call
	h.wipe(n)
	if ok, err := h.rb.Restock(h.ctx, n, "r-booked", "a", 3); ok || !errors.Is(err, inventory.ErrNotReady) {
		h.t.Errorf("restock on the lost node: got %v, %v; want ErrNotReady", ok, err)
	}
	m.Ledger.AfterState = once(func() {
		m.Ledger.Restock(n, "r-late", "a", 4)
		if ok, err := h.rb.Restock(h.ctx, n, "r-late", "a", 4); ok || !errors.Is(err, inventory.ErrNotReady) {
			h.t.Errorf("restock during the rebuild: got %v, %v; want ErrNotReady", ok, err)
		}
	})
	if err := inventory.Rebuild(h.ctx, m.Ledger, h.rb, n); err != nil {
		h.t.Fatal(err)
	}
	h.want(n, "a", 15, 0, 0)
	if ids := restockIDs(h.snapshot(n)); !slices.Equal(ids, []string{"r-applied", "r-booked"}) {
		h.t.Errorf("restock ids after the rebuild: got %v, want [r-applied r-booked]", ids)
	}
	h.restock(n, "r-booked", "a", 3, false) // the owner's late call
	h.restock(n, "r-applied", "a", 2, false)
	h.want(n, "a", 15, 0, 0)
	r := h.reconciler(m.Ledger, 0)
	rep, err := r.Reconcile(h.ctx)
	if want := []string{"restock a/r-late repaired=true"}; err != nil || !slices.Equal(kinds(rep), want) {
		h.t.Errorf("reconcile after the rebuild: got %v, %v; want %v", kinds(rep), err, want)
	}
	h.want(n, "a", 19, 0, 0)
	h.restock(n, "r-late", "a", 4, false)
	h.want(n, "a", 19, 0, 0)

	// A rebuild without a loss, once the ledger's window has passed: the
	// ledger lists none of them any more, and the store still knows them.
	m.Ledger.Now = func() time.Time { return time.Now().Add(2 * inventory.RestockWindow) }
	if err := inventory.Rebuild(h.ctx, m.Ledger, h.rb, n); err != nil {
		h.t.Fatal(err)
	}
	h.want(n, "a", 19, 0, 0)
	for _, id := range []string{"r-applied", "r-booked", "r-late"} {
		h.restock(n, id, "a", 1, false)
	}
	h.want(n, "a", 19, 0, 0)
	if rep, err := r.Reconcile(h.ctx); err != nil || len(rep.Drifts) != 0 {
		h.t.Errorf("reconcile after the second rebuild: got %v, %v; want no drift", kinds(rep), err)
	}
}

// testReconcileOwedRestock: the return's transaction committed and its
// Restock never reached the store (the process died in between). The
// reconciler applies it, once, counts it in the on-hand comparison (no
// on-hand repair on top), and the owner's late call adds nothing.
func testReconcileOwedRestock(h *harness) {
	n := h.nodes[0]
	h.ready(n)
	m := Mirror{Store: h.s, Ledger: NewLedger()}
	if _, err := m.SetStock(h.ctx, n, "a", 10, 1); err != nil {
		h.t.Fatal(err)
	}
	if err := m.Reserve(h.ctx, inventory.Hold{ID: "h1", Node: n, Lines: []inventory.Line{line("a", 4)}}); err != nil {
		h.t.Fatal(err)
	}
	m.Ledger.Restock(n, "r1", "a", 5)
	r := h.reconciler(m.Ledger, 0)
	rep, err := r.Reconcile(h.ctx)
	if want := []string{"restock a/r1 repaired=true"}; err != nil || !slices.Equal(kinds(rep), want) {
		h.t.Errorf("first pass: got %v, %v; want %v", kinds(rep), err, want)
	}
	if len(rep.Drifts) == 1 && (rep.Drifts[0].Ledger != 5 || rep.Drifts[0].Store != 0) {
		h.t.Errorf("restock drift: got %+v, want store 0, ledger 5", rep.Drifts[0])
	}
	h.want(n, "a", 15, 4, 1)
	if rep, err := r.Reconcile(h.ctx); err != nil || len(rep.Drifts) != 0 {
		h.t.Errorf("second pass: got %v, %v; want no drift", kinds(rep), err)
	}
	h.restock(n, "r1", "a", 5, false)
	h.want(n, "a", 15, 4, 1)

	// Two reconcilers owe the same restock: one applies it, the other
	// finds it applied and repairs nothing.
	m.Ledger.Restock(n, "r2", "a", 1)
	a, b := h.reconciler(m.Ledger, 0), h.reconciler(m.Ledger, 0)
	var inner inventory.ReconcileReport
	var innerErr error
	m.Ledger.AfterState = once(func() { inner, innerErr = b.Reconcile(h.ctx) })
	outer, err := a.Reconcile(h.ctx)
	if want := []string{"restock a/r2 repaired=true"}; innerErr != nil || !slices.Equal(kinds(inner), want) {
		h.t.Errorf("inner reconciler: got %v, %v; want %v", kinds(inner), innerErr, want)
	}
	if err != nil || len(outer.Drifts) != 0 {
		h.t.Errorf("outer reconciler: got %v, %v; want nothing (applied meanwhile)", kinds(outer), err)
	}
	h.want(n, "a", 16, 4, 1)
}

// testReconcileAppliedRestock: a restock applied end to end is no drift,
// neither while the ledger lists it nor after its window.
func testReconcileAppliedRestock(h *harness) {
	n := h.nodes[0]
	h.ready(n)
	m := Mirror{Store: h.s, Ledger: NewLedger()}
	if _, err := m.SetStock(h.ctx, n, "a", 10, 0); err != nil {
		h.t.Fatal(err)
	}
	if ok, err := m.Restock(h.ctx, n, "r1", "a", 5); !ok || err != nil {
		h.t.Fatal(ok, err)
	}
	if st, _ := m.Ledger.State(h.ctx); len(st.Restocks) != 1 || st.Restocks[0].ID != "r1" {
		h.t.Fatalf("ledger restocks: got %+v, want r1", st.Restocks)
	}
	if rep, err := h.reconciler(m.Ledger, 0).Reconcile(h.ctx); err != nil || len(rep.Drifts) != 0 {
		h.t.Errorf("reconcile: got %v, %v; want no drift", kinds(rep), err)
	}
	h.want(n, "a", 15, 0, 0)
	m.Ledger.Now = func() time.Time { return time.Now().Add(2 * inventory.RestockWindow) }
	if st, _ := m.Ledger.State(h.ctx); len(st.Restocks) != 0 {
		h.t.Fatalf("ledger restocks past the window: got %+v, want none", st.Restocks)
	}
	if rep, err := h.reconciler(m.Ledger, 0).Reconcile(h.ctx); err != nil || len(rep.Drifts) != 0 {
		h.t.Errorf("reconcile past the window: got %v, %v; want no drift", kinds(rep), err)
	}
	h.want(n, "a", 15, 0, 0)
}

// testReconcileRestockRaces: restocks reach SQL and the store around the
// reconciliation's two reads (store snapshot, then ledger) while the store
// also carries a real on-hand drift of +2. Each time the drift is repaired
// exactly and no restock is counted twice or lost.
func testReconcileRestockRaces(h *harness) {
	n := h.nodes[0]
	h.ready(n)
	m := Mirror{Store: h.s, Ledger: NewLedger()}
	if _, err := m.SetStock(h.ctx, n, "a", 10, 0); err != nil {
		h.t.Fatal(err)
	}
	r := h.reconciler(m.Ledger, 0)
	pass := func(what string, ledgerOnHand int64) {
		h.t.Helper()
		rep, err := r.Reconcile(h.ctx)
		if want := []string{"on_hand a repaired=true"}; err != nil || !slices.Equal(kinds(rep), want) {
			h.t.Errorf("%s: got %v, %v; want %v", what, kinds(rep), err, want)
		}
		h.want(n, "a", ledgerOnHand, 0, 0)
		if rep, err := r.Reconcile(h.ctx); err != nil || len(rep.Drifts) != 0 {
			h.t.Errorf("%s, next pass: got %v, %v; want no drift", what, kinds(rep), err)
		}
	}

	// Booked in SQL and applied in the store between the two reads: the
	// ledger lists it, the snapshot lacks it, the store has it already.
	h.set(n, "a", 12, 0)
	m.Ledger.BeforeState = once(func() {
		if ok, err := m.Restock(h.ctx, n, "between", "a", 5); !ok || err != nil {
			h.t.Errorf("restock between the reads: %v, %v", ok, err)
		}
	})
	pass("restock between the reads", 15)

	// Booked in SQL and applied after the ledger read: neither read has it.
	h.set(n, "a", 17, 0)
	m.Ledger.AfterState = once(func() {
		if ok, err := m.Restock(h.ctx, n, "after", "a", 3); !ok || err != nil {
			h.t.Errorf("restock after the reads: %v, %v", ok, err)
		}
	})
	pass("restock after the reads", 18)

	// Booked in SQL before the snapshot, applied by its owner after it.
	h.set(n, "a", 20, 0)
	m.Ledger.Restock(n, "slow", "a", 2)
	m.Ledger.BeforeState = once(func() { h.restock(n, "slow", "a", 2, true) })
	pass("restock applied between the reads", 20)
}
