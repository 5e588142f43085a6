package oms

import "testing"

var (
	allOrderStatuses = []OrderStatus{OrderPendingPayment, OrderInReview, OrderReleased, OrderPartiallyShipped,
		OrderShipped, OrderCancelRequested, OrderCancelled, OrderExpired}
	allShipmentStatuses = []ShipmentStatus{ShipmentPending, ShipmentRequested, ShipmentAcknowledged, ShipmentShipped,
		ShipmentCancelRequested, ShipmentCancelled, ShipmentRejected}
)

// TestOrderTransitions checks every (from, to) pair of order statuses: the
// allowed ones listed here, every other one forbidden.
func TestOrderTransitions(t *testing.T) {
	allowed := map[[2]OrderStatus]bool{}
	for _, m := range [][2]OrderStatus{
		{OrderPendingPayment, OrderReleased}, {OrderPendingPayment, OrderInReview},
		{OrderPendingPayment, OrderCancelled}, {OrderPendingPayment, OrderExpired},
		{OrderInReview, OrderReleased}, {OrderInReview, OrderPendingPayment},
		{OrderInReview, OrderCancelled}, {OrderInReview, OrderExpired},
		{OrderReleased, OrderPartiallyShipped}, {OrderReleased, OrderShipped},
		{OrderReleased, OrderCancelRequested}, {OrderReleased, OrderCancelled},
		{OrderPartiallyShipped, OrderShipped}, {OrderPartiallyShipped, OrderCancelRequested},
		{OrderCancelRequested, OrderCancelled}, {OrderCancelRequested, OrderReleased},
		{OrderCancelRequested, OrderPartiallyShipped}, {OrderCancelRequested, OrderShipped},
	} {
		allowed[m] = true
	}
	for _, from := range allOrderStatuses {
		for _, to := range allOrderStatuses {
			want := allowed[[2]OrderStatus{from, to}]
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
	allowed := map[[2]ShipmentStatus]bool{}
	for _, m := range [][2]ShipmentStatus{
		{ShipmentPending, ShipmentRequested}, {ShipmentPending, ShipmentCancelled},
		{ShipmentRequested, ShipmentAcknowledged}, {ShipmentRequested, ShipmentShipped},
		{ShipmentRequested, ShipmentRejected}, {ShipmentRequested, ShipmentCancelRequested},
		{ShipmentAcknowledged, ShipmentShipped}, {ShipmentAcknowledged, ShipmentRejected}, {ShipmentAcknowledged, ShipmentCancelRequested},
		{ShipmentCancelRequested, ShipmentCancelled}, {ShipmentCancelRequested, ShipmentShipped}, {ShipmentCancelRequested, ShipmentAcknowledged},
	} {
		allowed[m] = true
	}
	for _, from := range allShipmentStatuses {
		for _, to := range allShipmentStatuses {
			want := allowed[[2]ShipmentStatus{from, to}]
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
