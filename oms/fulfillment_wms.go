package oms

import (
	"context"
	"errors"
	"fmt"
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
	// Events that need no preparation (everything but a rejection or a
	// cancellation, which may source the shipment again first) join the
	// batch that gathers while the previous one commits.
	if f.events != nil && ev.Type != WMSRejected && ev.Type != WMSCancelled {
		var ch Change
		out := f.events.do(ctx, EventApply{EventID: ev.EventID, ShipmentID: ev.ShipmentID,
			Fn: step(&ch, func(o *Order) (Change, error) { return ApplyWarehouseEvent(o, ev, nil, f.Now().UTC()) })})
		switch {
		case errors.Is(out.Err, errBatchFailed):
			// Apply it alone below: one bad event must not hold up the rest.
		case errors.Is(out.Err, ErrNotFound):
			f.results.WithLabelValues(string(ev.Type), "unknown_shipment").Inc()
			return nil, Errorf(KindNotFound, SlugNotFound, "no shipment %s", ev.ShipmentID)
		default:
			return f.settleWMS(ctx, ev, "", out.Order, out.Applied, out.Err, ch, nil)
		}
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

// EventApply is one warehouse event of a batch (EventBatchStore): the
// shipment it is about and the transition to run on that shipment's
// locked order.
type EventApply struct {
	EventID, ShipmentID string
	Fn                  func(o *Order) ([]OutboxEvent, error)
}

// EventOutcome is what a batch did with one of its events, as
// FulfillmentStore.ApplyEvent answers for one: Err ErrNotFound when no
// such shipment exists.
type EventOutcome struct {
	Order   *Order
	Applied bool
	Err     error
}

// EventBatchStore is a store that applies many warehouse events in one
// transaction, each exactly once, with ApplyEvent's rules per event (the
// events of one order in the order given). An error is about the whole
// batch: nothing was written.
type EventBatchStore interface {
	ApplyEvents(ctx context.Context, evs []EventApply) ([]EventOutcome, error)
}

// errBatchFailed marks the events of a batch whose transaction failed:
// each is applied again alone.
var errBatchFailed = errors.New("oms: the event batch failed")

// applyBatch runs one batch through the store. A failed batch of several
// events sends each back to be applied alone, so that an event the
// database refuses fails by itself; a failed batch of one is that event's
// answer.
//
// The batch runs detached from the leader's cancellation (bounded by the
// side-effect timeout), as a commit batch does: a consumer that stops
// while the batch commits must not turn a committed batch into an error,
// because a redelivered event that finds its mark applies no hold effect.
func (f *FulfillmentService) applyBatch(ctx context.Context, bs EventBatchStore, evs []EventApply) []EventOutcome {
	f.eventBatch.Observe(float64(len(evs)))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.SideEffectTimeout)
	defer cancel()
	out, err := bs.ApplyEvents(ctx, evs)
	if err == nil {
		return out
	}
	out = make([]EventOutcome, len(evs))
	for i := range out {
		if len(evs) > 1 {
			out[i].Err = fmt.Errorf("%w: %w", errBatchFailed, err)
		} else {
			out[i].Err = err
		}
	}
	return out
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
	return f.settleWMS(ctx, ev, orderID, o, applied, err, ch, res)
}

// settleWMS follows the store's answer for one event: the metrics, the
// committed change's effects (or the release of re-sourced holds it did
// not store) and the answer.
func (f *FulfillmentService) settleWMS(ctx context.Context, ev WMSEvent, orderID string, o *Order, applied bool, err error, ch Change, res *Resourced) (*Order, error) {
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
