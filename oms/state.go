package oms

// transitions is the order state machine: every allowed move, in one table.
var transitions = map[OrderStatus][]OrderStatus{
	OrderPendingPayment:   {OrderReleased, OrderInReview, OrderCancelled, OrderExpired},
	OrderInReview:         {OrderReleased, OrderPendingPayment, OrderCancelled, OrderExpired},
	OrderReleased:         {OrderPartiallyShipped, OrderShipped, OrderCancelRequested, OrderCancelled},
	OrderPartiallyShipped: {OrderShipped, OrderCancelRequested},
	OrderCancelRequested:  {OrderCancelled, OrderReleased, OrderPartiallyShipped, OrderShipped},
	OrderShipped:          {OrderPartiallyReturned, OrderReturned},
	// After-sales (returns.go): a receipt of an order that has shipped.
	OrderPartiallyReturned: {OrderReturned},
	OrderReturned:          {},
	OrderCancelled:         {},
	OrderExpired:           {},
}

// shipmentTransitions is the shipment state machine, next to the order's.
//
//   - pending: reserved, not released to the warehouse (order unpaid or on
//     hold); payment or hold release requests it, cancel or expiry cancels it.
//   - requested/acknowledged: at the warehouse; it ships, rejects (short
//     pick: the lines are sourced again elsewhere) or is asked to cancel.
//   - cancel_requested: the warehouse either cancels it, ships it anyway
//     (shipped), or refuses the cancel before shipping (acknowledged).
//   - shipped, cancelled, rejected: final.
var shipmentTransitions = map[ShipmentStatus][]ShipmentStatus{
	ShipmentPending:         {ShipmentRequested, ShipmentCancelled},
	ShipmentRequested:       {ShipmentAcknowledged, ShipmentShipped, ShipmentRejected, ShipmentCancelRequested},
	ShipmentAcknowledged:    {ShipmentShipped, ShipmentRejected, ShipmentCancelRequested},
	ShipmentCancelRequested: {ShipmentCancelled, ShipmentShipped, ShipmentAcknowledged},
	ShipmentShipped:         {},
	ShipmentCancelled:       {},
	ShipmentRejected:        {},
}

// CanTransition reports whether an order may move from one status to
// another.
func CanTransition(from, to OrderStatus) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Transition moves o to status to, or returns a KindConflict error naming
// the illegal move.
func Transition(o *Order, to OrderStatus) error {
	if !CanTransition(o.Status, to) {
		return Errorf(KindConflict, SlugInvalidTransition, "an order cannot go from %s to %s", o.Status, to)
	}
	o.Status = to
	return nil
}

// CanTransitionShipment reports whether a shipment may move from one
// status to another.
func CanTransitionShipment(from, to ShipmentStatus) bool {
	for _, s := range shipmentTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// TransitionShipment moves s to status to, or returns a KindConflict error
// naming the illegal move.
func TransitionShipment(s *Shipment, to ShipmentStatus) error {
	if !CanTransitionShipment(s.Status, to) {
		return Errorf(KindConflict, SlugInvalidTransition, "shipment %s cannot go from %s to %s", s.ID, s.Status, to)
	}
	s.Status = to
	return nil
}
