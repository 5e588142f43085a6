package sourcing_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/omsd/omsd/sourcing"
)

// Builders that keep the tables short.

func node(id string, mods ...func(*sourcing.Node)) sourcing.Node {
	n := sourcing.Node{ID: id, Name: id, Type: sourcing.NodeWarehouse, Active: true}
	for _, m := range mods {
		m(&n)
	}
	return n
}

func inactive(n *sourcing.Node)                  { n.Active = false }
func store(n *sourcing.Node)                     { n.Type = sourcing.NodeStore }
func dropship(n *sourcing.Node)                  { n.Type = sourcing.NodeDropship }
func regions(rs ...string) func(*sourcing.Node)  { return func(n *sourcing.Node) { n.Regions = rs } }
func channels(cs ...string) func(*sourcing.Node) { return func(n *sourcing.Node) { n.Channels = cs } }
func prio(p int) func(*sourcing.Node)            { return func(n *sourcing.Node) { n.Priority = p } }
func at(lat, lon float64) func(*sourcing.Node) {
	return func(n *sourcing.Node) { n.Lat, n.Lon = lat, lon }
}
func capacity(c, used int64) func(*sourcing.Node) {
	return func(n *sourcing.Node) { n.DailyCapacity, n.UsedToday = c, used }
}

func ln(sku string, qty int64, tags ...string) sourcing.Line {
	return sourcing.Line{SKU: sku, Qty: qty, UnitPrice: 1000, Tags: tags}
}

// order is a tmall order to Hangzhou (CN-ZJ) with a known location.
func order(lines ...sourcing.Line) sourcing.Order {
	var v int64
	for _, l := range lines {
		v += l.Qty * l.UnitPrice
	}
	return sourcing.Order{
		ID: "o-1", Channel: "tmall", Region: "CN-ZJ", Lat: 30.27, Lon: 120.15, HasLocation: true,
		Value: v, Lines: lines,
	}
}

func filters(types ...string) []sourcing.Filter {
	fs := make([]sourcing.Filter, len(types))
	for i, t := range types {
		fs[i] = sourcing.Filter{Type: t}
	}
	return fs
}

func by(types ...string) []sourcing.Criterion {
	cs := make([]sourcing.Criterion, len(types))
	for i, t := range types {
		cs[i] = sourcing.Criterion{Type: t}
	}
	return cs
}

var allFilters = filters("active", "region", "channel", "capacity", "pickup", "stock")

// strat is a strategy with every node filter, priority ranking and the given
// split policy.
func strat(name string, split sourcing.Split) sourcing.Strategy {
	return sourcing.Strategy{
		Name: name, Filters: allFilters,
		Ranking: sourcing.Ranking{By: by("priority")}, Split: split,
	}
}

var (
	single = sourcing.Split{Policy: "single_node"}
	fewest = sourcing.Split{Policy: "fewest_nodes"}
)

// ruleSet builds a rule set with the given strategies and fallback, and
// sends it through the JSON document so that every test also checks that
// its rules survive ParseRules.
func ruleSet(tb testing.TB, fb sourcing.Fallback, ss ...sourcing.Strategy) *sourcing.RuleSet {
	tb.Helper()
	r := &sourcing.RuleSet{Strategies: ss, Fallback: fb}
	b, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := sourcing.ParseRules(b)
	if err != nil {
		tb.Fatalf("ParseRules(%s): %v", b, err)
	}
	return p
}

// shipped renders the shipments as "N1{A:2 B:1} N2{C:1}" in result order.
func shipped(r *sourcing.Result) string {
	var parts []string
	for _, s := range r.Shipments {
		var ls []string
		for _, l := range s.Lines {
			ls = append(ls, fmt.Sprintf("%s:%d", l.SKU, l.Qty))
		}
		parts = append(parts, s.NodeID+"{"+strings.Join(ls, " ")+"}")
	}
	return strings.Join(parts, " ")
}

func unfilled(r *sourcing.Result) string {
	var ls []string
	for _, l := range r.Unfilled {
		ls = append(ls, fmt.Sprintf("%s:%d", l.SKU, l.Qty))
	}
	return strings.Join(ls, " ")
}

// removed renders which filter removed which node: "N1=region N2=stock".
func removed(r *sourcing.Result) string {
	var ls []string
	for _, e := range r.Explanation {
		if e.Status == sourcing.StatusRemoved {
			ls = append(ls, e.NodeID+"="+e.Filter)
		}
	}
	sort.Strings(ls)
	return strings.Join(ls, " ")
}
