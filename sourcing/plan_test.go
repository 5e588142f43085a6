package sourcing_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/omsd/omsd/sourcing"
)

type planCase struct {
	name     string
	nodes    []sourcing.Node
	stock    sourcing.StockMap
	order    sourcing.Order
	rules    *sourcing.RuleSet
	outcome  sourcing.Outcome
	ships    string            // shipped(result)
	unfilled string            // unfilled(result)
	removed  string            // removed(result)
	strategy string            // when set, Result.Strategy
	why      map[string]string // node id (or "" for Result.Reason) -> substring of its reason
}

func runPlanCases(t *testing.T, cases []planCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.order
			res := sourcing.Plan(&o, tc.nodes, tc.stock, tc.rules)
			if res.Outcome != tc.outcome {
				t.Errorf("outcome: got %s, want %s (reason %q)", res.Outcome, tc.outcome, res.Reason)
			}
			if got := shipped(res); got != tc.ships {
				t.Errorf("shipments: got %q, want %q", got, tc.ships)
			}
			if got := unfilled(res); got != tc.unfilled {
				t.Errorf("unfilled: got %q, want %q", got, tc.unfilled)
			}
			if got := removed(res); got != tc.removed {
				t.Errorf("removed: got %q, want %q", got, tc.removed)
			}
			if tc.strategy != "" && res.Strategy != tc.strategy {
				t.Errorf("strategy: got %q, want %q", res.Strategy, tc.strategy)
			}
			for id, want := range tc.why {
				var got string
				if id == "" {
					got = res.Reason
				} else if e, ok := res.Explain(id); ok {
					got = e.Reason()
				}
				if !strings.Contains(got, want) {
					t.Errorf("reason of %q: got %q, want it to contain %q", id, got, want)
				}
			}
			// Plan through a plain Availability must give the same result as
			// through the StockMap fast path.
			again := sourcing.Plan(&o, tc.nodes, plainAvail{tc.stock}, tc.rules)
			if !reflect.DeepEqual(res, again) {
				t.Errorf("plan via Availability interface: got %+v, want %+v", again, res)
			}
		})
	}
}

// plainAvail hides the StockMap behind the interface.
type plainAvail struct{ m sourcing.StockMap }

func (p plainAvail) Available(node, sku string) int64 { return p.m.Available(node, sku) }

func TestFilters(t *testing.T) {
	single1 := ruleSet(t, "reject", strat("s", single))
	multi := ruleSet(t, "reject", strat("m", fewest))
	splitting := ruleSet(t, "reject", strat("m", sourcing.Split{Policy: "fewest_nodes", SplitLines: true}))
	noBulky := func(split sourcing.Split, f sourcing.Filter) *sourcing.RuleSet {
		s := strat("s", split)
		s.Filters = append([]sourcing.Filter{f}, s.Filters...)
		return ruleSet(t, "reject", s)
	}
	bulkyStores := sourcing.Filter{Type: "sku_exclusion", Name: "no-bulky-from-stores", Tags: []string{"bulky"}, NodeTypes: []string{"store"}}
	stock := sourcing.StockMap{"A": {"X": 5, "Y": 5}, "B": {"X": 5, "Y": 5}}

	runPlanCases(t, []planCase{
		{
			name:  "an inactive node is removed by the active filter",
			nodes: []sourcing.Node{node("A", inactive, prio(9)), node("B")},
			stock: stock, order: order(ln("X", 1)), rules: single1,
			outcome: "fulfilled", ships: "B{X:1}", removed: "A=active",
			why: map[string]string{"A": "inactive"},
		},
		{
			name:  "a node that does not serve the ship-to region is removed",
			nodes: []sourcing.Node{node("A", regions("CN-SH"), prio(9)), node("B", regions("CN-JS", "CN-ZJ"))},
			stock: stock, order: order(ln("X", 1)), rules: single1,
			outcome: "fulfilled", ships: "B{X:1}", removed: "A=region",
			why: map[string]string{"A": "does not serve region CN-ZJ"},
		},
		{
			name:  "a node without regions serves every region",
			nodes: []sourcing.Node{node("A", prio(9)), node("B", regions("CN-ZJ"))},
			stock: stock, order: order(ln("X", 1)), rules: single1,
			outcome: "fulfilled", ships: "A{X:1}",
		},
		{
			name:  "an order without region is refused by nodes that list regions",
			nodes: []sourcing.Node{node("A", regions("CN-ZJ"))},
			stock: stock, order: func() sourcing.Order { o := order(ln("X", 1)); o.Region = ""; return o }(), rules: single1,
			outcome: "rejected", unfilled: "X:1", removed: "A=region",
			why: map[string]string{"A": "the order has no region"},
		},
		{
			name:  "a node that does not serve the channel is removed",
			nodes: []sourcing.Node{node("A", channels("jd", "douyin"), prio(9)), node("B", channels("tmall"))},
			stock: stock, order: order(ln("X", 1)), rules: single1,
			outcome: "fulfilled", ships: "B{X:1}", removed: "A=channel",
			why: map[string]string{"A": `does not serve channel "tmall"`},
		},
		{
			name:  "a node with no daily capacity left is removed",
			nodes: []sourcing.Node{node("A", capacity(100, 100), prio(9)), node("B", capacity(100, 99))},
			stock: stock, order: order(ln("X", 1)), rules: single1,
			outcome: "fulfilled", ships: "B{X:1}", removed: "A=capacity",
			why: map[string]string{"A": "no daily capacity left (100 of 100 used)"},
		},
		{
			name:  "a node with daily capacity 0 has no limit",
			nodes: []sourcing.Node{node("A", capacity(0, 1_000_000))},
			stock: stock, order: order(ln("X", 1)), rules: single1,
			outcome: "fulfilled", ships: "A{X:1}",
		},
		{
			name:  "a pickup order goes to its pickup store only",
			nodes: []sourcing.Node{node("A", prio(9)), node("B", store)},
			stock: stock,
			order: func() sourcing.Order { o := order(ln("X", 1)); o.Pickup, o.PickupNode = true, "B"; return o }(),
			rules: single1, outcome: "fulfilled", ships: "B{X:1}", removed: "A=pickup",
			why: map[string]string{"A": "pickup order for node B"},
		},
		{
			name:  "a pickup order without pickup node is refused everywhere",
			nodes: []sourcing.Node{node("A"), node("B", store)},
			stock: stock,
			order: func() sourcing.Order { o := order(ln("X", 1)); o.Pickup = true; return o }(),
			rules: single1, outcome: "rejected", unfilled: "X:1", removed: "A=pickup B=pickup",
			why: map[string]string{"A": "names no pickup node"},
		},
		{
			name:  "the pickup filter does not touch shipped orders",
			nodes: []sourcing.Node{node("A"), node("B", store)},
			stock: stock, order: order(ln("X", 1)), rules: single1,
			outcome: "fulfilled", ships: "A{X:1}",
		},
		{
			name:  "a store may not ship bulky items",
			nodes: []sourcing.Node{node("S", store, prio(9)), node("W")},
			stock: sourcing.StockMap{"S": {"X": 5, "Y": 5}, "W": {"X": 5, "Y": 5}},
			order: order(ln("X", 1), ln("Y", 1, "bulky")), rules: noBulky(single, bulkyStores),
			outcome: "fulfilled", ships: "W{X:1 Y:1}", removed: "S=no-bulky-from-stores",
			why: map[string]string{"S": "may not ship SKU Y (tag bulky)"},
		},
		{
			name:  "a store still ships the other lines when the order may be split",
			nodes: []sourcing.Node{node("S", store, prio(9)), node("W")},
			stock: sourcing.StockMap{"S": {"X": 5, "Y": 5}, "W": {"Y": 5}},
			order: order(ln("X", 1), ln("Y", 1, "bulky")), rules: noBulky(fewest, bulkyStores),
			outcome: "fulfilled", ships: "S{X:1} W{Y:1}",
			why: map[string]string{"S": "filter no-bulky-from-stores excludes SKU Y"},
		},
		{
			name:  "a store with only bulky lines is removed even when splitting",
			nodes: []sourcing.Node{node("S", store, prio(9)), node("W")},
			stock: sourcing.StockMap{"S": {"Y": 5}, "W": {"Y": 5}},
			order: order(ln("Y", 1, "bulky")), rules: noBulky(fewest, bulkyStores),
			outcome: "fulfilled", ships: "W{Y:1}", removed: "S=no-bulky-from-stores",
			why: map[string]string{"S": "may not ship any line of the order (tag bulky)"},
		},
		{
			name:  "a node listed by id may not ship bulky items",
			nodes: []sourcing.Node{node("D", dropship, prio(9)), node("W")},
			stock: sourcing.StockMap{"D": {"X": 5}, "W": {"X": 5}}, order: order(ln("X", 1, "fragile", "bulky")),
			rules:   noBulky(single, sourcing.Filter{Type: "sku_exclusion", Tags: []string{"bulky"}, NodeIDs: []string{"D"}}),
			outcome: "fulfilled", ships: "W{X:1}", removed: "D=sku_exclusion",
		},
		{
			name:  "a sku exclusion lets non-bulky orders through",
			nodes: []sourcing.Node{node("S", store, prio(9)), node("W")},
			stock: sourcing.StockMap{"S": {"X": 5}, "W": {"X": 5}},
			order: order(ln("X", 1, "fragile")), rules: noBulky(single, bulkyStores),
			outcome: "fulfilled", ships: "S{X:1}",
		},
		{
			name:  "a node without the whole order is removed under single_node",
			nodes: []sourcing.Node{node("A", prio(9)), node("B")},
			stock: sourcing.StockMap{"A": {"X": 5, "Y": 1}, "B": {"X": 5, "Y": 5}},
			order: order(ln("X", 2), ln("Y", 2)), rules: single1,
			outcome: "fulfilled", ships: "B{X:2 Y:2}", removed: "A=stock",
			why: map[string]string{"A": "cannot ship the whole order: SKU Y has 1 of 2"},
		},
		{
			name:  "a node with one full line is kept when the order may be split by line",
			nodes: []sourcing.Node{node("A", prio(9)), node("B"), node("C")},
			stock: sourcing.StockMap{"A": {"X": 5, "Y": 1}, "B": {"Y": 5}, "C": {"X": 1, "Y": 1}},
			order: order(ln("X", 2), ln("Y", 2)), rules: multi,
			outcome: "fulfilled", ships: "A{X:2} B{Y:2}", removed: "C=stock",
			why: map[string]string{"C": "cannot ship any line in full: SKU X has 1 of 2"},
		},
		{
			name:  "a node with none of the order's SKUs is removed by the stock filter",
			nodes: []sourcing.Node{node("A"), node("B")},
			stock: sourcing.StockMap{"A": {"X": 5}, "B": {"Q": 5}},
			order: order(ln("X", 2)), rules: splitting,
			outcome: "fulfilled", ships: "A{X:2}", removed: "B=stock",
			why: map[string]string{"B": "no stock for any line"},
		},
		{
			name:  "a node with a few units is kept when lines may be split",
			nodes: []sourcing.Node{node("A", prio(9)), node("B")},
			stock: sourcing.StockMap{"A": {"X": 1}, "B": {"X": 1}},
			order: order(ln("X", 2)), rules: splitting,
			outcome: "fulfilled", ships: "A{X:1} B{X:1}",
		},
		{
			name:  "the first filter that fails is the one named",
			nodes: []sourcing.Node{node("A", inactive, regions("CN-SH"), capacity(1, 1))},
			stock: stock, order: order(ln("X", 1)), rules: single1,
			outcome: "rejected", unfilled: "X:1", removed: "A=active",
		},
		{
			name:    "without a stock filter an empty node is a candidate that is never chosen",
			nodes:   []sourcing.Node{node("A", prio(9)), node("B")},
			stock:   sourcing.StockMap{"B": {"X": 1}},
			order:   order(ln("X", 1)),
			rules:   ruleSet(t, "reject", sourcing.Strategy{Name: "s", Filters: filters("active"), Ranking: sourcing.Ranking{By: by("priority")}, Split: single}),
			outcome: "fulfilled", ships: "B{X:1}",
			why: map[string]string{"A": "ranked 1; not needed", "B": "ranked 2; chosen"},
		},
	})
}

func TestRankings(t *testing.T) {
	rank := func(mode string, cs ...sourcing.Criterion) *sourcing.RuleSet {
		return ruleSet(t, "reject", sourcing.Strategy{
			Name: "r", Filters: allFilters, Ranking: sourcing.Ranking{Mode: mode, By: cs}, Split: single,
		})
	}
	c := func(typ string, w float64) sourcing.Criterion { return sourcing.Criterion{Type: typ, Weight: w} }
	costs := sourcing.Criterion{Type: "shipping_cost", Costs: map[string]map[string]int64{
		"A": {"CN-ZJ": 900, "*": 100},
		"B": {"*": 800},
		"*": {"CN-SH": 1},
	}}
	plenty := sourcing.StockMap{"A": {"X": 50}, "B": {"X": 50}, "C": {"X": 50}}
	hz := at(30.27, 120.15) // the order's own point
	sh := at(31.23, 121.47) // ~165 km away
	bj := at(39.90, 116.40) // ~1100 km away
	toSH := func(o sourcing.Order) sourcing.Order { o.Region = "CN-SH"; return o }
	noLoc := func(o sourcing.Order) sourcing.Order { o.HasLocation = false; return o }

	runPlanCases(t, []planCase{
		{
			name:  "the node with the highest priority wins",
			nodes: []sourcing.Node{node("A", prio(1)), node("B", prio(7)), node("C", prio(3))},
			stock: plenty, order: order(ln("X", 1)), rules: rank("", c("priority", 0)),
			outcome: "fulfilled", ships: "B{X:1}",
		},
		{
			name:  "the nearest node wins",
			nodes: []sourcing.Node{node("A", bj), node("B", sh), node("C", hz)},
			stock: plenty, order: order(ln("X", 1)), rules: rank("", c("distance", 0)),
			outcome: "fulfilled", ships: "C{X:1}",
		},
		{
			name:  "a node without location ranks after nodes with a distance",
			nodes: []sourcing.Node{node("A"), node("B", bj)},
			stock: plenty, order: order(ln("X", 1)), rules: rank("", c("distance", 0)),
			outcome: "fulfilled", ships: "B{X:1}",
		},
		{
			name:  "an order without location makes distance a tie, broken by node id",
			nodes: []sourcing.Node{node("C", hz), node("B", bj)},
			stock: plenty, order: noLoc(order(ln("X", 1))), rules: rank("", c("distance", 0)),
			outcome: "fulfilled", ships: "B{X:1}",
		},
		{
			name:  "the cheapest shipping cost wins",
			nodes: []sourcing.Node{node("A"), node("B")},
			stock: plenty, order: order(ln("X", 1)), rules: rank("", costs),
			outcome: "fulfilled", ships: "B{X:1}", // A costs 900 to CN-ZJ, B 800 by default
		},
		{
			name:  "a node's * cost applies to regions it does not list",
			nodes: []sourcing.Node{node("A"), node("B")},
			stock: plenty, order: toSH(order(ln("X", 1))), rules: rank("", costs),
			outcome: "fulfilled", ships: "A{X:1}", // A's "*" is 100
		},
		{
			name:  "the * node covers unlisted nodes, and a node without any cost ranks last",
			nodes: []sourcing.Node{node("C"), node("B")},
			stock: plenty, order: order(ln("X", 1)), rules: rank("", costs),
			outcome: "fulfilled", ships: "B{X:1}", // C falls to "*", which has no CN-ZJ nor "*"
			why: map[string]string{"C": "ranked 2"},
		},
		{
			name:  "stock depth prefers the node that keeps more stock",
			nodes: []sourcing.Node{node("A"), node("B"), node("C")},
			stock: sourcing.StockMap{"A": {"X": 3, "Y": 100}, "B": {"X": 10, "Y": 10}, "C": {"X": 100, "Y": 4}},
			order: order(ln("X", 2), ln("Y", 2)), rules: rank("", c("stock_depth", 0)),
			outcome: "fulfilled", ships: "B{X:2 Y:2}", // leaves min 8, vs 1 (A) and 2 (C)
		},
		{
			name:  "load prefers the node with the smallest share of capacity used",
			nodes: []sourcing.Node{node("A", capacity(100, 50)), node("B", capacity(1000, 100)), node("C", capacity(10, 9))},
			stock: plenty, order: order(ln("X", 1)), rules: rank("", c("load", 0)),
			outcome: "fulfilled", ships: "B{X:1}",
		},
		{
			name:  "an unlimited node has no load",
			nodes: []sourcing.Node{node("A", capacity(100, 1)), node("B")},
			stock: plenty, order: order(ln("X", 1)), rules: rank("", c("load", 0)),
			outcome: "fulfilled", ships: "B{X:1}",
		},
		{
			name:  "in lexicographic mode the second criterion breaks ties of the first",
			nodes: []sourcing.Node{node("A", prio(5), bj), node("B", prio(5), sh), node("C", prio(1), hz)},
			stock: plenty, order: order(ln("X", 1)), rules: rank("lexicographic", c("priority", 0), c("distance", 0)),
			outcome: "fulfilled", ships: "B{X:1}",
			why: map[string]string{"A": "ranked 2", "C": "ranked 3"},
		},
		{
			name:  "in weighted mode a heavy distance weight beats a small priority edge",
			nodes: []sourcing.Node{node("A", prio(6), bj), node("B", prio(5), hz)},
			stock: plenty, order: order(ln("X", 1)), rules: rank("weighted", c("priority", 1), c("distance", 5)),
			outcome: "fulfilled", ships: "B{X:1}",
		},
		{
			name:  "in weighted mode a heavy priority weight beats distance",
			nodes: []sourcing.Node{node("A", prio(6), bj), node("B", prio(5), hz)},
			stock: plenty, order: order(ln("X", 1)), rules: rank("weighted", c("priority", 5), c("distance", 1)),
			outcome: "fulfilled", ships: "A{X:1}",
		},
		{
			name:  "ties go to the smaller node id",
			nodes: []sourcing.Node{node("B", prio(5)), node("A", prio(5))},
			stock: plenty, order: order(ln("X", 1)), rules: rank("", c("priority", 0)),
			outcome: "fulfilled", ships: "A{X:1}",
		},
	})
}

func TestRankingExplanation(t *testing.T) {
	rules := ruleSet(t, "reject", sourcing.Strategy{
		Name: "w", Filters: allFilters, Split: single,
		Ranking: sourcing.Ranking{Mode: "weighted", By: []sourcing.Criterion{
			{Type: "priority", Weight: 2}, {Type: "distance", Weight: 1},
		}},
	})
	nodes := []sourcing.Node{node("A", prio(10), at(30.27, 120.15)), node("B", prio(0)), node("C", inactive)}
	o := order(ln("X", 1))
	res := sourcing.Plan(&o, nodes, sourcing.StockMap{"A": {"X": 1}, "B": {"X": 1}}, rules)
	a, _ := res.Explain("A")
	wantA := []sourcing.RankValue{{Ranking: "priority", Value: 10, Score: 2}, {Ranking: "distance", Value: 0, Score: 1}}
	if !reflect.DeepEqual(a.Rankings, wantA) || a.Score != 3 || a.Rank != 1 || a.Status != sourcing.StatusChosen {
		t.Errorf("A: got %+v, want rankings %+v, score 3, rank 1, chosen", a, wantA)
	}
	b, _ := res.Explain("B")
	wantB := []sourcing.RankValue{{Ranking: "priority", Value: 0, Score: 0}, {Ranking: "distance", Unknown: true}}
	if !reflect.DeepEqual(b.Rankings, wantB) || b.Score != 0 || b.Rank != 2 || b.Status != sourcing.StatusCandidate {
		t.Errorf("B: got %+v, want rankings %+v, score 0, rank 2, candidate", b, wantB)
	}
	c, _ := res.Explain("C")
	if c.Rankings != nil || c.Rank != 0 || c.Status != sourcing.StatusRemoved || c.Filter != "active" {
		t.Errorf("C: got %+v, want removed by active without rankings", c)
	}
}

func TestSplitPolicies(t *testing.T) {
	split := func(p string, maxNodes int, splitLines bool, crits ...string) *sourcing.RuleSet {
		s := strat("s", sourcing.Split{Policy: p, MaxNodes: maxNodes, SplitLines: splitLines})
		if len(crits) > 0 {
			s.Ranking.By = by(crits...)
		}
		return ruleSet(t, "reject", s)
	}
	// A is preferred but holds only X; B holds X and Y; C holds Z.
	stock := sourcing.StockMap{"A": {"X": 9}, "B": {"X": 9, "Y": 9}, "C": {"Z": 9}, "D": {"X": 9, "Y": 9, "Z": 9}}
	nodes := []sourcing.Node{node("A", prio(9)), node("B", prio(5)), node("C", prio(3)), node("D", prio(1))}
	three := order(ln("X", 1), ln("Y", 1), ln("Z", 1))

	runPlanCases(t, []planCase{
		{
			name:  "single_node ships everything from the best node that has it all",
			nodes: nodes, stock: stock, order: order(ln("X", 2), ln("Y", 2)), rules: split("single_node", 0, false),
			outcome: "fulfilled", ships: "B{X:2 Y:2}", removed: "A=stock C=stock",
		},
		{
			name:  "single_node fails when no node has everything",
			nodes: nodes[:3], stock: stock, order: three, rules: split("single_node", 1, false),
			outcome: "rejected", unfilled: "X:1 Y:1 Z:1", removed: "A=stock B=stock C=stock",
			why: map[string]string{"": "every node was removed by a filter"},
		},
		{
			name:  "fewest_nodes prefers one node that ships everything over better-ranked nodes",
			nodes: nodes, stock: stock, order: three, rules: split("fewest_nodes", 0, false),
			outcome: "fulfilled", ships: "D{X:1 Y:1 Z:1}",
		},
		{
			name:  "fewest_nodes covers the order with as few nodes as it can",
			nodes: nodes[:3], stock: stock, order: three, rules: split("fewest_nodes", 0, false),
			outcome: "fulfilled", ships: "B{X:1 Y:1} C{Z:1}",
			why: map[string]string{"A": "ranked 1; not needed"},
		},
		{
			name:  "fewest_nodes breaks coverage ties by ranking",
			nodes: []sourcing.Node{node("A", prio(1)), node("B", prio(2))},
			stock: sourcing.StockMap{"A": {"X": 9}, "B": {"X": 9}}, order: order(ln("X", 1)), rules: split("fewest_nodes", 0, false),
			outcome: "fulfilled", ships: "B{X:1}",
		},
		{
			name:  "max_nodes caps the number of shipments",
			nodes: []sourcing.Node{node("A"), node("B"), node("C")},
			stock: sourcing.StockMap{"A": {"X": 9}, "B": {"Y": 9}, "C": {"Z": 9}}, order: three,
			rules:   split("fewest_nodes", 2, false),
			outcome: "rejected", unfilled: "X:1 Y:1 Z:1",
			why: map[string]string{"": "max_nodes 2 reached"},
		},
		{
			name:  "max_nodes is enough when the cover fits",
			nodes: []sourcing.Node{node("A"), node("B"), node("C")},
			stock: sourcing.StockMap{"A": {"X": 9}, "B": {"Y": 9, "Z": 9}}, order: three,
			rules:   split("fewest_nodes", 2, false),
			outcome: "fulfilled", ships: "B{Y:1 Z:1} A{X:1}", removed: "C=stock",
		},
		{
			name:  "ranked takes the best-ranked nodes first even if that splits the order",
			nodes: nodes, stock: stock, order: three, rules: split("ranked", 0, false),
			outcome: "fulfilled", ships: "A{X:1} B{Y:1} C{Z:1}",
		},
		{
			name:  "ranked skips nodes that have nothing still needed",
			nodes: []sourcing.Node{node("A", prio(9)), node("B", prio(5)), node("C", prio(1))},
			stock: sourcing.StockMap{"A": {"X": 9}, "B": {"X": 9}, "C": {"Y": 9}}, order: order(ln("X", 1), ln("Y", 1)),
			rules:   split("ranked", 0, false),
			outcome: "fulfilled", ships: "A{X:1} C{Y:1}",
			why: map[string]string{"B": "ranked 2; not needed"},
		},
		{
			name:  "ranked respects max_nodes",
			nodes: nodes, stock: stock, order: three, rules: split("ranked", 2, false),
			outcome: "rejected", unfilled: "X:1 Y:1 Z:1",
		},
		{
			name:  "split_lines lets one line come from several nodes",
			nodes: []sourcing.Node{node("A", prio(3)), node("B", prio(2)), node("C", prio(1))},
			stock: sourcing.StockMap{"A": {"X": 2}, "B": {"X": 2}, "C": {"X": 2}}, order: order(ln("X", 5)),
			rules:   split("fewest_nodes", 0, true),
			outcome: "fulfilled", ships: "A{X:2} B{X:2} C{X:1}",
		},
		{
			name:  "without split_lines a line is never split",
			nodes: []sourcing.Node{node("A", prio(3)), node("B", prio(2)), node("C", prio(1))},
			stock: sourcing.StockMap{"A": {"X": 2}, "B": {"X": 2}, "C": {"X": 2}}, order: order(ln("X", 5)),
			rules:   split("fewest_nodes", 0, false),
			outcome: "rejected", unfilled: "X:5", removed: "A=stock B=stock C=stock",
		},
		{
			name:  "split_lines with fewest_nodes takes the node with the most units first",
			nodes: []sourcing.Node{node("A", prio(3)), node("B", prio(2))},
			stock: sourcing.StockMap{"A": {"X": 2}, "B": {"X": 4}}, order: order(ln("X", 5)),
			rules:   split("fewest_nodes", 0, true),
			outcome: "fulfilled", ships: "B{X:4} A{X:1}",
		},
		{
			name:  "a repeated node id never ships the same stock twice",
			nodes: []sourcing.Node{node("A", prio(3)), node("A", prio(2))},
			stock: sourcing.StockMap{"A": {"X": 3}}, order: order(ln("X", 5)),
			rules:   split("fewest_nodes", 0, true),
			outcome: "rejected", unfilled: "X:5",
		},
	})
}

func TestFallbacks(t *testing.T) {
	with := func(fb, own sourcing.Fallback, split sourcing.Split) *sourcing.RuleSet {
		s := strat("s", split)
		s.Fallback = own
		return ruleSet(t, fb, s)
	}
	nodes := []sourcing.Node{node("A", prio(2)), node("B", prio(1))}
	stock := sourcing.StockMap{"A": {"X": 9}, "B": {"Y": 1}}
	o := order(ln("X", 2), ln("Y", 3), ln("Z", 1))

	runPlanCases(t, []planCase{
		{
			name:  "reject ships nothing and lists every line as unfilled",
			nodes: nodes, stock: stock, order: o, rules: with("reject", "", fewest),
			outcome: "rejected", unfilled: "X:2 Y:3 Z:1", removed: "B=stock", strategy: "s",
			why: map[string]string{"": `strategy "s" cannot fill the order: SKU Y short by 3 of 3; fallback reject`},
		},
		{
			name:  "hold ships nothing and puts the order on hold",
			nodes: nodes, stock: stock, order: o, rules: with("reject", "hold", fewest),
			outcome: "hold", unfilled: "X:2 Y:3 Z:1", removed: "B=stock",
			why: map[string]string{"A": "ranked 1; not needed"},
		},
		{
			name:  "backorder ships what the split policy can and backorders the rest",
			nodes: nodes, stock: stock, order: o, rules: with("backorder", "", fewest),
			outcome: "backorder", ships: "A{X:2}", unfilled: "Y:3 Z:1", removed: "B=stock",
		},
		{
			name:  "backorder with split lines ships partial quantities",
			nodes: nodes, stock: stock, order: o,
			rules:   with("reject", "backorder", sourcing.Split{Policy: "fewest_nodes", SplitLines: true}),
			outcome: "backorder", ships: "A{X:2} B{Y:1}", unfilled: "Y:2 Z:1",
		},
		{
			name:  "backorder stays within max_nodes",
			nodes: nodes, stock: stock, order: o,
			rules:   with("reject", "backorder", sourcing.Split{Policy: "ranked", MaxNodes: 1, SplitLines: true}),
			outcome: "backorder", ships: "A{X:2}", unfilled: "Y:3 Z:1",
		},
		{
			name:  "backorder under single_node ships nothing so the customer gets one parcel",
			nodes: nodes, stock: stock, order: o, rules: with("reject", "backorder", single),
			outcome: "backorder", unfilled: "X:2 Y:3 Z:1", removed: "A=stock B=stock",
		},
		{
			name:  "the strategy's own fallback wins over the rule set's",
			nodes: nodes, stock: stock, order: o, rules: with("hold", "reject", fewest),
			outcome: "rejected", unfilled: "X:2 Y:3 Z:1", removed: "B=stock",
		},
		{
			name:  "an order that fits needs no fallback",
			nodes: nodes, stock: stock, order: order(ln("X", 2)), rules: with("hold", "hold", fewest),
			outcome: "fulfilled", ships: "A{X:2}", removed: "B=stock",
		},
	})
}

func TestStrategies(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	yes, no := true, false
	when := func(name string, w sourcing.Conditions, split sourcing.Split, fb sourcing.Fallback) sourcing.Strategy {
		s := strat(name, split)
		s.When, s.Fallback = w, fb
		return s
	}
	nodes := []sourcing.Node{node("A", prio(2)), node("B", prio(1))}
	stock := sourcing.StockMap{"A": {"X": 9}, "B": {"Y": 9}}
	xy := order(ln("X", 1), ln("Y", 1, "bulky"))
	x := order(ln("X", 1))

	// "one" insists on a single node; "split" may use two.
	chain := ruleSet(t, "hold",
		when("one", sourcing.Conditions{}, single, "reject"),
		when("split", sourcing.Conditions{}, fewest, "backorder"),
	)
	cond := func(c sourcing.Conditions) *sourcing.RuleSet {
		return ruleSet(t, "hold", when("cond", c, fewest, ""), when("catch-all", sourcing.Conditions{Channels: []string{"none"}}, fewest, ""))
	}
	runPlanCases(t, []planCase{
		{
			name:  "the first matching strategy that fills the order wins",
			nodes: nodes, stock: stock, order: x, rules: chain,
			outcome: "fulfilled", ships: "A{X:1}", strategy: "one", removed: "B=stock",
		},
		{
			name:  "a strategy that cannot fill the order passes it to the next matching one",
			nodes: nodes, stock: stock, order: xy, rules: chain,
			outcome: "fulfilled", ships: "A{X:1} B{Y:1}", strategy: "split",
		},
		{
			name:  "the fallback of the last matching strategy applies when none fills",
			nodes: nodes, stock: stock, order: order(ln("X", 1), ln("Z", 1)), rules: chain,
			outcome: "backorder", ships: "A{X:1}", unfilled: "Z:1", strategy: "split", removed: "B=stock",
		},
		{
			name:  "the rule set's fallback applies when no strategy matches",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{Channels: []string{"jd"}}),
			outcome: "hold", unfilled: "X:1",
			why: map[string]string{"": "no strategy matches the order; fallback hold"},
		},
		{
			name:  "a channel condition matches the order's channel",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{Channels: []string{"jd", "tmall"}}),
			outcome: "fulfilled", ships: "A{X:1}", strategy: "cond", removed: "B=stock",
		},
		{
			name:  "a region condition excludes other regions",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{Regions: []string{"CN-SH"}}),
			outcome: "hold", unfilled: "X:1",
		},
		{
			name:  "a region condition matches the ship-to region",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{Regions: []string{"CN-ZJ"}}),
			outcome: "fulfilled", ships: "A{X:1}", removed: "B=stock",
		},
		{
			name:  "a min_value condition excludes smaller orders",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{MinValue: i64(1001)}),
			outcome: "hold", unfilled: "X:1",
		},
		{
			name:  "value bounds are inclusive",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{MinValue: i64(1000), MaxValue: i64(1000)}),
			outcome: "fulfilled", ships: "A{X:1}", removed: "B=stock",
		},
		{
			name:  "a max_value condition excludes larger orders",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{MaxValue: i64(999)}),
			outcome: "hold", unfilled: "X:1",
		},
		{
			name:  "a tag condition matches when any line carries the tag",
			nodes: nodes, stock: stock, order: xy, rules: cond(sourcing.Conditions{Tags: []string{"fragile", "bulky"}}),
			outcome: "fulfilled", ships: "A{X:1} B{Y:1}",
		},
		{
			name:  "a tag condition does not match orders without the tag",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{Tags: []string{"bulky"}}),
			outcome: "hold", unfilled: "X:1",
		},
		{
			name:  "a pickup condition matches pickup orders only",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{Pickup: &yes}),
			outcome: "hold", unfilled: "X:1",
		},
		{
			name:  "a pickup false condition matches shipped orders",
			nodes: nodes, stock: stock, order: x, rules: cond(sourcing.Conditions{Pickup: &no}),
			outcome: "fulfilled", ships: "A{X:1}", removed: "B=stock",
		},
	})
}

func TestDefaultRules(t *testing.T) {
	pickup := func(o sourcing.Order, at string) sourcing.Order { o.Pickup, o.PickupNode = true, at; return o }
	nodes := []sourcing.Node{
		node("WH-HZ", at(30.27, 120.15), regions("CN-ZJ"), prio(5)),
		node("WH-BJ", at(39.90, 116.40), prio(5)),
		node("ST-1", store, at(30.25, 120.16), prio(1)),
	}
	stock := sourcing.StockMap{"WH-HZ": {"X": 9}, "WH-BJ": {"X": 9, "Y": 9}, "ST-1": {"X": 1, "Y": 1}}
	runPlanCases(t, []planCase{
		{
			name:  "the default rules ship from the nearest of the best-priority nodes",
			nodes: nodes, stock: stock, order: order(ln("X", 1)), rules: sourcing.DefaultRules(),
			outcome: "fulfilled", ships: "WH-HZ{X:1}", strategy: "ship",
		},
		{
			name:  "the default rules prefer one node over a nearer split",
			nodes: nodes, stock: stock, order: order(ln("X", 1), ln("Y", 1)), rules: sourcing.DefaultRules(),
			outcome: "fulfilled", ships: "WH-BJ{X:1 Y:1}", strategy: "ship",
		},
		{
			name:  "the default rules send a pickup order to its store",
			nodes: nodes, stock: stock, order: pickup(order(ln("X", 1), ln("Y", 1)), "ST-1"), rules: sourcing.DefaultRules(),
			outcome: "fulfilled", ships: "ST-1{X:1 Y:1}", strategy: "pickup", removed: "WH-BJ=pickup WH-HZ=pickup",
		},
		{
			name:  "the default rules reject a pickup order the store cannot serve",
			nodes: nodes, stock: stock, order: pickup(order(ln("X", 2)), "ST-1"), rules: sourcing.DefaultRules(),
			outcome: "rejected", unfilled: "X:2", strategy: "pickup", removed: "ST-1=stock WH-BJ=pickup WH-HZ=pickup",
		},
		{
			name:  "the default rules reject what no node can ship",
			nodes: nodes, stock: stock, order: order(ln("Q", 1)), rules: sourcing.DefaultRules(),
			outcome: "rejected", unfilled: "Q:1", strategy: "ship", removed: "ST-1=stock WH-BJ=stock WH-HZ=stock",
		},
	})
}

func TestPlanInputs(t *testing.T) {
	rules := ruleSet(t, "reject", strat("s", fewest))
	stock := sourcing.StockMap{"A": {"X": 3, "Y": 1}}
	nodes := []sourcing.Node{node("A")}
	runPlanCases(t, []planCase{
		{
			name:  "lines that repeat a SKU are merged",
			nodes: nodes, stock: stock, order: order(ln("X", 1), ln("Y", 1), ln("X", 2)), rules: rules,
			outcome: "fulfilled", ships: "A{X:3 Y:1}",
		},
		{
			name:  "a long order merges repeated SKUs too",
			nodes: nodes, stock: sourcing.StockMap{"A": {"X": 20, "Y": 20}},
			order: func() sourcing.Order {
				var ls []sourcing.Line
				for i := 0; i < 20; i++ {
					ls = append(ls, ln("X", 1), ln("Y", 1, "bulky"))
				}
				return order(ls...)
			}(),
			rules:   rules,
			outcome: "fulfilled", ships: "A{X:20 Y:20}",
		},
		{
			name:  "merged lines are checked against the stock together",
			nodes: nodes, stock: stock, order: order(ln("X", 2), ln("X", 2)), rules: rules,
			outcome: "rejected", unfilled: "X:4", removed: "A=stock",
		},
		{
			name:  "lines with a non-positive quantity are ignored",
			nodes: nodes, stock: stock, order: order(ln("X", 1), ln("Y", 0), ln("Y", -4)), rules: rules,
			outcome: "fulfilled", ships: "A{X:1}",
		},
		{
			name:  "an order with nothing to ship is rejected",
			nodes: nodes, stock: stock, order: order(ln("X", 0)), rules: rules,
			outcome: "rejected", why: map[string]string{"": "order has no lines to ship"},
		},
		{
			name:  "no nodes means nothing can ship",
			nodes: nil, stock: stock, order: order(ln("X", 1)), rules: rules,
			outcome: "rejected", unfilled: "X:1", why: map[string]string{"": "no candidate nodes"},
		},
		{
			name:  "a nil availability means no stock anywhere",
			nodes: nodes, stock: nil, order: order(ln("X", 1)), rules: rules,
			outcome: "rejected", unfilled: "X:1", removed: "A=stock",
		},
		{
			name:  "no rule set puts the order on hold",
			nodes: nodes, stock: stock, order: order(ln("X", 1)), rules: nil,
			outcome: "hold", why: map[string]string{"": "no rule set"},
		},
		{
			name:  "an invalid Go-literal rule set puts the order on hold",
			nodes: nodes, stock: stock, order: order(ln("X", 1)), rules: &sourcing.RuleSet{Fallback: "reject"},
			outcome: "hold", why: map[string]string{"": "strategies: at least one strategy is required"},
		},
		{
			name:  "a valid Go-literal rule set works without ParseRules",
			nodes: nodes, stock: stock, order: order(ln("X", 1)),
			rules:   &sourcing.RuleSet{Fallback: "reject", Strategies: []sourcing.Strategy{strat("lit", fewest)}},
			outcome: "fulfilled", ships: "A{X:1}", strategy: "lit",
		},
	})
	if res := sourcing.Plan(nil, nodes, stock, rules); res.Outcome != sourcing.OutcomeRejected {
		t.Errorf("nil order: got %s, want rejected", res.Outcome)
	}
}

func TestResultJSON(t *testing.T) {
	o := order(ln("X", 1), ln("Y", 2))
	nodes := []sourcing.Node{node("A", regions("CN-SH")), node("B", at(30, 120), prio(3)), node("C")}
	res := sourcing.Plan(&o, nodes, sourcing.StockMap{"B": {"X": 1}, "C": {"Y": 2}}, sourcing.DefaultRules())
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"outcome":"fulfilled","strategy":"ship","shipments":[{"node_id":"B","lines":[{"sku":"X","qty":1}]},` +
		`{"node_id":"C","lines":[{"sku":"Y","qty":2}]}],"explanation":[` +
		`{"node_id":"A","status":"removed","filter":"region","reason":"does not serve region CN-ZJ"},` +
		`{"node_id":"B","status":"chosen","reason":"ranked 1; chosen","rank":1,"rankings":[{"ranking":"priority","value":3},{"ranking":"distance","value":33.3`
	if !strings.HasPrefix(string(b), want) {
		t.Errorf("JSON: got %s, want it to start with %s", b, want)
	}
	var back sourcing.Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(&back)
	if string(b) != string(b2) {
		t.Errorf("JSON round trip: got %s, want %s", b2, b)
	}
	if got, want := back.Explanation[0].Reason(), "does not serve region CN-ZJ"; got != want {
		t.Errorf("reason read back: got %q, want %q", got, want)
	}
}

func TestPlanIsDeterministicAndLeavesInputsAlone(t *testing.T) {
	rules := sourcing.DefaultRules()
	o := order(ln("X", 1), ln("Y", 1), ln("X", 1))
	nodes := []sourcing.Node{node("A", prio(1)), node("B", prio(1)), node("C", prio(2))}
	stock := sourcing.StockMap{"A": {"X": 2, "Y": 1}, "B": {"X": 2, "Y": 1}, "C": {"X": 1, "Y": 1}}
	oCopy, nCopy := order(ln("X", 1), ln("Y", 1), ln("X", 1)), append([]sourcing.Node(nil), nodes...)
	first := sourcing.Plan(&o, nodes, stock, rules)
	for i := 0; i < 20; i++ {
		if got := sourcing.Plan(&o, nodes, stock, rules); !reflect.DeepEqual(got, first) {
			t.Fatalf("run %d: got %+v, want %+v", i, got, first)
		}
	}
	if !reflect.DeepEqual(o, oCopy) || !reflect.DeepEqual(nodes, nCopy) {
		t.Errorf("Plan changed its inputs")
	}
	if got, want := shipped(first), "A{X:2 Y:1}"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
