package sourcing_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/omsd/omsd/sourcing"
)

var (
	propSKUs     = []string{"A", "B", "C", "D"}
	propTags     = []string{"bulky", "fragile"}
	propRegions  = []string{"CN-ZJ", "CN-SH"}
	propChannels = []string{"tmall", "jd"}
	propTypes    = []string{"warehouse", "store", "dropship"}
)

func subset(t *rapid.T, pool []string, label string) []string {
	var out []string
	for _, x := range pool {
		if rapid.Bool().Draw(t, label+"/"+x) {
			out = append(out, x)
		}
	}
	return out
}

func genNodes(t *rapid.T) []sourcing.Node {
	n := rapid.IntRange(1, 8).Draw(t, "nodes")
	if rapid.IntRange(0, 19).Draw(t, "noNodes") == 0 {
		n = 0
	}
	nodes := make([]sourcing.Node, n)
	for i := range nodes {
		nd := sourcing.Node{
			// Ids come from a small pool, so repeats happen.
			ID:       fmt.Sprintf("N%d", rapid.IntRange(0, 6).Draw(t, "id")),
			Type:     rapid.SampledFrom(propTypes).Draw(t, "type"),
			Priority: rapid.IntRange(0, 3).Draw(t, "priority"),
			Active:   rapid.IntRange(0, 4).Draw(t, "active") > 0,
		}
		if rapid.Bool().Draw(t, "located") {
			nd.Lat = rapid.Float64Range(20, 40).Draw(t, "lat")
			nd.Lon = rapid.Float64Range(100, 125).Draw(t, "lon")
		}
		if rapid.Bool().Draw(t, "hasRegions") {
			nd.Regions = subset(t, propRegions, "regions")
		}
		if rapid.IntRange(0, 2).Draw(t, "hasChannels") == 0 {
			nd.Channels = subset(t, propChannels, "channels")
		}
		nd.DailyCapacity = rapid.Int64Range(0, 3).Draw(t, "cap")
		nd.UsedToday = rapid.Int64Range(0, 2).Draw(t, "used")
		nodes[i] = nd
	}
	return nodes
}

func genStock(t *rapid.T) sourcing.StockMap {
	m := sourcing.StockMap{}
	for i := 0; i < 7; i++ {
		for _, s := range propSKUs {
			if q := rapid.Int64Range(-1, 8).Draw(t, "stock"); q != 0 && rapid.IntRange(0, 4).Draw(t, "hasStock") > 0 {
				m.Set(fmt.Sprintf("N%d", i), s, q)
			}
		}
	}
	return m
}

func genOrder(t *rapid.T) sourcing.Order {
	o := sourcing.Order{
		ID:          "o",
		Channel:     rapid.SampledFrom(propChannels).Draw(t, "channel"),
		Region:      rapid.SampledFrom(append([]string{""}, propRegions...)).Draw(t, "region"),
		HasLocation: rapid.Bool().Draw(t, "hasLocation"),
		Value:       rapid.Int64Range(0, 5000).Draw(t, "value"),
	}
	if o.HasLocation {
		o.Lat, o.Lon = rapid.Float64Range(20, 40).Draw(t, "olat"), rapid.Float64Range(100, 125).Draw(t, "olon")
	}
	if rapid.IntRange(0, 7).Draw(t, "pickup") == 0 {
		o.Pickup = true
		o.PickupNode = rapid.SampledFrom([]string{"", "N0", "N1", "N2"}).Draw(t, "pickupNode")
	}
	nl := rapid.IntRange(1, 5).Draw(t, "lines")
	if rapid.IntRange(0, 19).Draw(t, "noLines") == 0 {
		nl = 0
	}
	for i := 0; i < nl; i++ {
		q := rapid.Int64Range(1, 3).Draw(t, "qty")
		if rapid.IntRange(0, 9).Draw(t, "badQty") == 0 {
			q = rapid.Int64Range(-1, 0).Draw(t, "nonPositive")
		}
		o.Lines = append(o.Lines, sourcing.Line{
			SKU:  rapid.SampledFrom(propSKUs).Draw(t, "sku"),
			Qty:  q,
			Tags: subset(t, propTags, "tags"),
		})
	}
	return o
}

func genStrategy(t *rapid.T, name string) sourcing.Strategy {
	s := sourcing.Strategy{Name: name}
	if rapid.IntRange(0, 2).Draw(t, "hasWhen") == 0 {
		w := &s.When
		some := func(label string) bool { return rapid.IntRange(0, 2).Draw(t, label) == 0 }
		if some("hasWChannels") {
			w.Channels = subset(t, propChannels, "wchannels")
		}
		if some("hasWRegions") {
			w.Regions = subset(t, propRegions, "wregions")
		}
		if some("hasWTags") {
			w.Tags = subset(t, propTags, "wtags")
		}
		if some("hasMin") {
			v := rapid.Int64Range(0, 3000).Draw(t, "min")
			w.MinValue = &v
		}
		if some("hasMax") {
			v := rapid.Int64Range(3000, 6000).Draw(t, "max")
			w.MaxValue = &v
		}
		if some("hasPickup") {
			p := rapid.Bool().Draw(t, "wpickup")
			w.Pickup = &p
		}
	}
	for _, ft := range rapid.Permutation([]string{"active", "region", "channel", "capacity", "pickup", "stock"}).Draw(t, "filterOrder") {
		if rapid.IntRange(0, 3).Draw(t, "useFilter") > 0 {
			s.Filters = append(s.Filters, sourcing.Filter{Type: ft})
		}
	}
	for i := rapid.IntRange(0, 2).Draw(t, "exclusions"); i > 0; i-- {
		f := sourcing.Filter{Type: "sku_exclusion", Name: fmt.Sprintf("excl%d", i),
			Tags: []string{rapid.SampledFrom(propTags).Draw(t, "etag")}}
		f.NodeTypes = subset(t, propTypes, "etypes")
		if len(f.NodeTypes) == 0 || rapid.Bool().Draw(t, "eids") {
			f.NodeIDs = []string{fmt.Sprintf("N%d", rapid.IntRange(0, 6).Draw(t, "eid"))}
		}
		at := rapid.IntRange(0, len(s.Filters)).Draw(t, "epos")
		s.Filters = slices.Insert(s.Filters, at, f)
	}
	weighted := rapid.Bool().Draw(t, "weighted")
	if weighted {
		s.Ranking.Mode = "weighted"
	}
	for _, ct := range rapid.Permutation([]string{"priority", "distance", "shipping_cost", "stock_depth", "load"}).Draw(t, "critOrder") {
		if !rapid.Bool().Draw(t, "useCrit") {
			continue
		}
		c := sourcing.Criterion{Type: ct}
		if weighted {
			c.Weight = rapid.Float64Range(0.1, 5).Draw(t, "weight")
		}
		if ct == "shipping_cost" {
			c.Costs = map[string]map[string]int64{
				"N0": {"CN-ZJ": rapid.Int64Range(0, 9).Draw(t, "c1"), "*": rapid.Int64Range(0, 9).Draw(t, "c2")},
				"*":  {"CN-SH": rapid.Int64Range(0, 9).Draw(t, "c3")},
			}
		}
		s.Ranking.By = append(s.Ranking.By, c)
	}
	if weighted && len(s.Ranking.By) == 0 {
		s.Ranking.By = []sourcing.Criterion{{Type: "priority", Weight: 1}}
	}
	s.Split.Policy = rapid.SampledFrom([]string{"single_node", "fewest_nodes", "ranked"}).Draw(t, "policy")
	if s.Split.Policy == "single_node" {
		s.Split.MaxNodes = rapid.IntRange(0, 1).Draw(t, "maxNodes1")
	} else {
		s.Split.MaxNodes = rapid.IntRange(0, 3).Draw(t, "maxNodes")
		s.Split.SplitLines = rapid.Bool().Draw(t, "splitLines")
	}
	s.Fallback = sourcing.Fallback(rapid.SampledFrom([]string{"", "reject", "backorder", "hold"}).Draw(t, "sfallback"))
	return s
}

func genRules(t *rapid.T) *sourcing.RuleSet {
	r := &sourcing.RuleSet{Fallback: sourcing.Fallback(rapid.SampledFrom([]string{"reject", "backorder", "hold"}).Draw(t, "fallback"))}
	for i := rapid.IntRange(1, 3).Draw(t, "strategies"); i > 0; i-- {
		r.Strategies = append(r.Strategies, genStrategy(t, fmt.Sprintf("s%d", i)))
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sourcing.ParseRules(b)
	if err != nil {
		t.Fatalf("generated rules do not parse: %v\n%s", err, b)
	}
	return p
}

// ---- an independent reading of the rules, for the checks ----

func refMatches(s *sourcing.Strategy, o *sourcing.Order) bool {
	w := &s.When
	if w.Pickup != nil && *w.Pickup != o.Pickup {
		return false
	}
	if len(w.Channels) > 0 && !slices.Contains(w.Channels, o.Channel) {
		return false
	}
	if len(w.Regions) > 0 && !slices.Contains(w.Regions, o.Region) {
		return false
	}
	if w.MinValue != nil && o.Value < *w.MinValue || w.MaxValue != nil && o.Value > *w.MaxValue {
		return false
	}
	if len(w.Tags) > 0 {
		for _, l := range o.Lines {
			if l.Qty > 0 && slices.ContainsFunc(l.Tags, func(t string) bool { return slices.Contains(w.Tags, t) }) {
				return true
			}
		}
		return false
	}
	return true
}

// refNodeFilter reports whether node-level filter f lets n through.
func refNodeFilter(f sourcing.Filter, n *sourcing.Node, o *sourcing.Order) bool {
	switch f.Type {
	case "active":
		return n.Active
	case "region":
		return len(n.Regions) == 0 || slices.Contains(n.Regions, o.Region)
	case "channel":
		return len(n.Channels) == 0 || slices.Contains(n.Channels, o.Channel)
	case "capacity":
		return n.DailyCapacity == 0 || n.UsedToday < n.DailyCapacity
	case "pickup":
		return !o.Pickup || o.PickupNode != "" && n.ID == o.PickupNode
	}
	return true
}

// refExcluded reports whether some sku_exclusion filter of s forbids n to
// ship sku (over every order line carrying that SKU).
func refExcluded(s *sourcing.Strategy, n *sourcing.Node, o *sourcing.Order, sku string) bool {
	for _, f := range s.Filters {
		if f.Type != "sku_exclusion" || !(slices.Contains(f.NodeTypes, n.Type) || slices.Contains(f.NodeIDs, n.ID)) {
			continue
		}
		for _, l := range o.Lines {
			if l.SKU == sku && l.Qty > 0 && slices.ContainsFunc(l.Tags, func(t string) bool { return slices.Contains(f.Tags, t) }) {
				return true
			}
		}
	}
	return false
}

func orderedQty(o *sourcing.Order) map[string]int64 {
	m := map[string]int64{}
	for _, l := range o.Lines {
		if l.Qty > 0 {
			m[l.SKU] += l.Qty
		}
	}
	return m
}

// checkPlan checks the invariants every plan must keep.
func checkPlan(t rapid.TB, o *sourcing.Order, nodes []sourcing.Node, avail sourcing.Availability, rules *sourcing.RuleSet, res *sourcing.Result) {
	t.Helper()
	want := orderedQty(o)

	// 1. Never more than available per (node, sku); sane shipments.
	shippedAt := map[[2]string]int64{}
	shippedSKU := map[string]int64{}
	shipmentsWithSKU := map[string]int{}
	seenNode := map[string]bool{}
	for _, s := range res.Shipments {
		if seenNode[s.NodeID] {
			t.Fatalf("node %s ships twice: got %d shipments for it, want 1", s.NodeID, 2)
		}
		seenNode[s.NodeID] = true
		if len(s.Lines) == 0 {
			t.Fatalf("shipment from %s has no lines", s.NodeID)
		}
		for _, l := range s.Lines {
			if l.Qty <= 0 {
				t.Fatalf("shipment from %s: got qty %d for %s, want > 0", s.NodeID, l.Qty, l.SKU)
			}
			shippedAt[[2]string{s.NodeID, l.SKU}] += l.Qty
			shippedSKU[l.SKU] += l.Qty
			shipmentsWithSKU[l.SKU]++
		}
	}
	for k, q := range shippedAt {
		var have int64
		if avail != nil {
			have = avail.Available(k[0], k[1])
		}
		if q > have {
			t.Fatalf("oversell at %s/%s: got %d shipped, want <= %d available", k[0], k[1], q, have)
		}
	}

	// 2. Coverage.
	unf := map[string]int64{}
	for _, l := range res.Unfilled {
		if l.Qty <= 0 {
			t.Fatalf("unfilled %s: got qty %d, want > 0", l.SKU, l.Qty)
		}
		unf[l.SKU] += l.Qty
	}
	for sku := range shippedSKU {
		if want[sku] == 0 {
			t.Fatalf("shipped SKU %s: got %d, want 0 (not ordered)", sku, shippedSKU[sku])
		}
	}
	switch res.Outcome {
	case sourcing.OutcomeFulfilled:
		for sku, q := range want {
			if shippedSKU[sku] != q {
				t.Fatalf("fulfilled, SKU %s: got %d shipped, want %d", sku, shippedSKU[sku], q)
			}
		}
		if len(res.Unfilled) != 0 {
			t.Fatalf("fulfilled: got unfilled %v, want none", res.Unfilled)
		}
	case sourcing.OutcomeRejected, sourcing.OutcomeHold, sourcing.OutcomeBackorder:
		if res.Outcome != sourcing.OutcomeBackorder && len(res.Shipments) != 0 {
			t.Fatalf("%s: got %d shipments, want 0", res.Outcome, len(res.Shipments))
		}
		for sku, q := range want {
			if shippedSKU[sku]+unf[sku] != q {
				t.Fatalf("%s, SKU %s: got %d shipped + %d unfilled, want %d", res.Outcome, sku, shippedSKU[sku], unf[sku], q)
			}
		}
		for sku := range unf {
			if want[sku] == 0 {
				t.Fatalf("unfilled SKU %s was not ordered", sku)
			}
		}
	default:
		t.Fatalf("outcome: got %q, want one of fulfilled, rejected, backorder, hold", res.Outcome)
	}

	// 3. Which strategy.
	if res.Strategy == "" {
		if len(res.Shipments) != 0 || len(res.Explanation) != 0 {
			t.Fatalf("no strategy: got %d shipments, %d explanations, want none", len(res.Shipments), len(res.Explanation))
		}
		if len(want) > 0 && rules != nil {
			for i := range rules.Strategies {
				if refMatches(&rules.Strategies[i], o) {
					t.Fatalf("no strategy reported, but strategy %q matches", rules.Strategies[i].Name)
				}
			}
		}
		return
	}
	var s *sourcing.Strategy
	for i := range rules.Strategies {
		if rules.Strategies[i].Name == res.Strategy {
			s = &rules.Strategies[i]
		}
	}
	if s == nil {
		t.Fatalf("strategy: got %q, not in the rule set", res.Strategy)
	}
	if !refMatches(s, o) {
		t.Fatalf("strategy %q does not match the order", s.Name)
	}

	// 4. Split policy.
	maxNodes := s.Split.MaxNodes
	if s.Split.Policy == "single_node" {
		maxNodes = 1
	}
	if maxNodes > 0 && len(res.Shipments) > maxNodes {
		t.Fatalf("max_nodes: got %d shipments, want <= %d", len(res.Shipments), maxNodes)
	}
	if !s.Split.SplitLines {
		for sku, n := range shipmentsWithSKU {
			if n > 1 {
				t.Fatalf("split_lines off: SKU %s in %d shipments, want 1", sku, n)
			}
			if shippedSKU[sku] != want[sku] {
				t.Fatalf("split_lines off: SKU %s: got %d shipped, want all %d or none", sku, shippedSKU[sku], want[sku])
			}
		}
	}

	// 5. Filters, from the explanation and recomputed.
	if len(res.Explanation) != len(nodes) {
		t.Fatalf("explanation: got %d entries, want %d", len(res.Explanation), len(nodes))
	}
	chosen := map[string]bool{}
	for i, e := range res.Explanation {
		n := &nodes[i]
		if e.NodeID != n.ID {
			t.Fatalf("explanation[%d]: got node %s, want %s", i, e.NodeID, n.ID)
		}
		passes := true
		for _, f := range s.Filters {
			if !refNodeFilter(f, n, o) {
				passes = false
			}
		}
		switch e.Status {
		case sourcing.StatusRemoved:
			if !slices.ContainsFunc(s.Filters, func(f sourcing.Filter) bool { return f.Name == e.Filter || f.Name == "" && f.Type == e.Filter }) {
				t.Fatalf("node %s removed by %q, which is not a filter of %q", n.ID, e.Filter, s.Name)
			}
			if e.Reason() == "" {
				t.Fatalf("node %s removed without a reason", n.ID)
			}
		case sourcing.StatusChosen, sourcing.StatusCandidate:
			if !passes {
				t.Fatalf("node %s: got %s, want removed (a node filter refuses it)", n.ID, e.Status)
			}
			if e.Rank <= 0 {
				t.Fatalf("node %s: got rank %d, want > 0", n.ID, e.Rank)
			}
		default:
			t.Fatalf("node %s: got status %q", n.ID, e.Status)
		}
		if e.Status == sourcing.StatusChosen {
			if chosen[n.ID] {
				t.Fatalf("node id %s chosen twice", n.ID)
			}
			chosen[n.ID] = true
			if !seenNode[n.ID] {
				t.Fatalf("node %s chosen but ships nothing", n.ID)
			}
			for _, sh := range res.Shipments {
				if sh.NodeID != n.ID {
					continue
				}
				for _, l := range sh.Lines {
					if refExcluded(s, n, o, l.SKU) {
						t.Fatalf("node %s ships %s, which a sku_exclusion forbids", n.ID, l.SKU)
					}
				}
				if s.Split.Policy == "single_node" && slices.ContainsFunc(s.Filters, func(f sourcing.Filter) bool { return f.Type == "stock" }) {
					for sku, q := range want {
						if avail == nil || avail.Available(n.ID, sku) < q {
							t.Fatalf("single_node with stock filter: node %s lacks %s", n.ID, sku)
						}
					}
				}
			}
		}
	}
	if len(chosen) != len(res.Shipments) {
		t.Fatalf("chosen nodes: got %d, want %d (one per shipment)", len(chosen), len(res.Shipments))
	}
}

// propertyRounds multiplies rapid's default 100 checks per property: most
// random cases end unfulfilled, and the fulfilled ones need to be many.
const propertyRounds = 30

func TestPlanProperties(t *testing.T) {
	for range propertyRounds {
		rapid.Check(t, planProperties)
	}
}

func planProperties(t *rapid.T) {
	nodes := genNodes(t)
	stock := genStock(t)
	o := genOrder(t)
	rules := genRules(t)
	res := sourcing.Plan(&o, nodes, stock, rules)
	checkPlan(t, &o, nodes, stock, rules, res)
	if again := sourcing.Plan(&o, nodes, plainAvail{stock}, rules); !reflect.DeepEqual(res, again) {
		t.Fatalf("Plan via the Availability interface: got %+v, want %+v", again, res)
	}
	if _, err := json.Marshal(res); err != nil {
		t.Fatalf("json.Marshal(result): %v", err)
	}
}

// TestPlanFindsAPlanWhenOneExists checks the other direction: with no
// filters and no caps, the order is fulfilled exactly when the stock allows.
func TestPlanFindsAPlanWhenOneExists(t *testing.T) {
	for range propertyRounds {
		rapid.Check(t, findsAPlan)
	}
}

func findsAPlan(t *rapid.T) {
	nodes := genNodes(t)
	stock := genStock(t)
	o := genOrder(t)
	s := genStrategy(t, "s")
	s.When, s.Filters, s.Split.MaxNodes = sourcing.Conditions{}, nil, 0
	if s.Split.Policy != "single_node" {
		s.Split.SplitLines = true
	}
	b, _ := json.Marshal(&sourcing.RuleSet{Strategies: []sourcing.Strategy{s}, Fallback: "reject"})
	rules, err := sourcing.ParseRules(b)
	if err != nil {
		t.Fatal(err)
	}
	res := sourcing.Plan(&o, nodes, stock, rules)
	checkPlan(t, &o, nodes, stock, rules, res)
	want := orderedQty(&o)
	ids := map[string]bool{}
	for _, n := range nodes {
		ids[n.ID] = true
	}
	possible := len(want) > 0
	if s.Split.Policy == "single_node" {
		possible = false
		for id := range ids {
			all := len(want) > 0
			for sku, q := range want {
				if stock.Available(id, sku) < q {
					all = false
				}
			}
			possible = possible || all
		}
	} else {
		for sku, q := range want {
			var total int64
			for id := range ids {
				total += max(stock.Available(id, sku), 0)
			}
			if total < q {
				possible = false
			}
		}
	}
	if got := res.Outcome == sourcing.OutcomeFulfilled; got != possible {
		t.Fatalf("fulfilled: got %v, want %v (%s: %s)", got, possible, res.Outcome, res.Reason)
	}
}
