package redisstock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
	"github.com/omsd/omsd/inventory/stocktest"
)

// TestRebuildAfterDataLoss fills three nodes with stock and holds of every
// kind (written through a Mirror, so an in-memory ledger holds what SQL
// would), loses Redis's data by FLUSHALL or by restarting redis-server
// (persistence off: it comes back empty), checks that every node then
// refuses reservations with ErrNotReady, rebuilds from the ledger, and
// checks that every counter and hold is what it was before.
func TestRebuildAfterDataLoss(t *testing.T) {
	for _, loss := range []string{"FLUSHALL", "restart"} {
		t.Run("loss="+loss, func(t *testing.T) {
			ctx := context.Background()
			srv := stacktest.NewRedis(t)
			rdb := newClient(t, srv.Addr())
			reg := prometheus.NewRegistry()
			s := newStore(t, rdb, redisstock.Config{})
			ledger := stocktest.NewLedger()
			m := stocktest.Mirror{Store: s, Ledger: ledger}
			nodes := []string{"n1", "n2", "n3"}
			ledger.AddNode(nodes...)
			r, err := inventory.NewReconciler(ledger, s, inventory.ReconcilerConfig{Settle: -1, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			// A fresh Redis: every node needs its first build.
			if nr, err := r.NotReadyNodes(ctx); err != nil || !slices.Equal(nr, nodes) {
				t.Fatalf("NotReadyNodes on an empty Redis: got %v, %v; want %v", nr, err, nodes)
			}
			if err := r.Rebuild(ctx); err != nil {
				t.Fatal(err)
			}

			now := time.Now()
			var keys []inventory.Key
			for i, n := range nodes {
				for j := range 20 {
					sku := fmt.Sprintf("sku-%02d", j)
					keys = append(keys, inventory.Key{Node: n, SKU: sku})
					if _, err := m.SetStock(ctx, n, sku, int64(50+i+j), int64(j%3)); err != nil {
						t.Fatal(err)
					}
				}
				for j := range 30 {
					deadline := time.UnixMilli(now.Add(time.Duration(j+1) * time.Minute).UnixMilli())
					if j%4 == 0 {
						deadline = time.Time{}
					}
					h := inventory.Hold{ID: fmt.Sprintf("ship-%d-%02d", i, j), Node: n, Deadline: deadline,
						Lines: []inventory.Line{{SKU: fmt.Sprintf("sku-%02d", j%20), Qty: int64(j%5 + 1)}, {SKU: "sku-19", Qty: 1}}}
					if err := m.Reserve(ctx, h); err != nil {
						t.Fatal(err)
					}
				}
				for j := 1; j < 30; j += 6 {
					if _, err := m.Release(ctx, n, fmt.Sprintf("ship-%d-%02d", i, j)); err != nil {
						t.Fatal(err)
					}
					if _, err := m.Commit(ctx, n, fmt.Sprintf("ship-%d-%02d", i, j+1)); err != nil {
						t.Fatal(err)
					}
					if err := m.Confirm(ctx, n, fmt.Sprintf("ship-%d-%02d", i, j+2)); err != nil {
						t.Fatal(err)
					}
				}
			}
			levelsBefore, err := s.Levels(ctx, keys)
			if err != nil {
				t.Fatal(err)
			}
			snapBefore := map[string]inventory.NodeSnapshot{}
			for _, n := range nodes {
				if snapBefore[n], err = s.Snapshot(ctx, n); err != nil {
					t.Fatal(err)
				}
			}

			switch loss {
			case "FLUSHALL":
				if err := rdb.FlushAll(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			case "restart":
				if err := srv.Restart(ctx); err != nil {
					t.Fatal(err)
				}
			}

			// Fail closed until rebuilt, on every node and every write.
			for i, n := range nodes {
				h := inventory.Hold{ID: "after-loss", Node: n, Lines: []inventory.Line{{SKU: "sku-00", Qty: 1}}}
				if err := s.Reserve(ctx, h); !errors.Is(err, inventory.ErrNotReady) {
					t.Errorf("Reserve at %s after the loss: got %v, want ErrNotReady", n, err)
				}
				if _, err := s.SetStock(ctx, n, "sku-00", 1, 0); !errors.Is(err, inventory.ErrNotReady) {
					t.Errorf("SetStock at %s after the loss: got %v, want ErrNotReady", n, err)
				}
				if _, err := s.Release(ctx, n, fmt.Sprintf("ship-%d-03", i)); !errors.Is(err, inventory.ErrNotReady) {
					t.Errorf("Release at %s after the loss: got %v, want ErrNotReady", n, err)
				}
				if _, err := s.Commit(ctx, n, fmt.Sprintf("ship-%d-03", i)); !errors.Is(err, inventory.ErrNotReady) {
					t.Errorf("Commit at %s after the loss: got %v, want ErrNotReady", n, err)
				}
			}
			var nr *inventory.NotReadyError
			if _, err := s.Levels(ctx, keys); !errors.As(err, &nr) || !slices.Equal(nr.Nodes, nodes) {
				t.Errorf("Levels after the loss: got %v, want *NotReadyError naming %v", err, nodes)
			}
			if ids, err := s.SweepExpired(ctx, now.Add(time.Hour), 0); err != nil || len(ids) != 0 {
				t.Errorf("sweep after the loss: got %v, %v; want nothing", ids, err)
			}
			if n := rdb.DBSize(ctx).Val(); n != 0 {
				t.Errorf("refused writes left %d keys", n)
			}
			// Reconcile leaves not-ready nodes to the rebuild.
			if rep, err := r.Reconcile(ctx); err != nil || !slices.Equal(rep.NotReady, nodes) || rep.Nodes != 0 || len(rep.Drifts) != 0 {
				t.Errorf("reconcile while not ready: got %+v, %v; want every node skipped as not ready", rep, err)
			}
			got, err := r.NotReadyNodes(ctx)
			if err != nil || !slices.Equal(got, nodes) {
				t.Fatalf("NotReadyNodes: got %v, %v; want %v", got, err, nodes)
			}

			if err := r.Rebuild(ctx, got...); err != nil {
				t.Fatalf("Rebuild: %v", err)
			}

			levelsAfter, err := s.Levels(ctx, keys)
			if err != nil {
				t.Fatalf("Levels after the rebuild: %v", err)
			}
			if !slices.Equal(levelsAfter, levelsBefore) {
				for i := range levelsBefore {
					if levelsAfter[i] != levelsBefore[i] {
						t.Errorf("level %v: got %+v, want %+v", keys[i], levelsAfter[i], levelsBefore[i])
					}
				}
			}
			for _, n := range nodes {
				snap, err := s.Snapshot(ctx, n)
				if err != nil {
					t.Fatal(err)
				}
				// The ledger's deadlines come back with the grace on top.
				sameHolds(t, snap, withGrace(snapBefore[n], inventory.DefaultHoldGrace))
			}
			if rep, err := r.Reconcile(ctx); err != nil || len(rep.Drifts) != 0 || rep.Nodes != 3 {
				t.Errorf("reconcile after the rebuild: got %+v, %v; want 3 nodes, no drift", rep, err)
			}
			// The rebuilt holds behave: the unpaid ones expire, once.
			var unpaid int
			for _, n := range nodes {
				for _, h := range snapBefore[n].Holds {
					if !h.Deadline.IsZero() {
						unpaid++
					}
				}
			}
			ids, err := s.SweepExpired(ctx, now.Add(time.Hour), 0)
			if err != nil || len(ids) != unpaid {
				t.Errorf("sweep after the rebuild: got %d ids, %v; want %d", len(ids), err, unpaid)
			}
			// A hold released before the loss is not in the rebuilt set:
			// releasing it again gives nothing back twice.
			if ok, err := s.Release(ctx, "n1", "ship-0-01"); ok {
				t.Errorf("release of a hold released before the loss: got true, %v", err)
			}
		})
	}
}

// withGrace returns snap with grace added to every deadline.
func withGrace(snap inventory.NodeSnapshot, grace time.Duration) inventory.NodeSnapshot {
	snap.Holds = slices.Clone(snap.Holds)
	for i := range snap.Holds {
		if !snap.Holds[i].Deadline.IsZero() {
			snap.Holds[i].Deadline = snap.Holds[i].Deadline.Add(grace)
		}
	}
	return snap
}

func sameHolds(t *testing.T, got, want inventory.NodeSnapshot) {
	t.Helper()
	if len(got.Holds) != len(want.Holds) {
		t.Fatalf("%s: got %d holds, want %d", got.Node, len(got.Holds), len(want.Holds))
	}
	for i := range got.Holds {
		g, w := got.Holds[i].Hold, want.Holds[i].Hold
		if g.ID != w.ID || !inventory.SameLines(g.Lines, w.Lines) || !g.Deadline.Equal(w.Deadline) {
			t.Errorf("%s hold %d: got %+v, want %+v", got.Node, i, g, w)
		}
	}
	if !slices.Equal(got.Levels, want.Levels) {
		t.Errorf("%s levels differ:\n got  %+v\n want %+v", got.Node, got.Levels, want.Levels)
	}
}
