package stocktest

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/omsd/omsd/inventory"
)

// liveness returns the store's Liveness or fails: both stores keep it.
func (h *harness) liveness() inventory.Liveness {
	h.t.Helper()
	lv, ok := h.s.(inventory.Liveness)
	if !ok {
		h.t.Fatalf("stocktest: %T does not implement inventory.Liveness", h.s)
	}
	return lv
}

// waitDead waits (at most 5 s) until owner's heartbeat has expired.
func (h *harness) waitDead(lv inventory.Liveness, owner string) {
	h.t.Helper()
	for range 250 {
		_, dead, err := lv.Owners(h.ctx)
		if err != nil {
			h.t.Fatalf("Owners: %v", err)
		}
		if slices.Contains(dead, owner) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("owner %s still alive 5 s after its 100 ms heartbeat", owner)
}

func testOwnersExpireAndAreForgotten(h *harness) {
	lv := h.liveness()
	if err := lv.Beat(h.ctx, "api-1.0", time.Hour); err != nil {
		h.t.Fatal(err)
	}
	if err := lv.Beat(h.ctx, "api-2.0", 100*time.Millisecond); err != nil {
		h.t.Fatal(err)
	}
	for _, bad := range []string{"", "a\x00b", string([]byte{0xff})} {
		if err := lv.Beat(h.ctx, bad, time.Hour); err == nil {
			h.t.Errorf("Beat(%q): got nil, want ErrInvalid", bad)
		}
	}
	h.waitDead(lv, "api-2.0")
	live, dead, err := lv.Owners(h.ctx)
	if err != nil || !slices.Equal(live, []string{"api-1.0"}) || !slices.Equal(dead, []string{"api-2.0"}) {
		h.t.Errorf("Owners: got live %v dead %v (%v), want [api-1.0] [api-2.0]", live, dead, err)
	}
	if err := lv.ForgetOwners(h.ctx, []string{"api-2.0"}); err != nil {
		h.t.Fatal(err)
	}
	live, dead, err = lv.Owners(h.ctx)
	if err != nil || !slices.Equal(live, []string{"api-1.0"}) || len(dead) != 0 {
		h.t.Errorf("Owners after forget: got live %v dead %v (%v), want [api-1.0] []", live, dead, err)
	}
}

func testHoldsKeepTheirOwner(h *harness) {
	n := h.nodes[0]
	h.ready(n)
	h.set(n, "a", 10, 0)
	if err := h.s.Reserve(h.ctx, inventory.Hold{ID: "o1", Node: n, Lines: []inventory.Line{line("a", 1)}, Owner: "api-1.0"}); err != nil {
		h.t.Fatal(err)
	}
	h.mustReserve("o2", n, time.Time{}, line("a", 1))
	if err := h.s.Reserve(h.ctx, inventory.Hold{ID: "o3", Node: n, Lines: []inventory.Line{line("a", 1)}, Owner: "a\x00b"}); err == nil {
		h.t.Errorf("Reserve with a NUL in the owner: got nil, want ErrInvalid")
	}
	owners := func(what string) {
		h.t.Helper()
		snap, err := h.rb.Snapshot(h.ctx, n)
		if err != nil {
			h.t.Fatal(err)
		}
		var got []string
		for _, sh := range snap.Holds {
			got = append(got, sh.ID+"="+sh.Owner)
		}
		if want := []string{"o1=api-1.0", "o2="}; !slices.Equal(got, want) {
			h.t.Errorf("owners %s: got %v, want %v", what, got, want)
		}
	}
	owners("after reserve")
	// A rebuild keeps the in-flight holds, owners included.
	if err := inventory.Rebuild(h.ctx, NewLedger(), h.rb, n); err != nil {
		h.t.Fatal(err)
	}
	owners("after a rebuild that kept them in flight")
}

func testReconcileReleasesDeadOwnersHolds(h *harness) {
	n := h.nodes[0]
	h.ready(n)
	lv := h.liveness()
	m := Mirror{Store: h.s, Ledger: NewLedger()}
	if _, err := m.SetStock(h.ctx, n, "a", 10, 0); err != nil {
		h.t.Fatal(err)
	}
	if err := lv.Beat(h.ctx, "live.0", time.Hour); err != nil {
		h.t.Fatal(err)
	}
	if err := lv.Beat(h.ctx, "dead.0", 100*time.Millisecond); err != nil {
		h.t.Fatal(err)
	}
	hold := func(id, owner string) inventory.Hold {
		return inventory.Hold{ID: id, Node: n, Lines: []inventory.Line{line("a", 1)}, Owner: owner}
	}
	// In flight: reserved, never committed to the ledger.
	for _, hd := range []inventory.Hold{hold("of-dead", "dead.0"), hold("of-live", "live.0"), hold("no-owner", "")} {
		if err := h.s.Reserve(h.ctx, hd); err != nil {
			h.t.Fatal(err)
		}
	}
	// Committed by the dead owner before it died: the ledger owns it.
	if err := m.Reserve(h.ctx, hold("stored", "dead.0")); err != nil {
		h.t.Fatal(err)
	}
	h.waitDead(lv, "dead.0")
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	r, err := inventory.NewReconciler(m.Ledger, h.rb, inventory.ReconcilerConfig{
		Settle: -1, OwnerSettle: 3 * time.Second,
		Now: func() time.Time { return time.Unix(0, clock.Load()) },
	})
	if err != nil {
		h.t.Fatal(err)
	}
	rep, err := r.Reconcile(h.ctx)
	if err != nil || len(rep.Drifts) != 0 {
		h.t.Errorf("pass when the owner was first seen dead: got %v, %v; want no drift (a commit may still be on its way)", kinds(rep), err)
	}
	clock.Add(int64(4 * time.Second))
	rep, err = r.Reconcile(h.ctx)
	if want := []string{"dead_owner_hold of-dead repaired=true"}; err != nil || !slices.Equal(kinds(rep), want) {
		h.t.Errorf("pass past the owner settle: got %v, %v; want %v", kinds(rep), err, want)
	}
	h.want(n, "a", 10, 3, 0)
	_, dead, err := lv.Owners(h.ctx)
	if err != nil || len(dead) != 0 {
		h.t.Errorf("dead owners after its holds were released: got %v (%v), want it forgotten", dead, err)
	}
	rep, err = r.Reconcile(h.ctx)
	if err != nil || len(rep.Drifts) != 0 {
		h.t.Errorf("third pass: got %v, %v; want no drift", kinds(rep), err)
	}
}
