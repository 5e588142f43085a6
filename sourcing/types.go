package sourcing

// Node types known to the engine. A Node may carry another type; only the
// sku_exclusion filter looks at it.
const (
	NodeWarehouse = "warehouse"
	NodeStore     = "store"
	NodeDropship  = "dropship"
)

// Node is a candidate fulfillment node, as the OMS stores it.
//
// A node whose Lat and Lon are both 0 has no known location: the distance
// ranking puts it last. Node IDs should be unique within one Plan call; a node
// whose ID repeats the ID of a node already chosen is never chosen again (so
// the same stock is never counted twice).
type Node struct {
	ID            string   `json:"id"`
	Name          string   `json:"name,omitempty"`
	Type          string   `json:"type"` // "warehouse" | "store" | "dropship"
	Lat           float64  `json:"lat"`
	Lon           float64  `json:"lon"`
	Regions       []string `json:"regions,omitempty"`  // ISO 3166-2 codes served, e.g. "CN-ZJ"; empty = all
	Channels      []string `json:"channels,omitempty"` // channel ids served; empty = all
	Priority      int      `json:"priority"`           // higher is preferred
	DailyCapacity int64    `json:"daily_capacity"`     // shipments per day; 0 = unlimited
	UsedToday     int64    `json:"used_today"`         // shipments already assigned today
	Active        bool     `json:"active"`
}

// Line is one order line. Tags are the SKU's tags, such as "bulky" (may be
// empty). Plan merges lines that repeat a SKU (their quantities add up) and
// ignores lines whose Qty is not positive.
type Line struct {
	SKU       string   `json:"sku"`
	Qty       int64    `json:"qty"`
	UnitPrice int64    `json:"unit_price,omitempty"`
	Tags      []string `json:"tags,omitempty"`
}

// Order is what Plan sources: where it goes, through which channel, and what
// it holds.
type Order struct {
	ID          string  `json:"id,omitempty"`
	Channel     string  `json:"channel"`
	Region      string  `json:"region"` // ship-to ISO 3166-2
	Lat         float64 `json:"lat,omitempty"`
	Lon         float64 `json:"lon,omitempty"`
	HasLocation bool    `json:"has_location,omitempty"` // Lat/Lon are the ship-to point
	Pickup      bool    `json:"pickup,omitempty"`       // pickup orders go to their store only
	PickupNode  string  `json:"pickup_node,omitempty"`
	Value       int64   `json:"value"` // order value in minor units
	Lines       []Line  `json:"lines"`
}

// Availability gives available-to-promise units for (node, sku). The OMS
// fills it from Redis in one round trip before calling Plan. Plan calls it at
// most once per (candidate node, distinct SKU) and never concurrently with
// itself for one call, but concurrent Plan calls may share one Availability, so
// implementations must be safe for concurrent reads.
type Availability interface {
	Available(node, sku string) int64
}

// StockMap is the map-based Availability: node id -> sku -> available units.
// It is cheap to fill (a literal, or Set) and to read, and Plan reads it
// without going through the interface (one outer lookup per node).
//
//	stock := sourcing.StockMap{"WH-HZ": {"SKU-1": 10, "SKU-2": 3}}
type StockMap map[string]map[string]int64

// Available implements Availability. Unknown nodes and SKUs have 0 units.
func (m StockMap) Available(node, sku string) int64 { return m[node][sku] }

// Set records n available units of sku at node, creating the node's map when
// needed. m must not be nil.
func (m StockMap) Set(node, sku string, n int64) {
	row := m[node]
	if row == nil {
		row = make(map[string]int64)
		m[node] = row
	}
	row[sku] = n
}

// Outcome is what Plan decided for the order as a whole.
type Outcome string

// Outcomes of a plan.
const (
	// OutcomeFulfilled: Shipments cover every line exactly.
	OutcomeFulfilled Outcome = "fulfilled"
	// OutcomeRejected: nothing is shipped; Unfilled holds every line.
	OutcomeRejected Outcome = "rejected"
	// OutcomeBackorder: Shipments hold what can ship now (possibly nothing),
	// Unfilled what waits for stock.
	OutcomeBackorder Outcome = "backorder"
	// OutcomeHold: nothing is shipped; the order waits for a human review.
	OutcomeHold Outcome = "hold"
)

// ShipLine is a quantity of one SKU.
type ShipLine struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// Shipment is what one node ships. Each node appears in at most one Shipment
// of a Result.
type Shipment struct {
	NodeID string     `json:"node_id"`
	Lines  []ShipLine `json:"lines"`
}

// Result is a plan and its explanation. A Result is owned by the caller; Plan
// keeps no reference to it.
type Result struct {
	Outcome  Outcome `json:"outcome"`
	Strategy string  `json:"strategy,omitempty"` // strategy that produced the plan, or whose fallback applied
	// Shipments in the order the split policy picked the nodes (best first).
	// Lines within a shipment follow the order's line order.
	Shipments []Shipment `json:"shipments,omitempty"`
	// Unfilled lists, per SKU, the quantity not covered by Shipments (always
	// empty when Outcome is fulfilled).
	Unfilled []ShipLine `json:"unfilled,omitempty"`
	// Explanation has one entry per input node, in input order, for the
	// strategy named by Strategy. It is empty when no strategy matched.
	Explanation []NodeExplanation `json:"explanation,omitempty"`
	Reason      string            `json:"reason"`
}

// Explain returns the explanation for node id, and false if there is none.
func (r *Result) Explain(id string) (NodeExplanation, bool) {
	for _, e := range r.Explanation {
		if e.NodeID == id {
			return e, true
		}
	}
	return NodeExplanation{}, false
}
