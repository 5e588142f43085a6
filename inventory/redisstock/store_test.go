package redisstock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
	"github.com/omsd/omsd/inventory/stocktest"
)

// TestContract runs the contract suite on one redis-server, each subtest
// under its own key prefix.
func TestContract(t *testing.T) {
	rdb := newClient(t, stacktest.NewRedis(t).Addr())
	stocktest.Run(t, func(t *testing.T) inventory.Store {
		return newStore(t, rdb, redisstock.Config{Prefix: prefixFor(t)})
	})
}

// TestContractOnCluster runs the same suite on a three-master Redis Cluster,
// with node ids whose hash tags land on three different masters: every
// script, pipeline and transaction must stay inside one slot or the cluster
// answers CROSSSLOT.
func TestContractOnCluster(t *testing.T) {
	c := stacktest.NewRedisCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()

	// Pick node ids whose keys live on different masters.
	var nodes []string
	masters := map[string]string{}
	for i := 0; len(nodes) < 3 && i < 1000; i++ {
		node := fmt.Sprint("wh-", i)
		m, err := rdb.MasterForKey(ctx, "{inv:"+node+"}:ready")
		if err != nil {
			t.Fatalf("master of %s: %v", node, err)
		}
		addr := m.Options().Addr
		if _, taken := masters[addr]; !taken {
			masters[addr] = node
			nodes = append(nodes, node)
		}
	}
	if len(nodes) != 3 {
		t.Fatalf("found nodes on %d masters, want 3", len(nodes))
	}
	t.Logf("nodes by master: %v", masters)

	// The cluster does refuse a script across two nodes' slots, so the
	// suite passing below means the store never does that.
	err := rdb.Eval(ctx, "return 1", []string{"{inv:" + nodes[0] + "}:x", "{inv:" + nodes[1] + "}:x"}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("script across two masters: got %v, want CROSSSLOT", err)
	}

	stocktest.RunWith(t, stocktest.Config{Nodes: nodes}, func(t *testing.T) inventory.Store {
		flushAll(t, rdb)
		return newStore(t, rdb, redisstock.Config{})
	})
	t.Run("limits", func(t *testing.T) {
		stocktest.RunLimits(t, func(t *testing.T) inventory.Limits {
			flushAll(t, rdb)
			l, err := redisstock.NewLimits(rdb, redisstock.Config{})
			if err != nil {
				t.Fatal(err)
			}
			return l
		})
	})
}

// TestNotReadyWritesNothing checks that a write refused for readiness
// leaves Redis untouched (no stray keys for the rebuild to trip over).
func TestNotReadyWritesNothing(t *testing.T) {
	ctx := context.Background()
	rdb := newClient(t, stacktest.NewRedis(t).Addr())
	s := newStore(t, rdb, redisstock.Config{})
	h := inventory.Hold{ID: "h1", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 1}}, Deadline: time.Now().Add(time.Hour)}
	if err := s.Reserve(ctx, h); !errors.Is(err, inventory.ErrNotReady) {
		t.Fatalf("Reserve: got %v, want ErrNotReady", err)
	}
	if _, err := s.SetStock(ctx, "n1", "a", 5, 0); !errors.Is(err, inventory.ErrNotReady) {
		t.Fatalf("SetStock: got %v, want ErrNotReady", err)
	}
	if _, err := s.Commit(ctx, "n1", "h1"); !errors.Is(err, inventory.ErrNotReady) {
		t.Fatalf("Commit: got %v, want ErrNotReady", err)
	}
	if _, err := s.Restock(ctx, "n1", "r1", "a", 2); !errors.Is(err, inventory.ErrNotReady) {
		t.Fatalf("Restock: got %v, want ErrNotReady", err)
	}
	if n := rdb.DBSize(ctx).Val(); n != 0 {
		keys := rdb.Keys(ctx, "*").Val()
		t.Errorf("after refused writes: %d keys %v, want none", n, keys)
	}
}

// TestMetrics checks the reservation outcomes, units and script latency.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	rdb := newClient(t, stacktest.NewRedis(t).Addr())
	s := newStore(t, rdb, redisstock.Config{Registerer: reg})
	// A second store on the same registry shares the collectors.
	newStore(t, rdb, redisstock.Config{Registerer: reg})

	line := []inventory.Line{{SKU: "a", Qty: 2}}
	if err := s.Reserve(ctx, inventory.Hold{ID: "cold", Node: "n2", Lines: line}); !errors.Is(err, inventory.ErrNotReady) {
		t.Fatal(err)
	}
	if err := s.MarkReady(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStock(ctx, "n1", "a", 5, 0); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Reserve(ctx, inventory.Hold{ID: "h1", Node: "n1", Lines: line}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Reserve(ctx, inventory.Hold{ID: "h2", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 4}}}); !errors.Is(err, inventory.ErrInsufficient) {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, "n1", "h1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(ctx, inventory.Hold{ID: "h3", Node: "n1", Lines: []inventory.Line{{SKU: "a", Qty: 1}}, Deadline: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.SweepExpired(ctx, time.Now().Add(time.Minute), 0); err != nil || len(ids) != 1 {
		t.Fatalf("sweep: %v, %v", ids, err)
	}

	got := gather(t, reg)
	want := map[string]float64{
		`omsd_inventory_reservations_total{outcome="ok"}`:           2,
		`omsd_inventory_reservations_total{outcome="duplicate"}`:    1,
		`omsd_inventory_reservations_total{outcome="insufficient"}`: 1,
		`omsd_inventory_reservations_total{outcome="not_ready"}`:    1,
		`omsd_inventory_units_total{op="reserved"}`:                 3,
		`omsd_inventory_units_total{op="committed"}`:                2,
		`omsd_inventory_units_total{op="expired"}`:                  1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v, want %v", k, got[k], v)
		}
	}
	if got[`omsd_inventory_script_duration_seconds_count{script="reserve"}`] != 5 {
		t.Errorf("reserve latency samples: got %v, want 5", got[`omsd_inventory_script_duration_seconds_count{script="reserve"}`])
	}
}

// gather flattens a registry into "name{labels}" -> value (histograms as
// name_count).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[mf.GetName()+key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[mf.GetName()+key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestLimits runs the limit suite on one redis-server and checks the key:
// it expires when the promotion ends and does not spell out the customer.
func TestLimits(t *testing.T) {
	rdb := newClient(t, stacktest.NewRedis(t).Addr())
	stocktest.RunLimits(t, func(t *testing.T) inventory.Limits {
		l, err := redisstock.NewLimits(rdb, redisstock.Config{Prefix: prefixFor(t)})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
	t.Run("the counter expires when the promotion ends", func(t *testing.T) {
		ctx := context.Background()
		l, err := redisstock.NewLimits(rdb, redisstock.Config{Prefix: "ttl"})
		if err != nil {
			t.Fatal(err)
		}
		until := time.Now().Add(time.Hour)
		if err := l.Take(ctx, "d11", "customer-4711", "s", "o1", 1, 3, until); err != nil {
			t.Fatal(err)
		}
		keys := rdb.Keys(ctx, "{ttl:*").Val()
		if len(keys) != 1 || strings.Contains(keys[0], "4711") {
			t.Fatalf("limit keys: got %v, want one key without the customer id", keys)
		}
		ttl := rdb.PTTL(ctx, keys[0]).Val()
		if ttl < 59*time.Minute || ttl > time.Hour {
			t.Errorf("TTL of the counter: got %v, want about 1h", ttl)
		}
	})
}

// TestRestockMemory: applied restock ids live in the node's sorted set,
// scored by the store's clock, and each call prunes the ids older than the
// memory, so that the set stays bounded; the snapshot shows only ids
// within the memory.
func TestRestockMemory(t *testing.T) {
	ctx := context.Background()
	rdb := newClient(t, stacktest.NewRedis(t).Addr())
	if _, err := redisstock.New(rdb, redisstock.Config{RestockMemory: inventory.RestockWindow}); !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("a restock memory not well above the ledger window: got %v, want ErrInvalid", err)
	}
	now := time.Unix(1_800_000_000, 0)
	s := newStore(t, rdb, redisstock.Config{Prefix: "rm", Now: func() time.Time { return now }})
	if err := s.MarkReady(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r1", "r2"} {
		if ok, err := s.Restock(ctx, "n1", id, "a", 1); !ok || err != nil {
			t.Fatalf("Restock %s: %v, %v", id, ok, err)
		}
	}
	key := "{rm:n1}:restocks"
	if n := rdb.ZCard(ctx, key).Val(); n != 2 {
		t.Fatalf("restock ids in %s: got %d, want 2", key, n)
	}
	if score := rdb.ZScore(ctx, key, "r1").Val(); int64(score) != now.UnixMilli() {
		t.Errorf("score of r1: got %v, want %d (the store's clock in ms)", score, now.UnixMilli())
	}
	now = now.Add(inventory.RestockMemory + time.Second)
	if snap, err := s.Snapshot(ctx, "n1"); err != nil || len(snap.Restocks) != 0 {
		t.Errorf("snapshot past the memory: got %v, %v; want no ids", snap.Restocks, err)
	}
	if ok, err := s.Restock(ctx, "n1", "r3", "a", 1); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if got := rdb.ZRange(ctx, key, 0, -1).Val(); len(got) != 1 || got[0] != "r3" {
		t.Errorf("restock ids after a call past the memory: got %v, want [r3] (the old ones pruned)", got)
	}
	snap, err := s.Snapshot(ctx, "n1")
	if err != nil || len(snap.Restocks) != 1 || !snap.Restocks["r3"].Equal(time.UnixMilli(now.UnixMilli())) {
		t.Errorf("snapshot: got %v, %v; want r3 at %v", snap.Restocks, err, now)
	}
	if ls, _ := s.Levels(ctx, []inventory.Key{{Node: "n1", SKU: "a"}}); ls[0].OnHand != 3 {
		t.Errorf("on hand: got %d, want 3", ls[0].OnHand)
	}
}
