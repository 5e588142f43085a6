// Package sourcing decides which fulfillment nodes (warehouses, stores,
// drop-shippers) ship an order, and explains why.
//
// It is a pure rule engine: no I/O, no global mutable state, standard library
// only. The OMS reads the candidate nodes and the available-to-promise stock
// (one Redis round trip), then calls
//
//	res := sourcing.Plan(order, nodes, stock, rules)
//
// and reserves what res.Shipments says. Plan allocates little more than its
// Result and takes microseconds; a RuleSet is compiled once (ParseRules,
// DefaultRules, RuleSet.Compile) and shared by concurrent Plan calls.
//
// # Rule sets
//
// A rule set is a JSON document, served and replaced through
// GET/PUT /v1/sourcing/rules. ParseRules decodes it strictly (unknown fields,
// duplicate keys, keys that differ only in case, invalid UTF-8 and trailing
// data are refused) and Validate lists every field at fault, as a
// *ValidationError of FieldErrors such as
// {"field": "strategies[1].split.max_nodes", "message": "must not be negative"}.
// An example:
//
//	{
//	  "version": 7,
//	  "name": "Double 11",
//	  "strategies": [
//	    {
//	      "name": "pickup",
//	      "when": {"pickup": true},
//	      "filters": [{"type": "active"}, {"type": "pickup"}, {"type": "stock"}],
//	      "ranking": {"by": [{"type": "priority"}]},
//	      "split": {"policy": "single_node"},
//	      "fallback": "reject"
//	    },
//	    {
//	      "name": "one-parcel",
//	      "when": {"pickup": false},
//	      "filters": [
//	        {"type": "active"}, {"type": "region"}, {"type": "channel"}, {"type": "capacity"},
//	        {"type": "sku_exclusion", "name": "no-bulky-from-stores",
//	         "tags": ["bulky"], "node_types": ["store"], "node_ids": ["DS-7"]},
//	        {"type": "stock"}
//	      ],
//	      "ranking": {
//	        "mode": "lexicographic",
//	        "by": [{"type": "priority"}, {"type": "distance"}, {"type": "stock_depth"}]
//	      },
//	      "split": {"policy": "single_node"}
//	    },
//	    {
//	      "name": "big-orders",
//	      "when": {"pickup": false, "channels": ["tmall", "jd"], "min_value": 50000},
//	      "filters": [
//	        {"type": "active"}, {"type": "region"}, {"type": "channel"}, {"type": "capacity"},
//	        {"type": "sku_exclusion", "name": "no-bulky-from-stores",
//	         "tags": ["bulky"], "node_types": ["store"], "node_ids": ["DS-7"]},
//	        {"type": "stock"}
//	      ],
//	      "ranking": {
//	        "mode": "weighted",
//	        "by": [
//	          {"type": "shipping_cost", "weight": 3,
//	           "costs": {"WH-HZ": {"CN-ZJ": 800, "*": 1500}, "*": {"*": 2000}}},
//	          {"type": "distance", "weight": 2},
//	          {"type": "load", "weight": 1}
//	        ]
//	      },
//	      "split": {"policy": "fewest_nodes", "max_nodes": 2},
//	      "fallback": "hold"
//	    },
//	    {
//	      "name": "split",
//	      "when": {"pickup": false, "max_value": 49999},
//	      "filters": [
//	        {"type": "active"}, {"type": "region"}, {"type": "channel"}, {"type": "capacity"},
//	        {"type": "sku_exclusion", "name": "no-bulky-from-stores",
//	         "tags": ["bulky"], "node_types": ["store"], "node_ids": ["DS-7"]},
//	        {"type": "stock"}
//	      ],
//	      "ranking": {"by": [{"type": "priority"}, {"type": "distance"}]},
//	      "split": {"policy": "ranked", "max_nodes": 3, "split_lines": true},
//	      "fallback": "backorder"
//	    }
//	  ],
//	  "fallback": "reject"
//	}
//
// With it, a pickup order goes to its store or is rejected. Any other order
// ships in one parcel when one node can take it all (bulky SKUs never from
// stores nor DS-7). Failing that, a large tmall or jd order may use two
// warehouses chosen by cost, distance and load, or else waits for review
// (hold); a small one is split over up to three nodes by priority, lines
// included, and what none can ship is backordered. Large orders from other
// channels that need more than one node are rejected.
//
// Top level: "version" (integer, set by the OMS on activation; 0 = draft),
// "name" (free text), "strategies" (1 to 64, tried in order) and "fallback"
// (required).
//
// A strategy has a unique "name", conditions "when", "filters", a
// "ranking", a "split" policy and an optional "fallback".
//
// Conditions ("when"; all that are present must hold, an empty object
// matches every order): "channels" (order channel in list), "regions"
// (ship-to region in list), "min_value" / "max_value" (inclusive bounds on the
// order value in minor units), "tags" (some line's SKU carries one of these
// tags) and "pickup" (true: pickup orders only; false: shipped orders only).
//
// Filters, applied in the listed order; the first that removes a node is
// named in the explanation (by its "name", default its type):
//
//   - active: the node is active.
//   - region: the node serves the ship-to region (a node without regions
//     serves all; with regions, an order without a region is refused).
//   - channel: the node serves the order's channel (none listed = all).
//   - capacity: used_today < daily_capacity (0 = unlimited).
//   - pickup: a pickup order goes to its pickup_node only (no effect on
//     other orders; a pickup order without pickup_node is refused everywhere).
//   - sku_exclusion: nodes whose type is in "node_types" or whose id is in
//     "node_ids" may not ship SKUs tagged with one of "tags". Several may be
//     listed.
//   - stock: enough available stock. Under single_node the node must hold
//     every line in full; otherwise it must hold at least one line in full
//     (or one unit of one line when split_lines is true).
//
// sku_exclusion and stock work per line: under single_node they remove a
// node that cannot take every line; under the other policies they remove a
// node only when it can take no line at all, and the node may still ship the
// other lines. Whatever the filters, Plan never allocates more than the
// availability of a (node, SKU).
//
// Ranking orders the nodes that pass the filters. Criteria ("by"):
//
//   - priority: higher first.
//   - distance: haversine km from the ship-to point, nearer first; unknown
//     (order without has_location, node at 0,0) ranks last.
//   - shipping_cost: from "costs" (node id -> region -> cost); "*" is the
//     default region of a node, and a "*" node covers unlisted nodes; no entry
//     ranks last. Cheaper first.
//   - stock_depth: units left behind by the order, taking the minimum over
//     the lines the node can ship (a line it can only partly ship leaves 0);
//     more first. It protects nearly empty stores.
//   - load: used_today / daily_capacity (0 when unlimited); lower first.
//
// In "lexicographic" mode (the default) each criterion breaks the ties of the
// one before, a known value beating an unknown one. In "weighted" mode each
// criterion needs a "weight" > 0; a node's score is the sum of weight x the
// value normalised to [0, 1] over the candidates (1 = best, unknown = 0),
// highest first. Remaining ties go to the smaller node id, then input order.
//
// Split ("split"):
//
//   - "policy": "single_node" (one node ships everything), "fewest_nodes"
//     (greedy set cover: take the node that covers the most remaining lines in
//     full, then the most units, ranking breaking ties; so one node that can
//     ship everything is always preferred) or "ranked" (walk the ranking and
//     take every node that can ship something still needed, best first).
//   - "max_nodes": at most that many shipments (0 = no cap).
//   - "split_lines": may one line's quantity be split across nodes.
//
// # Strategies and fallbacks
//
// Plan tries the strategies in order. The first whose conditions match and
// whose allocation covers every line wins: Outcome "fulfilled". When none
// fills the order, the fallback of the last matching strategy applies (its
// own, else the rule set's); when no strategy matches, the rule set's
// fallback applies with no explanation. Fallbacks:
//
//   - "reject": nothing ships; Unfilled holds every line. Outcome "rejected".
//   - "hold": nothing ships; the order waits for a human. Outcome "hold".
//   - "backorder": ship now what the last matching strategy could allocate
//     within its split policy (max_nodes, split_lines) and backorder the rest
//     (Unfilled). Under single_node nothing ships and the whole order is
//     backordered, so that the customer still gets one parcel.
//     Outcome "backorder".
//
// Result.Explanation has one entry per input node for the strategy named in
// Result.Strategy: "removed" with the filter and the reason, or "candidate" /
// "chosen" with its rank and the value (and, weighted, the score) of every
// criterion. Reasons are formatted when asked for (NodeExplanation.Reason,
// JSON), not during Plan.
//
// Order lines that repeat a SKU are merged; lines with a non-positive qty are
// ignored, and an order with nothing left is rejected.
//
// # Replay
//
// Replay plans past orders with the active and a draft rule set and reports,
// per set, the outcome counts, mean shipments per order, split rate and mean
// distance, plus how many plans differ. ReadReplayOrders reads the orders as
// JSON lines in the Order shape; each ReplayOrder carries the nodes and the
// availability to plan against, which orders may share.
package sourcing
