package oms

// transitions is the order state machine: every allowed move, in one table.
var transitions = map[string][]string{
	StatusPendingPayment:   {StatusReleased, StatusOnHold, StatusCancelled, StatusExpired},
	StatusOnHold:           {StatusReleased, StatusPendingPayment, StatusCancelled, StatusExpired},
	StatusReleased:         {StatusPartiallyShipped, StatusShipped, StatusCancelRequested, StatusCancelled},
	StatusPartiallyShipped: {StatusShipped, StatusCancelRequested},
	StatusCancelRequested:  {StatusCancelled, StatusReleased, StatusPartiallyShipped, StatusShipped},
	StatusShipped:          {},
	StatusCancelled:        {},
	StatusExpired:          {},
}

// CanTransition reports whether an order may move from one status to
// another.
func CanTransition(from, to string) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Transition moves o to status to, or returns a KindConflict error naming
// the illegal move.
func Transition(o *Order, to string) error {
	if !CanTransition(o.Status, to) {
		return Errorf(KindConflict, "invalid-transition", "an order cannot go from %s to %s", o.Status, to)
	}
	o.Status = to
	return nil
}
