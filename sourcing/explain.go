package sourcing

import (
	"encoding/json"
	"strconv"
)

// NodeStatus says what became of a node in a plan.
type NodeStatus string

// Node statuses in an explanation.
const (
	StatusRemoved   NodeStatus = "removed"   // a filter removed the node
	StatusCandidate NodeStatus = "candidate" // passed every filter, not chosen
	StatusChosen    NodeStatus = "chosen"    // ships part or all of the order
)

// RankValue is one ranking criterion's value for one node.
type RankValue struct {
	Ranking string `json:"ranking"` // criterion type, e.g. "distance"
	// Value is the raw value: priority, km, cost, units left behind, or
	// capacity share used. Meaningless when Unknown.
	Value float64 `json:"value"`
	// Unknown is set when the value cannot be computed (no location, no
	// cost entry, no stock for any line); such nodes rank after known ones.
	Unknown bool `json:"unknown,omitempty"`
	// Score is the weighted contribution (weight times the value normalised
	// to [0,1] over the candidates, 1 = best); weighted mode only.
	Score float64 `json:"score,omitempty"`
}

// reason codes: what a NodeExplanation's Reason says. They are kept as small
// integers plus a few string headers so that Plan formats nothing; Reason()
// and MarshalJSON turn them into text on demand.
const (
	rsNone uint8 = iota
	rsInactive
	rsRegion
	rsChannel
	rsCapacity
	rsPickupOther
	rsPickupNone
	rsExcludedAll  // sku_exclusion left nothing (multi-node)
	rsExcludedSome // sku_exclusion took away a line the policy needs (single node)
	rsStockWhole   // cannot ship the whole order (single node)
	rsStockNone    // no stock for any line
	rsStockNoFull  // no line in full (lines not split)
	rsNoteExcluded // kept node, but some lines excluded
	rsText         // read back from JSON: detail holds the reason
)

// NodeExplanation says what Plan did with one node: which filter removed it
// and why, or its ranking values, rank among the candidates and whether it
// was chosen. Reason is formatted on demand (method and JSON), which keeps Plan
// free of string formatting.
type NodeExplanation struct {
	NodeID string     `json:"node_id"`
	Status NodeStatus `json:"status"`
	// Filter is the name of the filter that removed the node (its "name" in
	// the rule set, or its type).
	Filter string `json:"filter,omitempty"`
	// Rank is the 1-based position among the candidates after ranking
	// (0 for removed nodes).
	Rank int `json:"rank,omitempty"`
	// Score is the weighted total (weighted mode only).
	Score float64 `json:"score,omitempty"`
	// Rankings has one value per ranking criterion, in rule-set order, for
	// candidates and chosen nodes.
	Rankings []RankValue `json:"rankings,omitempty"`

	code       uint8
	sku        string // SKU concerned (exclusion, stock)
	detail     string // region, channel, pickup node, tag, or note filter name
	have, need int64
}

// Reason is a one-line human explanation, e.g.
// "does not serve region CN-ZJ" or "ranked 2 of 7; chosen".
func (e NodeExplanation) Reason() string {
	switch e.code {
	case rsText:
		return e.detail
	case rsInactive:
		return "node is inactive"
	case rsRegion:
		if e.detail == "" {
			return "serves listed regions only; the order has no region"
		}
		return "does not serve region " + e.detail
	case rsChannel:
		return "does not serve channel " + strconv.Quote(e.detail)
	case rsCapacity:
		return "no daily capacity left (" + itoa(e.have) + " of " + itoa(e.need) + " used)"
	case rsPickupOther:
		return "pickup order for node " + e.detail
	case rsPickupNone:
		return "pickup order names no pickup node"
	case rsExcludedAll:
		return "may not ship any line of the order (tag " + e.detail + ")"
	case rsExcludedSome:
		return "may not ship SKU " + e.sku + " (tag " + e.detail + ")"
	case rsStockWhole:
		return "cannot ship the whole order: SKU " + e.sku + " has " + itoa(e.have) + " of " + itoa(e.need)
	case rsStockNone:
		return "no stock for any line"
	case rsStockNoFull:
		return "cannot ship any line in full: SKU " + e.sku + " has " + itoa(e.have) + " of " + itoa(e.need)
	}
	var s string
	switch e.Status {
	case StatusChosen:
		s = "chosen"
	case StatusCandidate:
		s = "not needed"
	}
	if e.Rank > 0 {
		s = "ranked " + strconv.Itoa(e.Rank) + "; " + s
	}
	if e.code == rsNoteExcluded {
		s += "; filter " + e.detail + " excludes SKU " + e.sku
	}
	return s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

type explanationJSON struct {
	NodeID   string      `json:"node_id"`
	Status   NodeStatus  `json:"status"`
	Filter   string      `json:"filter,omitempty"`
	Reason   string      `json:"reason,omitempty"`
	Rank     int         `json:"rank,omitempty"`
	Score    float64     `json:"score,omitempty"`
	Rankings []RankValue `json:"rankings,omitempty"`
}

// MarshalJSON adds the formatted reason.
func (e NodeExplanation) MarshalJSON() ([]byte, error) {
	return json.Marshal(explanationJSON{
		NodeID: e.NodeID, Status: e.Status, Filter: e.Filter, Reason: e.Reason(),
		Rank: e.Rank, Score: e.Score, Rankings: e.Rankings,
	})
}

// UnmarshalJSON reads what MarshalJSON wrote; Reason then returns the text
// that was read.
func (e *NodeExplanation) UnmarshalJSON(b []byte) error {
	var j explanationJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = NodeExplanation{
		NodeID: j.NodeID, Status: j.Status, Filter: j.Filter, Rank: j.Rank,
		Score: j.Score, Rankings: j.Rankings, code: rsText, detail: j.Reason,
	}
	return nil
}
