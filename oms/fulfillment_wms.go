package oms

import (
	"context"
	"errors"
)

// ApplyWMSEvent applies one warehouse event exactly once (by event_id, in
// the transaction of the state change). A duplicate returns the current
// order and changes nothing. A late or out-of-order event that the state
// already covers (an acknowledgement after the shipment, a second ship
// report) is recorded and answered with the current order. Errors:
// KindInvalid (malformed event), KindNotFound (unknown shipment),
// KindConflict slug event-conflict (the event contradicts a final state,
// e.g. shipped after cancelled: recorded, logged, nothing changed),
// KindUnavailable or internal errors (transient: retry the event).
func (f *FulfillmentService) ApplyWMSEvent(ctx context.Context, ev WMSEvent) (*Order, error) {
	if err := ValidateWMSEvent(ev); err != nil {
		f.results.WithLabelValues("invalid", "conflict").Inc()
		return nil, err
	}
	orderID, err := f.store.ShipmentOrder(ctx, ev.ShipmentID)
	if err != nil {
		if KindOf(err) == KindNotFound {
			f.results.WithLabelValues(string(ev.Type), "unknown_shipment").Inc()
			return nil, Errorf(KindNotFound, SlugNotFound, "no shipment %s", ev.ShipmentID)
		}
		f.results.WithLabelValues(string(ev.Type), "error").Inc()
		return nil, unavailable("shipment lookup failed", err)
	}
	for attempt := 0; ; attempt++ {
		o, err := f.applyWMS(ctx, orderID, ev)
		if errors.Is(err, errStateMoved) {
			if attempt < 3 {
				continue
			}
			f.results.WithLabelValues(string(ev.Type), "error").Inc()
			return nil, unavailable("the order keeps changing; retry the event", err)
		}
		return o, err
	}
}

// applyWMS is one attempt: re-sourcing reserved before the transaction
// when the event may need it, the lifecycle's ApplyWarehouseEvent in the
// store's transaction, then the change's effects (or the release of the
// re-sourced holds it did not store).
func (f *FulfillmentService) applyWMS(ctx context.Context, orderID string, ev WMSEvent) (*Order, error) {
	var res *Resourced
	if ev.Type == WMSRejected || ev.Type == WMSCancelled {
		r, err := f.resource(ctx, orderID, ev)
		if err != nil {
			f.results.WithLabelValues(string(ev.Type), "error").Inc()
			return nil, err
		}
		res = r
	}
	var ch Change
	o, applied, err := f.store.ApplyEvent(ctx, ev.EventID, orderID, step(&ch, func(o *Order) (Change, error) {
		return ApplyWarehouseEvent(o, ev, res, f.Now().UTC())
	}))
	stored := err == nil && applied && ch.UsedResourced
	if res != nil && len(res.Shipments) > 0 && !stored {
		f.dropResourced(ctx, orderID, res.Shipments, err)
	}
	switch {
	case err == nil && !applied:
		f.results.WithLabelValues(string(ev.Type), "duplicate").Inc()
		f.confirmedAgain(ctx, o, ev)
		return o, nil
	case err == nil:
		f.results.WithLabelValues(string(ev.Type), "applied").Inc()
		if stored {
			f.countResourced(res)
		}
		f.committed(ctx, o, ch)
		return o, nil
	case errors.Is(err, ErrEventIgnored):
		var e *Error
		if errors.As(err, &e) && e.Slug == SlugStaleEvent {
			f.results.WithLabelValues(string(ev.Type), "ignored").Inc()
			f.log.Info("warehouse event already covered by the shipment's state", "event_id", ev.EventID, "type", ev.Type, "shipment_id", ev.ShipmentID, "detail", e.Detail)
			f.confirmedAgain(ctx, o, ev)
			return o, nil
		}
		f.results.WithLabelValues(string(ev.Type), "conflict").Inc()
		f.log.Warn("warehouse event contradicts the shipment's state; recorded, nothing changed", "event_id", ev.EventID, "type", ev.Type, "shipment_id", ev.ShipmentID, "err", err)
		return o, err
	case errors.Is(err, errStateMoved):
		return nil, err
	case KindOf(err) == KindConflict || KindOf(err) == KindNotFound || KindOf(err) == KindInvalid:
		f.results.WithLabelValues(string(ev.Type), "conflict").Inc()
		return nil, err
	default:
		f.results.WithLabelValues(string(ev.Type), "error").Inc()
		return nil, unavailable("the warehouse event could not be applied", err)
	}
}

// confirmedAgain gives the purchase limits back (again: it is idempotent)
// when a redelivered or late confirmation of a cancellation finds the
// order cancelled, so that a crash between the commit and the give-back
// is repaired by the warehouse's redelivery.
func (f *FulfillmentService) confirmedAgain(ctx context.Context, o *Order, ev WMSEvent) {
	if o != nil && CancelConfirmed(o, ev) {
		f.giveBack(ctx, o)
	}
}
