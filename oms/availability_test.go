package oms

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/memstock"
	"github.com/omsd/omsd/sourcing"
)

// countingLevels counts the keys read from the stock engine.
type countingLevels struct {
	*memstock.Store
	keys atomic.Int64
}

func (c *countingLevels) Levels(ctx context.Context, keys []inventory.Key) ([]inventory.Level, error) {
	c.keys.Add(int64(len(keys)))
	return c.Store.Levels(ctx, keys)
}

func viewFixture(t *testing.T, stock map[string]int64) (*countingLevels, *AvailabilityView, *Placer, []sourcing.Node) {
	t.Helper()
	ms := &countingLevels{Store: memstock.New(memstock.Config{AutoReady: true})}
	var nodes []sourcing.Node
	for i, n := range []string{"WH-A", "WH-B"} {
		if _, err := ms.SetStock(context.Background(), n, "SKU-1", stock[n], 0); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, sourcing.Node{ID: n, Type: sourcing.NodeWarehouse, Active: true, Priority: 10 - i})
	}
	v, err := NewAvailabilityView(ms, time.Hour, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ms, v, &Placer{Stock: ms, View: v}, nodes
}

func placeOne(t *testing.T, p *Placer, nodes []sourcing.Node, qty int64) Placed {
	t.Helper()
	out, err := p.Place(context.Background(), Placement{
		Order:      &sourcing.Order{ID: uuid.NewString(), Lines: []sourcing.Line{{SKU: "SKU-1", Qty: qty}}},
		Candidates: nodes, Rules: sourcing.DefaultRules(), Status: ShipmentRequested,
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Within the TTL a plan reads nothing; the view follows this instance's
// own holds.
func TestAvailabilityViewPlansWithoutReadingAndFollowsItsOwnHolds(t *testing.T) {
	ms, _, p, nodes := viewFixture(t, map[string]int64{"WH-A": 3, "WH-B": 3})
	placeOne(t, p, nodes, 1)
	read := ms.keys.Load()
	if read != 2 {
		t.Fatalf("first plan read %d keys, want 2", read)
	}
	for range 5 { // 3+3 units, 6 orders of one: the view runs the sequence
		if out := placeOne(t, p, nodes, 1); !out.Filled() || out.Replans != 0 {
			t.Fatalf("got %+v, want filled without a lost race", out.Plan)
		}
	}
	if n := ms.keys.Load(); n != read {
		t.Errorf("plans within the TTL read %d more keys, want none", n-read)
	}
	// Sold out: the view says zero everywhere, the refusal comes from a
	// fresh read, and it is right.
	if out := placeOne(t, p, nodes, 1); out.Filled() {
		t.Fatalf("sold out, yet placed at %s", out.Shipments[0].NodeID)
	}
	if n := ms.keys.Load(); n != read+2 {
		t.Errorf("a refusal read %d keys, want 2 (fresh levels before refusing)", n-read)
	}
}

// Another instance reserved what the view still shows: the script refuses,
// the placer plans again on fresh levels and places elsewhere.
func TestAvailabilityViewThatIsTooHighCostsOneReplan(t *testing.T) {
	ms, _, p, nodes := viewFixture(t, map[string]int64{"WH-A": 2, "WH-B": 2})
	if out := placeOne(t, p, nodes, 1); !out.Filled() || out.Shipments[0].NodeID != "WH-A" {
		t.Fatalf("first order: %+v", out.Plan)
	}
	// Elsewhere, the last unit of WH-A goes.
	if err := ms.Reserve(context.Background(), inventory.Hold{ID: uuid.NewString(), Node: "WH-A", Lines: []inventory.Line{{SKU: "SKU-1", Qty: 1}}}); err != nil {
		t.Fatal(err)
	}
	out := placeOne(t, p, nodes, 1)
	if !out.Filled() || out.Shipments[0].NodeID != "WH-B" || out.Replans != 1 {
		t.Fatalf("got replans %d at %v, want one replan to WH-B", out.Replans, out.Shipments)
	}
}

// A release elsewhere (or a restock) that the view has not seen: the
// order is not refused on the stale zero.
func TestAvailabilityViewThatIsTooLowRefusesNothing(t *testing.T) {
	ms, _, p, nodes := viewFixture(t, map[string]int64{"WH-A": 1, "WH-B": 0})
	first := placeOne(t, p, nodes, 1)
	if !first.Filled() {
		t.Fatal("first order not placed")
	}
	if _, err := ms.Release(context.Background(), "WH-A", first.Shipments[0].HoldID); err != nil {
		t.Fatal(err)
	}
	if out := placeOne(t, p, nodes, 1); !out.Filled() {
		t.Fatal("refused on a stale view although WH-A has the unit again")
	}
}

// A node whose counters are not loaded is never kept: it is read again on
// every plan, and so seen as soon as it is loaded.
func TestAvailabilityViewNeverKeepsAnUnloadedNode(t *testing.T) {
	ms := memstock.New(memstock.Config{})
	ctx := context.Background()
	if err := ms.MarkReady(ctx, "WH-A"); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.SetStock(ctx, "WH-A", "SKU-1", 5, 0); err != nil {
		t.Fatal(err)
	}
	v, err := NewAvailabilityView(ms, time.Hour, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := []inventory.Key{{Node: "WH-A", SKU: "SKU-1"}, {Node: "WH-B", SKU: "SKU-1"}}
	if _, _, notReady, err := v.read(ctx, keys, false); err != nil || !errors.Is(notReady, inventory.ErrNotReady) {
		t.Fatalf("got notReady %v err %v, want WH-B not ready", notReady, err)
	}
	v.mu.Lock()
	_, a := v.m[keys[0]]
	_, b := v.m[keys[1]]
	v.mu.Unlock()
	if !a || b {
		t.Errorf("kept WH-A %v (want true), WH-B %v (want false)", a, b)
	}
}

// Entries older than the TTL are read again.
func TestAvailabilityViewReadsExpiredEntriesAgain(t *testing.T) {
	ms, v, _, _ := viewFixture(t, map[string]int64{"WH-A": 1, "WH-B": 1})
	now := time.Now()
	v.now = func() time.Time { return now }
	v.ttl = time.Second
	keys := []inventory.Key{{Node: "WH-A", SKU: "SKU-1"}}
	for _, step := range []time.Duration{0, 500 * time.Millisecond, 600 * time.Millisecond} {
		now = now.Add(step)
		if _, _, _, err := v.read(context.Background(), keys, false); err != nil {
			t.Fatal(err)
		}
	}
	if n := ms.keys.Load(); n != 2 {
		t.Errorf("read %d keys, want 2 (the first read and the one after the TTL)", n)
	}
}

// Hundreds of goroutines fight for the last units of one SKU through
// placers that share a view, and through a second view (another
// instance): exactly the stock is placed, never more, and every refusal
// comes when nothing is left.
func TestAvailabilityViewUnderARaceForTheLastUnits(t *testing.T) {
	ms, _, p1, nodes := viewFixture(t, map[string]int64{"WH-A": 25, "WH-B": 15})
	v2, err := NewAvailabilityView(ms, time.Hour, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	p2 := &Placer{Stock: ms, View: v2, Attempts: 8}
	p1.Attempts = 8
	var placed atomic.Int64
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := p1
			if i%2 == 1 {
				p = p2
			}
			out, err := p.Place(context.Background(), Placement{
				Order:      &sourcing.Order{ID: uuid.NewString(), Lines: []sourcing.Line{{SKU: "SKU-1", Qty: 1}}},
				Candidates: nodes, Rules: sourcing.DefaultRules(), Status: ShipmentRequested,
			})
			if err != nil {
				t.Error(err)
				return
			}
			if out.Filled() {
				placed.Add(1)
			}
		}()
	}
	wg.Wait()
	levels, err := ms.Levels(context.Background(), []inventory.Key{{Node: "WH-A", SKU: "SKU-1"}, {Node: "WH-B", SKU: "SKU-1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range levels {
		if l.Available != 0 || l.Reserved != l.OnHand {
			t.Errorf("%s: available %d reserved %d on hand %d: want all reserved, none over", l.Node, l.Available, l.Reserved, l.OnHand)
		}
	}
	if n := placed.Load(); n != 40 {
		t.Errorf("placed %d orders, want exactly the 40 units", n)
	}
}

// A refusal planned on levels just read is not read again: a sold-out SKU
// in a flash sale costs one round trip per refused order, not two.
func TestAvailabilityViewRefusalOnFreshLevelsReadsOnce(t *testing.T) {
	ms, _, p, nodes := viewFixture(t, map[string]int64{"WH-A": 0, "WH-B": 0})
	if out := placeOne(t, p, nodes, 1); out.Filled() {
		t.Fatal("placed without stock")
	}
	if n := ms.keys.Load(); n != 2 {
		t.Errorf("a refusal on levels just read read %d keys, want 2", n)
	}
}
