package oms

import (
	"context"
	"errors"
	"slices"
)

// ReviewStockShort is the review reason of an order one of whose holds the
// stock engine could not restore after Redis lost its data: the units it
// held were sold again meanwhile (the reconciler never forces a hold past
// on hand). A person decides: restock, re-source or cancel.
const ReviewStockShort = "stock_short_after_rebuild"

// EventOrderStockShort reports such an order on oms.orders.
const EventOrderStockShort EventType = "order.stock_short"

// ReviewUnfitHold is the reconciler's hook for a hold it could not restore
// (inventory.ReconcilerConfig.OnUnfitHold): the order owning the hold
// (hold id = shipment id) gets the review reason and the event, and an
// unpaid order moves into review so that nothing more is sent to a
// warehouse for it. It is idempotent (every instance's reconciler may call
// it): an order that has the reason already is left alone. A hold no
// shipment owns is nobody's order: nil.
func (f *FulfillmentService) ReviewUnfitHold(ctx context.Context, node, holdID string) error {
	orderID, err := f.store.ShipmentOrder(ctx, holdID)
	if KindOf(err) == KindNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = f.store.TransitionOrder(ctx, orderID, func(o *Order) ([]OutboxEvent, error) {
		if slices.Contains(o.ReviewReasons, ReviewStockShort) {
			return nil, errUnchanged
		}
		o.Version++
		o.ReviewReasons = append(o.ReviewReasons, ReviewStockShort)
		if o.Status == OrderPendingPayment {
			if err := Transition(o, OrderInReview); err != nil {
				return nil, err
			}
		}
		f.log.Warn("order put in review: a hold could not be restored after a rebuild", "order_id", o.ID, "node", node, "hold_id", holdID)
		return []OutboxEvent{orderEvent(EventOrderStockShort, o, f.Now().UTC())}, nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}
