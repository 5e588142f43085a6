package oms

import "testing"

var (
	allOrderStatuses = []string{StatusPendingPayment, StatusOnHold, StatusReleased, StatusPartiallyShipped,
		StatusShipped, StatusCancelRequested, StatusCancelled, StatusExpired}
	allShipmentStatuses = []string{ShipPending, ShipRequested, ShipAcknowledged, ShipShipped,
		ShipCancelRequested, ShipCancelled, ShipRejected}
)

// TestOrderTransitions checks every (from, to) pair of order statuses: the
// allowed ones listed here, every other one forbidden.
func TestOrderTransitions(t *testing.T) {
	allowed := map[[2]string]bool{}
	for _, m := range [][2]string{
		{StatusPendingPayment, StatusReleased}, {StatusPendingPayment, StatusOnHold},
		{StatusPendingPayment, StatusCancelled}, {StatusPendingPayment, StatusExpired},
		{StatusOnHold, StatusReleased}, {StatusOnHold, StatusPendingPayment},
		{StatusOnHold, StatusCancelled}, {StatusOnHold, StatusExpired},
		{StatusReleased, StatusPartiallyShipped}, {StatusReleased, StatusShipped},
		{StatusReleased, StatusCancelRequested}, {StatusReleased, StatusCancelled},
		{StatusPartiallyShipped, StatusShipped}, {StatusPartiallyShipped, StatusCancelRequested},
		{StatusCancelRequested, StatusCancelled}, {StatusCancelRequested, StatusReleased},
		{StatusCancelRequested, StatusPartiallyShipped}, {StatusCancelRequested, StatusShipped},
	} {
		allowed[m] = true
	}
	for _, from := range allOrderStatuses {
		for _, to := range allOrderStatuses {
			want := allowed[[2]string{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("order %s -> %s: got allowed=%v, want %v", from, to, got, want)
			}
			o := &Order{Status: from}
			err := Transition(o, to)
			if want && (err != nil || o.Status != to) {
				t.Errorf("Transition %s -> %s: got %v (status %s), want the move", from, to, err, o.Status)
			}
			if !want && (err == nil || KindOf(err) != KindConflict || o.Status != from) {
				t.Errorf("Transition %s -> %s: got %v (status %s), want a conflict and no move", from, to, err, o.Status)
			}
		}
	}
	if len(transitions) != len(allOrderStatuses) {
		t.Errorf("got %d statuses in the table, want %d", len(transitions), len(allOrderStatuses))
	}
}

// TestShipmentTransitions checks every (from, to) pair of shipment
// statuses.
func TestShipmentTransitions(t *testing.T) {
	allowed := map[[2]string]bool{}
	for _, m := range [][2]string{
		{ShipPending, ShipRequested}, {ShipPending, ShipCancelled},
		{ShipRequested, ShipAcknowledged}, {ShipRequested, ShipShipped},
		{ShipRequested, ShipRejected}, {ShipRequested, ShipCancelRequested},
		{ShipAcknowledged, ShipShipped}, {ShipAcknowledged, ShipRejected}, {ShipAcknowledged, ShipCancelRequested},
		{ShipCancelRequested, ShipCancelled}, {ShipCancelRequested, ShipShipped}, {ShipCancelRequested, ShipAcknowledged},
	} {
		allowed[m] = true
	}
	for _, from := range allShipmentStatuses {
		for _, to := range allShipmentStatuses {
			want := allowed[[2]string{from, to}]
			if got := CanTransitionShipment(from, to); got != want {
				t.Errorf("shipment %s -> %s: got allowed=%v, want %v", from, to, got, want)
			}
			s := &Shipment{ID: "s", Status: from}
			err := TransitionShipment(s, to)
			if want != (err == nil) || (want && s.Status != to) || (!want && s.Status != from) {
				t.Errorf("TransitionShipment %s -> %s: got %v (status %s)", from, to, err, s.Status)
			}
		}
	}
	if len(shipmentTransitions) != len(allShipmentStatuses) {
		t.Errorf("got %d statuses in the table, want %d", len(shipmentTransitions), len(allShipmentStatuses))
	}
}
