package loadtest

import (
	"fmt"
	"sort"
)

// Order statuses after which an order holds no stock (the v1 API).
var deadStatuses = map[string]bool{"cancelled": true, "expired": true}

// AuditOrder is an accepted order as the audit sees it.
type AuditOrder struct {
	ID    string
	Lines []Line
	// Pending: submitted with payment pending and never paid by the load
	// test, so it must never be released to a warehouse.
	Pending bool
	// Checked: the order was read back from the API (Found tells whether
	// it was there). Unchecked orders (when reads were sampled) count for
	// stock with Status as inferred by the caller.
	Checked bool
	Found   bool
	// Unreadable: reading it back failed for another reason than 404, so
	// the audit is incomplete (counted in OrdersUnreadable).
	Unreadable bool
	// Status is the order status (read back, or inferred when unchecked).
	Status string
}

// live says whether the order should still hold its units (reserved, or
// consumed by a shipment). A missing order counts as live: the client was
// promised it.
func (o AuditOrder) live() bool { return !deadStatuses[o.Status] }

// ShipmentEvent is a message of topic oms.shipments.
type ShipmentEvent struct {
	EventID    string `json:"event_id"`
	Type       string `json:"type"`
	ShipmentID string `json:"shipment_id"`
	OrderID    string `json:"order_id"`
	NodeID     string `json:"node_id"`
	Lines      []Line `json:"lines"`
}

// AuditInput is everything the audit looks at, as plain data.
type AuditInput struct {
	// Initial is the stock when the load started, per node and SKU: the
	// seeded on-hand (reserved 0), or a snapshot taken before the run.
	Initial []StockLevel
	// Current is the stock at audit time, from GET /v1/inventory/{sku}.
	Current []StockLevel
	// Orders are this run's accepted orders (answered 201/200).
	Orders []AuditOrder
	// Shipments is topic oms.shipments read to its end, or nil with
	// ShipmentsRead false when it was not read.
	Shipments     []ShipmentEvent
	ShipmentsRead bool
	// GaveUp are the orders whose client gave up (every attempt failed),
	// as looked up by external id after the run.
	GaveUp []GaveUpOrder
	// Returns are the run's returns as read after it; ReturnEvents is
	// oms.returns read to its end (ReturnEventsRead false: not read).
	Returns          []ReturnRecord
	ReturnEvents     []ReturnEvent
	ReturnEventsRead bool
	// Answers are the accepted orders as answered (buyer, omsd customer,
	// attribution), for the binding check.
	Answers []AcceptedOrder
}

// GaveUpOrder is an order whose client gave up, looked up by external id.
// Either the OMS has it, holding its stock (shipments), or it has nothing.
type GaveUpOrder struct {
	Channel    string
	ExternalID string
	// Unresolved: the lookup failed (counted by the report, not here).
	Unresolved bool
	Found      bool
	ID         string
	Status     string
	Shipments  int
}

// Finding is one fault the audit found.
type Finding struct {
	Check  string `json:"check"`
	Key    string `json:"key"`
	Units  int64  `json:"units,omitempty"`
	Detail string `json:"detail"`
}

// AuditResult counts the faults. Clean() is true when all are zero.
type AuditResult struct {
	OversoldUnits      int64 `json:"oversold_units"`
	MissingOrders      int   `json:"missing_orders"`
	DuplicateShipments int   `json:"duplicate_shipments"`
	LeakedUnits        int64 `json:"leaked_units"`
	// UnpaidShipments counts shipments requested for orders that were
	// submitted with payment pending and never paid (so never released).
	UnpaidShipments int `json:"unpaid_shipments"`
	// GaveUpUnheld counts orders whose client gave up that the OMS stored
	// (found by external id, live) without holding their stock: no
	// shipment at all.
	GaveUpUnheld int `json:"gave_up_unheld"`
	// GaveUpOrders, GaveUpStored, GaveUpNotStored: the orders whose
	// client gave up, and how many of them the OMS has (404 otherwise).
	GaveUpOrders    int `json:"gave_up_orders"`
	GaveUpStored    int `json:"gave_up_stored"`
	GaveUpNotStored int `json:"gave_up_not_stored"`

	OrdersAccepted int  `json:"orders_accepted"`
	OrdersChecked  int  `json:"orders_checked"`
	Sampled        bool `json:"sampled"`
	// OrdersUnreadable could not be read for another reason than 404.
	OrdersUnreadable int  `json:"orders_unreadable,omitempty"`
	SKUsChecked      int  `json:"skus_checked"`
	ShipmentsChecked bool `json:"shipments_checked"`
	ShipmentEvents   int  `json:"shipment_events"`
	// ForeignShipmentEvents are events for orders outside this run; they
	// are ignored (an earlier run's, or another client's).
	ForeignShipmentEvents int `json:"foreign_shipment_events,omitempty"`
	// After-sales (RunConfig.ReturnShare): returns made, units received
	// back, oms.returns events of them; refunds without a receipt, units
	// returned past what shipped, and a return event under two ids are
	// faults.
	Returns               int   `json:"returns,omitempty"`
	ReturnedUnits         int64 `json:"returned_units,omitempty"`
	ReturnEvents          int   `json:"return_events,omitempty"`
	RefundsWithoutReceipt int   `json:"refunds_without_receipt"`
	ReturnsPastShipped    int   `json:"returns_past_shipped"`
	DuplicateReturnEvents int   `json:"duplicate_return_events"`
	// Customers: orders that had to inherit a binding, and those that
	// came back without it (auditBindings).
	BindingsChecked int `json:"bindings_checked"`
	BindingsMissing int `json:"bindings_missing"`
	// Notes say what was skipped or estimated.
	Notes []string `json:"notes,omitempty"`

	Findings []Finding `json:"findings,omitempty"`
	// FindingsTruncated counts findings left out of Findings.
	FindingsTruncated int `json:"findings_truncated,omitempty"`
}

// Clean reports whether the audit found nothing wrong.
func (r AuditResult) Clean() bool {
	return r.OversoldUnits == 0 && r.MissingOrders == 0 && r.DuplicateShipments == 0 &&
		r.LeakedUnits == 0 && r.UnpaidShipments == 0 && r.GaveUpUnheld == 0 &&
		r.RefundsWithoutReceipt == 0 && r.ReturnsPastShipped == 0 && r.DuplicateReturnEvents == 0 && r.BindingsMissing == 0
}

// MaxFindings caps AuditResult.Findings.
const MaxFindings = 100

func (r *AuditResult) find(f Finding) {
	if len(r.Findings) >= MaxFindings {
		r.FindingsTruncated++
		return
	}
	r.Findings = append(r.Findings, f)
}

// Audit checks the run's invariants over plain data; it does no I/O.
//
// Per SKU s, with nodes n, initial levels I and current levels C, and L(s)
// the units of s in live accepted orders (status not cancelled/expired):
//
//	node excess(n,s)  = max(0, -C.available, C.reserved - C.on_hand)
//	capacity(s)       = Σn max(0, I.on_hand - I.reserved - I.safety_stock) + restocked(s)
//	oversold(s)       = max(Σn node excess(n,s), L(s) - capacity(s))
//	consumed(s)       = Σn (I.on_hand - C.on_hand) + Σn (C.reserved - I.reserved)
//	restocked(s)      = sellable units of s received back by the run's returns
//	leaked(s)         = |consumed(s) + restocked(s) - L(s)|
//
// oversold_units = Σs oversold(s); leaked_units = Σs leaked(s). The two
// views of overselling (a node below zero; more sold than there was) are
// the same fault seen twice, so the larger is taken, not the sum.
// consumed counts units shipped (on-hand gone) plus units still reserved:
// exactly what live orders should hold. A cancelled or expired order that
// kept its reservation shows as a positive difference, a reservation lost
// or released twice as a negative one.
//
// A returned sellable unit is in on hand again: counted back once it is
// consumed + restocked = L; a restock lost or applied twice shows as a
// leak. refunds_without_receipt, returns_past_shipped and
// duplicate_return_events are the after-sales checks (returns.go);
// bindings_missing the customer check (customers.go).
//
// missing_orders counts checked orders the API did not find (404).
//
// duplicate_shipments: for each shipment id, the number of distinct
// event ids of its shipment.requested events, minus one. The same event
// id delivered twice is a harmless redelivery (consumers deduplicate on
// it); a second event id means the shipment was requested twice.
//
// unpaid_shipments counts shipments requested for orders submitted with
// payment pending (never paid by the load test, so never released).
//
// gave_up_unheld counts orders whose client gave up after every attempt
// failed that the OMS nevertheless stored, live (not cancelled or
// expired), with no shipment: an order kept without its stock. The other
// outcomes are fine: stored with its shipments (then it is audited like
// an accepted order), or not stored at all.
func Audit(in AuditInput) AuditResult {
	var res AuditResult
	auditBindings(in.Answers, &res)
	res.OrdersAccepted = len(in.Orders)
	for _, g := range in.GaveUp {
		res.GaveUpOrders++
		switch {
		case g.Unresolved:
		case !g.Found:
			res.GaveUpNotStored++
		default:
			res.GaveUpStored++
			if !deadStatuses[g.Status] && g.Shipments == 0 {
				res.GaveUpUnheld++
				res.find(Finding{Check: "gave_up_unheld", Key: g.ID,
					Detail: fmt.Sprintf("the client gave up on %s/%s; the OMS stored it (status %q) with no shipment: its stock is not held", g.Channel, g.ExternalID, g.Status)})
			}
		}
	}

	type key struct{ node, sku string }
	initial := map[key]StockLevel{}
	current := map[key]StockLevel{}
	skus := map[string]bool{}
	for _, l := range in.Initial {
		initial[key{l.NodeID, l.SKU}] = l
		skus[l.SKU] = true
	}
	for _, l := range in.Current {
		current[key{l.NodeID, l.SKU}] = l
		skus[l.SKU] = true
	}
	liveUnits := map[string]int64{}
	for _, o := range in.Orders {
		if o.Unreadable {
			res.OrdersUnreadable++
		}
		if o.Checked {
			res.OrdersChecked++
			if !o.Found {
				res.MissingOrders++
				res.find(Finding{Check: "missing_orders", Key: o.ID, Detail: "answered 2xx but GET /v1/orders/{id} says 404"})
			}
		}
		if o.live() {
			for _, l := range o.Lines {
				liveUnits[l.SKU] += l.Qty
				skus[l.SKU] = true
			}
		}
	}
	res.Sampled = res.OrdersChecked+res.OrdersUnreadable < res.OrdersAccepted
	restocked := auditReturns(&res, in.Returns, in.ReturnEvents, in.ReturnEventsRead)

	// Nodes per SKU, in a stable order for stable findings.
	nodes := map[string][]string{}
	for k := range initial {
		nodes[k.sku] = append(nodes[k.sku], k.node)
	}
	for k := range current {
		if _, ok := initial[k]; !ok {
			nodes[k.sku] = append(nodes[k.sku], k.node)
		}
	}
	skuList := make([]string, 0, len(skus))
	for s := range skus {
		skuList = append(skuList, s)
	}
	sort.Strings(skuList)
	res.SKUsChecked = len(skuList)

	for _, s := range skuList {
		ns := nodes[s]
		sort.Strings(ns)
		var nodeExcess, capacity, consumed int64
		for _, n := range ns {
			i, c := initial[key{n, s}], current[key{n, s}]
			if ex := max(0, -c.Available, c.Reserved-c.OnHand); ex > 0 {
				nodeExcess += ex
				res.find(Finding{Check: "oversold_units", Key: n + "/" + s, Units: ex,
					Detail: fmt.Sprintf("on_hand %d reserved %d safety %d available %d", c.OnHand, c.Reserved, c.SafetyStock, c.Available)})
			}
			capacity += max(0, i.OnHand-i.Reserved-i.SafetyStock)
			consumed += (i.OnHand - c.OnHand) + (c.Reserved - i.Reserved)
		}
		live := liveUnits[s]
		// Units returned sellable are on sale again: they may be sold twice.
		consumed += restocked[s]
		capacity += restocked[s]
		if over := live - capacity; over > 0 {
			res.find(Finding{Check: "oversold_units", Key: s, Units: over,
				Detail: fmt.Sprintf("live accepted orders hold %d units, only %d were available at the start", live, capacity)})
			nodeExcess = max(nodeExcess, over)
		}
		res.OversoldUnits += nodeExcess
		if d := consumed - live; d != 0 {
			res.LeakedUnits += abs(d)
			what := "more units held (shipped+reserved) than live orders need: a reservation not released"
			if d < 0 {
				what = "fewer units held (shipped+reserved) than live orders need: a reservation lost or released twice"
			}
			res.find(Finding{Check: "leaked_units", Key: s, Units: abs(d),
				Detail: fmt.Sprintf("%s (held %d, live orders %d)", what, consumed, live)})
		}
	}

	res.ShipmentsChecked = in.ShipmentsRead
	if in.ShipmentsRead {
		orders := make(map[string]*AuditOrder, len(in.Orders))
		for i := range in.Orders {
			orders[in.Orders[i].ID] = &in.Orders[i]
		}
		events := map[string]map[string]bool{} // shipment id -> event ids
		unpaid := map[string]bool{}
		var ids []string
		for _, e := range in.Shipments {
			if e.Type != "shipment.requested" {
				continue
			}
			o, ours := orders[e.OrderID]
			if !ours {
				res.ForeignShipmentEvents++
				continue
			}
			res.ShipmentEvents++
			if events[e.ShipmentID] == nil {
				events[e.ShipmentID] = map[string]bool{}
				ids = append(ids, e.ShipmentID)
			}
			events[e.ShipmentID][e.EventID] = true
			if o.Pending && !unpaid[e.ShipmentID] {
				unpaid[e.ShipmentID] = true
				res.UnpaidShipments++
				res.find(Finding{Check: "unpaid_shipments", Key: e.ShipmentID,
					Detail: fmt.Sprintf("order %s was submitted unpaid and never paid (status %q), yet shipment was requested", o.ID, o.Status)})
			}
		}
		for _, id := range ids {
			if n := len(events[id]); n > 1 {
				res.DuplicateShipments += n - 1
				res.find(Finding{Check: "duplicate_shipments", Key: id,
					Detail: fmt.Sprintf("shipment.requested under %d distinct event ids", n)})
			}
		}
	} else {
		res.Notes = append(res.Notes, "topic oms.shipments not read (no brokers): duplicate_shipments not checked")
	}
	if res.Sampled {
		res.Notes = append(res.Notes, fmt.Sprintf("%d of %d accepted orders read back; missing_orders counts the sample, leaked_units uses inferred statuses for the rest", res.OrdersChecked, res.OrdersAccepted))
	}
	return res
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
