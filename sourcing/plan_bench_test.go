package sourcing_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/omsd/omsd/sourcing"
)

// benchFixture builds n nodes spread over eastern China, a StockMap, and 64
// five-line orders to cycle through (so that one lucky order does not set the
// figure). It is deterministic.
func benchFixture(n, lines int) ([]sourcing.Node, sourcing.StockMap, []sourcing.Order) {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	regionPool := []string{"CN-ZJ", "CN-JS", "CN-SH", "CN-AH", "CN-FJ", "CN-GD", "CN-BJ"}
	types := []string{"warehouse", "store", "store", "dropship"}
	skus := make([]string, 200)
	for i := range skus {
		skus[i] = fmt.Sprintf("SKU-%04d", i)
	}
	nodes := make([]sourcing.Node, n)
	stock := sourcing.StockMap{}
	for i := range nodes {
		nd := sourcing.Node{
			ID: fmt.Sprintf("N-%03d", i), Type: types[rng.IntN(len(types))],
			Lat: 22 + rng.Float64()*18, Lon: 105 + rng.Float64()*17,
			Priority: rng.IntN(4), Active: rng.IntN(10) != 0,
			DailyCapacity: int64(rng.IntN(3) * 1000), UsedToday: int64(rng.IntN(1500)),
		}
		if rng.IntN(3) != 0 {
			for _, r := range regionPool {
				if rng.IntN(2) == 0 {
					nd.Regions = append(nd.Regions, r)
				}
			}
		}
		if rng.IntN(5) == 0 {
			nd.Channels = []string{"tmall", "jd"}
		}
		nodes[i] = nd
		for _, s := range skus {
			if rng.IntN(3) != 0 {
				stock.Set(nd.ID, s, int64(rng.IntN(40)))
			}
		}
	}
	orders := make([]sourcing.Order, 64)
	for i := range orders {
		o := sourcing.Order{
			ID: fmt.Sprintf("o-%d", i), Channel: "tmall", Region: regionPool[rng.IntN(3)],
			Lat: 30 + rng.Float64(), Lon: 120 + rng.Float64(), HasLocation: true, Value: 10000,
		}
		for l := 0; l < lines; l++ {
			o.Lines = append(o.Lines, sourcing.Line{SKU: skus[rng.IntN(len(skus))], Qty: 1 + int64(rng.IntN(3)), UnitPrice: 2000})
		}
		orders[i] = o
	}
	return nodes, stock, orders
}

// BenchmarkPlan measures Plan with the default rules (active, region,
// channel, capacity and stock filters; priority then distance; fewest nodes).
func BenchmarkPlan(b *testing.B) {
	rules := sourcing.DefaultRules()
	for _, n := range []int{10, 50, 200} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			nodes, stock, orders := benchFixture(n, 5)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_ = sourcing.Plan(&orders[i&63], nodes, stock, rules)
				i++
			}
		})
	}
}

// BenchmarkPlanWeighted uses every ranking criterion in weighted mode, a sku
// exclusion and split lines: the most work a strategy can ask for.
func BenchmarkPlanWeighted(b *testing.B) {
	rules, err := sourcing.ParseRules([]byte(`{"strategies": [{"name": "w", "when": {},
	  "filters": [{"type": "active"}, {"type": "region"}, {"type": "channel"}, {"type": "capacity"},
	    {"type": "sku_exclusion", "tags": ["bulky"], "node_types": ["store"]}, {"type": "stock"}],
	  "ranking": {"mode": "weighted", "by": [{"type": "priority", "weight": 1}, {"type": "distance", "weight": 2},
	    {"type": "shipping_cost", "weight": 1, "costs": {"N-001": {"CN-ZJ": 500}, "*": {"*": 900}}},
	    {"type": "stock_depth", "weight": 1}, {"type": "load", "weight": 1}]},
	  "split": {"policy": "fewest_nodes", "max_nodes": 3, "split_lines": true}}],
	  "fallback": "backorder"}`))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 50, 200} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			nodes, stock, orders := benchFixture(n, 5)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_ = sourcing.Plan(&orders[i&63], nodes, stock, rules)
				i++
			}
		})
	}
}
