package oms

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/sourcing"
)

// Stock is what placing an order needs of the inventory engine: levels to
// plan with, and holds (reservations) to take and give back.
type Stock interface {
	Levels(ctx context.Context, keys []inventory.Key) ([]inventory.Level, error)
	Reserve(ctx context.Context, h inventory.Hold) error
	Release(ctx context.Context, node, holdID string) (bool, error)
}

// Lease is this instance's claim on the holds it takes
// (inventory.Heartbeat). Current returns the owner id to put on new holds
// and a context that ends when the claim lapses; ok is false while there
// is none. Once a claim lapses, other instances release its holds that no
// stored shipment owns, so nothing reserved under it may be committed.
type Lease interface {
	Current() (owner string, ctx context.Context, ok bool)
}

// ErrLeaseLapsed answers an order whose holds were taken under a lease
// that has lapsed: it was not stored and a retry is safe.
var ErrLeaseLapsed = &Error{Kind: KindUnavailable, Slug: SlugUnavailable, RetryAfter: time.Second,
	Detail: "this instance lost its claim on the stock it reserved; nothing was kept, retry with the same external_id"}

// Placement is one request for stock: the lines of an order to plan over
// the candidate nodes under the rules, and how the shipments it creates
// start out.
type Placement struct {
	Order      *sourcing.Order
	Candidates []sourcing.Node
	Rules      *sourcing.RuleSet
	// Status of the shipments placed (pending, or requested when the order
	// goes to the warehouses at once).
	Status ShipmentStatus
	// Deadline of the holds; zero: the order is paid, the holds never expire.
	Deadline time.Time
	// Backorder accepts a plan that places only part of the lines (ship
	// what can ship now); otherwise such a plan places nothing.
	Backorder bool
}

// Placed is what a placement reserved: one shipment per planned node, each
// holding its lines under a hold whose id is the shipment id, and the plan
// they come from (nil when nothing could be planned).
type Placed struct {
	Shipments []Shipment
	Plan      *sourcing.Result
	// Replans counts plans made again after a lost reservation race.
	Replans int
	// Owner is the lease the holds were taken under ("" without a lease).
	Owner string
}

// Filled reports whether every line was placed.
func (p Placed) Filled() bool {
	return p.Plan != nil && p.Plan.Outcome == sourcing.OutcomeFulfilled && len(p.Shipments) > 0
}

// Placer plans orders on fresh availability and reserves their shipments.
// Intake and re-sourcing share it.
type Placer struct {
	Stock Stock
	// Attempts bounds planning again after a lost race; default 4.
	Attempts int
	// Timeout bounds releases, which run detached from the caller's
	// context (a client that hangs up must not leave holds behind);
	// default 10s.
	Timeout time.Duration
	// Lease names this instance on every hold (Hold.Owner), so that the
	// holds of an instance that dies are released within seconds; nil:
	// holds have no owner and wait for the reconciler's grace.
	Lease Lease
	// View, if set, is what plans start from instead of levels read before
	// every plan (see AvailabilityView); nil: every plan reads fresh.
	View *AvailabilityView
	Log  *slog.Logger
}

func (p *Placer) attempts() int { return cmpOr(p.Attempts, 4) }

// Place plans pl on fresh availability (or the placer's view, see
// AvailabilityView: a plan the view cannot fill is made again on fresh
// levels before it counts) and reserves each planned shipment (all lines
// of one shipment atomically, at one node). When a reservation loses a
// race it releases what it holds and plans again on fresh levels, a
// bounded number of times; when every attempt loses, nothing is placed.
//
// When some nodes are not loaded (Redis lost its data and is being
// rebuilt) and the plan does not fill the order, the answer is the
// not-ready error (KindUnavailable, slug stock-not-ready), never "not
// enough stock": their stock is unknown, not zero. Other stock failures
// are KindUnavailable. A plan that cannot be filled is not an error: the
// result's Plan says why.
func (p *Placer) Place(ctx context.Context, pl Placement) (Placed, error) {
	keys := stockKeys(pl.Candidates, pl.Order)
	var out Placed
	fresh := p.View == nil
	for attempt := range p.attempts() {
		out.Replans = attempt
		avail, cached, notReady, err := p.availability(ctx, keys, fresh)
		if err != nil {
			return out, stockErr(err)
		}
		plan := sourcing.Plan(pl.Order, pl.Candidates, avail, pl.Rules)
		if plan.Outcome != sourcing.OutcomeFulfilled && cached {
			// Some levels came from the view, which may be low (a release,
			// a restock): never refuse on it; plan again on fresh levels.
			fresh = true
			if avail, _, notReady, err = p.availability(ctx, keys, true); err != nil {
				return out, stockErr(err)
			}
			plan = sourcing.Plan(pl.Order, pl.Candidates, avail, pl.Rules)
		}
		out.Plan = plan
		if plan.Outcome != sourcing.OutcomeFulfilled && notReady != nil {
			return out, stockErr(notReady)
		}
		if plan.Outcome != sourcing.OutcomeFulfilled && !(pl.Backorder && plan.Outcome == sourcing.OutcomeBackorder) {
			return out, nil
		}
		owner := ""
		if p.Lease != nil {
			var ok bool
			if owner, _, ok = p.Lease.Current(); !ok {
				return out, ErrLeaseLapsed
			}
		}
		out.Owner = owner
		ships, lost := p.reserve(ctx, plan, pl, owner)
		if lost == nil {
			out.Shipments = ships
			return out, nil
		}
		if !errors.Is(lost, inventory.ErrInsufficient) {
			return out, stockErr(lost)
		}
		fresh = true
		out.Plan = &sourcing.Result{Outcome: sourcing.OutcomeRejected, Reason: lost.Error()}
	}
	return out, nil
}

// availability is what a plan starts from: the view's (fresh: read from
// the stock engine, refreshing the view), or without a view the levels
// read now. cached reports whether any level came from the view.
func (p *Placer) availability(ctx context.Context, keys []inventory.Key, fresh bool) (avail sourcing.StockMap, cached bool, notReady, err error) {
	if p.View == nil {
		avail, notReady, err = ReadAvailability(ctx, p.Stock, keys)
		return avail, false, notReady, err
	}
	return p.View.read(ctx, keys, fresh)
}

// reserve takes a hold per planned shipment. On the first failure it
// releases every hold it tried, the failed one included: a reply lost
// after Redis applied the script is a hold nobody would own otherwise
// (Release of a hold that does not exist is a no-op).
func (p *Placer) reserve(ctx context.Context, plan *sourcing.Result, pl Placement, owner string) ([]Shipment, error) {
	ships := make([]Shipment, 0, len(plan.Shipments))
	for _, ps := range plan.Shipments {
		sid := uuid.NewString()
		lines := make([]ShipLine, len(ps.Lines))
		hl := make([]inventory.Line, len(ps.Lines))
		for i, l := range ps.Lines {
			lines[i] = ShipLine{SKU: l.SKU, Qty: l.Qty}
			hl[i] = inventory.Line{SKU: l.SKU, Qty: l.Qty}
		}
		s := Shipment{ID: sid, NodeID: ps.NodeID, Status: pl.Status, Lines: lines, HoldID: sid}
		ships = append(ships, s)
		if err := p.Stock.Reserve(ctx, inventory.Hold{ID: sid, Node: ps.NodeID, Lines: hl, Deadline: pl.Deadline, Owner: owner}); err != nil {
			if errors.Is(err, inventory.ErrInsufficient) {
				ships = ships[:len(ships)-1] // refused by the script: nothing was written
				if p.View != nil {
					p.View.forget(ps.NodeID, hl)
				}
			}
			p.Release(ctx, ships)
			return nil, err
		}
		if p.View != nil {
			p.View.reserved(ps.NodeID, hl)
		}
	}
	return ships, nil
}

// Release gives back the holds of ships, detached from ctx's cancellation
// and bounded by the placer's timeout. Failures are logged: the reconciler
// releases holds that no stored shipment owns after its grace.
func (p *Placer) Release(ctx context.Context, ships []Shipment) {
	if len(ships) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmpOr(p.Timeout, 10*time.Second))
	defer cancel()
	for _, s := range ships {
		if _, err := p.Stock.Release(ctx, s.NodeID, s.holdID()); err != nil && p.Log != nil {
			p.Log.Error("release hold; the reconciler releases it after its grace", "hold_id", s.holdID(), "node", s.NodeID, "err", err)
		}
	}
}

// holdID is the id of the shipment's stock hold (the shipment id unless
// the store says otherwise).
func (s *Shipment) holdID() string {
	if s.HoldID != "" {
		return s.HoldID
	}
	return s.ID
}

func stockErr(err error) error {
	if errors.Is(err, inventory.ErrNotReady) {
		return &Error{Kind: KindUnavailable, Slug: SlugStockNotReady, Detail: "stock counters are being rebuilt; retry shortly", Err: err, RetryAfter: 2 * time.Second}
	}
	return unavailable("the stock engine is unavailable", err)
}

// sourcingOrder is the one conversion of an order into what sourcing
// plans: the given lines (nil: every line of the order) at the order's
// prices, with its destination, channel and value.
func sourcingOrder(o *Order, lines []ShipLine) *sourcing.Order {
	if lines == nil {
		lines = make([]ShipLine, len(o.Lines))
		for i, l := range o.Lines {
			lines[i] = ShipLine{SKU: l.SKU, Qty: l.Qty}
		}
	}
	price := make(map[string]int64, len(o.Lines))
	for _, l := range o.Lines {
		price[l.SKU] = l.UnitPrice
	}
	so := &sourcing.Order{ID: o.ID, Channel: o.Channel, Lines: make([]sourcing.Line, len(lines))}
	for i, l := range lines {
		so.Lines[i] = sourcing.Line{SKU: l.SKU, Qty: l.Qty, UnitPrice: price[l.SKU]}
		so.Value += l.Qty * price[l.SKU]
	}
	if a := o.ShipTo; a != nil {
		so.Region = a.Region
		if a.Lat != nil && a.Lon != nil {
			so.Lat, so.Lon, so.HasLocation = *a.Lat, *a.Lon, true
		}
	}
	if o.Fulfillment.Type == FulfillPickup {
		so.Pickup, so.PickupNode = true, o.Fulfillment.PickupNode
	}
	return so
}

// ToSourcingNode converts a node for sourcing.
func ToSourcingNode(n Node) sourcing.Node {
	return sourcing.Node{ID: n.ID, Name: n.Name, Type: n.Type, Lat: n.Location.Lat, Lon: n.Location.Lon,
		Regions: n.Regions, Channels: n.Channels, Priority: n.Priority, DailyCapacity: n.DailyCapacity, Active: n.Active}
}

// stockKeys are the (node, SKU) pairs whose levels a plan of so needs.
func stockKeys(cands []sourcing.Node, so *sourcing.Order) []inventory.Key {
	skus := make([]string, 0, len(so.Lines))
	for _, l := range so.Lines {
		if !slices.Contains(skus, l.SKU) {
			skus = append(skus, l.SKU)
		}
	}
	keys := make([]inventory.Key, 0, len(cands)*len(skus))
	for _, n := range cands {
		for _, s := range skus {
			keys = append(keys, inventory.Key{Node: n.ID, SKU: s})
		}
	}
	return keys
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

// cmpOr is cmp.Or for durations and counts: v unless it is zero or less.
func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
