package redisstock_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omsd/omsd/deploy/localstack/stacktest"
	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/redisstock"
)

// BenchmarkHotNodeOnCluster measures what one node costs a Redis Cluster
// in a flash sale: every key of a node shares the hash tag {inv:<node>},
// so all of one node's reservations run on one slot, one master, one
// thread. Side by side on a 3-master cluster, 64 clients, one unit per
// hold:
//
//   - nodes=1: every hold on one node (the hot node: the whole sale ships
//     from one warehouse), over skus SKUs;
//   - nodes=3: holds spread over three nodes whose slots live on three
//     masters, the same SKUs on each.
//
// If one slot were the limit, nodes=3 would carry up to 3x the holds per
// second; on a box whose cores are shared by the client and all three
// masters, the ratio says how much of the box one master can use.
//
//	go test -run '^$' -bench HotNodeOnCluster -benchtime 3s ./inventory/redisstock/
func BenchmarkHotNodeOnCluster(b *testing.B) {
	c := stacktest.NewRedisCluster(b, 3)
	const clients = 64
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), PoolSize: clients})
	b.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	var nodes []string
	seen := map[string]bool{}
	for i := 0; len(nodes) < 3 && i < 1000; i++ {
		node := fmt.Sprint("wh-", i)
		m, err := rdb.MasterForKey(ctx, "{inv:"+node+"}:ready")
		if err != nil {
			b.Fatalf("master of %s: %v", node, err)
		}
		if addr := m.Options().Addr; !seen[addr] {
			seen[addr] = true
			nodes = append(nodes, node)
		}
	}
	if len(nodes) != 3 {
		b.Fatalf("found nodes on %d masters, want 3", len(nodes))
	}
	s := newStore(b, rdb, redisstock.Config{})
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("sku-%03d", i)
	}
	for _, node := range nodes {
		rows := make([]inventory.StockRow, len(names))
		for i := range rows {
			rows[i] = inventory.StockRow{Node: node, SKU: names[i], OnHand: 1 << 40}
		}
		if err := s.RestoreNode(ctx, node, "", rows, nil, nil); err != nil {
			b.Fatal(err)
		}
		if err := s.MarkReady(ctx, node); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Minute)
	for _, skus := range []int{1, 100} {
		for _, spread := range []int{1, 3} {
			b.Run(fmt.Sprintf("skus=%d/nodes=%d", skus, spread), func(b *testing.B) {
				benchReserve(b, func(ctx context.Context, sku string) error {
					n := benchSeq.Add(1)
					return s.Reserve(ctx, inventory.Hold{
						ID: fmt.Sprint("h-", n), Node: nodes[n%uint64(spread)], Deadline: deadline,
						Lines: []inventory.Line{{SKU: sku, Qty: 1}},
					})
				}, names[:skus], clients)
			})
		}
	}
}
