package oms

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/sourcing"
)

// PlanStock is what planning and reserving need of the inventory engine.
type PlanStock interface {
	Levels(ctx context.Context, keys []inventory.Key) ([]inventory.Level, error)
	Reserve(ctx context.Context, h inventory.Hold) error
	Release(ctx context.Context, node, holdID string) (bool, error)
}

// placement is the outcome of planReserve: the shipments it reserved
// (hold id = shipment id) and the plan they come from.
type placement struct {
	Ships []Shipment
	Plan  *sourcing.Result
}

// planReserve plans so on fresh availability over cands and reserves each
// planned shipment (all lines of one shipment atomically, at one node).
// When a reservation loses a race it releases what it holds and plans
// again, at most attempts times. A plan that is not fulfilled is returned
// with the shipments it could place if partial is true (backorder: ship
// what can ship now), with none otherwise. Shipments get status status and
// hold deadline deadline (zero: paid, never expires).
//
// It is shared by re-sourcing (fulfillment) and written so that intake's
// reserve can move onto it.
//
// When some nodes are not loaded (Redis lost its data and is being
// rebuilt) and the plan does not fill the order, the answer is the
// not-ready error (503), never "insufficient": their stock is unknown, not
// zero. observe, if not nil, sees every plan and whether it is a re-plan.
func planReserve(ctx context.Context, stock PlanStock, so *sourcing.Order, cands []sourcing.Node, rules *sourcing.RuleSet,
	status ShipmentStatus, deadline time.Time, attempts int, partial bool, release func(ctx context.Context, ships []Shipment),
	observe func(plan *sourcing.Result, replan bool)) (placement, error) {
	skus := make([]string, 0, len(so.Lines))
	for _, l := range so.Lines {
		if !slices.Contains(skus, l.SKU) {
			skus = append(skus, l.SKU)
		}
	}
	keys := stockKeys(cands, skus)
	var last *sourcing.Result
	for attempt := 0; attempt < max(attempts, 1); attempt++ {
		avail, notReady, err := ReadAvailability(ctx, stock, keys)
		if err != nil {
			return placement{}, stockErr(err)
		}
		plan := sourcing.Plan(so, cands, avail, rules)
		last = plan
		if observe != nil {
			observe(plan, attempt > 0)
		}
		if plan.Outcome != sourcing.OutcomeFulfilled && notReady != nil {
			return placement{}, stockErr(notReady)
		}
		if plan.Outcome != sourcing.OutcomeFulfilled && !(partial && plan.Outcome == sourcing.OutcomeBackorder) {
			return placement{Plan: plan}, nil
		}
		ships := make([]Shipment, 0, len(plan.Shipments))
		var lost error
		for _, ps := range plan.Shipments {
			sid := uuid.NewString()
			lines := make([]ShipLine, len(ps.Lines))
			hl := make([]inventory.Line, len(ps.Lines))
			for i, l := range ps.Lines {
				lines[i] = ShipLine{SKU: l.SKU, Qty: l.Qty}
				hl[i] = inventory.Line{SKU: l.SKU, Qty: l.Qty}
			}
			if err := stock.Reserve(ctx, inventory.Hold{ID: sid, Node: ps.NodeID, Lines: hl, Deadline: deadline}); err != nil {
				lost = err
				break
			}
			ships = append(ships, Shipment{ID: sid, NodeID: ps.NodeID, Status: status, Lines: lines, HoldID: sid})
		}
		if lost == nil {
			return placement{Ships: ships, Plan: plan}, nil
		}
		release(ctx, ships)
		if !errors.Is(lost, inventory.ErrInsufficient) {
			return placement{}, stockErr(lost)
		}
		last = &sourcing.Result{Outcome: sourcing.OutcomeRejected, Reason: lost.Error()}
	}
	// Every attempt lost its race: nothing placed.
	return placement{Plan: last}, nil
}

// orderSourcing is the sourcing view of lines of a stored order.
func orderSourcing(o *Order, lines []ShipLine) *sourcing.Order {
	so := &sourcing.Order{ID: o.ID, Channel: o.Channel, Lines: make([]sourcing.Line, 0, len(lines))}
	price := map[string]int64{}
	for _, l := range o.Lines {
		price[l.SKU] = l.UnitPrice
	}
	for _, l := range lines {
		so.Lines = append(so.Lines, sourcing.Line{SKU: l.SKU, Qty: l.Qty, UnitPrice: price[l.SKU]})
		so.Value += l.Qty * price[l.SKU]
	}
	if o.ShipTo != nil {
		so.Region = o.ShipTo.Region
		if o.ShipTo.Lat != nil && o.ShipTo.Lon != nil {
			so.Lat, so.Lon, so.HasLocation = *o.ShipTo.Lat, *o.ShipTo.Lon, true
		}
	}
	if o.Fulfillment.Type == FulfillPickup {
		so.Pickup, so.PickupNode = true, o.Fulfillment.PickupNode
	}
	return so
}

// stockKeys are the (node, SKU) pairs whose levels a plan needs.
func stockKeys(cands []sourcing.Node, skus []string) []inventory.Key {
	keys := make([]inventory.Key, 0, len(cands)*len(skus))
	for _, n := range cands {
		for _, s := range skus {
			keys = append(keys, inventory.Key{Node: n.ID, SKU: s})
		}
	}
	return keys
}

// distinctSKUs lists the SKUs of lines once each, in order.
func distinctSKUs(lines []Line) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if !slices.Contains(out, l.SKU) {
			out = append(out, l.SKU)
		}
	}
	return out
}

// LevelReader reads stock levels in one round trip.
type LevelReader interface {
	Levels(ctx context.Context, keys []inventory.Key) ([]inventory.Level, error)
}

// ReadAvailability reads the available units of keys into the map sourcing
// plans with. Nodes whose counters are not loaded read as zero (sourced
// around) and are reported as notReady, so that a caller never mistakes
// their unknown stock for "out of stock"; err is any other failure.
func ReadAvailability(ctx context.Context, stock LevelReader, keys []inventory.Key) (avail sourcing.StockMap, notReady, err error) {
	avail = sourcing.StockMap{}
	if len(keys) == 0 {
		return avail, nil, nil
	}
	levels, err := stock.Levels(ctx, keys)
	if err != nil && (levels == nil || !errors.Is(err, inventory.ErrNotReady)) {
		return nil, nil, err
	}
	for _, l := range levels {
		if l.Available > 0 {
			avail.Set(l.Node, l.SKU, l.Available)
		}
	}
	return avail, err, nil
}
