package redisstock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/memstock"
	"github.com/omsd/omsd/inventory/redisstock"
)

// outcome reduces an error to what the contract promises about it, so that
// two stores' answers can be compared.
func outcome(err error) string {
	var short *inventory.ShortError
	var closed *inventory.HoldClosedError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &short):
		return fmt.Sprintf("short %s want %d have %d", short.SKU, short.Want, short.Have)
	case errors.As(err, &closed):
		return "closed " + string(closed.State)
	case errors.Is(err, inventory.ErrNotReady):
		return "not ready"
	case errors.Is(err, inventory.ErrHoldConflict):
		return "conflict"
	case errors.Is(err, inventory.ErrUnknownHold):
		return "unknown"
	case errors.Is(err, inventory.ErrInvalid):
		return "invalid"
	}
	return "error: " + err.Error()
}

// TestMatchesMemstock runs random sequences of operations on redisstock and
// on memstock side by side and checks that every answer and every counter
// agree: memstock is the reference model other packages test against, so
// it must not behave differently from Redis.
func TestMatchesMemstock(t *testing.T) {
	rdb := newClient(t, stacktest.NewRedis(t).Addr())
	var runs atomic.Int64
	base := time.Unix(1_800_000_000, 0)
	nodes := []string{"n1", "n2"}
	skus := []string{"a", "b", "c"}
	ids := []string{"h1", "h2", "h3", "h4", "h5", "h6"}
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		now := base
		clock := func() time.Time { return now }
		rs, err := redisstock.New(rdb, redisstock.Config{Prefix: fmt.Sprint("model-", runs.Add(1)), Now: clock})
		if err != nil {
			rt.Fatal(err)
		}
		ms := memstock.New(memstock.Config{Now: clock})
		stores := []inventory.Rebuildable{rs, ms}
		for _, n := range nodes {
			if rapid.Bool().Draw(rt, "ready "+n) {
				for _, s := range stores {
					if err := s.MarkReady(ctx, n); err != nil {
						rt.Fatal(err)
					}
				}
			}
		}
		same := func(what string, f func(s inventory.Rebuildable) string) {
			a, b := f(rs), f(ms)
			if a != b {
				rt.Fatalf("%s: redisstock %q, memstock %q", what, a, b)
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"set stock": func(rt *rapid.T) {
				n, sku := rapid.SampledFrom(nodes).Draw(rt, "node"), rapid.SampledFrom(skus).Draw(rt, "sku")
				oh, sf := rapid.Int64Range(0, 12).Draw(rt, "on hand"), rapid.Int64Range(0, 3).Draw(rt, "safety")
				same("SetStock", func(s inventory.Rebuildable) string {
					lv, err := s.SetStock(ctx, n, sku, oh, sf)
					return fmt.Sprintf("%+v %s", lv, outcome(err))
				})
			},
			"reserve": func(rt *rapid.T) {
				h := inventory.Hold{ID: rapid.SampledFrom(ids).Draw(rt, "id"), Node: rapid.SampledFrom(nodes).Draw(rt, "node")}
				for _, sku := range skus {
					if q := rapid.Int64Range(0, 4).Draw(rt, "qty "+sku); q > 0 {
						h.Lines = append(h.Lines, inventory.Line{SKU: sku, Qty: q})
					}
				}
				if d := rapid.IntRange(0, 3).Draw(rt, "deadline"); d > 0 {
					h.Deadline = base.Add(time.Duration(d) * time.Minute)
				}
				same("Reserve", func(s inventory.Rebuildable) string { return outcome(s.Reserve(ctx, h)) })
			},
			"release": func(rt *rapid.T) {
				n, id := rapid.SampledFrom(nodes).Draw(rt, "node"), rapid.SampledFrom(ids).Draw(rt, "id")
				same("Release", func(s inventory.Rebuildable) string {
					ok, err := s.Release(ctx, n, id)
					return fmt.Sprint(ok, " ", outcome(err))
				})
			},
			"commit": func(rt *rapid.T) {
				n, id := rapid.SampledFrom(nodes).Draw(rt, "node"), rapid.SampledFrom(ids).Draw(rt, "id")
				same("Commit", func(s inventory.Rebuildable) string {
					ok, err := s.Commit(ctx, n, id)
					return fmt.Sprint(ok, " ", outcome(err))
				})
			},
			"confirm": func(rt *rapid.T) {
				n, id := rapid.SampledFrom(nodes).Draw(rt, "node"), rapid.SampledFrom(ids).Draw(rt, "id")
				same("Confirm", func(s inventory.Rebuildable) string { return outcome(s.Confirm(ctx, n, id)) })
			},
			"restock": func(rt *rapid.T) {
				n, sku := rapid.SampledFrom(nodes).Draw(rt, "node"), rapid.SampledFrom(skus).Draw(rt, "sku")
				id := rapid.SampledFrom([]string{"r1", "r2", "r3"}).Draw(rt, "restock id")
				qty := rapid.Int64Range(0, 3).Draw(rt, "qty")
				same("Restock", func(s inventory.Rebuildable) string {
					ok, err := s.Restock(ctx, n, id, sku, qty)
					return fmt.Sprint(ok, " ", outcome(err))
				})
			},
			"sweep": func(rt *rapid.T) {
				at := base.Add(time.Duration(rapid.IntRange(0, 4).Draw(rt, "minutes")) * time.Minute)
				same("SweepExpired", func(s inventory.Rebuildable) string {
					got, err := s.SweepExpired(ctx, at, 0)
					slices.Sort(got)
					return fmt.Sprint(got, " ", outcome(err))
				})
			},
			"": func(rt *rapid.T) { // after every step: the same counters and holds
				for _, n := range nodes {
					same("Snapshot "+n, func(s inventory.Rebuildable) string {
						snap, err := s.Snapshot(ctx, n)
						var holds []string
						for _, h := range snap.Holds {
							holds = append(holds, fmt.Sprintf("%s %v %d", h.ID, h.Lines, h.Deadline.UnixMilli()))
						}
						// Only SKUs with a non-zero counter: a store may keep a zero field.
						var levels []inventory.Level
						for _, l := range snap.Levels {
							if l.OnHand != 0 || l.Reserved != 0 || l.Safety != 0 {
								levels = append(levels, l)
							}
						}
						var restocks []string
						for id, at := range snap.Restocks {
							restocks = append(restocks, fmt.Sprint(id, " ", at.UnixMilli()))
						}
						slices.Sort(restocks)
						return fmt.Sprintf("%v %v %v %v %s", snap.Ready, levels, holds, restocks, outcome(err))
					})
				}
			},
		})
	})
}
