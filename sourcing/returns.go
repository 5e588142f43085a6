package sourcing

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
)

// ReturnRules say where returned goods go back (the rule set's "returns"
// section). Without it, or with To "shipping_node", a return goes to the
// node that shipped the most of its units. With To "nearest", it goes to
// the nearest active node, to the buyer's ship-to coordinates, among those
// that accept returns (NodeTypes and Nodes: a node of a listed type or
// listed by id; both empty = every node); an order without coordinates,
// or no such node, falls back to the shipping node.
type ReturnRules struct {
	To        string   `json:"to"`
	NodeTypes []string `json:"node_types,omitempty"`
	Nodes     []string `json:"nodes,omitempty"`
}

// Return destinations.
const (
	ReturnToShippingNode = "shipping_node"
	ReturnToNearest      = "nearest"
)

// ShippedFrom is what one node shipped of the returned units.
type ShippedFrom struct {
	Node  string
	Units int64
}

// ReturnNode picks the receiving node of a return. from lists the nodes
// that shipped the returned units (with how many of them); lat/lon are the
// buyer's coordinates (ok false: none). The answer and why.
func ReturnNode(r *ReturnRules, from []ShippedFrom, lat, lon float64, ok bool, nodes []Node) (string, string) {
	shipping := ""
	if len(from) > 0 {
		f := slices.Clone(from)
		sort.Slice(f, func(i, j int) bool {
			if f[i].Units != f[j].Units {
				return f[i].Units > f[j].Units
			}
			return f[i].Node < f[j].Node
		})
		shipping = f[0].Node
	}
	if r == nil || r.To != ReturnToNearest {
		return shipping, "the node that shipped the most of the returned units"
	}
	if !ok {
		return shipping, "no ship-to coordinates: the shipping node"
	}
	best, bestKm := "", 0.0
	for _, n := range nodes {
		if !n.Active {
			continue
		}
		if (len(r.NodeTypes) > 0 || len(r.Nodes) > 0) && !slices.Contains(r.NodeTypes, n.Type) && !slices.Contains(r.Nodes, n.ID) {
			continue
		}
		km := DistanceKm(lat, lon, n.Lat, n.Lon)
		if best == "" || km < bestKm || (km == bestKm && n.ID < best) {
			best, bestKm = n.ID, km
		}
	}
	if best == "" {
		return shipping, "no active node accepts returns: the shipping node"
	}
	return best, fmt.Sprintf("nearest node accepting returns (%.1f km)", bestKm)
}

func (v *validator) returns(field string, r *ReturnRules) {
	if r == nil {
		return
	}
	if r.To != ReturnToShippingNode && r.To != ReturnToNearest {
		v.add(field+".to", `must be "shipping_node" or "nearest"`)
	}
	if len(r.NodeTypes)+len(r.Nodes) > MaxStrategies*10 {
		v.add(field, "too many node types and nodes")
	}
	for i, t := range r.NodeTypes {
		if t != "warehouse" && t != "store" && t != "dropship" {
			v.add(field+".node_types["+strconv.Itoa(i)+"]", `must be "warehouse", "store" or "dropship"`)
		}
	}
	for i, n := range r.Nodes {
		v.name(field+".nodes["+strconv.Itoa(i)+"]", n, true)
	}
}
