package sourcing

import "sync"

// The compiled form of a rule set: what Plan reads, built once by compile.

type filterKind uint8

const (
	fkActive filterKind = iota
	fkRegion
	fkChannel
	fkCapacity
	fkPickup
	fkSKUExclusion
	fkStock
)

type critKind uint8

const (
	ckPriority critKind = iota
	ckDistance
	ckShippingCost
	ckStockDepth
	ckLoad
)

type policyKind uint8

const (
	pkSingle policyKind = iota
	pkFewest
	pkRanked
)

type compiled struct {
	strategies []cStrategy
	fallback   Fallback
	pool       sync.Pool // *scratch
}

type cStrategy struct {
	name string
	// conditions
	channels, regions, tags map[string]struct{}
	minValue, maxValue      int64
	hasMin, hasMax          bool
	pickup                  int8 // -1 any, 0 ship only, 1 pickup only

	filters    []cFilter
	exclusions int // number of sku_exclusion filters
	crits      []cCrit
	weighted   bool
	policy     policyKind
	maxNodes   int // 0 = no cap
	splitLines bool
	fallback   Fallback
}

type cFilter struct {
	kind      filterKind
	name      string
	excl      int // index among the strategy's sku_exclusion filters
	tags      []string
	nodeTypes []string
	nodeIDs   map[string]struct{}
}

type cCrit struct {
	kind   critKind
	name   string
	weight float64
	costs  map[string]map[string]int64
}

var (
	filterKinds = map[string]filterKind{
		FilterActive: fkActive, FilterRegion: fkRegion, FilterChannel: fkChannel, FilterCapacity: fkCapacity,
		FilterPickup: fkPickup, FilterSKUExclusion: fkSKUExclusion, FilterStock: fkStock,
	}
	critKinds = map[string]critKind{
		RankPriority: ckPriority, RankDistance: ckDistance, RankShippingCost: ckShippingCost,
		RankStockDepth: ckStockDepth, RankLoad: ckLoad,
	}
)

func set(xs []string) map[string]struct{} {
	if len(xs) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(xs))
	for _, x := range xs {
		m[x] = struct{}{}
	}
	return m
}

// compile turns a validated document into lookup-friendly form. It copies
// everything it keeps, so later edits of the document do not reach it.
func compile(r *RuleSet) *compiled {
	c := &compiled{fallback: r.Fallback}
	for i := range r.Strategies {
		s := &r.Strategies[i]
		cs := cStrategy{
			name:     s.Name,
			channels: set(s.When.Channels), regions: set(s.When.Regions), tags: set(s.When.Tags),
			pickup:     -1,
			weighted:   s.Ranking.Mode == ModeWeighted,
			maxNodes:   s.Split.MaxNodes,
			splitLines: s.Split.SplitLines,
			fallback:   s.Fallback,
		}
		if cs.fallback == "" {
			cs.fallback = r.Fallback
		}
		if s.When.MinValue != nil {
			cs.hasMin, cs.minValue = true, *s.When.MinValue
		}
		if s.When.MaxValue != nil {
			cs.hasMax, cs.maxValue = true, *s.When.MaxValue
		}
		if s.When.Pickup != nil {
			cs.pickup = 0
			if *s.When.Pickup {
				cs.pickup = 1
			}
		}
		switch s.Split.Policy {
		case PolicySingleNode:
			cs.policy, cs.maxNodes, cs.splitLines = pkSingle, 1, false
		case PolicyFewestNodes:
			cs.policy = pkFewest
		case PolicyRanked:
			cs.policy = pkRanked
		}
		for _, f := range s.Filters {
			cf := cFilter{kind: filterKinds[f.Type], name: f.Name}
			if cf.name == "" {
				cf.name = f.Type
			}
			if cf.kind == fkSKUExclusion {
				cf.excl = cs.exclusions
				cs.exclusions++
				cf.tags = append([]string(nil), f.Tags...)
				cf.nodeTypes = append([]string(nil), f.NodeTypes...)
				cf.nodeIDs = set(f.NodeIDs)
			}
			cs.filters = append(cs.filters, cf)
		}
		for _, cr := range s.Ranking.By {
			cc := cCrit{kind: critKinds[cr.Type], name: cr.Type, weight: cr.Weight}
			if len(cr.Costs) > 0 {
				cc.costs = make(map[string]map[string]int64, len(cr.Costs))
				for n, row := range cr.Costs {
					cp := make(map[string]int64, len(row))
					for k, v := range row {
						cp[k] = v
					}
					cc.costs[n] = cp
				}
			}
			cs.crits = append(cs.crits, cc)
		}
		c.strategies = append(c.strategies, cs)
	}
	return c
}

// compiledOf returns the compiled form of r, compiling a Go-literal set on the
// fly (nil, err when it is invalid).
func compiledOf(r *RuleSet) (*compiled, error) {
	if r.c != nil {
		return r.c, nil
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return compile(r), nil
}

// cost looks the shipping cost up: node+region, node+"*", "*"+region, "*"+"*".
func (c *cCrit) cost(node, region string) (float64, bool) {
	if row, ok := c.costs[node]; ok {
		if v, ok := row[region]; ok {
			return float64(v), true
		}
		if v, ok := row["*"]; ok {
			return float64(v), true
		}
	}
	if row, ok := c.costs["*"]; ok {
		if v, ok := row[region]; ok {
			return float64(v), true
		}
		if v, ok := row["*"]; ok {
			return float64(v), true
		}
	}
	return 0, false
}
