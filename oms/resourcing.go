package oms

import (
	"context"
	"errors"

	"github.com/omsd/omsd/sourcing"
)

// Re-sourcing of a shipment the warehouse rejects (or cancels on its
// own): the one side effect that runs BEFORE the transaction. A shipment
// must never be stored without its stock, so its lines are planned and
// reserved at other nodes first (Placer), then handed to the lifecycle's
// ApplyWarehouseEvent inside the transaction. Those holds are released if
// the transaction does not store them; when the outcome is unknown (an
// error at COMMIT) the order is read back to decide, and if even that
// fails the reconciler releases the holds no shipment owns after its
// grace period.

// resource plans and reserves the lines of the shipment ev rejects, at
// other nodes, when the order is in a state to use them (nil otherwise).
func (f *FulfillmentService) resource(ctx context.Context, orderID string, ev WMSEvent) (*Resourced, error) {
	o, _, err := f.store.GetOrder(ctx, orderID)
	if err != nil {
		return nil, unavailable("order lookup failed", err)
	}
	s := o.shipment(ev.ShipmentID)
	if s == nil || !Resourcable(o, s) {
		return nil, nil
	}
	if f.catalog == nil {
		return nil, Errorf(KindInternal, SlugInternal, "this fulfillment service has no catalog to source rejected shipments with")
	}
	placed, err := f.placer.Place(ctx, Placement{Order: sourcingOrder(o, s.Lines), Candidates: resourceCandidates(o, s, f.catalog.Candidates()),
		Rules: f.catalog.Rules(), Status: ShipmentRequested, Backorder: true})
	if err != nil {
		return nil, err
	}
	return &Resourced{Shipments: placed.Shipments, Plan: placed.Plan}, nil
}

// resourceCandidates are the nodes the lines of s may go to: never back
// to a node that rejected lines of this order.
func resourceCandidates(o *Order, s *Shipment, all []sourcing.Node) []sourcing.Node {
	exclude := map[string]bool{s.NodeID: true}
	for _, sh := range o.Shipments {
		if sh.Status == ShipmentRejected {
			exclude[sh.NodeID] = true
		}
	}
	var cands []sourcing.Node
	for _, n := range all {
		if !exclude[n.ID] {
			cands = append(cands, n)
		}
	}
	return cands
}

// dropResourced releases re-sourcing holds that the transaction did not
// store. After an error whose outcome may be a commit (the connection
// died at COMMIT), the order is read back: holds it owns are kept.
func (f *FulfillmentService) dropResourced(ctx context.Context, orderID string, ships []Shipment, txErr error) {
	clean := txErr == nil || errors.Is(txErr, ErrEventIgnored) || errors.Is(txErr, errStateMoved) ||
		KindOf(txErr) == KindConflict || KindOf(txErr) == KindNotFound || KindOf(txErr) == KindInvalid
	if !clean {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.SideEffectTimeout)
		defer cancel()
		o, _, err := f.store.GetOrder(rctx, orderID)
		if err != nil {
			f.log.Error("re-sourcing outcome unknown; holds left to the reconciler", "order_id", orderID, "tx_err", txErr, "err", err)
			return
		}
		var unstored []Shipment
		for _, s := range ships {
			if o.shipment(s.ID) == nil {
				unstored = append(unstored, s)
			}
		}
		ships = unstored
	}
	refs := make([]HoldRef, len(ships))
	for i := range ships {
		refs[i] = holdOf(&ships[i])
	}
	f.apply(ctx, orderID, HoldEffects{Release: refs})
}

// countResourced counts a stored re-sourcing by outcome: fulfilled (every
// line placed), partial (some placed, the rest backordered) or none.
func (f *FulfillmentService) countResourced(r *Resourced) {
	outcome := "none"
	switch {
	case len(r.Shipments) > 0 && r.Plan != nil && r.Plan.Outcome == sourcing.OutcomeFulfilled:
		outcome = "fulfilled"
	case len(r.Shipments) > 0:
		outcome = "partial"
	}
	f.resourced.WithLabelValues(outcome).Inc()
}
