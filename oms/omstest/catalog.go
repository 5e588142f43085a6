package omstest

import (
	"time"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/sourcing"
)

// Catalog is a fixed oms.Catalog: the nodes, the rules and the promotions
// a test gives it.
type Catalog struct {
	Nodes      []oms.Node
	RuleSet    *sourcing.RuleSet
	Promotions []oms.Promotion
}

// Node implements oms.Catalog.
func (c *Catalog) Node(id string) (oms.Node, bool) {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return oms.Node{}, false
}

// Candidates implements oms.Catalog: the active nodes.
func (c *Catalog) Candidates() []sourcing.Node {
	var out []sourcing.Node
	for _, n := range c.Nodes {
		if n.Active {
			out = append(out, oms.ToSourcingNode(n))
		}
	}
	return out
}

// Rules implements oms.Catalog (the default rule set when none is given).
func (c *Catalog) Rules() *sourcing.RuleSet {
	if c.RuleSet == nil {
		return sourcing.DefaultRules()
	}
	return c.RuleSet
}

// Promotion implements oms.Catalog.
func (c *Catalog) Promotion(sku string, at time.Time) (oms.Promotion, bool) {
	for _, p := range c.Promotions {
		if p.SKU == sku && !at.Before(p.StartsAt) && at.Before(p.EndsAt) {
			return p, true
		}
	}
	return oms.Promotion{}, false
}
